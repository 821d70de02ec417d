#!/usr/bin/env bash
# virtio-blk between two bare-metal domains (staticbus_programs::virtio_blk) on Xen under
# QEMU and on ivshmem between plain QEMU VMs, beside the queue check on the same platform
# as the same-run reference; interleaved, twice each (BENCHMARKS.md, issues 14 and 15).
#
#   scripts/bench/virtio-blk.sh
#
# Needs qemu-system-aarch64; fetches (and caches) Xen 4.20 with scripts/xen/fetch-xen.sh.
# Prints each boot's RESULT, figure and summary lines; exits 1 if any boot fails.
set -uo pipefail
if [[ $# -gt 0 ]]; then
  sed -n '2,/^set -uo pipefail/{/^set -uo/d; s/^# \{0,1\}//; p}' "$0"
  [[ $1 == -h || $1 == --help ]] && exit 0 || exit 2
fi
cd "$(dirname "$0")/../.."
scripts/xen/fetch-xen.sh 4.20 >/dev/null || { echo "virtio-blk.sh: no Xen 4.20" >&2; exit 1; }
cargo build -p staticbus >/dev/null || exit 1
staticbus=${CARGO_TARGET_DIR:-target}/debug/staticbus
failed=0
for round in 1 2; do
  for sys in xen-queue xen-virtio-blk ivshmem-queue ivshmem-virtio-blk; do
    echo "=== $sys round $round $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    out=$("$staticbus" boot "examples/$sys/system.toml" --timeout 600 2>&1)
    rc=$?
    grep -E "RESULT|requests/s|msg/s|boot: " <<<"$out"
    if [[ $rc -ne 0 ]]; then
      echo "$sys: staticbus boot exited $rc:" >&2
      tail -5 <<<"$out" >&2
      failed=1
    fi
  done
done
exit $failed
