#!/usr/bin/env bash
# The QAT table on yolov5n and val2017-mini: for Option 1 and Option 2 placements, the QAT
# model after calibration alone (--epochs 0) and after distillation fine-tuning on calib2017
# (never the validation images), each through `qyolo translate` -> `qyolo val --int8` in
# configurations 1, 2, 3 (as bench/table1.sh). Prints a markdown table; models, logs and
# metrics go to the out-dir.
#
# usage: bench/qat_table.sh [build/qyolo] [out-dir]
#   env: QYOLO_DATA (data folder), METHOD (calibrator, default mse), EPOCHS (default 2),
#        BATCH (default 4), LR (default 1e-4), TRAIN_IMGSZ (fine-tuning size, default 320;
#        calibration and validation are at 640 always), PLACEMENTS (default "opt1 opt2"),
#        STAGES (default "calib finetune"), CONFIGS (default "1 2 3"), CALIB_EXTRA and EXTRA
#        (more `qyolo qat` flags for calibration, e.g. --percentile 99.999, and for fine-tuning)
set -euo pipefail
# oneDNN's FP32 kernels (qyolo's and LibTorch's) differ in the last bits by CPU instruction set,
# and val2017-mini's mAP moves with them (README, Table 1): AVX2 everywhere.
export ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-AVX2}
qyolo="${1:-build/qyolo}"
out="${2:-qat_table}"
data="${QYOLO_DATA:-../shared/data}"
method="${METHOD:-mse}"
epochs="${EPOCHS:-2}"
batch="${BATCH:-4}"
lr="${LR:-1e-4}"
train_imgsz="${TRAIN_IMGSZ:-320}"
placements="${PLACEMENTS:-opt1 opt2}"
stages="${STAGES:-calib finetune}"
calib_extra="${CALIB_EXTRA:-}"
extra="${EXTRA:-}"
configs="${CONFIGS:-1 2 3}"
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

echo "| placement | QAT | configuration | mAP@[.5:.95] | mAP@.5 |"
echo "|---|---|---|---|---|"
for placement in $placements; do
  for stage in $stages; do
    run="$out/${placement}_$stage"
    n=0
    flags="$calib_extra"
    [ "$stage" = finetune ] && n="$epochs" && flags="$calib_extra $extra"
    # shellcheck disable=SC2086
    "$qyolo" qat --onnx "$model" --images "$calib" --placement "$placement" \
      --calib-method "$method" --epochs "$n" --batch "$batch" --lr "$lr" --train-imgsz "$train_imgsz" \
      $flags -o "$run" > "$run.log" 2>&1
    "$qyolo" translate "$run/qat.onnx" -o "$run/translated" > "$run.translate.log" 2>&1
    label="calibration only ($method${calib_extra:+ $calib_extra})"
    [ "$stage" = finetune ] && label="fine-tuned, $n epoch(s) at $train_imgsz${extra:+, $extra}"
    for config in $configs; do
      precisions=""
      [ "$config" = 2 ] && precisions="--layerPrecisions $config2"
      [ "$config" = 3 ] && precisions="--layerPrecisions $config3"
      # shellcheck disable=SC2086
      "$qyolo" val --onnx "$run/translated/qat_noqdq.onnx" --images "$images" \
        --annotations "$annotations" --int8 --calib "$run/translated/qat_precision_config_calib.cache" \
        $precisions --export-metrics "$run/val_$config.json" > "$run/val_$config.log" 2>&1
      echo "| $placement | $label | $config | $(stats "$run/val_$config.json") |"
    done
  done
done
for placement in $placements; do
  [ -f "$out/${placement}_finetune.log" ] || continue
  echo "$placement: $(grep '^time' "$out/${placement}_finetune.log" || true)"
done
