#!/usr/bin/env bash
# Boot a staticbus system on real Xen under QEMU (TCG) and check that every domain passes.
#
#   scripts/xen/boot-ping-pong.sh [DESCRIPTION]    (default examples/xen-ping-pong/system.toml)
#
# Steps:
#   1. QEMU's own board tree (-machine dumpdtb) for the machine below;
#   2. `staticbus build DESCRIPTION --base virt.dtb`: host.dtb + per-domain manifests;
#   3. the Xen the description targets (`[target] xen`, as the manifests record it, or
#      $XEN_VERSION): 4.17 is Debian's binary, 4.20 is built with CONFIG_STATIC_SHM from
#      trixie's source (scripts/xen/fetch-xen.sh, cached under ~/.cache/staticbus);
#   4. the guest image, with those manifests compiled in (STATICBUS_MANIFEST_DIR), built
#      for aarch64-unknown-none and turned into a raw binary with llvm-objcopy
#      (or rust-objcopy / aarch64-linux-gnu-objcopy, whichever is found first);
#   5. QEMU with `-kernel xen -dtb host.dtb` and one `-device loader` per kernel module
#      node of the generated tree, at the module's `reg` address;
#   6. wait until every domain printed `RESULT PASS` (or one failed, or Xen panicked, or
#      the timeout passed), stop the QEMU this script started, print the guests'
#      console lines and the timings.
#
# Every domain of the description must boot the image (crates/guest-xen-aarch64, bin
# $GUEST_BIN); its bootargs say which domain it is.
#
# Environment:
#   XEN_BOOT_TIMEOUT  seconds before giving up (default 120)
#   XEN_VERSION       4.17 or 4.20: overrides the description's `[target] xen`
#   GUEST_BIN         guest program (default xen-ping-pong)
#   WORK              work directory (default: a new /tmp/staticbus-xen.XXXXXX, kept)
#   STATICBUS_CACHE   cache for the Xen binary (default ~/.cache/staticbus)
#   QEMU_ACCEL        QEMU accelerator (default tcg,thread=single: all emulated CPUs on one
#                     host thread; on a loaded host, multi-threaded TCG makes every
#                     cross-CPU wake-up wait for a host time slice, and round trips go
#                     from ~0.1 ms to ~50 ms at p90; tcg,thread=multi is QEMU's default)
#   QEMU_EXTRA        extra QEMU options for the boot (word-split)
#
# Exit status: 0 when every domain printed RESULT PASS, 1 otherwise, 2 on setup errors.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo pipefail/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
  exit 0
fi
cd "$(dirname "$0")/../.."
exec 2>&1  # one stream, in order

desc=${1:-examples/xen-ping-pong/system.toml}
timeout_s=${XEN_BOOT_TIMEOUT:-120}
guest_bin=${GUEST_BIN:-xen-ping-pong}
work=${WORK:-$(mktemp -d /tmp/staticbus-xen.XXXXXX)}
mkdir -p "$work"
log=$work/console.log

say() { echo "== $*" >&2; }
die() { echo "boot-ping-pong: $*" >&2; exit 2; }

for tool in qemu-system-aarch64 fdtget timeout; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install qemu-system-arm device-tree-compiler coreutils)"
done
objcopy=
for tool in rust-objcopy llvm-objcopy aarch64-linux-gnu-objcopy; do
  if command -v "$tool" >/dev/null; then objcopy=$tool; break; fi
done
[[ -n $objcopy ]] || die "no objcopy for aarch64 ELF (apt-get install llvm, or cargo install cargo-binutils)"

# The machine: Xen enters at EL2 (virtualization=on); GICv3; 2 pCPUs; 2 GiB at 0x40000000.
machine=(-machine virt,gic-version=3,virtualization=on -cpu cortex-a57 -smp 2 -m 2048)

say "QEMU's board tree"
timeout 60 qemu-system-aarch64 "${machine[@]}" -machine dumpdtb="$work/virt.dtb" \
  -display none -monitor none -serial none >/dev/null 2>&1 || true
[[ -s $work/virt.dtb ]] || die "qemu-system-aarch64 -machine dumpdtb failed"

say "staticbus build $desc"
cargo build -q -p staticbus
target/debug/staticbus build "$desc" -o "$work/out" --base "$work/virt.dtb" >&2

xen_version=${XEN_VERSION:-}
if [[ -z $xen_version ]]; then
  # The target Xen as the compiler resolved it (the description's default included).
  manifest=$(ls "$work"/out/domains/*/manifest.json | head -n 1)
  xen_version=$(sed -n 's/^  "xen": "\(.*\)",$/\1/p' "$manifest")
  [[ -n $xen_version ]] || die "no \"xen\" version in $manifest"
fi
say "Xen $xen_version"
if [[ $xen_version == 4.17 ]] && grep -q 'xen,domain-shared-memory-v1' "$work/out/host.dts"; then
  die "the system uses static shared memory, which Debian's Xen 4.17 is built without" \
    "(CONFIG_STATIC_SHM; Xen would stop silently at boot): target Xen 4.20"
fi
xen=$(scripts/xen/fetch-xen.sh "$xen_version") || die "no Xen $xen_version (scripts/xen/fetch-xen.sh $xen_version failed)"
echo "$xen ($(cat "$(dirname "$xen")/version" 2>/dev/null || echo '?'))" >&2

say "guest image ($guest_bin)"
STATICBUS_MANIFEST_DIR=$work/out cargo build -q -p staticbus-guest-xen-aarch64 \
  --bin "$guest_bin" --target aarch64-unknown-none --release
image=$work/$guest_bin.bin
"$objcopy" -O binary "target/aarch64-unknown-none/release/$guest_bin" "$image"
image_size=$(stat -c %s "$image")
echo "$image: $image_size bytes ($objcopy)" >&2

# One -device loader per kernel module of the generated tree.
dtb=$work/out/host.dtb
loaders=()
domains=()
for node in $(fdtget -l "$dtb" /chosen); do
  fdtget "$dtb" "/chosen/$node" compatible 2>/dev/null | grep -qw 'xen,domain' || continue
  domains+=("$node")
  for mod in $(fdtget -l "$dtb" "/chosen/$node"); do
    fdtget "$dtb" "/chosen/$node/$mod" compatible 2>/dev/null | grep -qw 'multiboot,kernel' || continue
    read -r ahi alo shi slo < <(fdtget -t x "$dtb" "/chosen/$node/$mod" reg)
    addr=$(( (0x$ahi << 32) | 0x$alo ))
    size=$(( (0x$shi << 32) | 0x$slo ))
    (( image_size <= size )) || die "$image ($image_size bytes) does not fit module $node/$mod ($size bytes)"
    printf '%s: kernel module at %#x (%#x bytes)\n' "$node" "$addr" "$size" >&2
    loaders+=(-device "loader,file=$image,addr=$(printf '%#x' "$addr"),force-raw=on")
  done
done
(( ${#domains[@]} > 0 )) || die "no xen,domain node in $dtb"

say "QEMU (${QEMU_ACCEL:-tcg,thread=single}): Xen + ${#domains[@]} domUs (timeout ${timeout_s}s)"
: > "$log"
start=$(date +%s.%N)
timeout "$timeout_s" qemu-system-aarch64 "${machine[@]}" -accel "${QEMU_ACCEL:-tcg,thread=single}" \
  -display none -monitor none \
  -serial "file:$log" -no-reboot -kernel "$xen" -dtb "$dtb" "${loaders[@]}" ${QEMU_EXTRA:-} \
  >"$work/qemu.out" 2>&1 </dev/null &
qemu=$!
stop_qemu() {
  if kill -0 "$qemu" 2>/dev/null; then
    kill "$qemu" 2>/dev/null || true   # timeout passes the TERM on to QEMU
    wait "$qemu" 2>/dev/null || true
  fi
}
trap stop_qemu EXIT

ndom=${#domains[@]}
verdict=timeout
first_dom=
while kill -0 "$qemu" 2>/dev/null; do
  now=$(date +%s.%N)
  if [[ -z $first_dom ]] && grep -q 'DOM[0-9]*: ' "$log"; then
    first_dom=$(awk -v a="$now" -v b="$start" 'BEGIN { printf "%.1f", a - b }')
  fi
  if grep -qE 'DOM[0-9]+: RESULT FAIL|Panic on CPU|EXCEPTION' "$log"; then
    verdict=fail; break
  fi
  if (( $(grep -cE 'DOM[0-9]+: RESULT PASS' "$log") >= ndom )); then
    verdict=pass; break
  fi
  sleep 0.1
done
end=$(date +%s.%N)
sleep 0.2   # let the last lines reach the log
stop_qemu
trap - EXIT

echo
say "guest consoles"
grep -E 'DOM[0-9]+: ' "$log" || true
if [[ $verdict != pass ]]; then
  echo
  say "Xen console (last 40 lines)"
  tail -n 40 "$log"
  [[ -s $work/qemu.out ]] && { say "QEMU"; cat "$work/qemu.out"; }
fi
echo
elapsed=$(awk -v a="$end" -v b="$start" 'BEGIN { printf "%.1f", a - b }')
say "result: $verdict; QEMU start to first guest line ${first_dom:-?}s, to all RESULT lines ${elapsed}s (TCG emulation)"
say "work directory: $work"
[[ $verdict == pass ]]
