#!/usr/bin/env bash
# Event-channel latency through the emulated hypervisor vs a raw futex ping-pong between
# two processes, measured in the same run; then hypercall throughput. Judges issue 18's
# bars in *every* run (not the median of the ratios): RTT p50 <= 1.5x and p99 <= 2x the
# same run's futex reference, flood >= 200k blocking hypercalls/s (EVTCHNOP_status, which
# always goes through the domain's hypervisor thread; the flood's sends are reported
# beside it: with direct delivery, docs/adr/0009, they make no hypercall).
#   scripts/bench-evtchn.sh [REPEATS]      (default 5)
# Each run prints the load average first (the machine may be shared), and, when `perf`
# works, the context switches per round trip of both sides. Environment variables the
# guest transport reads (STATICBUS_EMU_SPIN) and the runner's STATICBUS_EMU_DIRECT=0 (every
# send a hypercall, the path before ADR 0009) pass through, for A/B runs.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [REPEATS]  (REPEATS: a positive number, got '$reps')" >&2; exit 2; }
rounds=20000
cargo build -q --release -p staticbus -p staticbus-emu-domains -p staticbus-emu-runner
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e 's/args = \["ping", "20000"\]/args = ["flood", "500000"]/' \
    -e 's/args = \["pong", "20000"\]/args = ["drain"]/' examples/ping-pong/system.toml > "$work/flood.toml"
grep -q '"flood"' "$work/flood.toml" || { echo "examples/ping-pong/system.toml changed: cannot derive the flood system" >&2; exit 1; }
perf_ok=0
perf stat -x, -e context-switches true >/dev/null 2>&1 && perf_ok=1

# `p50=3.6us` in a line -> microseconds
pct() { # LINE KEY
  sed -nE "s/.*[ ]$2=([0-9.]+)(ns|us|ms|s)( |$).*/\1 \2/p" <<<"$1" |
    awk '{ f = ($2 == "ns") ? 0.001 : ($2 == "us") ? 1 : ($2 == "ms") ? 1000 : 1000000; printf "%.2f", $1 * f }'
}
# run CMD... with perf's context-switch count appended to $work/cs (or nothing)
counted() {
  if [[ $perf_ok == 1 ]]; then
    perf stat -x, -e context-switches -o "$work/cs" -- "$@"
  else
    rm -f "$work/cs"; "$@"
  fi
}
cs_per_rtt() {
  [[ -f $work/cs ]] || { echo "-"; return; }
  awk -F, -v n="$rounds" '/context-switches/ { printf "%.1f", $1 / n }' "$work/cs"
}

held50=0; held99=0; heldfl=0
for i in $(seq "$reps"); do
  echo "== run $i/$reps, load average:$(uptime | sed 's/.*load average://')"
  f=$(counted "$bin/futex-pingpong" "$rounds"); fcs=$(cs_per_rtt)
  echo "$f"
  s=$(counted "$bin/staticbus" run examples/ping-pong/system.toml 2>&1 | grep -E "RTT|hypercalls:" || true); scs=$(cs_per_rtt)
  echo "$s"
  fl=$("$bin/staticbus" run "$work/flood.toml" 2>&1 | grep -E "flood:" || true)
  echo "$fl"
  srtt=$(grep RTT <<<"$s" | head -1)
  f50=$(pct "$f" p50); f99=$(pct "$f" p99); s50=$(pct "$srtt" p50); s99=$(pct "$srtt" p99)
  rate=$(sed -nE 's/.*= ([0-9]+) hypercalls\/s.*/\1/p' <<<"$fl")
  sends=$(sed -nE 's/.*= ([0-9]+) sends\/s.*/\1/p' <<<"$fl")
  if [[ -z $f50 || -z $s50 || -z $f99 || -z $s99 || -z $rate ]]; then
    echo "run $i: could not read the figures (a run failed?)" >&2; exit 1
  fi
  v=$(awk -v f50="$f50" -v f99="$f99" -v s50="$s50" -v s99="$s99" -v r="$rate" 'BEGIN {
      r50 = s50 / f50; r99 = s99 / f99
      printf "%.2f %.2f %d %d %d", r50, r99, (r50 <= 1.5), (r99 <= 2.0), (r >= 200000) }')
  read -r r50 r99 ok50 ok99 okfl <<<"$v"
  held50=$((held50 + ok50)); held99=$((held99 + ok99)); heldfl=$((heldfl + okfl))
  yn() { [[ $1 == 1 ]] && echo held || echo MISSED; }
  echo "run $i: p50 ${s50} / ${f50} us = ${r50}x ($(yn "$ok50"), bar 1.5x); p99 ${s99} / ${f99} us = ${r99}x ($(yn "$ok99"), bar 2x); flood ${rate} hypercalls/s ($(yn "$okfl"), bar 200000/s), ${sends:-?} sends/s; context switches per RTT: staticbus ${scs}, futex ${fcs}"
done
echo "== bars held in every run: p50 ${held50}/${reps}, p99 ${held99}/${reps}, flood ${heldfl}/${reps}"
