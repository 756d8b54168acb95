#!/usr/bin/env bash
# The main job on the sample data: set up, build, describe yolov5n, draw its detections on a
# COCO image, validate it on val2017-mini in FP32, calibrate it on calib2017 and validate it
# again in INT8 (the three head convolutions in FP16, NVIDIA's configuration 2).
# QYOLO_DATA points at the data folder (default ../shared/data); results go to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${QYOLO_DATA:-../shared/data}"
bash scripts/setup.sh
bash scripts/build.sh
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
# The calibration's FP32 arithmetic (oneDNN) differs in the last bits by CPU instruction set, and
# val2017-mini's INT8 mAP with it (README, Table 1); AVX2 gives the README's numbers everywhere.
export ONEDNN_MAX_CPU_ISA="${ONEDNN_MAX_CPU_ISA:-AVX2}"
model="$data/models/yolov5n.onnx"
val=(--images "$data/coco/val2017-mini/images"
     --annotations "$data/coco/val2017-mini/annotations/instances_val2017.json")
mkdir -p out
./build/qyolo inspect "$model"
./build/qyolo detect --onnx "$model" -o out/detect "$data/coco/val2017-mini/images/000000000139.jpg"
./build/qyolo val --onnx "$model" "${val[@]}" --save-json out/fp32_predictions.json \
  --export-metrics out/fp32_metrics.json
./build/qyolo calibrate --onnx "$model" --images "$data/coco/calib2017/images" \
  --method percentile -o out/yolov5n_percentile.cache
./build/qyolo val --onnx "$model" "${val[@]}" --int8 --calib out/yolov5n_percentile.cache \
  --layerPrecisions '/model.24/m.0/Conv:fp16,/model.24/m.1/Conv:fp16,/model.24/m.2/Conv:fp16' \
  --export-metrics out/int8_metrics.json
