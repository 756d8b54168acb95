#!/usr/bin/env bash
# Installs dependencies, builds once, and runs every test from that build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
