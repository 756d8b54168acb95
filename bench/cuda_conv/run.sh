#!/usr/bin/env bash
# Builds the CUDA kernels standalone, runs the GPU tests, then the cuDNN comparison, on a GPU
# machine that has nvcc, CMake and PyTorch's cuDNN wheel (nvidia.cudnn) but not qyolo's other
# dependencies. Results go to $OUT (default ./out/cuda_conv).
#
#   bash bench/cuda_conv/run.sh [DATA_DIR] [extra bench arguments]
#
# DATA_DIR holds yolov5_conv_shapes_640.json (default ../shared/data). Set QYOLO_GTEST_SOURCE_DIR
# to googletest's sources where GTest is not installed, CUDA_ARCH to build for another GPU
# (default: the one present, 90a for Hopper), SKIP_TESTS=1 or SKIP_BENCH=1 to run one half.
set -uo pipefail
cd "$(dirname "$0")/../.."
data_dir=${1:-../shared/data}
shift || true
out=${OUT:-out/cuda_conv}
build=${BUILD_DIR:-build-cuda-bench}
mkdir -p "$out"

python=${PYTHON:-python3}
cudnn=$("$python" -c 'import nvidia.cudnn as c; print(c.__path__[0])' 2>/dev/null || true)
# cuDNN's sub-libraries and what they load (cuBLAS, NVRTC) live in sibling wheels.
libs=$("$python" - <<'EOF' 2>/dev/null || true
import glob, os, nvidia
roots = list(nvidia.__path__)
print(":".join(sorted({d for r in roots for d in glob.glob(os.path.join(r, "**", "lib"), recursive=True)})))
EOF
)
arch=${CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)}
arch=${arch:-90}
[ "$arch" = 90 ] && arch=90a  # Hopper: sm_90 plus wgmma

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvcc --version | tail -2
  echo "cudnn: $cudnn"
} | tee "$out/device.txt"

cmake -S bench/cuda_conv -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DQYOLO_CUDNN_ROOT="$cudnn" -DQYOLO_TEST_DATA="$data_dir" \
  -DQYOLO_GTEST_SOURCE_DIR="${QYOLO_GTEST_SOURCE_DIR:-}" -DQYOLO_CUDA_VERBOSE_PTXAS=ON \
  >"$out/configure.log" 2>&1 || { tail -20 "$out/configure.log"; exit 1; }
start=$(date +%s)
cmake --build "$build" -j"$(nproc)" >"$out/build.log" 2>&1 || { grep -E "error" -A3 "$out/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
grep -E "spill|stack" "$out/build.log" | grep -v " 0 bytes" | sort -u | head -10

status=0
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  QYOLO_DATA="$data_dir" timeout "${TEST_TIMEOUT:-300}" "$build/tests/test_cuda_conv_int8" \
    >"$out/test.log" 2>&1
  status=$?
  grep -E "^(device|yolov5|all|tile)|FAILED|Failure|PASSED|differs|mismatch|wrote outside" "$out/test.log" | head -60
  echo "test exit: $status"
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}" timeout "${BENCH_TIMEOUT:-400}" \
    "$build/bench_cuda_conv" --shapes "$data_dir/yolov5_conv_shapes_640.json" \
    --markdown "$out/bench.md" --csv "$out/bench.csv" "$@" 2>"$out/bench.err"
  echo "bench exit: $?"
  tail -5 "$out/bench.err"
fi
exit $status
