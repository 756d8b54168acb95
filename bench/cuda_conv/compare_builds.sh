#!/usr/bin/env bash
# Times the INT8 conv kernels of several builds side by side in one run, on a GPU machine:
# the working tree, the working tree without the exact epilogue's fix-ups
# (-DQYOLO_EPILOGUE_FAST), and optionally an older revision packed on a machine with the git
# history (`git archive <rev> | gzip > old.tgz`; GPU machines get the tree without .git).
#
#   bash bench/cuda_conv/compare_builds.sh <shapes.json> [old.tgz]
#
# LAYERS and BATCHES pick the layers of yolov5s (default: eight of different kinds) and the
# batches (default 1,64); QYOLO_GTEST_SOURCE_DIR as for bench/cuda_conv/run.sh. Each build is
# timed twice, interleaved, so drift between runs shows.
set -uo pipefail
cd "$(dirname "$0")/../.."
shapes=$(realpath "${1:?usage: compare_builds.sh <shapes.json> [old.tgz]}")
old=${2:-}
layers=${LAYERS:-0,1,2,3,4,24,32,57}
batches=${BATCHES:-1,64}
cudnn=$(python3 -c 'import nvidia.cudnn as c; print(c.__path__[0])' 2>/dev/null || true)
work=${WORK_DIR:-/tmp/qyolo_compare_builds}
mkdir -p "$work"
build() {  # name source-dir extra-cmake-args...
  cmake -S "$2/bench/cuda_conv" -B "$work/$1" -G Ninja -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" \
    -DQYOLO_CUDNN_ROOT="$cudnn" -DQYOLO_GTEST_SOURCE_DIR="${QYOLO_GTEST_SOURCE_DIR:-}" "${@:3}" \
    >"$work/$1.configure.log" 2>&1 || { echo "$1: configure failed"; return 1; }
  cmake --build "$work/$1" -j"$(nproc)" --target bench_cuda_conv >"$work/$1.build.log" 2>&1 ||
    { echo "$1: build failed"; grep -m5 error "$work/$1.build.log"; return 1; }
}
names=()
build exact "$PWD" && names+=(exact)
build fast "$PWD" -DCMAKE_CUDA_FLAGS=-DQYOLO_EPILOGUE_FAST && names+=(fast)
if [ -n "$old" ]; then
  rm -rf "$work/old_src" && mkdir -p "$work/old_src" && tar xzf "$old" -C "$work/old_src" &&
    build old "$work/old_src" && names+=(old)
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader
for round in 1 2; do
  for n in "${names[@]}"; do
    echo "== $n (round $round)"
    "$work/$n/bench_cuda_conv" --shapes "$shapes" --batches "$batches" --layers "$layers" --no-cudnn 2>&1 |
      grep -E "^b[0-9]+ " | awk '{print $1, $2, $3, $5, $6, $7}'
  done
done
