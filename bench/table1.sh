#!/usr/bin/env bash
# NVIDIA's Table 1 on yolov5n and val2017-mini: FP32, then INT8 on the CPU reference backend
# for every calibrator (calibrated on calib2017, never on the validation images) in three
# configurations: 1 = every conv INT8, 2 = the three head convs FP16, 3 = also the last C3's
# cv3 conv and its SiLU FP16. Prints a markdown table; caches and metrics go to $OUT.
#
# usage: bench/table1.sh [build/qyolo] [out-dir]     (QYOLO_DATA: the data folder)
set -euo pipefail
# Calibration's FP32 activations come from oneDNN, whose kernels differ by CPU instruction set
# in the last bits, and val2017-mini's mAP moves with them (README, Table 1): AVX2 everywhere.
export ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-AVX2}
qyolo="${1:-build/qyolo}"
out="${2:-table1}"
data="${QYOLO_DATA:-../shared/data}"
model="$data/models/yolov5n.onnx"
images="$data/coco/val2017-mini/images"
annotations="$data/coco/val2017-mini/annotations/instances_val2017.json"
calib="$data/coco/calib2017/images"
mkdir -p "$out"

config2='/model.24/m.0/Conv:fp16,/model.24/m.1/Conv:fp16,/model.24/m.2/Conv:fp16'
config3="$config2,/model.23/cv3/conv/Conv:fp16,/model.23/cv3/act/Sigmoid:fp16,/model.23/cv3/act/Mul:fp16"

stats() {  # metrics.json -> "mAP@[.5:.95] | mAP@.5"
  python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['stats']; print(f'{s[0]:.4f} | {s[1]:.4f}')" "$1"
}

"$qyolo" val --onnx "$model" --images "$images" --annotations "$annotations" \
  --export-metrics "$out/fp32.json" > "$out/fp32.log" 2>&1
echo "| precision | calibrator | configuration | mAP@[.5:.95] | mAP@.5 |"
echo "|---|---|---|---|---|"
echo "| FP32 | — | — | $(stats "$out/fp32.json") |"
for method in max percentile entropy mse; do
  "$qyolo" calibrate --onnx "$model" --images "$calib" --method "$method" \
    -o "$out/$method.cache" > "$out/calibrate_$method.log" 2>&1
  for config in 1 2 3; do
    precisions=""
    [ "$config" = 2 ] && precisions="--layerPrecisions $config2"
    [ "$config" = 3 ] && precisions="--layerPrecisions $config3"
    # shellcheck disable=SC2086
    "$qyolo" val --onnx "$model" --images "$images" --annotations "$annotations" --int8 \
      --calib "$out/$method.cache" $precisions --export-metrics "$out/${method}_$config.json" \
      > "$out/${method}_$config.log" 2>&1
    echo "| INT8 | $method | $config | $(stats "$out/${method}_$config.json") |"
  done
done
