#!/usr/bin/env bash
# Configures and builds qyolo (Release) into build/. Extra arguments go to CMake.
set -euo pipefail
cd "$(dirname "$0")/.."
# The CUDA kernels build (and their GPU tests compile, then skip without a GPU) wherever nvcc is.
cuda=()
if command -v nvcc >/dev/null 2>&1; then
  cuda=(-DQYOLO_CUDA=ON -DCMAKE_CUDA_COMPILER="$(command -v nvcc)")
fi
# Quantization-aware training builds wherever LibTorch is: the one scripts/setup.sh extracts
# from PyPI's wheel into .deps/libtorch (with c10d, for qat --nproc), $Torch_DIR (a PyPI
# torch's: python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' + /Torch), or
# Debian's libtorch-dev (no distributed support).
qat=()
if [ -z "${Torch_DIR:-}" ] && [ -f .deps/libtorch/lib/libtorch_cpu.so ]; then
  qat=(-DQYOLO_QAT=ON -DQYOLO_LIBTORCH="$PWD/.deps/libtorch")
elif [ -n "${Torch_DIR:-}" ]; then
  qat=(-DQYOLO_QAT=ON -DQYOLO_LIBTORCH= -DTorch_DIR="$Torch_DIR")
elif compgen -G "/usr/lib/*/cmake/Torch/TorchConfig.cmake" >/dev/null; then
  qat=(-DQYOLO_QAT=ON -DQYOLO_LIBTORCH=)
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DQYOLO_PYTHON="$PWD/.venv/bin/python" \
  "${cuda[@]}" "${qat[@]}" "$@" >/dev/null
cmake --build build -j"$(nproc)"
