#!/usr/bin/env bash
# The qyolo CLI itself on a GPU machine (prepare_cli.sh's folder): `qyolo val --loadEngine` on
# every accuracy engine, one instance and two (`--devices 0,0`), mAP and the detections of the
# two runs compared; `qyolo bench --loadEngine` on each engine with `--useCudaGraph`, then with
# `--devices` listing every GPU the machine has (and 0,0 on one GPU) for the scaling report.
#
#   bash bench/cuda_engine/run_cli.sh <dir> [out]
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=$(realpath "${1:?usage: run_cli.sh <dir> [out]}")
out=$(realpath -m "${2:-out/cli}")
mkdir -p "$out"
work=$(mktemp -d)
tar -C "$work" -xJf "$dir/cli.tar.xz"
export LD_LIBRARY_PATH="$work/cli/lib:${LD_LIBRARY_PATH:-}"
qyolo=$work/cli/qyolo
"$qyolo" --version
gpus=$(nvidia-smi -L | wc -l)
all=$(seq -s, 0 $((gpus - 1)))
[ "$gpus" -eq 1 ] && all=0,0
status=0
for e in "$dir"/accuracy/*.engine; do
  name=$(basename "$e" .engine)
  for devices in 0 0,0; do
    tag=$name.${devices//,/_}
    "$qyolo" val --loadEngine "$e" --images "$dir/images" --annotations "$dir/instances_val2017.json" \
      --devices "$devices" --save-json "$out/$tag.json" --export-metrics "$out/$tag.metrics.json" \
      >"$out/$tag.log" 2>&1 || status=1
    echo "val $name --devices $devices: $(grep -m1 'IoU=0.50:0.95 | area=   all | maxDets=100' "$out/$tag.log")"
  done
  cmp -s <(python3 -m json.tool --sort-keys "$out/$name.0.json") \
         <(python3 -m json.tool --sort-keys "$out/$name.0_0.json") &&
    echo "  detections of --devices 0 and 0,0: identical" ||
    { echo "  detections of --devices 0 and 0,0: DIFFERENT"; status=1; }
done
for e in "$dir"/bench/*.engine "$dir"/accuracy/*.engine; do
  name=$(basename "$e" .engine)
  "$qyolo" bench --loadEngine "$e" --useCudaGraph --duration 2 --devices "$all" \
    --exportProfile "$out/$name.profile.json" >"$out/$name.bench.log" 2>&1 || status=1
  echo "== bench $name --devices $all"
  grep -E "^Throughput|^Latency|^instance|^Total:" "$out/$name.bench.log" | head -12
done
rm -rf "$work"
exit $status
