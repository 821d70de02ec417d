#!/usr/bin/env bash
# The same programs on Xen under QEMU and on ivshmem between plain QEMU VMs, interleaved,
# twice each (BENCHMARKS.md, issue 15). Needs qemu-system-aarch64 and the Xen 4.20 that
# scripts/xen/fetch-xen.sh 4.20 caches. Prints each boot's RESULT, figure and summary lines.
set -uo pipefail
cd "$(dirname "$0")/../.."
cargo build -p staticbus >/dev/null
staticbus=${CARGO_TARGET_DIR:-target}/debug/staticbus
for round in 1 2; do
  for sys in xen-ping-pong-420 ivshmem-ping-pong xen-queue ivshmem-queue ivshmem-events; do
    echo "=== $sys round $round $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$staticbus" boot "examples/$sys/system.toml" --timeout 600 2>&1 |
      grep -E "RESULT|RTT|msg/s|round trips in|boot: |burst of"
  done
done
