#!/usr/bin/env bash
# Make what a Linux domU of examples/xen-linux-* boots: Debian's arm64 kernel Image and an
# initramfs whose /init is staticbus-linux-probe, with the modules it loads.
#
#   scripts/linux/make-initramfs.sh [OUT_DIR]    # default examples/xen-linux-ping-pong/build
#   cargo run -p staticbus -- boot examples/xen-linux-ping-pong/system.toml   # then, Xen 4.20
#
# Steps: scripts/linux/fetch-kernel.sh (kernel, modules, headers; cached);
# scripts/linux/build-module.sh (linux/xen-shmem against those headers, vermagic checked);
# `cargo build --release --target aarch64-unknown-linux-musl -p staticbus-linux-probe`
# (static; linked with aarch64-linux-gnu-gcc) and `cargo run -p staticbus-mkinitramfs`
# (both in the linux/ workspace, CARGO_TARGET_DIR honoured); then the archive (newc cpio,
# uncompressed: it is small, and the kernel need not inflate it):
#
#   /init                          staticbus-linux-probe
#   /dev/console                   c 5 1 (so the kernel can give /init a console)
#   /proc/ /sys/                   mount points (/dev is devtmpfs, mounted over)
#   /lib/modules/10-xen-evtchn.ko.xz   the kernel's own drivers/xen/xen-evtchn.ko.xz
#   /lib/modules/20-xen-shmem.ko       linux/xen-shmem
#
# OUT_DIR gets `Image` (a symlink to the cached kernel), `initramfs.cpio` and `release`
# (the kernel release); the example descriptions name them (`kernel = { file =
# "build/Image", size = … }`, `ramdisk = { file = "build/initramfs.cpio", size = … }`).
# Needs rustup's aarch64-unknown-linux-musl target (added when missing) and what the two
# scripts above need.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo pipefail/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
  exit 0
fi
log() { echo "make-initramfs: $*" >&2; }
die() { echo "make-initramfs: error: $*" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/examples/xen-linux-ping-pong/build}

kdir=$("$here/fetch-kernel.sh")
ko=$("$here/build-module.sh" "$kdir")
release=$(cat "$kdir/release")
evtchn=$kdir/modules/kernel/drivers/xen/xen-evtchn.ko.xz
[[ -s $evtchn ]] || die "no $evtchn (CONFIG_XEN_DEV_EVTCHN=m expected)"

target=aarch64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx $target; then
  log "rustup target add $target"
  rustup target add $target >&2
fi
tdir=${CARGO_TARGET_DIR:-$repo/linux/target}
log "building staticbus-linux-probe ($target, static)"
(cd "$repo/linux" && CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
  CARGO_TARGET_DIR=$tdir cargo build -q --release --target $target -p staticbus-linux-probe >&2)
probe=$tdir/$target/release/staticbus-linux-probe
file -b "$probe" 2>/dev/null | grep -q 'statically linked' ||
  die "$probe is not a statically linked executable"

mkdir -p "$out"
log "writing $out/initramfs.cpio"
(cd "$repo/linux" && CARGO_TARGET_DIR=$tdir cargo run -q --release -p staticbus-mkinitramfs -- \
  "$out/initramfs.cpio" \
  init="$probe" \
  dev/console=c:5:1 \
  proc/ sys/ \
  lib/modules/10-xen-evtchn.ko.xz="$evtchn" \
  lib/modules/20-xen-shmem.ko="$ko" >&2)
ln -sfn "$kdir/Image" "$out/Image"
echo "$release" > "$out/release"
log "Linux $release: Image $(stat -Lc %s "$out/Image") bytes, initramfs $(stat -c %s "$out/initramfs.cpio") bytes"
echo "$out"
