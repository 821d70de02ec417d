#!/usr/bin/env bash
# Linux domUs beside bare-metal ones on real Xen 4.20 under QEMU (TCG: emulation numbers),
# each Linux figure next to the bare-metal ↔ bare-metal one measured in the same run:
#   boot → PASS; event-channel round trip (xen-linux-ping-pong vs xen-ping-pong-420);
#   queue messages/s both ways and queue round trip (xen-linux-queue vs xen-queue).
#   scripts/bench-xen-linux.sh [REPEATS]     (BENCHMARKS.md, "Linux domUs on real Xen")
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
cargo build -q -p staticbus
bin=${CARGO_TARGET_DIR:-target}/debug/staticbus
xen=$(scripts/xen/fetch-xen.sh 4.20)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
boot() { # boot NAME: the boot's output in $work/NAME.log; fails the script on a FAIL
  "$bin" boot "examples/$1/system.toml" --xen "$xen" -o "$work/$1" --timeout 300 >"$work/$1.log" 2>&1 ||
    { echo "$1: boot failed:"; tail -20 "$work/$1.log"; exit 1; }
  grep -o 'to the end [0-9.]*s' "$work/$1.log" | sed "s/^/  $1: boot → PASS: /; s/to the end //"
}
for i in $(seq "$reps"); do
  echo "== run $i ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"
  boot xen-ping-pong-420
  grep -E '^ *ping \| ping: .*RTT' "$work/xen-ping-pong-420.log" | sed 's/^ */  bare metal ↔ bare metal evtchn: /'
  boot xen-linux-ping-pong
  grep -E '^ *linux \| ping: .*RTT' "$work/xen-linux-ping-pong.log" | sed 's/^ */  Linux ↔ bare metal evtchn:      /'
  boot xen-queue
  grep -E 'producer \| producer: sent|producer \| producer: RTT' "$work/xen-queue.log" | sed 's/^ */  bare metal → bare metal queue: /'
  boot xen-linux-queue
  grep -E 'linux \| producer: sent|linux \| producer: RTT' "$work/xen-linux-queue.log" | sed 's/^ */  Linux → bare metal queue:      /'
  grep -E 'source \| producer: sent|source \| producer: RTT' "$work/xen-linux-queue.log" | sed 's/^ */  bare metal → Linux queue:      /'
done
