#!/usr/bin/env bash
# virtio-blk between two bare-metal domains (staticbus_programs::virtio_blk) on Xen under
# QEMU and on ivshmem between plain QEMU VMs, beside the queue check on the same platform
# as the same-run reference; interleaved, twice each (BENCHMARKS.md, issues 14 and 15).
# Needs qemu-system-aarch64 and the Xen 4.20 that scripts/xen/fetch-xen.sh 4.20 caches.
# Prints each boot's RESULT, figure and summary lines.
set -uo pipefail
cd "$(dirname "$0")/../.."
cargo build -p staticbus >/dev/null
staticbus=${CARGO_TARGET_DIR:-target}/debug/staticbus
for round in 1 2; do
  for sys in xen-queue xen-virtio-blk ivshmem-queue ivshmem-virtio-blk; do
    echo "=== $sys round $round $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$staticbus" boot "examples/$sys/system.toml" --timeout 600 2>&1 |
      grep -E "RESULT|requests/s|msg/s|boot: "
  done
done
