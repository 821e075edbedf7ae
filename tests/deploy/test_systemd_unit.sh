#!/usr/bin/env bash
# The configured systemd unit (RC_BINARY_DIR/deploy/runcastd.service):
#  - systemd-analyze verify accepts it without a warning, once its
#    ExecStart points at the built runcastd and the sample configuration;
#  - the configuration it names parses (runcastd --print-config);
#  - RestartPreventExitStatus is runcastd's exit status for a bad
#    configuration, and Restart=on-failure restarts on the others (70);
#  - TimeoutStopSec leaves runcastd's --shutdown-timeout room to finish.
set -euo pipefail
command -v systemd-analyze >/dev/null || { echo "skip: no systemd-analyze"; exit 77; }
unit="$RC_BINARY_DIR/deploy/runcastd.service"
bin="$RC_BINARY_DIR/broker/runcastd"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

exec_line=$(grep '^ExecStart=' "$unit") || fail "no ExecStart in $unit"
conf=$(sed -n 's/^ExecStart=[^ ]* --config \([^ ]*\)$/\1/p' "$unit")
[ -n "$conf" ] || fail "ExecStart does not name a --config file: $exec_line"

cp "$RC_SOURCE_DIR/deploy/runcast.conf" "$tmp/runcast.conf"
sed -e "s|^ExecStart=.*|ExecStart=$bin --config $tmp/runcast.conf|" "$unit" \
  > "$tmp/runcastd.service"
out=$(systemd-analyze verify "$tmp/runcastd.service" 2>&1) ||
  fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warned: $out"

"$bin" --config "$tmp/runcast.conf" --print-config > "$tmp/effective" ||
  fail "the sample configuration does not load"

grep -qx 'Restart=on-failure' "$unit" || fail "Restart=on-failure missing"
prevent=$(sed -n 's/^RestartPreventExitStatus=//p' "$unit")
set +e
"$bin" --config "$tmp/runcast.conf" --print-config --watchdog 5parsecs > /dev/null 2>&1
st=$?
set -e
[ "$st" = "$prevent" ] ||
  fail "a bad configuration exits $st, the unit prevents restarts on '$prevent'"

stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$unit")
shutdown=$(sed -n 's/^shutdown-timeout = \([0-9]*\)s$/\1/p' "$tmp/effective")
[ -n "$stop" ] && [ -n "$shutdown" ] || fail "TimeoutStopSec or shutdown-timeout not found"
[ "$stop" -gt "$shutdown" ] ||
  fail "TimeoutStopSec=$stop does not exceed --shutdown-timeout ${shutdown}s"
echo "ok: unit verified; config errors exit $st; stop timeout ${stop}s > ${shutdown}s"
