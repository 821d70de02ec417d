#!/usr/bin/env bash
# Get Debian's arm64 qemu-storage-daemon (package qemu-system-common) and the shared
# libraries it needs into a cache outside the repository, laid out as a root file system
# for a Linux domU's initramfs, and print the root's folder.
#
#   scripts/virtio/fetch-qsd-arm64.sh    # prints e.g.
#       /root/.cache/staticbus/qsd-arm64/1:7.2+dfsg-7+deb12u18+b3/root
#
# The root holds usr/bin/qemu-storage-daemon, the dynamic loader
# (lib/ld-linux-aarch64.so.1) and each library of the daemon's NEEDED closure as a plain
# file at its soname under lib/aarch64-linux-gnu/ or usr/lib/aarch64-linux-gnu/, the paths
# glibc's loader searches (symbolic links resolved), nothing else; `staticbus boot` puts it
# in the initramfs of a Linux domain whose [[virtio]] device is served by
# `qemu-storage-daemon` (docs/linux.md). The closure is computed with `readelf -d`; a
# library no fetched package has is an error.
#
# Pinned: the .debs below at exactly these Debian versions (bookworm and
# bookworm-security, arm64), each checked against the SHA256 recorded here. They come with
# `apt-get download` (the arm64 architecture added to dpkg if needed); a version apt no
# longer offers is fetched from Debian's pool (deb.debian.org/debian, then
# /debian-security). Nothing else is taken: if a pinned file is not served any more the
# script fails and says which.
#
# Cache: ${STATICBUS_CACHE:-$HOME/.cache/staticbus}/qsd-arm64/<qemu version>/ holds the
# .debs and root/; a finished root is reused, it is written atomically (a temporary folder
# renamed), concurrent runs wait for each other (flock). Progress goes to stderr, the path
# alone to stdout.
#
# Environment:
#   STATICBUS_CACHE   cache root (default ~/.cache/staticbus)
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo pipefail/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
  exit 0
fi
(( $# == 0 )) || { echo "usage: fetch-qsd-arm64.sh (no arguments; --help)" >&2; exit 2; }
log() { echo "fetch-qsd-arm64: $*" >&2; }
die() { echo "fetch-qsd-arm64: error: $*" >&2; exit 1; }

QEMU_VERSION=1:7.2+dfsg-7+deb12u18+b3
# package=version sha256 pool-path
PINS="qemu-system-common=1:7.2+dfsg-7+deb12u18+b3 15be3e22effb0b9f43d04702677979951ff8157de545ff52977b5ec486cc71ff pool/main/q/qemu/qemu-system-common_7.2+dfsg-7+deb12u18+b3_arm64.deb
libc6=2.36-9+deb12u14 01f4330719fd4f65580e16ea5a0527f372fca750e8f588d26deaf09f2d3b1cf4 pool/main/g/glibc/libc6_2.36-9+deb12u14_arm64.deb
zlib1g=1:1.2.13.dfsg-1+deb12u1 61477d8059daf1765683a73099cc17941e1970acb520fd238646dedf99eb16f6 pool/updates/main/z/zlib/zlib1g_1.2.13.dfsg-1+deb12u1_arm64.deb
libfuse3-3=3.14.0-4 6928a77e354bf66ddae04f070c5e5bd6f3d177b9189fc91d0b15e35500dd1dba pool/main/f/fuse3/libfuse3-3_3.14.0-4_arm64.deb
libaio1=0.3.113-4 a65da7470d336eea146ae2e33640be5309103d2013e8b3e98db7c81b95a756f3 pool/main/liba/libaio/libaio1_0.3.113-4_arm64.deb
libffi8=3.4.4-1 80b5c36177dc0e29d531c7eddbed3cc7355cb490e49f8cfa5959572d161f27b3 pool/main/libf/libffi/libffi8_3.4.4-1_arm64.deb
libglib2.0-0=2.74.6-2+deb12u9 61d92fffada7e27fc0ed9d23e047b45bca3b2e3bfe1a918f4ec16559282859f4 pool/main/g/glib2.0/libglib2.0-0_2.74.6-2+deb12u9_arm64.deb
libgmp10=2:6.2.1+dfsg1-1.1 9906387c1dd806518c915bd8616d072c741061d7fa26b222e52763456060b31a pool/main/g/gmp/libgmp10_6.2.1+dfsg1-1.1_arm64.deb
libgnutls30=3.7.9-2+deb12u7 84f7f70084c9179d6670f4a6ebdf32adc36c6e4741a3a118104377e18cfa977f pool/main/g/gnutls28/libgnutls30_3.7.9-2+deb12u7_arm64.deb
libhogweed6=3.8.1-2 e653a1a7e5a44be0f7b6443dc6ac865d2504e49149660fc253655245965e157f pool/main/n/nettle/libhogweed6_3.8.1-2_arm64.deb
libidn2-0=2.3.3-1+b1 12a3efc056671bf1c1bed4c3444c2559c8d5e0c158a13316fc728f263b83ddc4 pool/main/libi/libidn2/libidn2-0_2.3.3-1+b1_arm64.deb
libnettle8=3.8.1-2 c945ff210df69cf7b95e935b8fa936e81c1c1f475355e3d5db83510b174f0cd6 pool/main/n/nettle/libnettle8_3.8.1-2_arm64.deb
libnuma1=2.0.16-1 b4ed2547f387eb2e97d13c0b423b034d2a4d052b2131dfe043e45a84915452c5 pool/main/n/numactl/libnuma1_2.0.16-1_arm64.deb
libp11-kit0=0.24.1-2 d1f1f55023e9fc085b9ebfc9c4113d2d2dab2dc6b81a337f274b75c95ad8dc0a pool/main/p/p11-kit/libp11-kit0_0.24.1-2_arm64.deb
libpcre2-8-0=10.42-1+deb12u2 8498d2c0bd6747dfc2fc6eec62774a86967079555f7043d5a7b78ee4efbbc0fb pool/updates/main/p/pcre2/libpcre2-8-0_10.42-1+deb12u2_arm64.deb
libtasn1-6=4.19.0-2+deb12u1 7e80513007e8a71b5e737d3307dedbb06712f9cfed05ec2fad6fc00de460cc5f pool/main/libt/libtasn1-6/libtasn1-6_4.19.0-2+deb12u1_arm64.deb
libunistring2=1.0-2 05b0b7700bfe269ff7af61f45e92055d7ef4c532c9584e4e2a352cf0bd4de5b1 pool/main/libu/libunistring/libunistring2_1.0-2_arm64.deb
liburing2=2.3-3 840486327052df397d78966e9d65d35404cfe0c1eaa2953842cffba427f8ffdf pool/main/libu/liburing/liburing2_2.3-3_arm64.deb
libzstd1=1.5.4+dfsg2-5+deb12u1 2032e10b4dd01ec97d157aa1f6474efd6320bb70c6a7cae003e1b8eba3b566f8 pool/updates/main/libz/libzstd/libzstd1_1.5.4+dfsg2-5+deb12u1_arm64.deb"

base=${STATICBUS_CACHE:-$HOME/.cache/staticbus}/qsd-arm64/$QEMU_VERSION
if [[ -x $base/root/usr/bin/qemu-storage-daemon ]]; then
  echo "$base/root"
  exit 0
fi
mkdir -p "$base/debs"
exec 9>"$base/.lock"
flock 9
if [[ -x $base/root/usr/bin/qemu-storage-daemon ]]; then
  echo "$base/root"
  exit 0
fi
command -v readelf >/dev/null || die "no readelf (apt-get install binutils)"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  [[ $(id -u) == 0 ]] || die "adding the arm64 architecture needs root (dpkg --add-architecture arm64 && apt-get update)"
  log "adding the arm64 architecture to dpkg"
  dpkg --add-architecture arm64
  apt-get update -qq >&2
fi

# Each pinned .deb into $base/debs, checked.
debs=$base/debs
chmod 755 "$debs"  # apt-get download runs as _apt
while read -r pv sha path; do
  file=$debs/${path##*/}
  if [[ -s $file ]] && echo "$sha  $file" | sha256sum -c --quiet - 2>/dev/null; then
    continue
  fi
  rm -f "$file"
  log "apt-get download ${pv%%=*}:arm64=${pv#*=}"
  if ! (cd "$debs" && apt-get download -q "${pv%%=*}:arm64=${pv#*=}" >/dev/null 2>"$debs/apt.log"); then
    rm -f "$file"
    for mirror in http://deb.debian.org/debian http://deb.debian.org/debian-security; do
      log "apt does not offer it; trying $mirror/$path"
      curl -fsSL -o "$file.part" "$mirror/$path" && mv "$file.part" "$file" && break
      rm -f "$file.part"
    done
  fi
  # apt-get download names the file with the epoch escaped (%3a); the pool name has none.
  if [[ ! -s $file ]]; then
    got=$(ls "$debs"/"${pv%%=*}"_*_arm64.deb 2>/dev/null | head -n 1 || true)
    [[ -n $got ]] && mv "$got" "$file"
  fi
  [[ -s $file ]] || die "${pv} (arm64) is not served any more by apt or Debian's pool ($path)"
  echo "$sha  $file" | sha256sum -c --quiet - >&2 ||
    { mv "$file" "$file.bad"; die "${file##*/}: SHA256 is not the pinned $sha (moved to .bad)"; }
done <<<"$PINS"

tmp=$(mktemp -d "$base/tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for d in "$debs"/*.deb; do
  dpkg-deb -x "$d" "$tmp/all"
done
all=$tmp/all
root=$tmp/root
mkdir -p "$root/usr/bin"
cp "$all/usr/bin/qemu-storage-daemon" "$root/usr/bin/"
interp=$(readelf -l "$all/usr/bin/qemu-storage-daemon" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[[ $interp == /lib/ld-linux-aarch64.so.1 ]] || die "unexpected program interpreter '$interp'"
mkdir -p "$root/lib"
cp -L "$all$interp" "$root$interp"
# The NEEDED closure, breadth first.
todo=("$all/usr/bin/qemu-storage-daemon")
seen=" "
while ((${#todo[@]})); do
  elf=${todo[0]}
  todo=("${todo[@]:1}")
  for so in $(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [[ $seen == *" $so "* ]] && continue
    seen="$seen$so "
    found=
    for dir in lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu; do
      if [[ -e $all/$dir/$so ]]; then
        mkdir -p "$root/$dir"
        cp -L "$all/$dir/$so" "$root/$dir/$so"
        todo+=("$root/$dir/$so")
        found=1
        break
      fi
    done
    [[ -n $found ]] || die "library $so (needed by ${elf##*/}) is in none of the pinned packages"
  done
done
log "qemu-storage-daemon $QEMU_VERSION and $(wc -w <<<"$seen") libraries: $(du -sh "$root" | cut -f1)"
rm -rf "$base/root"
mv "$root" "$base/root"
echo "$base/root"
