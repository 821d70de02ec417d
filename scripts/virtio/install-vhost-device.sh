#!/usr/bin/env bash
# Install one of rust-vmm's vhost-user device daemons (crates.io package vhost-device-NAME)
# into a cache outside the repository and print the binary's path.
#
#   scripts/virtio/install-vhost-device.sh rng       # prints e.g.
#       /root/.cache/staticbus/vhost-device/vhost-device-rng-0.1.0/bin/vhost-device-rng
#   scripts/virtio/install-vhost-device.sh console
#
# Pinned: each daemon is installed at exactly the version below with
# `cargo install --locked --version V`, so the crate's own Cargo.lock decides every
# dependency; cargo checks each downloaded crate against the registry index's checksum.
# These are the newest versions the registry serves (checked with `cargo info`).
#
# Cache: ${STATICBUS_CACHE:-$HOME/.cache/staticbus}/vhost-device/<package>-<version>/
# holds bin/<package> (and cargo's install metadata); the build directory (build/) stays
# there so an interrupted install resumes. A cached binary is reused; concurrent runs wait
# for each other (flock). Progress goes to stderr, the binary's path alone to stdout.
#
# Environment:
#   STATICBUS_CACHE   cache root (default ~/.cache/staticbus)
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help || $# -ne 1 ]]; then
  sed -n '2,/^set -euo pipefail/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
  [[ $# -eq 1 ]] && exit 0 || exit 2
fi

log() { echo "install-vhost-device: $*" >&2; }

case $1 in
  rng) version=0.1.0 ;;       # vhost-device-rng, published 2023-07-24
  console) version=0.1.0 ;;   # vhost-device-console, published 2024-11-15
  *) log "unknown device '$1' (known: rng, console)"; exit 2 ;;
esac
package=vhost-device-$1

root=${STATICBUS_CACHE:-$HOME/.cache/staticbus}/vhost-device/$package-$version
bin=$root/bin/$package
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi
log "cargo install --locked $package $version into $root (a few minutes on 2 cores)"
# CARGO_TARGET_DIR keeps the build in the cache (resumable), away from any workspace target.
if ! CARGO_TARGET_DIR=$root/build cargo install --locked --version "=$version" \
  --root "$root" "$package" >&2; then
  log "cargo install of $package $version failed"
  exit 1
fi
[[ -x $bin ]] || { log "cargo install succeeded but $bin is missing"; exit 1; }
echo "$bin"
