#!/usr/bin/env bash
# Get Debian's arm64 Linux 6.12 kernel, its modules and the headers to build out-of-tree
# modules for it into a cache outside the repository, and print the cache folder.
#
#   scripts/linux/fetch-kernel.sh      # prints e.g. /root/.cache/staticbus/linux/6.12.118-1~deb12u1
#
# What it fetches (`apt-get download`, the arm64 architecture added to dpkg and
# `apt-get update` run once if needed, extracted with `dpkg-deb -x`):
#   linux-image-<abi>-arm64-unsigned:arm64   the kernel (/boot/vmlinuz: an uncompressed arm64
#                                            Image, Xen loads it as it is) and its modules
#   linux-headers-<abi>-arm64:arm64          the build tree for out-of-tree modules
#   linux-headers-<abi>-common               (all)
#   linux-kbuild-<abi>:amd64                 kbuild's host tools (fixdep, modpost, ...) for
#                                            this x86-64 machine
# where <abi> is e.g. 6.12.118+deb12: Debian's Linux 6.12 as bookworm(-security) ships it
# (source package linux-6.12), i.e. trixie's 6.12.118 (same upstream release and Debian
# patches) built for bookworm. Not trixie's own binaries: trixie's amd64 linux-kbuild needs
# glibc >= 2.38 (bookworm has 2.36), and trixie's headers are configured for gcc-14
# (`-fmin-function-alignment`), which bookworm's cross compiler (gcc 12) lacks; this build
# was made with aarch64-linux-gnu-gcc-12, the compiler gcc-aarch64-linux-gnu installs here.
#
# Pinned version: by default exactly the Debian version the Linux boot was proven with,
# checked against the SHA256 recorded below (PIN_*); when apt no longer offers it, the files
# are fetched from Debian's pool; when the pool no longer has them either, apt's newest
# linux-6.12 for bookworm is taken (verified by apt, NOT the proven version), with a loud
# warning. STATICBUS_LINUX overrides: `newest` (apt's newest, falling back to the pin when
# it cannot be downloaded) or an exact Debian version (e.g. 6.12.117-1~deb12u1).
#
# Cache: ${STATICBUS_CACHE:-$HOME/.cache/staticbus}/linux/<debian version>/
#   Image           the kernel (a copy of /boot/vmlinuz-<release>)
#   config          its configuration; System.map
#   release         the kernel release (uname -r), e.g. 6.12.118+deb12-arm64
#   version         the Debian version
#   modules/        /lib/modules/<release> (.ko.xz; the kernel decompresses them itself)
#   build           the headers' build tree (make -C build M=... ), under usr/
#   usr/            /usr/src/linux-headers-* and /usr/lib/linux-kbuild-* (absolute paths
#                   in their Makefiles rewritten to the cache)
# A cached folder is reused; it is written atomically (a temporary folder renamed), and
# concurrent runs wait for each other (flock). Progress goes to stderr, the path to stdout.
#
# Environment:
#   STATICBUS_CACHE   cache root (default ~/.cache/staticbus)
#   STATICBUS_LINUX   `newest` or an exact Debian version (default: the pin)
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo pipefail/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
  exit 0
fi
(( $# == 0 )) || { echo "usage: fetch-kernel.sh (no arguments; --help)" >&2; exit 2; }

log() { echo "fetch-kernel: $*" >&2; }
die() { echo "fetch-kernel: error: $*" >&2; exit 1; }

# What the Linux boot was proven with: the Debian version, the ABI name and each file's SHA256.
PIN_VERSION=6.12.118-1~deb12u1
PIN_ABI=6.12.118+deb12
PIN_POOL=http://deb.debian.org/debian-security/pool/updates/main/l/linux-6.12
PIN_SUMS="4ec53b66ee01c4298894d394b995707045ad7ea37f71feb1f9ebf7da04bfcc2a linux-image-6.12.118+deb12-arm64-unsigned_6.12.118-1~deb12u1_arm64.deb
7fbe2e74c36914943e713d4a54911af24f9e64b6e693eaf16528daa2b821c072 linux-headers-6.12.118+deb12-arm64_6.12.118-1~deb12u1_arm64.deb
ed74603a3ba75ea8dfa271cbf5bf79a9a272f56e898729b7d5d02c60703d74c5 linux-headers-6.12.118+deb12-common_6.12.118-1~deb12u1_all.deb
1f35a2cbe452526944e3b89507a37ad607ea71ccfa21a5cb196f7fdcbb0af6f2 linux-kbuild-6.12.118+deb12_6.12.118-1~deb12u1_amd64.deb"

# The temporary folder of this run (global so the EXIT trap can see it under set -u).
tmp_work=
cleanup() { [[ -n $tmp_work ]] && rm -rf "$tmp_work"; return 0; }
trap cleanup EXIT

root=${STATICBUS_CACHE:-$HOME/.cache/staticbus}/linux
want=${STATICBUS_LINUX:-$PIN_VERSION}

# A finished cache folder for version $1 (the pin, or an exact version asked for)?
cached() { [[ -s $root/$1/Image && -s $root/$1/version && -e $root/$1/build/Makefile ]]; }
if [[ $want != newest ]] && cached "$want"; then
  echo "$root/$want"
  exit 0
fi
mkdir -p "$root"
exec 9>"$root/.lock"
if ! flock -n 9; then
  log "another fetch-kernel.sh is working on $root; waiting"
  flock 9
fi
if [[ $want != newest ]] && cached "$want"; then  # the other run finished it
  echo "$root/$want"
  exit 0
fi

ensure_arm64() {
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    [[ $(id -u) == 0 ]] || die "adding the arm64 architecture needs root (dpkg --add-architecture arm64 && apt-get update)"
    log "adding the arm64 architecture to dpkg"
    dpkg --add-architecture arm64
    apt-get update -qq >&2
  fi
}

# The packages of ABI $1 ("6.12.118+deb12"), with the architecture apt needs.
packages_of() {
  echo "linux-image-$1-arm64-unsigned:arm64 linux-headers-$1-arm64:arm64 linux-headers-$1-common linux-kbuild-$1:amd64"
}

# apt's Debian versions of the arm64 linux-6.12 image for bookworm, newest last, as
# "<version> <abi>" lines.
apt_versions() {
  local pkg abi
  apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12(\.[0-9]+)?-arm64-unsigned$' 2>/dev/null |
    awk '{ print $1 }' | while read -r pkg; do
      abi=${pkg#linux-image-}
      abi=${abi%-arm64-unsigned}
      apt-cache madison "$pkg:arm64" 2>/dev/null | awk -v a="$abi" '{ print $3, a }'
    done | sort -V -k1,1 | uniq
}

# Downloads the pinned files into $work straight from the pool; non-zero when not served.
fetch_pinned_pool() {
  local sha name
  while read -r sha name; do
    log "downloading $PIN_POOL/$name"
    curl -fsSL -o "$work/$name.part" "$PIN_POOL/$name" || { rm -f "$work/$name.part"; return 1; }
    mv "$work/$name.part" "$work/$name"
  done <<<"$PIN_SUMS"
}

# apt-get download of version $1 (ABI $2) into $work; non-zero on failure.
fetch_apt() {
  local p args=()
  for p in $(packages_of "$2"); do args+=("$p=$1"); done
  log "apt-get download ${args[*]}"
  (cd "$work" && apt-get download -q "${args[@]}" >&2 2>"$work/apt.log") ||
    { grep -v '^W: Download is performed unsandboxed' "$work/apt.log" >&2 || true; return 1; }
}

ensure_arm64
tmp_work=$(mktemp -d "$root/tmp.XXXXXX")
work=$tmp_work
chmod 755 "$work"  # apt-get download runs as _apt
ver= abi=
if [[ $want == newest ]]; then
  line=$(apt_versions | tail -n 1)
  [[ -n $line ]] || { apt-get update -qq >&2; line=$(apt_versions | tail -n 1); }
  if [[ -n $line ]] && fetch_apt ${line% *} ${line#* }; then
    ver=${line% *} abi=${line#* }
  else
    log "warning: apt's newest linux-6.12 cannot be downloaded; falling back to the pinned $PIN_VERSION"
    want=$PIN_VERSION
  fi
fi
if [[ -z $ver && $want == "$PIN_VERSION" ]]; then
  if fetch_apt "$PIN_VERSION" "$PIN_ABI"; then
    ver=$PIN_VERSION abi=$PIN_ABI
  else
    rm -f "$work"/*.deb
    log "apt no longer offers $PIN_VERSION; fetching it from the pool"
    if fetch_pinned_pool; then
      ver=$PIN_VERSION abi=$PIN_ABI
    else
      rm -f "$work"/*.deb
      log "warning: the pinned $PIN_VERSION is not served any more; taking apt's newest linux-6.12" \
        "(verified by apt, NOT the version the Linux boot was proven with)"
      line=$(apt_versions | tail -n 1)
      [[ -n $line ]] || die "apt knows no linux-image-6.12.*+deb12-arm64-unsigned (bookworm-security in the apt sources?)"
      fetch_apt ${line% *} ${line#* } || die "apt-get download of linux ${line% *} failed"
      ver=${line% *} abi=${line#* }
    fi
  fi
elif [[ -z $ver ]]; then
  line=$(apt_versions | awk -v v="$want" '$1 == v' | tail -n 1)
  [[ -n $line ]] || die "apt knows no arm64 linux-6.12 image of version $want (STATICBUS_LINUX)"
  fetch_apt "$want" "${line#* }" || die "apt-get download of linux $want failed"
  ver=$want abi=${line#* }
fi
if [[ $ver == "$PIN_VERSION" ]]; then
  while read -r sha name; do
    echo "$sha  $work/$name" | sha256sum -c --status - ||
      die "$name: SHA256 differs from the pinned $sha"
  done <<<"$PIN_SUMS"
  log "SHA256 of the 4 packages match the pins"
fi

dest=$root/$ver
if cached "$ver"; then  # `newest` found what is already cached
  echo "$dest"
  exit 0
fi
log "extracting linux $ver ($abi)"
x=$work/root
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$x"; done
release=$abi-arm64
[[ -s $x/boot/vmlinuz-$release ]] || die "no /boot/vmlinuz-$release in the image package"
# An arm64 Image: "ARM\x64" at offset 56 (Xen also takes a gzip-compressed one).
[[ $(od -An -c -j56 -N4 "$x/boot/vmlinuz-$release" | tr -d ' ') == 'ARMd' ]] ||
  die "/boot/vmlinuz-$release is not an uncompressed arm64 Image"
new=$work/out
mkdir -p "$new"
mv "$x/boot/vmlinuz-$release" "$new/Image"
mv "$x/boot/config-$release" "$new/config"
mv "$x/boot/System.map-$release" "$new/System.map" 2>/dev/null || true
mods=$x/lib/modules/$release
[[ -d $mods ]] || mods=$x/usr/lib/modules/$release
[[ -d $mods ]] || die "no /lib/modules/$release in the image package"
mv "$mods" "$new/modules"
mv "$x/usr" "$new/usr"
hdr=usr/src/linux-headers-$release
[[ -f $new/$hdr/Makefile ]] || die "no /$hdr in the headers package"
# The arch headers include the common ones by absolute path: point it into the cache.
sed -i "s|^include /usr/src/|include $dest/usr/src/|" "$new/$hdr/Makefile"
[[ -e $new/usr/lib/linux-kbuild-$abi/scripts/mod/modpost ]] || die "no modpost in linux-kbuild-$abi"
ln -s "$hdr" "$new/build"
echo "$release" > "$new/release"
echo "$ver" > "$new/version"
rm -rf "$dest"
mv "$new" "$dest"
rm -rf "$work"
tmp_work=
log "Linux $release (Debian $ver): $(du -sh "$dest" | cut -f1) in $dest"
echo "$dest"
