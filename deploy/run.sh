#!/usr/bin/env bash
# deploy/run.sh [runcastd options]: set up, build, and start runcastd on its
# embedded defaults (no config file needed).  Extra arguments go to runcastd.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/deploy/setup.sh" runtime build
exec "$root/build/broker/runcastd" "$@"
