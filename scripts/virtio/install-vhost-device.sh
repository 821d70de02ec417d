#!/usr/bin/env bash
# Install one of rust-vmm's vhost-user device daemons (crates.io package vhost-device-NAME)
# into a cache outside the repository and print the binary's path.
#
#   scripts/virtio/install-vhost-device.sh rng       # prints e.g.
#       /root/.cache/staticbus/vhost-device/vhost-device-rng-0.1.0/bin/vhost-device-rng
#   scripts/virtio/install-vhost-device.sh console
#   scripts/virtio/install-vhost-device.sh --target aarch64-unknown-linux-musl rng
#       a static aarch64 Linux binary for a Linux domU's initramfs (examples/xen-linux-virtio-rng),
#       /root/.cache/staticbus/vhost-device/vhost-device-rng-0.1.0-aarch64-unknown-linux-musl/bin/…
#   scripts/virtio/install-vhost-device.sh --target aarch64-unknown-linux-musl console
#       the same for examples/xen-linux-virtio-console (2.5 min on 2 cores, empty cache)
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
# --target TRIPLE cross-builds (`rustup target add TRIPLE` first). For
# aarch64-unknown-linux-musl the linker is aarch64-linux-gnu-gcc (apt: gcc-aarch64-linux-gnu;
# Rust's musl target brings its own libc and start files, so the result is static) unless
# CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER names another; the binary is stripped
# (aarch64-linux-gnu-strip when present), and the script checks it is a static aarch64 ELF.
# Such a binary goes to <package>-<version>-<triple>/ so it never shadows the host one.
#
# Environment:
#   STATICBUS_CACHE   cache root (default ~/.cache/staticbus)
set -euo pipefail
target=
if [[ ${1:-} == --target ]]; then
  [[ $# -ge 2 ]] || { echo "install-vhost-device: --target needs a triple" >&2; exit 2; }
  target=$2
  shift 2
fi
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

root=${STATICBUS_CACHE:-$HOME/.cache/staticbus}/vhost-device/$package-$version${target:+-$target}
bin=$root/bin/$package
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi
target_args=()
if [[ -n $target ]]; then
  target_args=(--target "$target")
  if [[ $target == aarch64-unknown-linux-musl ]]; then
    linker=CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER
    if [[ -z ${!linker:-} ]]; then
      command -v aarch64-linux-gnu-gcc >/dev/null ||
        { log "no aarch64-linux-gnu-gcc to link $target (apt-get install gcc-aarch64-linux-gnu)"; exit 1; }
      export "$linker=aarch64-linux-gnu-gcc"
    fi
  fi
fi
log "cargo install --locked $package $version${target:+ for $target} into $root (a few minutes on 2 cores)"
# CARGO_TARGET_DIR keeps the build in the cache (resumable), away from any workspace target.
# cargo install copies the binary in only after a complete build; one that fails the checks
# below is moved aside, so a cached binary is always a checked one.
if ! CARGO_TARGET_DIR=$root/build cargo install --locked --version "=$version" \
  ${target_args[@]+"${target_args[@]}"} --root "$root" "$package" >&2; then
  log "cargo install of $package $version${target:+ for $target} failed"
  exit 1
fi
[[ -x $bin ]] || { log "cargo install succeeded but $bin is missing"; exit 1; }
if [[ -n $target ]]; then
  if [[ $target == aarch64-* ]] && command -v aarch64-linux-gnu-strip >/dev/null; then
    aarch64-linux-gnu-strip "$bin"
  fi
  info=$(file -b "$bin" 2>/dev/null || true)
  if [[ $target == aarch64-*-musl && -n $info ]] &&
    ! [[ $info == *aarch64* && ($info == *statically* || $info == *static-pie*) ]]; then
    log "$bin is not a static aarch64 executable: $info"
    mv "$bin" "$bin.rejected"
    exit 1
  fi
fi
echo "$bin"
