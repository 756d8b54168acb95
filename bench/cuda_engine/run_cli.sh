#!/usr/bin/env bash
# The qyolo CLI itself on a GPU machine (prepare_cli.sh's folder): `qyolo val --loadEngine` on
# every accuracy engine, the GPU pipeline with one instance and two (`--devices 0,0`) and the
# host pipeline (`--host-pipeline`), mAP and the detections of the runs compared; `qyolo detect
# --loadEngine` on a few images, GPU and host pipelines compared; `qyolo bench --loadEngine` on
# each engine with `--useCudaGraph`, then with `--devices` listing every GPU the machine has
# (and 0,0 on one GPU) for the scaling report.
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
  for run in 0 0,0 host; do
    tag=$name.${run//,/_}
    flags=(--devices "$run")
    [ "$run" = host ] && flags=(--host-pipeline)
    "$qyolo" val --loadEngine "$e" --images "$dir/images" --annotations "$dir/instances_val2017.json" \
      "${flags[@]}" --save-json "$out/$tag.json" --export-metrics "$out/$tag.metrics.json" \
      >"$out/$tag.log" 2>&1 || status=1
    echo "val $name ${flags[*]}: $(grep -m1 'IoU=0.50:0.95 | area=   all | maxDets=100' "$out/$tag.log")"
    grep -E "^pipeline|^time per image|images/s" "$out/$tag.log" | sed 's/^/  /'
  done
  for other in 0_0 host; do
    cmp -s <(python3 -m json.tool --sort-keys "$out/$name.0.json") \
           <(python3 -m json.tool --sort-keys "$out/$name.$other.json") &&
      echo "  detections of --devices 0 and $other: identical" ||
      { echo "  detections of --devices 0 and $other: DIFFERENT"; status=1; }
  done
  # detect.py's settings (single-label, conf 0.25): GPU and host pipelines, the same boxes.
  sample=$(find "$dir/images" -name '*.jpg' | sort | head -8)
  # shellcheck disable=SC2086
  "$qyolo" detect --loadEngine "$e" $sample -o "$out/$name.detect.gpu" >"$out/$name.detect.log" 2>&1 &&
    "$qyolo" detect --loadEngine "$e" --host-pipeline $sample -o "$out/$name.detect.host" \
      >>"$out/$name.detect.log" 2>&1 || status=1
  same_detections() {  # detections.json of two runs, but for where each drew its images
    python3 -c 'import json, sys
runs = [json.load(open(f)) for f in sys.argv[1:]]
for r in runs:
    for i in r: i.pop("output")
sys.exit(runs[0] != runs[1])' "$1/detections.json" "$2/detections.json"
  }
  same_detections "$out/$name.detect.gpu" "$out/$name.detect.host" &&
    echo "  detect, 8 images, GPU and host pipelines: identical detections" ||
    { echo "  detect, GPU and host pipelines: DIFFERENT"; status=1; }
done
for e in "$dir"/bench/*.engine "$dir"/accuracy/*.engine; do
  name=$(basename "$e" .engine)
  "$qyolo" bench --loadEngine "$e" --useCudaGraph --streams 2 --duration 2 --devices "$all" \
    --exportProfile "$out/$name.profile.json" >"$out/$name.bench.log" 2>&1 || status=1
  echo "== bench $name --devices $all"
  grep -E "^Throughput|^Latency|^instance|^Total:" "$out/$name.bench.log" | head -12
done
rm -rf "$work"
exit $status
