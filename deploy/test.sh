#!/usr/bin/env bash
# deploy/test.sh [BUILD_DIR] [ctest options]: set up, build, and run the whole
# test suite (unit, integration and stress labels) with ctest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-build}
shift || true
bash "$root/deploy/setup.sh" test "$build_dir"
cd "$root/$build_dir"
ctest --output-on-failure "$@"
