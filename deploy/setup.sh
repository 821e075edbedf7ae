#!/usr/bin/env bash
# deploy/setup.sh [runtime|test] [BUILD_DIR]
#
# Installs the Debian 12 packages runcast needs (only the missing ones, and
# quietly when nothing is missing), then configures and builds runcast into
# BUILD_DIR (default: build/, Release).  Idempotent: run it as often as you
# like.  `runtime` installs what building and running runcastd needs; `test`
# adds the test tools (Criterion, third-party nng/WebSocket clients, clang for
# the fuzzers, Node.js for the browser-side clients).
set -euo pipefail

mode=${1:-runtime}
build_dir=${2:-build}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

runtime_pkgs=(build-essential cmake pkg-config libnng-dev libmsgpack-dev libjemalloc-dev
  libjansson-dev libcriterion-dev)
test_pkgs=(nng-utils nanomsg-utils python3 python3-websockets python3-msgpack clang
  libclang-rt-14-dev clang-format procps systemd)

case "$mode" in
runtime) pkgs=("${runtime_pkgs[@]}") ;;
test) pkgs=("${runtime_pkgs[@]}" "${test_pkgs[@]}") ;;
*)
  echo "usage: deploy/setup.sh [runtime|test] [BUILD_DIR]" >&2
  exit 2
  ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node.js may come from Debian or another Debian-format repository; only add
# Debian's packages when there is no node/npm at all, so a newer install is
# never replaced.
if [ "$mode" = test ]; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S "$root" -B "$root/$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/$build_dir" -j"$(nproc)" >/dev/null
