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

environment:
  AXVISOR_CACHE          cache directory (default ~/.cache/axvisor)
  AXVISOR_DEBIAN_MIRROR  Debian mirror (default: the host's apt mirror, else deb.debian.org)
  AXVISOR_DEBIAN_SUITE   default Debian suite (default trixie)
USAGE
}

# -- where files go ---------------------------------------------------------------------------
# Each function lays out one package's images at stable paths inside its unpacked tree ($1);
# a package without one is only unpacked. Add one per package a guest config names.

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

apt_run() {  # apt_run WHAT ARGS...: apt-get with our config; one error line on failure
  local what=$1; shift
  if ! apt-get -q "$@" >"$APTLOG" 2>&1; then
    local reason
    reason=$(grep -E '^(E|W): ' "$APTLOG" | head -n 1 || true)
    die "$what failed: ${reason:-see $APTLOG} (log: $APTLOG)"
  fi
}

apt_update_once() {
  [ -n "${APT_UPDATED:-}" ] && return 0
  say "updating the $ARCH package index ($(awk '{print $(NF-1)}' "$APTDIR/sources.list" | paste -sd' ')) from $MIRROR"
  apt_run "apt-get update" update
  # apt-get update exits 0 when a mirror is unreachable; its "Err:" lines say so.
  if grep -q '^Err:' "$APTLOG"; then
    die "apt-get update failed: $(grep -m 1 -E '^(W|E): ' "$APTLOG" || grep -m 1 '^Err:' "$APTLOG") (log: $APTLOG)"
  fi
  APT_UPDATED=1
}

# -- one package --------------------------------------------------------------------------------

fetch_package() {  # fetch_package NAME SUITE
  local pkg=$1 suite=$2 dest=$CACHE/$ARCH/$1 debs=$CACHE/$ARCH/debs
  CURRENT=$pkg
  if [ "$FORCE" = 0 ] && [ -f "$dest/.axvisor-version" ] && [ "$(cat "$dest/.axvisor-suite" 2>/dev/null)" = "$suite" ]
  then
    say "$pkg $(cat "$dest/.axvisor-version") ($suite) already in $dest"
    return 0
  fi
  apt_update_once
  mkdir -p "$debs"
  say "downloading $pkg from $suite"
  local deb version
  # apt names the file it would write (URI, file name, size, hash), so an earlier download of
  # another version of the package is never mistaken for this one. It names nothing for a file
  # already in the working folder, so it is asked from an empty one.
  mkdir -p "$APTDIR/empty"
  (cd "$APTDIR/empty" && apt_run "apt-get download $pkg/$suite" download --print-uris "$pkg/$suite")
  deb=$(awk -v p="$pkg" 'index($2, p "_") == 1 {print $2; exit}' "$APTLOG")
  [ -n "$deb" ] || die "apt-get download $pkg/$suite named no .deb file (log: $APTLOG)"
  (cd "$debs" && apt_run "apt-get download $pkg/$suite" download "$pkg/$suite")
  [ -f "$debs/$deb" ] || die "apt-get download $pkg/$suite did not write $debs/$deb"
  version=$(dpkg-deb -f "$debs/$deb" Version) || die "$debs/$deb is not a Debian package"

  say "unpacking $deb into $dest"
  local tmp=$dest.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  dpkg-deb -x "$debs/$deb" "$tmp" || die "dpkg-deb -x $debs/$deb failed"
  local layout=layout_${pkg//[-.+]/_}
  if declare -F "$layout" >/dev/null; then
    "$layout" "$tmp"
  fi
  echo "$version" > "$tmp/.axvisor-version"
  echo "$suite" > "$tmp/.axvisor-suite"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  say "$pkg $version ready in $dest"
}

report() {  # report NAME...: the laid-out files of each package, with sizes
  local pkg dest
  for pkg in "$@"; do
    dest=$CACHE/$ARCH/$pkg
    printf '%s %s (%s)\n' "$pkg" "$(cat "$dest/.axvisor-version")" "$(cat "$dest/.axvisor-suite")"
    find "$dest" -path "$dest/usr" -prune -o -type f ! -name '.axvisor-*' -printf '  %p (%s bytes)\n' | sort
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
