#!/usr/bin/env bash
# Times builds of the working tree that differ only in CUDA compile flags (the kernels' timing
# experiments, e.g. -DQYOLO_EPILOGUE_FAST) side by side in one run
# on a GPU machine: each build's bench_cuda_engine on the same engines, the builds alternating,
# twice, so drift between runs shows. Optionally an older revision too (a tarball made where the
# git history is: `git archive <rev> | gzip > old.tgz`; GPU machines get the tree without .git).
#
#   bash bench/cuda_engine/ab_flags.sh <dir> <engine>... -- "<flags>" ["<flags>" ...]
#
# "" is the plain build; OLD=old.tgz adds the old revision's plain build. <dir> as for run.sh
# (its googletest/). The builds run in parallel (BUILD_ROOT, default /tmp/qyolo_ab).
# For the library's environment knobs (one build), ab_env.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=$(realpath "${1:?usage: ab_flags.sh <dir> <engine>... -- <flags>...}")
shift
engines=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do engines+=("$(realpath "$1")"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#engines[@]} -gt 0 ] && [ $# -gt 0 ] || { echo "usage: ab_flags.sh <dir> <engine>... -- <flags>..."; exit 2; }
root=${BUILD_ROOT:-/tmp/qyolo_ab}
mkdir -p "$root"
cudnn=$(python3 -c 'import nvidia.cudnn as c; print(c.__path__[0])' 2>/dev/null || true)

build() {  # name source flags
  cmake -S "$2/bench/cuda_conv" -B "$root/$1" -G Ninja -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" \
    -DQYOLO_CUDNN_ROOT="$cudnn" -DQYOLO_GTEST_SOURCE_DIR="$dir/googletest" "-DCMAKE_CUDA_FLAGS=$3" \
    >"$root/$1.configure.log" 2>&1 &&
    cmake --build "$root/$1" -j"$(nproc)" --target bench_cuda_engine >"$root/$1.build.log" 2>&1 ||
    { echo "$1: build failed"; grep -m5 error "$root/$1.build.log"; return 1; }
}

names=() flags=()
i=0
for f in "$@"; do names+=("v$i"); flags+=("$f"); i=$((i + 1)); done
if [ -n "${OLD:-}" ]; then
  mkdir -p "$root/old_src" && tar xzf "$OLD" -C "$root/old_src" && names+=(old) && flags+=("")
fi
start=$(date +%s)
for k in "${!names[@]}"; do
  src=$PWD
  [ "${names[$k]}" = old ] && src=$root/old_src
  build "${names[$k]}" "$src" "${flags[$k]}" &
done
wait
echo "builds: $(( $(date +%s) - start )) s"
for round in 1 2; do
  for k in "${!names[@]}"; do
    bin=$root/${names[$k]}/bench_cuda_engine
    [ -x "$bin" ] || continue
    echo "round $round ${names[$k]} [${flags[$k]:-plain}]"
    timeout 120 "$bin" --seconds 0.4 "${engines[@]}" 2>/dev/null | grep -E '\.engine \|'
  done
done
