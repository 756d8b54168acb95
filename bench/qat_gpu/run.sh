#!/usr/bin/env bash
# On a GPU machine with PyTorch (prepare.sh's folder): `qyolo qat` fine-tuning on the GPU and on
# the machine's CPUs, the same run, with the time and images/s of each (log.csv); then the CLI
# checks of the GPU pipeline: `qyolo val --loadEngine` on the GPU and the host pipelines (the
# detections must be identical) and `qyolo bench --useCudaGraph --streams 2`.
#
#   bash bench/qat_gpu/run.sh <dir> [out]       (EPOCHS, BATCH, IMGSZ, CPU_IMAGES override)
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=$(realpath "${1:?usage: run.sh <dir> [out]}")
out=$(realpath -m "${2:-out/qat_gpu}")
mkdir -p "$out"
work=$(mktemp -d)
tar -C "$work" -xJf "$dir/cli.tar.xz"
torchlib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
nvlibs=$(python3 -c 'import glob, os, nvidia; print(":".join(sorted({d for r in nvidia.__path__ for d in glob.glob(os.path.join(r, "**", "lib"), recursive=True)})))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$work/cli/lib:$torchlib:$nvlibs:${LD_LIBRARY_PATH:-}"
qyolo=$work/cli/qyolo
"$qyolo" --version
python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'
status=0
epochs=${EPOCHS:-2} batch=${BATCH:-4} imgsz=${IMGSZ:-320}
common=(--onnx "$dir/yolov5n.onnx" --placement opt2 --calib-method mse --epochs "$epochs"
        --batch "$batch" --train-imgsz "$imgsz" --lr 1e-4 --seed 0 --no-resume)
for device in cuda cpu; do
  extra=()
  [ "$device" = cpu ] && extra=(--max-images "${CPU_IMAGES:-32}")
  start=$(date +%s%N)
  timeout "${QAT_TIMEOUT:-240}" "$qyolo" qat "${common[@]}" --images "$dir/calib" --device "$device" "${extra[@]}" \
    -o "$out/qat_$device" >"$out/qat_$device.log" 2>&1 || { status=1; echo "qat --device $device failed"; }
  echo "qat --device $device: $(( ($(date +%s%N) - start) / 1000000 )) ms wall"
  grep -v "^\s*$" "$out/qat_$device.log" | grep -E -i "error|device|calibrat|epoch|exported" | tail -6
  [ -f "$out/qat_$device/log.csv" ] && cat "$out/qat_$device/log.csv"
done
for run in gpu host; do
  flags=()
  [ "$run" = host ] && flags=(--host-pipeline)
  "$qyolo" val --loadEngine "$dir/check.engine" --images "$dir/val" \
    --annotations "$dir/instances_val2017.json" "${flags[@]}" --save-json "$out/val_$run.json" \
    >"$out/val_$run.log" 2>&1 || status=1
  echo "val ($run pipeline): $(grep -m1 'IoU=0.50:0.95 | area=   all | maxDets=100' "$out/val_$run.log")"
done
cmp -s "$out/val_gpu.json" "$out/val_host.json" && echo "  detections of the GPU and host pipelines: identical" ||
  { echo "  detections of the GPU and host pipelines: DIFFERENT"; status=1; }
"$qyolo" bench --loadEngine "$dir/check.engine" --useCudaGraph --streams 2 --duration 2 \
  >"$out/bench.log" 2>&1 || status=1
grep -E "^CUDA graph|^Throughput|^Latency|^Compute" "$out/bench.log"
rm -rf "$work"
exit $status
