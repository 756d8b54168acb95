#!/usr/bin/env bash
# Makes the folder that bench/qat_gpu/run.sh takes on a GPU machine with PyTorch: the qyolo CLI
# built here with QAT against the LibTorch of a torch wheel of the GPU machine's version
# (CUDA build, libtorch_cuda linked: -DQYOLO_LIBTORCH=<wheel's torch/> -DQYOLO_LIBTORCH_CUDA=ON
# -DQYOLO_CUDA=ON), stripped, with the Debian libraries it links that such a machine lacks but
# none of LibTorch's or CUDA's (the GPU machine's torch install has those); calib2017's images,
# yolov5n.onnx, and for the CLI checks val2017-mini with one cuda engine of
# bench/cuda_engine/prepare.sh's folder. About 55 MB: mind a 64 MB limit on what travels.
#
#   bash bench/qat_gpu/prepare.sh <build> <dir> [engine]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:?usage: prepare.sh <build> <dir> [engine]}
dir=${2:?usage: prepare.sh <build> <dir> [engine]}
engine=${3:-out/gpu/accuracy/yolov5n_config3.engine}
data=${QYOLO_DATA:-../shared/data}
ldd "$build/qyolo" | grep libtorch_cuda >/dev/null ||
  { echo "prepare.sh: $build/qyolo does not link libtorch_cuda.so (see the header)" >&2; exit 1; }
rm -rf "$dir" && mkdir -p "$dir"
bash bench/cuda_engine/pack_cli.sh "$build/qyolo" "$dir" --without-torch
cp -r "$data/coco/calib2017/images" "$dir/calib"
cp -r "$data/coco/val2017-mini/images" "$dir/val"
cp "$data/coco/val2017-mini/annotations/instances_val2017.json" "$data/models/yolov5n.onnx" "$dir/"
cp "$engine" "$dir/check.engine"
du -sh "$dir"
