#!/usr/bin/env bash
# Nsight Compute's speed-of-light, occupancy and warp-state sections for one launch each of the
# end-to-end pipeline's preprocess, candidates and class-NMS kernels (clocks not locked): what
# bounds them, for the next round of work on them.
#
#   bash bench/cuda_engine/probe_kernels.sh <dir> <engine> [batch] [build dir]
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=$(realpath "${1:?usage: probe_kernels.sh <dir> <engine> [batch] [build]}")
engine=${2:?engine}
batch=${3:-64}
build=${4:-build-cuda-engine}
pack=$(mktemp -d)/images.rgb
python3 bench/cuda_engine/pack_images.py "$dir/images" "$pack" >/dev/null
for k in preprocess_kernel candidates_kernel nms_classes_kernel; do
  echo "== $k"
  ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats \
    --section WarpStateStats --section ComputeWorkloadAnalysis -k "regex:$k" --launch-skip 1 \
    --launch-count 1 "$build/e2e_cuda_engine" --engine "$engine" --images "$pack" \
    --batch "$batch" --seconds 0.01 2>&1 |
    grep -E "Duration|Throughput|Registers|Achieved Occupancy|Theoretical Occupancy|Block Limit|Stall|Issued Ipc|Executed Ipc|Warp Cycles|Grid Size|Block Size|Shared Memory Config|Dynamic Shared|Static Shared|One or More|No Eligible|Active Warps" |
    sed 's/  */ /g' | head -40
done
rm -f "$pack"
