#!/usr/bin/env bash
# Installs what qyolo needs on Debian 12: build tools and libraries from apt, and the test
# oracles (onnxruntime, onnx, numpy, Pillow, ...) into .venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  cmake ninja-build g++ pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libonnx-dev libprotobuf-dev protobuf-compiler
  libdnnl-dev ocl-icd-opencl-dev libcli11-dev nlohmann-json3-dev
  libturbojpeg0-dev libpng-dev
  libtorch-dev
  python3 python3-venv
  python3-torch  # PyTorch 1.13 (CPU) for the detection-loss oracle, seen from .venv
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's python3 with its system site-packages, so .venv sees python3-torch (the PyPI torch
# wheel is CUDA and gigabytes); the pinned oracles in tests/requirements.txt come first.
oracles_ok='import importlib.util as u, onnxruntime, onnx, numpy, PIL, torch; assert u.find_spec("yolov5")'
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "$oracles_ok" 2>/dev/null; then
  /usr/bin/python3 -m venv --clear --system-site-packages .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
  # ultralytics' ComputeLoss, as the oracle of the QAT detection loss: its package only, not
  # its training stack (tests/python/yolo_loss_oracle.py loads the two files it needs).
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -r tests/requirements-nodeps.txt
fi
