#!/usr/bin/env bash
# The GPU side of the engine work in one go, on a machine with nvcc, CMake, a GPU and PyTorch
# (for cuDNN's wheel and the peer) but none of qyolo's other dependencies:
#   1. the standalone CUDA build (bench/cuda_conv/CMakeLists.txt): kernels, runtime, GPU tests,
#      bench_cuda_engine, e2e_cuda_engine;
#   2. the GPU tests (conv, ops, detect, engine), a summary line each;
#   3. bench_cuda_engine on every engine given, and a per-layer profile of the first;
#   4. e2e_cuda_engine: COCO results of the accuracy engines (score them with qyolo cocoeval on
#      a machine with qyolo) and end-to-end timing at batch 1, 32, 64;
#   5. the fused Concat copies' A/B (prepare.sh's yolov5s_config1_copies.engine against
#      yolov5s_config1.engine, ab_env.sh, three alternating rounds);
#   6. bench/pytorch_peer.py at the widths of yolov5s and yolov5n, in the same run.
#
#   bash bench/cuda_engine/run.sh <dir> [out]
#
# Expect several minutes on an H200, most of it the PyTorch peer (torch.compile) and the conv
# benchmark: SKIP_PEER=1 and SKIP_CONV_BENCH=1 leave them out; ONLY_BUILD=1 stops after step 1.
#
# <dir> holds what the machine lacks (make it with qyolo on the development machine):
#   googletest/               a copy of /usr/src/googletest
#   yolov5_conv_shapes_640.json
#   engine_fixtures/          tests/cuda/make_engine_fixtures <dir>/engine_fixtures
#   ops_fixtures/             tests/cuda/make_cuda_ops_fixtures <data> <dir>/ops_fixtures 2
#   images/                   val2017-mini's JPEGs (decoded here by pack_images.py)
#   accuracy/*.engine         qyolo build --target cuda --maxBatch 64 ... (one per configuration)
#   bench/*.engine            more engines to time (yolov5s); the accuracy engines are timed too
# bench/cuda_engine/prepare.sh makes the folder.
# Everything lands in [out] (default out/cuda_engine), packed into results.tgz as well: where
# only a few files come back from the machine, copy just that one
# (`run.sh <dir> /tmp/gpu && cp /tmp/gpu/results.tgz <where results come back>`).
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=$(realpath "${1:?usage: run.sh <dir> [out]}")
out=$(realpath -m "${2:-out/cuda_engine}")
build=${BUILD_DIR:-build-cuda-engine}
mkdir -p "$out"
export QYOLO_DATA=$dir

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
cudnn=$(python3 -c 'import nvidia.cudnn as c; print(c.__path__[0])' 2>/dev/null || true)
libs=$(python3 -c 'import glob, os, nvidia; print(":".join(sorted({d for r in nvidia.__path__ for d in glob.glob(os.path.join(r, "**", "lib"), recursive=True)})))' 2>/dev/null || true)
cmake -S bench/cuda_conv -B "$build" -G Ninja -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" \
  -DQYOLO_CUDNN_ROOT="$cudnn" -DQYOLO_TEST_DATA="$dir" -DQYOLO_GTEST_SOURCE_DIR="$dir/googletest" \
  -DQYOLO_ENGINE_FIXTURES="$dir/engine_fixtures" -DQYOLO_CUDA_OPS_FIXTURES="$dir/ops_fixtures" \
  >"$out/configure.log" 2>&1 || { tail -20 "$out/configure.log"; exit 1; }
start=$(date +%s)
cmake --build "$build" -j"$(nproc)" >"$out/build.log" 2>&1 ||
  { grep -B2 -A10 "error" "$out/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - start )) s, $(grep -c spill "$out/build.log") ptxas spill warnings"
[ "${ONLY_BUILD:-0}" = 1 ] && exit 0

status=0
for t in test_cuda_conv_int8 test_cuda_int8_ops test_cuda_reformat test_cuda_conv_fp16 \
         test_cuda_preprocess test_cuda_detect test_cuda_engine; do
  timeout 300 "$build/tests/$t" >"$out/$t.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  echo "== $t: exit $rc"
  grep -E "^\[  (PASSED|FAILED) |^all yolov5|detect \(|identical|output .* differ" "$out/$t.log" | head -12
done

shopt -s nullglob
bench_engines=("$dir"/bench/*.engine "$dir"/accuracy/*.engine)
if [ ${#bench_engines[@]} -gt 0 ]; then
  timeout 120 "$build/bench_cuda_engine" --seconds 0.4 "${bench_engines[@]}" 2>"$out/bench.jsonl" |
    tee "$out/bench.md"
  timeout 30 "$build/bench_cuda_engine" --seconds 0.2 --batch 64 --profile "${bench_engines[0]}" \
    2>/dev/null >"$out/profile.md"
  head -12 "$out/profile.md"
fi

if [ -d "$dir/images" ]; then
  python3 bench/cuda_engine/pack_images.py "$dir/images" "$out/images.rgb" >/dev/null
  echo "| engine | batch | detections | preprocess | network | detect | e2e | e2e+copies | net img/s | e2e img/s | e2e / network | 2 streams img/s | net / 2 streams |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for e in "$dir"/accuracy/*.engine; do
    timeout 60 "$build/e2e_cuda_engine" --engine "$e" --images "$out/images.rgb" --batch 64 \
      --results "$out/$(basename "$e" .engine).results.json" --seconds 0.3 2>>"$out/e2e.jsonl"
  done
  for e in "${bench_engines[@]}"; do
    for b in 1 32 64; do
      timeout 60 "$build/e2e_cuda_engine" --engine "$e" --images "$out/images.rgb" --batch $b \
        --seconds 0.3 2>>"$out/e2e.jsonl"
    done
  done | tee "$out/e2e.md"
  rm -f "$out/images.rgb"
fi

# The fused Concat copies against the same engine with them kept as layers (prepare.sh builds
# both): alternating rounds, medians.
copies_engine="$dir/bench/yolov5s_config1_copies.engine"
if [ -f "$copies_engine" ] && [ -f "$dir/bench/yolov5s_config1.engine" ]; then
  echo "== fused Concat copies vs Requantize layers (yolov5s configuration 1)"
  BUILD_DIR=$build ROUNDS=3 RUN_SECONDS=0.4 timeout 150 bash bench/cuda_engine/ab_env.sh \
    "$copies_engine" "$dir/bench/yolov5s_config1.engine" -- "" 2>&1 | tail -8 | tee "$out/ab_copies.md"
fi

if [ "${SKIP_PEER:-0}" != 1 ]; then
  PYTHONUNBUFFERED=1 timeout 300 python3 bench/pytorch_peer.py --width 0.5 --batch 1 32 64 \
    --json "$out/peer_yolov5s.json" 2>&1 | grep -v Warn | tail -14
  PYTHONUNBUFFERED=1 timeout 120 python3 bench/pytorch_peer.py --width 0.25 --batch 1 32 64 \
    --modes eager channels_last cuda_graph --json "$out/peer_yolov5n.json" 2>&1 | tail -6
fi
if [ "${SKIP_CONV_BENCH:-0}" != 1 ] && [ -x "$build/bench_cuda_conv" ]; then
  LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}" timeout 300 "$build/bench_cuda_conv" \
    --shapes "$dir/yolov5_conv_shapes_640.json" --markdown "$out/conv_bench.md" \
    --csv "$out/conv_bench.csv" >"$out/conv_bench.log" 2>&1
  echo "== bench_cuda_conv: exit $?"
fi
tar -czf "$out.tgz" -C "$out" --exclude results.tgz . && mv "$out.tgz" "$out/results.tgz"
exit $status
