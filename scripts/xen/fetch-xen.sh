#!/usr/bin/env bash
# Get a Xen hypervisor for arm64 into a cache outside the repository and print its path.
#
#   scripts/xen/fetch-xen.sh [4.17|4.20|4.20-no-static-evtchn]
#                        # default 4.17; prints e.g. /root/.cache/staticbus/xen/4.20/xen
#
# 4.17: Debian bookworm's binary, /boot/xen-4.17-arm64 of xen-hypervisor-4.17-arm64:arm64
#       (built without CONFIG_STATIC_SHM, with XSM SILO), downloaded with
#       `apt-get download` (adding the arm64 architecture to dpkg and running
#       `apt-get update` once if needed) and extracted with `dpkg-deb -x`.
#
# 4.20: built here from Debian trixie's source package `xen` with static shared memory:
#       * a `deb-src` line for trixie is added if apt knows no 4.20 source
#         (/etc/apt/sources.list.d/staticbus-trixie-src.sources, source packages only,
#         plus a low pin in /etc/apt/preferences.d/staticbus-trixie so nothing is ever
#         installed from trixie), then `apt-get update`;
#       * `apt-get source --download-only`; trixie's .dsc may 404 while both tarballs
#         download: the tarballs are then fetched from `apt-get source --print-uris` if
#         missing, and every tarball's SHA256 is checked against apt's Sources index;
#       * the upstream tarball plus debian/, debian/patches applied in series order;
#       * hypervisor only, cross-compiled (XEN_TARGET_ARCH=arm64
#         CROSS_COMPILE=aarch64-linux-gnu-): Debian's debian/xen-kconfig plus
#         CONFIG_UNSUPPORTED=y CONFIG_STATIC_MEMORY=y CONFIG_STATIC_SHM=y, olddefconfig;
#       * needs gcc-aarch64-linux-gnu, flex, bison, make, patch, xz-utils (installed with
#         apt-get when missing and running as root). About a minute on 2 cores.
#       The source and build tree stay in the cache (src/), with the build log
#       (build.log) and the final configuration (config).
#
# 4.20-no-static-evtchn: the same source and configuration with CONFIG_STATIC_EVTCHN off
#       (a build that ignores static event channels, for the differential test of
#       SB0114); its own cache folder, source tree and build.
#
# Pinned versions: by default each version fetches exactly the Debian version the boot tests
# were proven with, checked against the SHA256 recorded below (PIN_*), so Debian moving its
# index does not change what is tested. When the pinned files are no longer served, the
# newest version apt knows is taken instead, checked against apt's own index, with a loud
# warning. STATICBUS_XEN_417 / STATICBUS_XEN_420 override: `newest` (apt's newest, falling
# back to the pin when it is not served) or an exact Debian version. The version used is
# printed and written to <cache>/version.
#
# Cache: ${STATICBUS_CACHE:-$HOME/.cache/staticbus}/xen/<version>/{xen,version}. A cached
# binary is reused; it is written atomically, and concurrent runs for one version wait for
# each other (flock). Progress goes to stderr, the binary's path alone to stdout.
#
# Environment:
#   STATICBUS_CACHE   cache root (default ~/.cache/staticbus)
#   XEN_JOBS          parallel make jobs for the 4.20 build (default: nproc)
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo pipefail/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
  exit 0
fi

log() { echo "fetch-xen: $*" >&2; }

# What the boot tests were proven with (Debian versions and the SHA256 of their files).
PIN_417_VERSION=4.17.7+13-g2445b30a44-0+deb12u1
PIN_417_DEB_SHA256=f76507aca2df2c1870d492406724e812f2b7ab822ee9a24c7634fc3e2cb1100e
PIN_417_URL=http://deb.debian.org/debian-security/pool/updates/main/x/xen/xen-hypervisor-4.17-arm64_${PIN_417_VERSION}_arm64.deb
PIN_420_VERSION=4.20.3+127-gc42374a105-0+deb13u1
PIN_420_SUMS="df0831854a55a8f31cb3cb85036f2edc928e2ef098d77f815f5714bfafac68f3 4961352 xen_4.20.3+127-gc42374a105.orig.tar.xz
b1f909d626f3d4ba6965ba291dd97b0dfbbe48bb8e2510913cbc1760c5e8cb3e 139540 xen_4.20.3+127-gc42374a105-0+deb13u1.debian.tar.xz"
PIN_420_POOL=http://deb.debian.org/debian/pool/main/x/xen

# The temporary folder of this run (global so the EXIT trap can see it under set -u).
tmp_work=
cleanup() { [[ -n $tmp_work ]] && rm -rf "$tmp_work"; return 0; }
trap cleanup EXIT
die() { echo "fetch-xen: error: $*" >&2; exit 1; }

version=${1:-4.17}
case $version in
  4.17 | 4.20 | 4.20-no-static-evtchn) ;;
  *) die "unknown Xen version '$version' (known: 4.17, 4.20, 4.20-no-static-evtchn)" ;;
esac
(( $# <= 1 )) || die "usage: fetch-xen.sh [4.17|4.20|4.20-no-static-evtchn]"

cache=${STATICBUS_CACHE:-$HOME/.cache/staticbus}/xen/$version
out=$cache/xen
if [[ -s $out ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
if ! flock -n 9; then
  log "another fetch-xen.sh is working on $cache; waiting"
  flock 9
fi
if [[ -s $out ]]; then  # the other run finished it
  echo "$out"
  exit 0
fi

need_root() {
  [[ $(id -u) == 0 ]] || die "$1 needs root (or do it by hand: $2)"
}

# ---------------------------------------------------------------------------------------
# 4.17: Debian bookworm's binary package
fetch_417() {
  local pkg=xen-hypervisor-4.17-arm64:arm64
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    need_root "adding the arm64 architecture" "dpkg --add-architecture arm64 && apt-get update"
    log "adding the arm64 architecture to dpkg"
    dpkg --add-architecture arm64
    apt-get update -qq >&2
  fi
  if ! apt-cache show "$pkg" >/dev/null 2>&1; then
    apt-get update -qq >&2
    apt-cache show "$pkg" >/dev/null 2>&1 || die "apt knows no $pkg (is bookworm in the apt sources?)"
  fi

  tmp_work=$(mktemp -d "$cache/tmp.XXXXXX")
  local work=$tmp_work
  chmod 755 "$work"  # apt-get download runs as _apt
  local want=${STATICBUS_XEN_417:-$PIN_417_VERSION} got=
  if [[ $want == newest ]]; then
    log "downloading the newest $pkg (STATICBUS_XEN_417=newest)"
    (cd "$work" && apt-get download -q "$pkg" >&2) && got=newest ||
      log "warning: the newest $pkg cannot be downloaded; falling back to the pinned $PIN_417_VERSION"
    want=$PIN_417_VERSION
  fi
  if [[ -z $got ]]; then
    log "downloading $pkg=$want"
    if (cd "$work" && apt-get download -q "$pkg=$want" >&2); then
      got=$want
    elif [[ $want == "$PIN_417_VERSION" ]]; then
      log "apt no longer knows $want; fetching it from the pool: $PIN_417_URL"
      if curl -fsSL -o "$work/pinned.deb.part" "$PIN_417_URL"; then
        mv "$work/pinned.deb.part" "$work/$(basename "$PIN_417_URL")"
        got=$want
      else
        log "warning: the pinned $want is not served any more; taking apt's newest $pkg" \
          "(verified by apt, NOT the version the tests were proven with)"
        (cd "$work" && apt-get download -q "$pkg" >&2) || die "apt-get download $pkg failed"
        got=newest
      fi
    else
      die "apt-get download $pkg=$want failed (STATICBUS_XEN_417=$want)"
    fi
  fi
  local deb
  deb=$(ls "$work"/*.deb)
  if [[ $(dpkg-deb -f "$deb" Version) == "$PIN_417_VERSION" ]]; then
    echo "$PIN_417_DEB_SHA256  $deb" | sha256sum -c --status - ||
      die "$(basename "$deb"): SHA256 differs from the pinned $PIN_417_DEB_SHA256"
    log "SHA256 of $(basename "$deb") matches the pin"
  fi
  log "extracting $(basename "$deb")"
  dpkg-deb -x "$deb" "$work/root"
  local src=$work/root/boot/xen-4.17-arm64
  [[ -s $src ]] || die "no /boot/xen-4.17-arm64 in $deb"
  dpkg-deb -f "$deb" Version > "$cache/version.tmp"
  mv "$src" "$out.tmp"
  mv "$cache/version.tmp" "$cache/version"
  mv "$out.tmp" "$out"
  rm -rf "$work"
  tmp_work=
  log "Xen $(cat "$cache/version")"
}

# ---------------------------------------------------------------------------------------
# 4.20: trixie's source package, built with CONFIG_STATIC_SHM

trixie_list=/etc/apt/sources.list.d/staticbus-trixie-src.sources
trixie_pin=/etc/apt/preferences.d/staticbus-trixie

# The newest 4.20 version of source package xen that apt knows, or nothing.
xen_420_source_version() {
  apt-cache showsrc xen 2>/dev/null | sed -n 's/^Version: \(4\.20\..*\)$/\1/p' | sort -V | tail -n 1
}

# The Sources paragraph of xen version $1.
xen_source_paragraph() {
  apt-cache showsrc xen 2>/dev/null | awk -v want="$1" '
    /^Package: / { keep = 0; buf = "" }
    { buf = buf $0 "\n" }
    /^Version: / { if ($2 == want) keep = 1 }
    /^$/ { if (keep) { printf "%s", buf; exit } buf = "" }
    END { if (keep) printf "%s", buf }'
}

ensure_build_tools() {
  local missing=() tool pkg
  for tool in aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu flex:flex bison:bison make:make \
              patch:patch xz:xz-utils; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
  done
  (( ${#missing[@]} == 0 )) && return
  need_root "installing ${missing[*]}" "apt-get install ${missing[*]}"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed"
}

ensure_trixie_source() {
  [[ -n $(xen_420_source_version) ]] && return
  if [[ ! -e $trixie_list ]]; then
    need_root "adding trixie's deb-src" "add a 'deb-src http://deb.debian.org/debian trixie main' line"
    log "adding trixie's source packages to apt ($trixie_list, pinned low in $trixie_pin)"
    cat > "$trixie_list.tmp" <<'EOF'
# Added by staticbus scripts/xen/fetch-xen.sh: trixie's source packages, to build Xen 4.20
# with CONFIG_STATIC_SHM. Source packages only; no binary package comes from trixie.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    mv "$trixie_list.tmp" "$trixie_list"
    if [[ ! -e $trixie_pin ]]; then
      cat > "$trixie_pin.tmp" <<'EOF'
# Added by staticbus scripts/xen/fetch-xen.sh: never prefer trixie's packages.
Package: *
Pin: release n=trixie
Pin-Priority: 1
EOF
      mv "$trixie_pin.tmp" "$trixie_pin"
    fi
  fi
  log "apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed"
  [[ -n $(xen_420_source_version) ]] ||
    die "apt knows no 4.20 version of source package xen even with $trixie_list"
}

# Downloads the pinned 4.20 tarballs into $dl straight from Debian's pool (no index needed)
# and checks them against the pinned SHA256; non-zero when they are not served.
fetch_pinned_420() {
  local sha size name
  while read -r sha size name; do
    if [[ -s $dl/$name ]] && echo "$sha  $dl/$name" | sha256sum -c --status -; then
      continue
    fi
    log "downloading $PIN_420_POOL/$name"
    curl -fsSL -o "$dl/$name.part" "$PIN_420_POOL/$name" || { rm -f "$dl/$name.part"; return 1; }
    echo "$sha  $dl/$name.part" | sha256sum -c --status - ||
      die "$PIN_420_POOL/$name: SHA256 differs from the pinned $sha"
    mv "$dl/$name.part" "$dl/$name"
  done <<<"$PIN_420_SUMS"
}

# Downloads source package xen version $1 as apt's Sources index names it into $dl and
# sets `sums` to its "sha256 size name" lines; non-zero when its files are not served.
fetch_indexed_420() {
  local ver=$1 para
  para=$(xen_source_paragraph "$ver")
  sums=$(awk '/^Checksums-Sha256:/ { on = 1; next } on && /^ / { print $1, $2, $3; next } { on = 0 }' \
    <<<"$para" | grep -v '\.dsc$' || true)
  [[ -n $sums ]] || die "no Checksums-Sha256 for xen $ver in apt's Sources index"
  local missing=0 sha size name
  while read -r sha size name; do
    [[ -s $dl/$name ]] && echo "$sha  $dl/$name" | sha256sum -c --status - || missing=1
  done <<<"$sums"
  (( missing )) || return 0
  log "downloading the source (apt-get source --download-only xen=$ver)"
  # The .dsc may 404 on the mirror; the tarballs are what we need.
  if ! (cd "$dl" && apt-get source -q --download-only "xen=$ver" > "$dl/apt-source.log" 2>&1); then
    log "apt-get source reported an error (trixie's .dsc may 404; $dl/apt-source.log);" \
      "checking the tarballs"
  fi
  local uri
  while read -r sha size name; do
    [[ -s $dl/$name ]] && continue
    uri=$(cd "$dl" && apt-get source -q --print-uris "xen=$ver" 2>/dev/null |
      awk -v n="$name" '$2 == n { gsub(/\047/, "", $1); print $1 }')
    [[ -n $uri ]] || { log "apt-get source --print-uris gives no address for $name"; return 1; }
    log "downloading $uri"
    curl -fsSL -o "$dl/$name.part" "$uri" || { log "download of $uri failed"; rm -f "$dl/$name.part"; return 1; }
    mv "$dl/$name.part" "$dl/$name"
  done <<<"$sums"
}

# $1: Kconfig lines added to debian/xen-kconfig; $2: options that must be =y after
# olddefconfig; $3: options that must not be; $4: what the version file says of them.
fetch_420() {
  local -a add_config want_on want_off
  read -r -a add_config <<<"$1"
  read -r -a want_on <<<"$2"
  read -r -a want_off <<<"${3:-}"
  local config_note=$4
  ensure_build_tools
  dl=$cache/dl
  mkdir -p "$dl"
  chmod 755 "$dl"  # apt-get source may download as _apt
  local want=${STATICBUS_XEN_420:-$PIN_420_VERSION} ver=
  sums=
  if [[ $want == "$PIN_420_VERSION" ]]; then
    log "Xen source package $PIN_420_VERSION (pinned)"
    if fetch_pinned_420; then
      ver=$PIN_420_VERSION
      sums=$PIN_420_SUMS
    else
      log "warning: the pinned $PIN_420_VERSION is not served any more; taking the newest" \
        "4.20 in trixie's index (verified by apt, NOT the version the tests were proven with)"
      want=newest
    fi
  fi
  if [[ -z $ver ]]; then
    ensure_trixie_source
    local target=$want
    [[ $want == newest ]] && target=$(xen_420_source_version)
    log "Xen source package $target (trixie's index)"
    if fetch_indexed_420 "$target"; then
      ver=$target
    elif [[ $want == newest && ${STATICBUS_XEN_420:-} == newest ]]; then
      log "warning: the newest $target is not served; falling back to the pinned $PIN_420_VERSION"
      fetch_pinned_420 || die "neither $target nor the pinned $PIN_420_VERSION can be downloaded"
      ver=$PIN_420_VERSION
      sums=$PIN_420_SUMS
    else
      die "the files of xen $target cannot be downloaded"
    fi
  fi

  local orig= debian=
  while read -r sha size name; do
    echo "$sha  $dl/$name" | sha256sum -c --status - ||
      die "$dl/$name: SHA256 differs from the expected $sha; delete it and retry"
    case $name in
      *.orig.tar.*) orig=$name ;;
      *.debian.tar.*) debian=$name ;;
      *) die "unexpected file $name in the source package (not an orig or debian tarball)" ;;
    esac
  done <<<"$sums"
  [[ -n $orig && -n $debian ]] || die "source package xen $ver lacks an orig or a debian tarball"
  log "SHA256 of $orig and $debian match"

  # Unpack into a fresh tree: upstream, then debian/, then the patches.
  rm -rf "$cache/src.tmp"
  mkdir -p "$cache/src.tmp"
  tar -xf "$dl/$orig" -C "$cache/src.tmp"
  local top
  top=$(find "$cache/src.tmp" -mindepth 1 -maxdepth 1 -type d)
  [[ $(wc -l <<<"$top") == 1 && -d $top/xen ]] || die "$orig does not unpack to one xen source tree"
  tar -xf "$dl/$debian" -C "$top"
  local series=$top/debian/patches/series n=0 line patch_file strip
  [[ -f $series ]] || die "no debian/patches/series in $debian"
  while read -r line; do
    line=${line%%#*}
    read -r patch_file strip _ <<<"$line" || true
    [[ -n ${patch_file:-} ]] || continue
    [[ ${strip:-} == -p* ]] || strip=-p1
    patch -d "$top" "$strip" -s -N --no-backup-if-mismatch -i "debian/patches/$patch_file" >&2 ||
      die "debian/patches/$patch_file does not apply"
    n=$((n + 1))
  done < "$series"
  log "applied $n Debian patches"
  rm -rf "$cache/src"
  mv "$top" "$cache/src"
  rm -rf "$cache/src.tmp"
  local src=$cache/src

  local make_args=(XEN_TARGET_ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-
    "DEB_VERSION=$ver" "DEB_MAINTAINER=$(sed -n 's/^Maintainer: //p' "$src/debian/control" | head -n 1)")
  cp "$src/debian/xen-kconfig" "$src/xen/.config"
  local line
  for line in "${add_config[@]}"; do
    [[ $line == *=n ]] && line="# ${line%=n} is not set"
    printf '%s\n' "$line" >> "$src/xen/.config"
  done
  log "configuring: debian/xen-kconfig + ${add_config[*]}, olddefconfig"
  make -C "$src/xen" "${make_args[@]}" olddefconfig > "$cache/build.log" 2>&1 ||
    { tail -n 20 "$cache/build.log" >&2; die "make olddefconfig failed (log: $cache/build.log)"; }
  local opt
  for opt in "${want_on[@]}"; do
    grep -qx "$opt=y" "$src/xen/.config" || die "$opt=y did not survive olddefconfig ($src/xen/.config)"
  done
  for opt in "${want_off[@]}"; do
    ! grep -qx "$opt=y" "$src/xen/.config" || die "$opt is still on after olddefconfig ($src/xen/.config)"
  done

  local jobs=${XEN_JOBS:-$(nproc)} t0=$SECONDS
  log "building the hypervisor (make -j$jobs, log: $cache/build.log)"
  # Progress every 15 s while make runs (its output goes to the log).
  ( while sleep 15; do
      log "  ... $(find "$src/xen" -name '*.o' | wc -l) objects built, $((SECONDS - t0)) s"
    done ) &
  local ticker=$!
  if ! make -C "$src/xen" "${make_args[@]}" -j"$jobs" >> "$cache/build.log" 2>&1; then
    kill "$ticker" 2>/dev/null || true
    tail -n 30 "$cache/build.log" >&2
    die "the Xen build failed (log: $cache/build.log)"
  fi
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  [[ -s $src/xen/xen ]] || die "the build made no xen/xen"
  log "built in $((SECONDS - t0)) s"

  cp "$src/xen/.config" "$cache/config"
  echo "$ver (Debian source; $config_note)" > "$cache/version.tmp"
  cp "$src/xen/xen" "$out.tmp"
  mv "$cache/version.tmp" "$cache/version"
  mv "$out.tmp" "$out"
  log "Xen $(cat "$cache/version")"
}

shm_config="CONFIG_UNSUPPORTED=y CONFIG_STATIC_MEMORY=y CONFIG_STATIC_SHM=y"
shm_on="CONFIG_UNSUPPORTED CONFIG_STATIC_MEMORY CONFIG_STATIC_SHM"
case $version in
  4.17) fetch_417 ;;
  4.20) fetch_420 "$shm_config" "$shm_on" "" "CONFIG_UNSUPPORTED CONFIG_STATIC_MEMORY CONFIG_STATIC_SHM" ;;
  4.20-no-static-evtchn)
    fetch_420 "$shm_config CONFIG_STATIC_EVTCHN=n" "$shm_on" CONFIG_STATIC_EVTCHN \
      "CONFIG_UNSUPPORTED CONFIG_STATIC_MEMORY CONFIG_STATIC_SHM; CONFIG_STATIC_EVTCHN off" ;;
esac
echo "$out"
