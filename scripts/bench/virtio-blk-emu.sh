#!/usr/bin/env bash
# virtio-blk through the emulator against pread of the same file, in the same run (issue
# 14's performance section): `staticbus run examples/virtio-blk-bench/system.toml` —
# virtio-drivers' VirtIOBlk in the frontend domain over virtio-msg, the vhost-user bridge
# and an unmodified qemu-storage-daemon in the backend domain on a file of random bytes —
# 4 KiB random reads and 64 KiB sequential reads at one request and up to 16 in flight,
# and pread of the same file by the frontend domain, alternated over the rounds.
#
#   scripts/bench/virtio-blk-emu.sh [--strace]
#
# --strace: also `strace -c -f` both domains' programs (the backend's includes the bridge
# threads; qemu-storage-daemon is traced separately) for the timed part, and print the
# summaries (the figures of a traced run are slower, so they are not the benchmark's).
# Builds the release binaries (CARGO_TARGET_DIR honoured). Needs qemu-storage-daemon
# (Debian's qemu-system-common; STATICBUS_QEMU_STORAGE_DAEMON overrides). Prints the
# frontend's figure lines, the backend's PASS line with kicks and calls per device
# request, the runner's summary (event-channel sends and deliveries, hypercalls) and the
# load average before and after; exits 1 if the run fails.
set -uo pipefail
trace=0
case "${1-}" in
  "") ;;
  --strace) trace=1 ;;
  *)
    sed -n '2,/^set -uo pipefail/{/^set -uo/d; s/^# \{0,1\}//; p}' "$0"
    [[ $1 == -h || $1 == --help ]] && exit 0 || exit 2 ;;
esac
cd "$(dirname "$0")/../.."
repo=$PWD
command -v "${STATICBUS_QEMU_STORAGE_DAEMON:-qemu-storage-daemon}" >/dev/null ||
  { echo "virtio-blk-emu.sh: no qemu-storage-daemon (install qemu-system-common)" >&2; exit 1; }
cargo build --release -p staticbus -p staticbus-emu-runner -p staticbus-emu-virtio-domains \
  --bins >/dev/null 2>&1 || { echo "virtio-blk-emu.sh: build failed" >&2; exit 1; }
staticbus=$(realpath "${CARGO_TARGET_DIR:-target}/release/staticbus")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
chmod 777 "$dir"
head -c 67108864 /dev/urandom >"$dir/virtio-blk-bench.raw"
chmod 666 "$dir/virtio-blk-bench.raw"
echo "=== $(date -u +%FT%H:%M:%SZ) $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "=== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"

# The host pid of the program whose comm is $1, running in $dir.
pid_of() {
  local p
  for p in /proc/[0-9]*; do
    [[ $(cat "$p/comm" 2>/dev/null) == "$1" ]] || continue
    [[ $(readlink "$p/cwd" 2>/dev/null) == "$dir" ]] && { echo "${p#/proc/}"; return; }
  done
}

out="$dir/out"
( cd "$dir" && "$staticbus" run "$repo/examples/virtio-blk-bench/system.toml" --timeout 3000 \
    >"$out" 2>"$dir/err" ) &
run=$!
tracers=()
if ((trace)); then
  until grep -q "checked:" "$out" 2>/dev/null || ! kill -0 $run 2>/dev/null; do sleep 0.2; done
  for comm in virtio-blk-benc virtio-vhost-ba qemu-storage-da; do
    pid=$(pid_of $comm)
    [[ -n $pid ]] || { echo "no $comm process to trace" >&2; continue; }
    strace -c -f -p "$pid" -o "$dir/strace-$comm" 2>/dev/null &
    tracers+=($!)
  done
fi
wait $run
rc=$?
for t in "${tracers[@]}"; do wait "$t"; done
grep -E "^\[frontend\] (checked|round|figure|PASS|FAIL)" "$out"
grep -E "^\[backend\] (PASS|FAIL)" "$out"
dev=$(grep -o 'device-requests=[0-9]*' "$out" | cut -d= -f2)
kicks=$(grep -o 'kicks=[0-9]*' "$out" | head -1 | cut -d= -f2)
calls=$(grep -o 'calls=[0-9]*' "$out" | head -1 | cut -d= -f2)
sed -n '/^== staticbus run/,$p' "$dir/err"
if [[ -n $dev && -n $kicks && -n $calls ]]; then
  awk -v d="$dev" -v k="$kicks" -v c="$calls" 'BEGIN { printf \
    "backend: %d kicks, %d calls for %d device requests: %.3f kicks/request, %.3f calls/request\n", \
    k, c, d, k / d, c / d }'
fi
if ((trace)); then
  for f in "$dir"/strace-*; do
    echo "=== ${f##*/strace-}"; head -25 "$f"
  done
fi
echo "=== $(date -u +%FT%H:%M:%SZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $rc -ne 0 ]]; then
  echo "virtio-blk-emu.sh: staticbus run exited $rc:" >&2
  tail -20 "$out" "$dir/err" >&2
  exit 1
fi
