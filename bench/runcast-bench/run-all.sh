#!/usr/bin/env bash
# Runs every benchmark of docs/BENCHMARKS.md and keeps each output:
#   bash bench/runcast-bench/run-all.sh BUILD_DIR OUT_DIR
# BUILD_DIR is a Release build tree (runcastd, runcast-bench and the
# micro-benchmarks built); OUT_DIR gets one .txt per program plus machine.txt.
set -uo pipefail
build=${1:-build}
out=${2:-bench-results}
mkdir -p "$out"
rb="$build/bench/runcast-bench/runcast-bench"

{
  echo "date: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "kernel: $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "nng: $(dpkg-query -W -f='${Version}' libnng1 2>/dev/null)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.txt"

# Before each program, wait (at most RCB_WAIT_MAX s, default 90) for the
# 1-minute load average to fall under RCB_WAIT_LOAD (default 2.5): the
# machine is shared, and a quieter start gives figures closer to its ability.
wait_quiet() {
  local max=${RCB_WAIT_MAX:-90} lim=${RCB_WAIT_LOAD:-2.5} t=0
  while [ "$t" -lt "$max" ] && awk -v l="$lim" '{exit !($1 > l)}' /proc/loadavg; do
    sleep 5
    t=$((t + 5))
  done
}

run() { # NAME CMD...
  local name=$1
  shift
  wait_quiet
  echo "== $name: $* (load $(cut -d' ' -f1 /proc/loadavg))" | tee -a "$out/machine.txt"
  local t0=$SECONDS rc
  # every program is bounded by itself; this is the backstop (exit 124)
  timeout -k 10 "${RCB_TIMEOUT:-600}" "$@" > "$out/$name.txt" 2> "$out/$name.err"
  rc=$?
  echo "   exit $rc after $((SECONDS - t0)) s (load after $(cut -d' ' -f1 /proc/loadavg))" |
    tee -a "$out/machine.txt"
}

run raw "$rb" raw -q
run ingest "$rb" ingest -q
run ingest-ipc "$rb" ingest --transport ipc -q
run ack "$rb" ack -q
run fanout "$rb" fanout -q
run fanout-w2-epoll "$rb" fanout -w W2 --ws-client epoll -q
run fanout-w2-s100 "$rb" fanout -w W2 -S 100 -q
run conns "$rb" conns -q
run runs "$rb" runs -q
run soak "$rb" soak -q
for b in proto/bench_proto actors/bench_actors broker/bench_broker; do
  [ -x "$build/bench/$b" ] && run "$(basename "$b")" "$build/bench/$b"
done
if [ -x "$build/bench/edge/bench_edge" ]; then
  run bench_edge_raw "$build/bench/edge/bench_edge" raw
  run bench_edge_w1 "$build/bench/edge/bench_edge" w1
fi
run smoke "$rb" --smoke -q
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
