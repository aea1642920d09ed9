#!/usr/bin/env bash
# fetch-debian-images.sh: download Debian packages for a guest architecture into the axvisor
# cache and lay their images out at stable paths. Runs without root and leaves the host's apt
# state alone: apt gets its own sources list, state and cache under the cache directory.
# `scripts/fetch-debian-images.sh --help` and scripts/README.md describe it.
set -euo pipefail

PROG=fetch-debian-images
CACHE=${AXVISOR_CACHE:-$HOME/.cache/axvisor}
ARCH=riscv64
SUITE=${AXVISOR_DEBIAN_SUITE:-trixie}
FORCE=0
DEFAULT_PACKAGES=(opensbi u-boot-qemu)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 2; }

usage() {
  cat <<'USAGE'
usage: scripts/fetch-debian-images.sh [--arch ARCH] [--suite SUITE] [--force] [PACKAGE[@SUITE]...]

Downloads each PACKAGE (default: opensbi u-boot-qemu) for ARCH (default riscv64) from Debian
SUITE (default trixie; PACKAGE@SUITE picks one package's suite) with `apt-get download`,
unpacks it into $CACHE/ARCH/PACKAGE/ and copies the images guests boot to stable paths there.
A package already fetched from the same suite is skipped (--force fetches it again).

linux-image-ARCH (a metapackage) fetches the kernel package it depends on into $CACHE/ARCH/linux/
(Image, modules/RELEASE/, version); busybox-static goes to $CACHE/ARCH/busybox/busybox.

environment:
  AXVISOR_CACHE          cache directory (default ~/.cache/axvisor)
  AXVISOR_DEBIAN_MIRROR  Debian mirror (default: the host's apt mirror, else deb.debian.org)
  AXVISOR_DEBIAN_SUITE   default Debian suite (default trixie)
USAGE
}

# -- where files go ---------------------------------------------------------------------------
# A package is unpacked into $CACHE/ARCH/DIR, DIR being the package's name unless dest_dir names
# another; layout_DIR (dashes, dots and pluses as underscores) then lays out the images guests
# boot at stable paths inside that tree ($1). A package without one is only unpacked. A
# metapackage is resolved to the package it stands for by resolve_DIR (PACKAGE SUITE -> name).

dest_dir() {  # dest_dir PACKAGE: the directory under $CACHE/ARCH that PACKAGE is unpacked into
  case $1 in
    linux-image-*) echo linux ;;     # the kernel metapackage (linux-image-riscv64) or a versioned one
    busybox-static) echo busybox ;;
    *) echo "$1" ;;
  esac
}

copy_image() {  # copy_image TREE SOURCE DEST (both relative to TREE)
  local tree=$1 src=$1/$2 dest=$1/$3
  [ -f "$src" ] || die "$CURRENT: the package has no $2 (did Debian change its layout?)"
  mkdir -p "$(dirname "$dest")"
  cp "$src" "$dest"
}

layout_opensbi() {  # the generic platform's firmware, which QEMU's virt board uses
  local generic=usr/lib/riscv64-linux-gnu/opensbi/generic
  copy_image "$1" "$generic/fw_jump.bin" fw_jump.bin
  copy_image "$1" "$generic/fw_dynamic.bin" fw_dynamic.bin
}

layout_u_boot_qemu() {  # U-Boot for the riscv virt board, in M mode and in S mode under OpenSBI
  local board
  for board in qemu-riscv64 qemu-riscv64_smode; do
    copy_image "$1" "usr/lib/u-boot/$board/u-boot.bin" "$board/u-boot.bin"
  done
}

hex_at() {  # hex_at FILE OFFSET COUNT: COUNT bytes of FILE at OFFSET as lowercase hex
  od -An -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'
}

resolve_linux() {  # the versioned kernel package (linux-image-6.12.107+deb13-riscv64) a metapackage names
  local pkg=$1 suite=$2 real
  if [[ $pkg =~ ^linux-image-[0-9] ]]; then
    echo "$pkg"
    return 0
  fi
  apt_run "apt-cache show $pkg/$suite" apt-cache show --no-all-versions "$pkg/$suite"
  real=$(sed -n 's/^Depends: //p' "$APTLOG" | tr ',|' '\n\n' | sed 's/^ *//; s/ .*//' \
    | grep -E -m 1 '^linux-image-[0-9][^ ]*$' || true)
  [ -n "$real" ] || die "$pkg/$suite depends on no linux-image-<version> package (log: $APTLOG)"
  echo "$real"
}

kernel_image() {  # kernel_image SOURCE DEST: the boot image for ARCH, converted to a flat Image
  local src=$1 dest=$2 kind objcopy offset magic what
  case $ARCH in
    riscv64) objcopy=riscv64-linux-gnu-objcopy offset=48 magic=5249534356000000 what='"RISCV\0\0\0" at 0x30' ;;
    arm64) objcopy=aarch64-linux-gnu-objcopy offset=56 magic=41524d64 what='"ARM\x64" at 0x38' ;;
    amd64) objcopy='' offset=514 magic=48647253 what='"HdrS" at 0x202 (a bzImage)' ;;
    *) die "$CURRENT: no kernel image layout for $ARCH (add one to kernel_image)" ;;
  esac
  kind=$(hex_at "$src" 0 4)
  case $kind in
    7f454c46)  # an ELF vmlinux: its loadable sections are the flat Image, header included
      command -v "$objcopy" >/dev/null \
        || die "$CURRENT: ${src##*/} is an ELF file; converting it needs $objcopy (Debian package binutils-${objcopy%-objcopy})"
      "$objcopy" -O binary "$src" "$dest" || die "$objcopy -O binary $src failed" ;;
    1f8b*)  # a gzip'd Image (vmlinuz, as arm64 ships it)
      gzip -dc "$src" > "$dest" || die "$CURRENT: cannot decompress ${src##*/}" ;;
    *) cp "$src" "$dest" ;;
  esac
  [ "$(hex_at "$dest" "$offset" $(( ${#magic} / 2 )))" = "$magic" ] \
    || die "$CURRENT: ${src##*/} is not a $ARCH kernel image (no $what)"
}

layout_linux() {  # Image, modules/RELEASE/ (the lib/modules tree) and version (RELEASE, as uname -r says)
  local tree=$1 kernels dir release
  kernels=("$tree"/boot/vmlinu[xz]-*)
  [ -f "${kernels[0]}" ] || die "$CURRENT: the package has no boot/vmlinux-* or boot/vmlinuz-* (did Debian change its layout?)"
  [ ${#kernels[@]} -eq 1 ] || die "$CURRENT: the package has ${#kernels[@]} kernels in boot/, expected one"
  release=${kernels[0]##*/vmlinu[xz]-}
  kernel_image "${kernels[0]}" "$tree/Image"
  for dir in usr/lib/modules lib/modules ''; do
    [ -n "$dir" ] || die "$CURRENT: the package has no usr/lib/modules/$release (did Debian change its layout?)"
    if [ -d "$tree/$dir/$release" ]; then
      mkdir -p "$tree/modules"
      mv "$tree/$dir/$release" "$tree/modules/$release"
      break
    fi
  done
  echo "$release" > "$tree/version"
}

layout_busybox() {  # the static busybox binary, checked to be an ELF executable for ARCH
  local tree=$1 src machine
  case $ARCH in
    riscv64) machine=f300 ;;
    arm64) machine=b700 ;;
    amd64) machine=3e00 ;;
    *) machine='' ;;
  esac
  for src in usr/bin/busybox bin/busybox ''; do
    [ -n "$src" ] || die "$CURRENT: the package has no usr/bin/busybox (did Debian change its layout?)"
    [ -f "$tree/$src" ] && break
  done
  [ "$(hex_at "$tree/$src" 0 4)" = 7f454c46 ] || die "$CURRENT: $src is not an ELF file"
  [ -z "$machine" ] || [ "$(hex_at "$tree/$src" 18 2)" = "$machine" ] \
    || die "$CURRENT: $src is not a $ARCH executable (ELF machine $(hex_at "$tree/$src" 18 2))"
  copy_image "$tree" "$src" busybox
  chmod 755 "$tree/busybox"
}

# -- apt, isolated from the host's ------------------------------------------------------------

host_mirror() {  # the first Debian (non-security) mirror the host's apt uses
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local uri
  uri=$(cat "${files[@]}" 2>/dev/null \
    | sed -n -e 's/^[[:space:]]*URIs:[[:space:]]*//p' \
             -e 's/^[[:space:]]*deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\).*/\2/p' \
    | tr ' ' '\n' | grep -E '^https?://[^ ]*/debian/?$' | head -n 1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

setup_apt() {  # setup_apt SUITE...: apt.conf and a sources list naming each suite
  APTDIR=$CACHE/apt/$ARCH
  APTLOG=$APTDIR/last.log
  mkdir -p "$APTDIR/state/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/sources.list.d" \
    "$APTDIR/preferences.d" || die "cannot create $APTDIR"
  : > "$APTDIR/state/status"  # an empty dpkg status: the host's installed packages do not matter
  MIRROR=${AXVISOR_DEBIAN_MIRROR:-$(host_mirror)}
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg option suite
  if [ -r "$keyring" ]; then
    option="signed-by=$keyring"
  else
    say "warning: $keyring is missing (Debian package debian-archive-keyring); not verifying signatures"
    option="trusted=yes"
  fi
  # "all" too: a suite where ARCH is not a release architecture (bookworm for riscv64) still
  # carries the architecture-independent firmware packages in its binary-all index.
  for suite in "$@"; do
    echo "deb [arch=$ARCH,all $option] $MIRROR $suite main"
  done > "$APTDIR/sources.list"
  cat > "$APTDIR/apt.conf" <<EOF
APT::Architecture "$ARCH";
APT::Architectures { "$ARCH"; };
APT::Sandbox::User "$(id -un)";
Dir::State "$APTDIR/state";
Dir::State::status "$APTDIR/state/status";
Dir::Cache "$APTDIR/cache";
Dir::Etc::SourceList "$APTDIR/sources.list";
Dir::Etc::SourceParts "$APTDIR/sources.list.d";
Dir::Etc::Preferences "$APTDIR/preferences";
Dir::Etc::PreferencesParts "$APTDIR/preferences.d";
Debug::NoLocking "true";
Acquire::Languages "none";
EOF
  export APT_CONFIG=$APTDIR/apt.conf  # read after the host's apt.conf.d, so its proxies still apply
}

apt_run() {  # apt_run WHAT PROGRAM ARGS...: apt-get or apt-cache with our config; one error line on failure
  local what=$1; shift
  if ! "$1" -q "${@:2}" >"$APTLOG" 2>&1; then
    local reason
    reason=$(grep -E '^(E|W): ' "$APTLOG" | head -n 1 || true)
    die "$what failed: ${reason:-see $APTLOG} (log: $APTLOG)"
  fi
}

apt_update_once() {
  [ -n "${APT_UPDATED:-}" ] && return 0
  say "updating the $ARCH package index ($(awk '{print $(NF-1)}' "$APTDIR/sources.list" | paste -sd' ')) from $MIRROR"
  apt_run "apt-get update" apt-get update
  # apt-get update exits 0 when a mirror is unreachable; its "Err:" lines say so.
  if grep -q '^Err:' "$APTLOG"; then
    die "apt-get update failed: $(grep -m 1 -E '^(W|E): ' "$APTLOG" || grep -m 1 '^Err:' "$APTLOG") (log: $APTLOG)"
  fi
  APT_UPDATED=1
}

# -- one package --------------------------------------------------------------------------------

fetch_package() {  # fetch_package NAME SUITE
  local pkg=$1 suite=$2 dir debs=$CACHE/$ARCH/debs
  dir=$(dest_dir "$pkg")
  local dest=$CACHE/$ARCH/$dir
  CURRENT=$pkg
  # Fetched before from the same suite for the same request (a tree from before requests were
  # recorded was fetched under its directory's name): nothing to do, and no network needed.
  if [ "$FORCE" = 0 ] && [ -f "$dest/.axvisor-version" ] && [ "$(cat "$dest/.axvisor-suite" 2>/dev/null)" = "$suite" ] \
    && [ "$(cat "$dest/.axvisor-request" 2>/dev/null || echo "$dir")" = "$pkg" ]
  then
    say "$pkg $(cat "$dest/.axvisor-version") ($suite) already in $dest"
    return 0
  fi
  apt_update_once
  local real=$pkg resolve=resolve_${dir//[-.+]/_}
  if declare -F "$resolve" >/dev/null; then
    real=$("$resolve" "$pkg" "$suite") || exit 2
    [ "$real" = "$pkg" ] || say "$pkg/$suite stands for $real"
    CURRENT=$real
  fi
  mkdir -p "$debs"
  local deb version size
  # apt names the file it would write (URI, file name, size, hash), so an earlier download of
  # another version of the package is never mistaken for this one. It names nothing for a file
  # already in the working folder, so it is asked from an empty one.
  mkdir -p "$APTDIR/empty"
  (cd "$APTDIR/empty" && apt_run "apt-get download $real/$suite" apt-get download --print-uris "$real/$suite")
  deb=$(awk -v p="$real" 'index($2, p "_") == 1 {print $2; exit}' "$APTLOG")
  size=$(awk -v p="$real" 'index($2, p "_") == 1 {printf "%.1f MB", $3 / 1e6; exit}' "$APTLOG")
  [ -n "$deb" ] || die "apt-get download $real/$suite named no .deb file (log: $APTLOG)"
  if [ -f "$debs/$deb" ]; then
    say "checking $deb ($size), downloaded before"
  else
    say "downloading $real from $suite ($size)"
  fi
  (cd "$debs" && apt_run "apt-get download $real/$suite" apt-get download "$real/$suite")
  [ -f "$debs/$deb" ] || die "apt-get download $real/$suite did not write $debs/$deb"
  version=$(dpkg-deb -f "$debs/$deb" Version) || die "$debs/$deb is not a Debian package"

  say "unpacking $deb into $dest"
  local tmp=$dest.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  dpkg-deb -x "$debs/$deb" "$tmp" || die "dpkg-deb -x $debs/$deb failed"
  local layout=layout_${dir//[-.+]/_}
  if declare -F "$layout" >/dev/null; then
    say "laying out $real's images in $dest"
    "$layout" "$tmp"
  fi
  echo "$version" > "$tmp/.axvisor-version"
  echo "$suite" > "$tmp/.axvisor-suite"
  echo "$pkg" > "$tmp/.axvisor-request"
  echo "$real" > "$tmp/.axvisor-package"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  say "$real $version ready in $dest"
}

report() {  # report NAME...: the laid-out files of each package, with sizes (a modules tree counted)
  local pkg dest release
  for pkg in "$@"; do
    dest=$CACHE/$ARCH/$(dest_dir "$pkg")
    printf '%s %s (%s)\n' "$(cat "$dest/.axvisor-package" 2>/dev/null || echo "$pkg")" \
      "$(cat "$dest/.axvisor-version")" "$(cat "$dest/.axvisor-suite")"
    find "$dest" \( -path "$dest/usr" -o -path "$dest/boot" -o -path "$dest/bin" -o -path "$dest/lib" \
      -o -path "$dest/modules" \) -prune -o -type f ! -name '.axvisor-*' -printf '  %p (%s bytes)\n' | sort
    for release in "$dest"/modules/*/; do
      [ -d "$release" ] || continue
      printf '  %s (%s modules)\n' "${release%/}" "$(find "$release" -name '*.ko*' | wc -l)"
    done
  done
}

main() {
  local specs=()
  while [ $# -gt 0 ]; do
    case $1 in
      --arch) [ $# -ge 2 ] || die "--arch needs a value (e.g. riscv64)"; ARCH=$2; shift 2 ;;
      --suite) [ $# -ge 2 ] || die "--suite needs a value (e.g. trixie)"; SUITE=$2; shift 2 ;;
      --force) FORCE=1; shift ;;
      -h|--help) usage; exit 0 ;;
      -*) die "unknown option $1 (see --help)" ;;
      *) specs+=("$1"); shift ;;
    esac
  done
  [ ${#specs[@]} -gt 0 ] || specs=("${DEFAULT_PACKAGES[@]}")
  [[ $ARCH =~ ^[a-z0-9]+$ ]] || die "--arch $ARCH is not a Debian architecture name"
  local spec names=() suites=() all_suites=()
  for spec in "${specs[@]}"; do
    local name=${spec%@*} suite=$SUITE
    [[ $spec == *@* ]] && suite=${spec#*@}
    [[ $name =~ ^[a-z0-9][a-z0-9.+-]+$ ]] || die "$name is not a Debian package name"
    [[ $suite =~ ^[a-z][a-z0-9-]*$ ]] || die "$suite (in $spec) is not a Debian suite name"
    names+=("$name"); suites+=("$suite")
    [[ " ${all_suites[*]} " == *" $suite "* ]] || all_suites+=("$suite")
  done
  command -v apt-get >/dev/null || die "apt-get is missing (this script needs a Debian-based host)"
  command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (Debian package dpkg)"
  mkdir -p "$CACHE/$ARCH" || die "cannot create $CACHE/$ARCH (set AXVISOR_CACHE)"

  setup_apt "${all_suites[@]}"
  local i
  for i in "${!names[@]}"; do
    fetch_package "${names[$i]}" "${suites[$i]}"
  done
  report "${names[@]}"
}

main "$@"
