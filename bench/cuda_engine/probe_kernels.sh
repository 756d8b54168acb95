#!/usr/bin/env bash
# Nsight Compute (clocks not locked) on the kernels of the end-to-end pipeline around the
# network, over e2e_cuda_engine's first batches of real images:
#   1. durations of every kernel of cuda_ops' detect (candidates, the segmented sort, the class
#      sort, NMS) and the preprocess, summed per kernel;
#   2. the speed-of-light, occupancy and warp-state sections of one launch each of preprocess,
#      candidates and the class NMS: what bounds them.
#
#   bash bench/cuda_engine/probe_kernels.sh <dir> <engine> [batch] [build dir]
#
# <dir> as for run.sh (its images/); the build is run.sh's (build-cuda-engine by default).
# SECTIONS=0 leaves part 2 out.
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=$(realpath "${1:?usage: probe_kernels.sh <dir> <engine> [batch] [build]}")
engine=${2:?engine}
batch=${3:-64}
build=${4:-build-cuda-engine}
pack=$(mktemp -d)/images.rgb
python3 bench/cuda_engine/pack_images.py "$dir/images" "$pack" >/dev/null
e2e=("$build/e2e_cuda_engine" --engine "$engine" --images "$pack" --batch "$batch")
ncu --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
  -k 'regex:candidates|segments|score_sort|class_sort|nms|Segmented|preprocess|decode' --launch-count 80 \
  "${e2e[@]}" --seconds 0.05 2>&1 |
  grep -E "^ *[A-Za-z_:<>]+.*\(|gpu__time_duration|Invocations|rror" | head -60
if [ "${SECTIONS:-1}" = 1 ]; then
  for k in preprocess_kernel candidates_kernel nms_classes_kernel; do
    echo "== $k"
    ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats \
      --section WarpStateStats --section ComputeWorkloadAnalysis -k "regex:$k" --launch-skip 1 \
      --launch-count 1 "${e2e[@]}" --seconds 0.01 2>&1 |
      grep -E "Duration|Throughput|Registers|Achieved Occupancy|Theoretical Occupancy|Block Limit|Stall|Issued Ipc|Executed Ipc|Warp Cycles|Grid Size|Block Size|Shared Memory Config|Dynamic Shared|Static Shared|One or More|No Eligible|Active Warps" |
      sed 's/  */ /g' | head -40
  done
fi
rm -f "$pack"
