#!/usr/bin/env bash
# The main job on the sample data: set up, build, describe yolov5n, and run it on a COCO
# image. QYOLO_DATA points at the data folder (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${QYOLO_DATA:-../shared/data}"
bash scripts/setup.sh
bash scripts/build.sh
model="$data/models/yolov5n.onnx"
image="$data/coco/val2017-mini/images/000000000139.jpg"
mkdir -p out
./build/qyolo inspect "$model"
.venv/bin/python tools/letterbox_npy.py "$image" out/000000000139.npy --size 640
./build/qyolo infer --onnx "$model" --input out/000000000139.npy --output-dir out
.venv/bin/python tools/top_detections.py out/output0.npy
