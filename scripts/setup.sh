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
  libtorch-dev libgloo-dev
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

# LibTorch 2.x for `qyolo qat`, CI's build. Debian's libtorch-dev is 1.13 (it does have c10d,
# linked against Debian's libgloo, and stays a valid fallback); CI builds against the LibTorch
# that users of current PyTorch have, so the QAT code keeps compiling and passing on 2.x.
# download.pytorch.org's CPU wheels are not reachable from every CI host; PyPI's torch wheel
# carries c10d and Gloo inside libtorch_cpu.so. It is a CUDA build, but libtorch_cpu.so +
# libc10.so need only libcudart and libcupti of CUDA (loaded, never used without a GPU), taken
# from their own PyPI wheels. 2.7.1 is the first x86_64 wheel built with the C++11 ABI
# (manylinux_2_28), which the rest of qyolo (g++ 12's default) uses. Only the headers and those
# four libraries are kept, in .deps/libtorch (git-ignored; ~460 MB); a rerun with the same pins
# does nothing. Gloo's own headers come from Debian's libgloo-dev (above): the wheel ships
# none, and qyolo only holds Gloo devices by pointer and calls c10d's functions, so the
# headers only need to declare Gloo's types (the code is the wheel's, inside libtorch_cpu.so).
# QYOLO_NO_TORCH_WHEEL=1 skips this; QAT then builds against Debian's LibTorch.
torch_wheels=(
  "torch==2.7.1 torch-2.7.1-cp311-cp311-manylinux_2_28_x86_64.whl 06eea61f859436622e78dd0cdd51dbc8f8c6d76917a9cf0555a333f9eac31ec1"
  "nvidia-cuda-runtime-cu12==12.6.77 nvidia_cuda_runtime_cu12-12.6.77-py3-none-manylinux2014_x86_64.whl a84d15d5e1da416dd4774cb42edf5e954a3e60cc945698dc1d5be02321c44dc8"
  "nvidia-cuda-cupti-cu12==12.6.80 nvidia_cuda_cupti_cu12-12.6.80-py3-none-manylinux2014_x86_64.whl a3eff6cdfcc6a4c35db968a06fcadb061cbc7d6dde548609a941ff8701b98b73"
)
libtorch=.deps/libtorch
stamp="$(printf '%s\n' "${torch_wheels[@]}" | sha256sum | cut -c1-16)"
if [ "${QYOLO_NO_TORCH_WHEEL:-0}" != 1 ] && [ "$(cat "$libtorch/STAMP" 2>/dev/null)" != "$stamp" ]; then
  wheels=.deps/wheels
  rm -rf "$libtorch" "$libtorch.tmp"
  mkdir -p "$wheels" "$libtorch.tmp/lib"
  for entry in "${torch_wheels[@]}"; do
    read -r requirement file sha <<<"$entry"
    if ! echo "$sha  $wheels/$file" | sha256sum -c --quiet 2>/dev/null; then
      echo "downloading $requirement"
      rm -f "$wheels/$file"
      /usr/bin/python3 -m pip download -q --disable-pip-version-check --no-deps "$requirement" \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --python-version 3.11 \
        --only-binary=:all: -d "$wheels"
      echo "$sha  $wheels/$file" | sha256sum -c --quiet
    fi
  done
  read -r _ torch_file _ <<<"${torch_wheels[0]}"
  unzip -q -o "$wheels/$torch_file" 'torch/include/*' torch/lib/libtorch_cpu.so torch/lib/libc10.so \
    -d "$libtorch.tmp"
  mv "$libtorch.tmp/torch/include" "$libtorch.tmp/include"
  mv "$libtorch.tmp/torch/lib/"*.so "$libtorch.tmp/lib/"
  rm -rf "$libtorch.tmp/torch"
  # libtorch_cpu.so finds these through its RPATH's $ORIGIN.
  read -r _ runtime_file _ <<<"${torch_wheels[1]}"
  read -r _ cupti_file _ <<<"${torch_wheels[2]}"
  unzip -q -o -j "$wheels/$runtime_file" nvidia/cuda_runtime/lib/libcudart.so.12 -d "$libtorch.tmp/lib"
  unzip -q -o -j "$wheels/$cupti_file" nvidia/cuda_cupti/lib/libcupti.so.12 -d "$libtorch.tmp/lib"
  echo "${torch_wheels[0]%% *}" | sed 's/.*==//' >"$libtorch.tmp/VERSION"
  echo "$stamp" >"$libtorch.tmp/STAMP"
  mv "$libtorch.tmp" "$libtorch"
  rm -rf "$wheels"
fi
