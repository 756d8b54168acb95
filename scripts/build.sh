#!/usr/bin/env bash
# Configures and builds qyolo (Release) into build/. Extra arguments go to CMake.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DQYOLO_PYTHON="$PWD/.venv/bin/python" "$@" >/dev/null
cmake --build build -j"$(nproc)"
