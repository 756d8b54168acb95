#!/usr/bin/env bash
# Times one build under several environment settings side by side in one run on a GPU machine:
# the library's timing knobs (QYOLO_CUDA_SPLIT_K, QYOLO_CUDA_SMALL_TILE, ...; docs/cuda_kernels.md)
# A/B'd without rebuilding. Each setting's bench_cuda_engine (or e2e_cuda_engine) on the same
# engines, the settings alternating, ROUNDS times, so drift between runs shows; then a summary
# of the median time per setting, engine and batch over the rounds, and the ratio to the first
# setting. ab_flags.sh is the same for builds that differ in compile flags.
#
#   bash bench/cuda_engine/ab_env.sh <engine>... -- "<setting>" ["<setting>" ...]
#
# A setting is a list of VAR=value words ("" is the plain environment), e.g.
#   bash bench/cuda_engine/ab_env.sh out/gpu/bench/yolov5s_config1.engine -- \
#     "" "QYOLO_CUDA_SPLIT_K=0" "QYOLO_CUDA_SMALL_TILE=mma_64x64_w2x2_s4"
# BATCH (default 1,32,64), ROUNDS (2), RUN_SECONDS (0.4 a run); BUILD_DIR (build-cuda-engine, run.sh's);
# TOOL=e2e times e2e_cuda_engine's whole pipeline instead (IMAGES: a pack_images.py file).
set -uo pipefail
cd "$(dirname "$0")/../.."
engines=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do engines+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#engines[@]} -gt 0 ] && [ $# -gt 0 ] ||
  { echo "usage: ab_env.sh <engine>... -- \"<VAR=value ...>\" ..."; exit 2; }
settings=("$@")
for s in "${settings[@]}"; do
  for word in $s; do
    [[ $word =~ ^[A-Z_][A-Z0-9_]*=.*$ ]] || { echo "ab_env.sh: '$word' in \"$s\" is not VAR=value"; exit 2; }
  done
done
build=${BUILD_DIR:-build-cuda-engine}
tool=${TOOL:-bench}
batches=${BATCH:-1,32,64}
rounds=${ROUNDS:-2}
seconds=${RUN_SECONDS:-0.4}
bin=$build/bench_cuda_engine
[ "$tool" = e2e ] && bin=$build/e2e_cuda_engine
[ -x "$bin" ] || { echo "ab_env.sh: no $bin (bash bench/cuda_engine/run.sh <dir> with ONLY_BUILD=1 builds it)"; exit 2; }
if [ "$tool" = e2e ] && [ ! -f "${IMAGES:-}" ]; then
  echo "ab_env.sh: TOOL=e2e needs IMAGES=<file from bench/cuda_engine/pack_images.py>"; exit 2
fi
results=$(mktemp)
trap 'rm -f "$results"' EXIT

# One run: "<setting index> <engine> <batch> <median ms>" lines.
run_one() {
  local k=$1 setting=$2
  if [ "$tool" = e2e ]; then
    local e b
    for e in "${engines[@]}"; do
      for b in ${batches//,/ }; do
        env $setting "$bin" --engine "$e" --images "$IMAGES" --batch "$b" --seconds "$seconds" 2>/dev/null |
          awk -F'|' -v k="$k" '/\.engine \|/ {gsub(/ /, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $8); print k, $2, $3, $8}'
      done
    done
  else
    env $setting "$bin" --batch "$batches" --seconds "$seconds" "${engines[@]}" 2>/dev/null |
      awk -F'|' -v k="$k" '/\.engine \|/ {gsub(/ /, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $5); print k, $2, $3, $5}'
  fi
}

for round in $(seq "$rounds"); do
  for k in "${!settings[@]}"; do
    echo "round $round [${settings[$k]:-plain}]"
    run_one "$k" "${settings[$k]}" | tee -a "$results" | awk '{printf "  %s batch %s: %s ms\n", $2, $3, $4}'
  done
done

echo
echo "| setting | engine | batch | median ms over rounds | vs first |"
echo "|---|---|---|---|---|"
for k in "${!settings[@]}"; do
  awk -v k="$k" -v name="${settings[$k]:-plain}" '
    function median(s, key,   m, i, j, t, a) {
      m = n[s, key]
      for (i = 1; i <= m; ++i) a[i] = v[s, key, i]
      for (i = 1; i <= m; ++i) for (j = i + 1; j <= m; ++j) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    { key = $2 " " $3; v[$1, key, ++n[$1, key]] = $4; keys[key] = 1 }
    END {
      for (key in keys) {
        if (!n[k, key]) continue
        mine = median(k, key)
        first = n[0, key] ? median(0, key) : 0
        split(key, parts, " ")
        ratio = first > 0 ? sprintf("%.3f", mine / first) : "-"
        printf "| %s | %s | %s | %.3f | %s |\n", name, parts[1], parts[2], mine, ratio
      }
    }' "$results" | sort -t'|' -k3,3 -k4,4n
done
