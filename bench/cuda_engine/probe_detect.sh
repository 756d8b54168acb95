#!/usr/bin/env bash
# Where GPU detect's time goes: Nsight Compute's kernel durations (clocks not locked) for the
# kernels of cuda_ops' detect (candidates, the two segmented sorts, class keys, NMS) and the
# preprocess, over the first batches e2e_cuda_engine runs on real images.
#
#   bash bench/cuda_engine/probe_detect.sh <dir> <engine> [batch] [build dir]
#
# <dir> as for run.sh (its images/); the build is run.sh's (build-cuda-engine by default).
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=$(realpath "${1:?usage: probe_detect.sh <dir> <engine> [batch] [build]}")
engine=${2:?engine}
batch=${3:-64}
build=${4:-build-cuda-engine}
pack=$(mktemp -d)/images.rgb
python3 bench/cuda_engine/pack_images.py "$dir/images" "$pack" >/dev/null
ncu --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
  -k 'regex:candidates|segments|class_keys|nms|Segmented|preprocess|decode' --launch-count 80 \
  "$build/e2e_cuda_engine" --engine "$engine" --images "$pack" --batch "$batch" --seconds 0.05 \
  2>&1 | grep -E "^ *[A-Za-z_:<>]+.*\(|gpu__time_duration|Invocations|rror" | head -60
rm -f "$pack"
