#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan + libFuzzer) in
# build-fuzz/ and runs each for SECONDS_PER_TARGET seconds, from the seed
# corpus in tests/<area>/corpus/<target>/: the protocol's decoders (proto:
# publish, client, json) and the edge's parsers (edge: ws, the WebSocket
# frames; http, the HTTP request head).
# Exits non-zero on any crash, leak, timeout or out-of-memory (libFuzzer's
# own verdict).
#
#   bash tests/proto/fuzz.sh 25        # CI: 5 targets x 25 s
#
# Environment: CC (default clang-14), RC_FUZZ_BUILD (default <repo>/build-fuzz),
# RC_FUZZ_JOBS (build parallelism, default 2).
set -euo pipefail

secs="${1:-25}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${RC_FUZZ_BUILD:-$root/build-fuzz}"
cc="${CC:-clang-14}"
if ! command -v "$cc" >/dev/null; then
    cc=clang
fi
targets=(proto/publish proto/client proto/json edge/ws edge/http)

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DRUNCAST_FUZZ=ON -DRUNCAST_SANITIZE=address -DRUNCAST_TESTS=ON >/dev/null
bins=()
for at in "${targets[@]}"; do
    bins+=("fuzz_${at/\//_}") # area/name -> fuzz_area_name
done
cmake --build "$build" -j "${RC_FUZZ_JOBS:-2}" --target "${bins[@]}"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"

status=0
for at in "${targets[@]}"; do
    area="${at%/*}"
    t="${at#*/}"
    bin="$build/tests/$area/fuzz_${area}_$t"
    # the dictionary holds the protocol's keys and values: no use to the
    # WebSocket framing
    dict=()
    if [ "$area" = proto ]; then
        dict=(-dict="$root/tests/proto/fuzz_proto.dict")
    fi
    # New inputs go to a scratch corpus so the committed seeds stay small.
    work="$build/fuzz/$t/corpus"
    art="$build/fuzz/$t/artifacts/"
    rm -rf "$art"
    mkdir -p "$work" "$art"
    echo "== fuzz_${area}_$t: ${secs}s"
    if ! "$bin" -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -max_len=8192 "${dict[@]}" \
        -artifact_prefix="$art" -print_final_stats=1 \
        "$work" "$root/tests/$area/corpus/$t" 2>"$build/fuzz/$t/log"; then
        echo "!! fuzz_${area}_$t failed; last lines of $build/fuzz/$t/log:"
        tail -n 60 "$build/fuzz/$t/log"
        ls -l "$art"
        status=1
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$build/fuzz/$t/log" || true
    fi
done
exit "$status"
