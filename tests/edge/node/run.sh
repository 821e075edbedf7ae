#!/bin/sh
# Runs the Node.js client test: installs ws + @msgpack/msgpack from the
# committed lockfile into the build tree the first time (npm ci), then runs
# the test against a real runcastd.
set -e
here=$(cd "$(dirname "$0")" && pwd)
work="${RC_BINARY_DIR:-.}/tests/edge/node"
mkdir -p "$work"
cp "$here/package.json" "$here/package-lock.json" "$here/test_ws_node.mjs" "$work/"
cd "$work"
if [ ! -d node_modules ]; then
    if ! npm ci --no-audit --no-fund --loglevel=error; then
        # no registry (offline CI): report a skip, not a failure (CTest
        # SKIP_RETURN_CODE 77)
        echo "npm ci failed: cannot install ws and @msgpack/msgpack; skipping" >&2
        exit 77
    fi
fi
exec node test_ws_node.mjs
