#!/usr/bin/env bash
# Makes, on the development machine (qyolo built, .venv set up), the folder that
# bench/cuda_engine/run.sh takes on a GPU machine: googletest's sources, the conv shapes, the
# GPU tests' fixtures, val2017-mini's JPEGs, yolov5n engines for the accuracy contract
# (percentile cache from calib2017, configurations 1-3, cuda target, max batch 64; run.sh times
# them too) and yolov5s engines to time (bench/make_yolov5s.py; configuration 1, or those in
# YOLOV5S_CONFIGS="1 2 3" at 7-8 MB each, and configuration 1 with the Concat copies kept as
# layers, for comparison). About 61 MB with configuration 1: mind a 64 MB limit on what
# travels to the GPU machine.
#
#   bash bench/cuda_engine/prepare.sh <dir> [build]      (QYOLO_DATA: the data folder)
#
# The accuracy references are printed at the end: `qyolo val --int8` with the same cache.
set -euo pipefail
# Calibration's FP32 activations come from oneDNN, whose kernels differ by CPU instruction set
# in the last bits, and val2017-mini's mAP moves with them (README, Table 1): AVX2 everywhere.
export ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-AVX2}
cd "$(dirname "$0")/../.."
dir=${1:?usage: prepare.sh <dir> [build]}
build=${2:-build}
data=${QYOLO_DATA:-../shared/data}
qyolo=$build/qyolo
python=${PYTHON:-.venv/bin/python}
mkdir -p "$dir"/{accuracy,bench}

cp -r /usr/src/googletest "$dir/googletest"
cp "$data/yolov5_conv_shapes_640.json" "$dir/"
cp -r "$data/coco/val2017-mini/images" "$dir/images"
"$build/tests/cuda/make_engine_fixtures" "$dir/engine_fixtures" >/dev/null
"$build/tests/cuda/make_cuda_ops_fixtures" "$data" "$dir/ops_fixtures" 2 >/dev/null

model=$data/models/yolov5n.onnx
heads='/model.24/m.0/Conv:fp16,/model.24/m.1/Conv:fp16,/model.24/m.2/Conv:fp16'
c3="$heads,/model.23/cv3/conv/Conv:fp16,/model.23/cv3/act/Sigmoid:fp16,/model.23/cv3/act/Mul:fp16"
precisions() {  # configuration -> build flags
  case $1 in
    1) echo "--outputIOFormats int8:chw32" ;;
    2) echo "--fp16 --layerPrecisions $heads --outputIOFormats fp16:chw16" ;;
    3) echo "--fp16 --layerPrecisions $c3 --outputIOFormats fp16:chw16" ;;
  esac
}
"$qyolo" calibrate --onnx "$model" --images "$data/coco/calib2017/images" --method percentile \
  -o "$dir/percentile.cache" >/dev/null
for c in 1 2 3; do
  # shellcheck disable=SC2046
  "$qyolo" build --onnx "$model" --calib "$dir/percentile.cache" --int8 $(precisions $c) \
    --inputIOFormats int8:hwc4 --target cuda --maxBatch 64 \
    --saveEngine "$dir/accuracy/yolov5n_config$c.engine" >/dev/null
done

# yolov5s: yolov5n's weights widened (same detections); its own percentile cache.
"$python" bench/make_yolov5s.py "$model" "$dir/yolov5s.onnx" >/dev/null
"$qyolo" calibrate --onnx "$dir/yolov5s.onnx" --images "$data/coco/calib2017/images" \
  --method percentile -o "$dir/yolov5s_percentile.cache" >/dev/null
for c in ${YOLOV5S_CONFIGS:-1}; do
  # shellcheck disable=SC2046
  "$qyolo" build --onnx "$dir/yolov5s.onnx" --calib "$dir/yolov5s_percentile.cache" --int8 \
    $(precisions $c) --inputIOFormats int8:hwc4 --target cuda --maxBatch 64 \
    --saveEngine "$dir/bench/yolov5s_config$c.engine" >/dev/null
done
# The same configuration 1 with a Requantize layer for each Concat input its producer would
# requantize (QYOLO_KEEP_CONCAT_COPIES=1, as before engine format 2): run.sh times both, so the
# fused copies' gain is measured in every call (COPIES_ENGINE=0 leaves it out; 7 MB).
if [ "${COPIES_ENGINE:-1}" = 1 ]; then
  # shellcheck disable=SC2046
  QYOLO_KEEP_CONCAT_COPIES=1 "$qyolo" build --onnx "$dir/yolov5s.onnx" \
    --calib "$dir/yolov5s_percentile.cache" --int8 $(precisions 1) --inputIOFormats int8:hwc4 \
    --target cuda --maxBatch 64 --saveEngine "$dir/bench/yolov5s_config1_copies.engine" >/dev/null
fi
rm -f "$dir/yolov5s.onnx"
du -sh "$dir"

echo "accuracy references (qyolo val --int8, the same cache):"
for c in 1 2 3; do
  extra=""
  [ "$c" = 2 ] && extra="--layerPrecisions $heads"
  [ "$c" = 3 ] && extra="--layerPrecisions $c3"
  # shellcheck disable=SC2086
  "$qyolo" val --onnx "$model" --int8 --calib "$dir/percentile.cache" $extra \
    --images "$data/coco/val2017-mini/images" \
    --annotations "$data/coco/val2017-mini/annotations/instances_val2017.json" \
    --export-metrics "$dir/reference_config$c.json" >/dev/null 2>&1
  "$python" -c "import json,sys; s=json.load(open(sys.argv[1]))['stats']; print(f'  configuration $c: {s[0]:.5f} / {s[1]:.5f}')" \
    "$dir/reference_config$c.json"
done
