#!/usr/bin/env bash
# Makes the folder that bench/cuda_engine/run_cli.sh takes on a bare GPU machine: the qyolo CLI
# built here (QYOLO_CUDA=ON), stripped, with the Debian libraries it links that such a machine
# lacks (oneDNN, protobuf, onnx_proto, libjpeg-turbo, libpng, OpenCL's loader, libgomp, the CUDA
# runtime), packed as cli.tar.xz (about 20 MB); val2017-mini's images and annotations; and the
# engines of bench/cuda_engine/prepare.sh's folder. About 45 MB: mind a 64 MB limit on what
# travels to the GPU machine (this folder goes instead of prepare.sh's, not beside it).
#
#   bash bench/cuda_engine/prepare_cli.sh <prepare.sh folder> <dir> [build]
#
# [build] must be a QYOLO_CUDA=ON build without QAT: LibTorch's libraries alone are ~70 MB packed.
#   cmake -S . -B build-cli -G Ninja -DCMAKE_BUILD_TYPE=Release -DQYOLO_CUDA=ON -DQYOLO_QAT=OFF \
#     -DCMAKE_CUDA_COMPILER=$(command -v nvcc) && cmake --build build-cli --target qyolo
set -euo pipefail
cd "$(dirname "$0")/../.."
gpu=${1:?usage: prepare_cli.sh <prepare.sh folder> <dir> [build]}
dir=${2:?usage: prepare_cli.sh <prepare.sh folder> <dir> [build]}
build=${3:-build}
data=${QYOLO_DATA:-../shared/data}
grep -q "QYOLO_CUDA:BOOL=ON" "$build/CMakeCache.txt" ||
  { echo "prepare_cli.sh: $build was not configured with QYOLO_CUDA=ON" >&2; exit 1; }
ldd "$build/qyolo" | grep libtorch >/dev/null &&
  { echo "prepare_cli.sh: $build/qyolo links LibTorch (too large to carry): build it with -DQYOLO_QAT=OFF" >&2; exit 1; }
bash bench/cuda_engine/pack_cli.sh "$build/qyolo" "$dir"
rm -rf "$dir/images" "$dir/accuracy" "$dir/bench"
cp -r "$gpu/images" "$gpu/accuracy" "$gpu/bench" "$dir/"
cp "$data/coco/val2017-mini/annotations/instances_val2017.json" "$dir/"
du -sh "$dir"
