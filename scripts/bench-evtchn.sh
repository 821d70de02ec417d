#!/usr/bin/env bash
# Event-channel latency through the emulated hypervisor vs a raw futex ping-pong between
# two processes, measured in the same run; then hypercall throughput.
#   scripts/bench-evtchn.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
cargo build -q --release --workspace
bin=target/release
flood=$(mktemp --suffix=.toml)
trap 'rm -f "$flood"' EXIT
sed -e 's/args = \["ping", "20000"\]/args = ["flood", "500000"]/' \
    -e 's/args = \["pong", "20000"\]/args = ["drain"]/' examples/ping-pong/system.toml > "$flood"
for i in $(seq "$reps"); do
  echo "== run $i"
  "$bin/futex-pingpong" 20000
  "$bin/staticbus" run examples/ping-pong/system.toml 2>&1 | grep -E "RTT|hypercalls:"
  "$bin/staticbus" run "$flood" 2>&1 | grep -E "flood:"
done
