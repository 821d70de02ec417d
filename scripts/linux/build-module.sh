#!/usr/bin/env bash
# Cross-build linux/xen-shmem (the kernel module that offers Xen's static shared-memory
# regions as /dev/xen-shmem/<id>) for the kernel scripts/linux/fetch-kernel.sh caches, and
# print the path of the module.
#
#   scripts/linux/build-module.sh [KERNEL_DIR]   # default: what fetch-kernel.sh prints
#
# Builds in <KERNEL_DIR>/xen-shmem/ (a copy of linux/xen-shmem; nothing is written into the
# repository) with `make -C <KERNEL_DIR>/build M=... ARCH=arm64
# CROSS_COMPILE=aarch64-linux-gnu-` (the compiler the headers name, aarch64-linux-gnu-gcc-12,
# is the one Debian built the kernel with), strips the debug information
# (xen-shmem.ko, ~20 kB instead of ~350 kB) and checks that the module's vermagic equals the
# kernel's own modules' (drivers/xen/xen-evtchn.ko.xz). Rebuilds only when a source file
# changed. Needs gcc-aarch64-linux-gnu, make, pahole (BTF for the module, as Debian's kbuild
# expects) and xz-utils: installed with apt-get when missing and running as root.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo pipefail/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
  exit 0
fi
log() { echo "build-module: $*" >&2; }
die() { echo "build-module: error: $*" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
src=$here/../../linux/xen-shmem
[[ -f $src/xen-shmem.c ]] || die "no $src/xen-shmem.c"

kdir=${1:-$("$here/fetch-kernel.sh")}
[[ -e $kdir/build/Makefile && -s $kdir/release ]] || die "$kdir is not a fetch-kernel.sh folder"
release=$(cat "$kdir/release")

missing=()
for tool in aarch64-linux-gnu-gcc-12:gcc-aarch64-linux-gnu make:make pahole:pahole xz:xz-utils; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if (( ${#missing[@]} )); then
  [[ $(id -u) == 0 ]] || die "missing ${missing[*]} (apt-get install ${missing[*]})"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed"
fi

out=$kdir/xen-shmem
exec 9>"$kdir/.module.lock"
flock 9
sum=$(cd "$src" && cat Makefile xen-shmem.c | sha256sum | cut -d' ' -f1)
if [[ -s $out/xen-shmem.ko && $(cat "$out/.sources" 2>/dev/null) == "$sum" ]]; then
  echo "$out/xen-shmem.ko"
  exit 0
fi
rm -rf "$out"
mkdir -p "$out"
cp "$src/Makefile" "$src/xen-shmem.c" "$out/"
log "building xen-shmem.ko for $release"
if ! make -C "$kdir/build" M="$out" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- modules \
    > "$out/build.log" 2>&1; then
  tail -n 30 "$out/build.log" >&2
  die "the module build failed (log: $out/build.log)"
fi
ko=$out/xen-shmem.ko
[[ -s $ko ]] || die "the build made no xen-shmem.ko"
aarch64-linux-gnu-strip --strip-debug "$ko"

modinfo_field() {  # $1 = field, stdin = a module
  tr '\0' '\n' | sed -n "s/^$1=//p" | head -n 1
}
want=$(xz -dc "$kdir/modules/kernel/drivers/xen/xen-evtchn.ko.xz" | modinfo_field vermagic)
got=$(modinfo_field vermagic < "$ko")
[[ -n $want ]] || die "no vermagic in the kernel's xen-evtchn.ko.xz"
[[ $got == "$want" ]] || die "vermagic \"$got\" differs from the kernel's \"$want\""
log "vermagic \"$got\" matches the kernel's; $(stat -c %s "$ko") bytes"
echo "$sum" > "$out/.sources"
echo "$ko"
