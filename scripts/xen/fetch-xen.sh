#!/usr/bin/env bash
# Fetch Debian bookworm's Xen 4.17 hypervisor for arm64 into a cache outside the repository
# and print its path.
#
#   scripts/xen/fetch-xen.sh            # prints e.g. /root/.cache/staticbus/xen/4.17/xen
#
# The binary is /boot/xen-4.17-arm64 of the package xen-hypervisor-4.17-arm64:arm64
# (built without CONFIG_STATIC_SHM, with XSM SILO). It is downloaded with
# `apt-get download` (adding the arm64 architecture to dpkg and running `apt-get update`
# once if needed) and extracted with `dpkg-deb -x`. A cached binary is reused.
#
# Cache: ${STATICBUS_CACHE:-$HOME/.cache/staticbus}/xen/4.17/
#
# TODO: Xen 4.20 with CONFIG_UNSUPPORTED + CONFIG_STATIC_MEMORY + CONFIG_STATIC_SHM, built
# from trixie's source package (spec §11 "Getting Xen"), for static shared memory.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo pipefail/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
  exit 0
fi

cache=${STATICBUS_CACHE:-$HOME/.cache/staticbus}/xen/4.17
out=$cache/xen
if [[ -s $out ]]; then
  echo "$out"
  exit 0
fi

log() { echo "fetch-xen: $*" >&2; }

pkg=xen-hypervisor-4.17-arm64:arm64
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  log "adding the arm64 architecture to dpkg"
  dpkg --add-architecture arm64
  apt-get update -qq >&2
fi
if ! apt-cache show "$pkg" >/dev/null 2>&1; then
  apt-get update -qq >&2
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/tmp.XXXXXX")
chmod 755 "$work"  # apt-get download runs as _apt
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "$pkg" >&2)
deb=$(ls "$work"/*.deb)
log "extracting $(basename "$deb")"
dpkg-deb -x "$deb" "$work/root"
src=$work/root/boot/xen-4.17-arm64
[[ -s $src ]] || { log "no /boot/xen-4.17-arm64 in $deb"; exit 1; }
dpkg-deb -f "$deb" Version > "$cache/version"
mv "$src" "$out.tmp" && mv "$out.tmp" "$out"
log "Xen $(cat "$cache/version")"
echo "$out"
