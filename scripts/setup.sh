#!/usr/bin/env bash
# Create or reuse .venv inside the checkout and install the project into it. Idempotent: a
# stamp of pyproject.toml and this script skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY="$c"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 2; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi

stamp=.venv/.keyframe-escrow-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-32)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing into .venv (first run: ~6 GB, a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch/torchvision first and exactly: the CUDA build runs on the CPU here (~5.6 GB).
  .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
  .venv/bin/python -m pip install -q -e '.[camera,vault,erc,dev,bench]'
  # facenet-pytorch 2.6.0 declares torch<2.3 and numpy<2: pins from 2024 that would
  # downgrade the whole stack, although its MTCNN runs fine on torch 2.14 / numpy 2. So it
  # is installed without its declared dependencies; what it really imports at run time
  # (requests, tqdm, torch, torchvision, numpy, pillow) comes from pyproject.toml.
  .venv/bin/python -m pip install -q --no-deps facenet-pytorch==2.6.0
  # trackers (ByteTrack) declares opencv-python, a second cv2 beside the headless one the
  # project uses; its real imports (supervision, scipy, rich, ...) come from pyproject.toml.
  .venv/bin/python -m pip install -q --no-deps trackers==2.6.1
  # deface, the anonymiser benchmarks/capture.py measures beside the agent (same reason)
  .venv/bin/python -m pip install -q --no-deps deface==1.5.0
  echo "$want" > "$stamp"
fi

# The console's browser tests drive the system's Chromium through Playwright, which is never
# allowed to download a browser of its own: install Debian's package when it is missing.
if [ ! -x /usr/lib/chromium/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing chromium (the console's browser tests)"
    apt-get update -q && apt-get install -y -q chromium
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -q && sudo apt-get install -y -q chromium
  else
    echo "setup: chromium missing (apt-get install chromium): the console's browser tests will skip" >&2
  fi
fi
