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
A package from a suite other than the default one goes to $CACHE/ARCH/PACKAGE@SUITE/ instead,
so it never replaces the default suite's images (opensbi@bookworm beside trixie's opensbi).
A package already fetched from the same suite is skipped, and one whose .deb was downloaded
before is unpacked from it, without the network (--force fetches it again). Each suite is asked
for ARCH's own index first; its binary-all index is added only for a package not found there.
A transient failure (a mirror in mid-sync, a refused connection, a 5xx) is retried, then the
next mirror is tried. A failure is one line and exit status 2.

linux-image-ARCH (a metapackage) fetches the kernel package it depends on into $CACHE/ARCH/linux/
(Image, modules/RELEASE/, version); busybox-static goes to $CACHE/ARCH/busybox/busybox.

environment:
  AXVISOR_CACHE          cache directory (default ~/.cache/axvisor)
  AXVISOR_DEBIAN_MIRROR  Debian mirror, or several (spaces or commas) tried in turn
                         (default: the host's apt mirror, then http://deb.debian.org/debian)
  AXVISOR_DEBIAN_SUITE   default Debian suite (default trixie)
  AXVISOR_DEBIAN_TRUSTED 1: trust an unsigned repository (a local one) instead of Debian's keyring
  AXVISOR_FETCH_ATTEMPTS tries per mirror at a transient failure (default 3)
  AXVISOR_FETCH_DELAY    seconds before the second try, doubled for each later one (default 2)
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

dest_tree() {  # dest_tree PACKAGE SUITE: the tree PACKAGE from SUITE is unpacked into; DIR@SUITE off the default suite
  local dir
  dir=$(dest_dir "$1")
  if [ "$2" = "$SUITE" ]; then echo "$CACHE/$ARCH/$dir"; else echo "$CACHE/$ARCH/$dir@$2"; fi
}

copy_image() {  # copy_image TREE SOURCE DEST (both relative to TREE)
  local tree=$1 src=$1/$2 dest=$1/$3
  [ -f "$src" ] || die "$CURRENT: the package has no $2 (did Debian change its layout?)"
  mkdir -p "$(dirname "$dest")" && cp "$src" "$dest" || die "$CURRENT: cannot copy $2 to $dest"
}

layout_opensbi() {  # the generic platform's firmware, which QEMU's virt board uses
  local generic=usr/lib/riscv64-linux-gnu/opensbi/generic
  copy_image "$1" "$generic/fw_jump.bin" fw_jump.bin
  copy_image "$1" "$generic/fw_dynamic.bin" fw_dynamic.bin
}

layout_u_boot_qemu() {  # U-Boot for ARCH's virt board: riscv64 in M mode and in S mode under OpenSBI, arm64's qemu_arm64
  local board boards=(qemu-riscv64 qemu-riscv64_smode)
  [ "$ARCH" = arm64 ] && boards=(qemu_arm64)
  for board in "${boards[@]}"; do
    copy_image "$1" "usr/lib/u-boot/$board/u-boot.bin" "$board/u-boot.bin"
  done
}

hex_at() {  # hex_at FILE OFFSET COUNT: COUNT bytes of FILE at OFFSET as lowercase hex
  od -An -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'
}

resolve_linux() {  # the versioned kernel package (e.g. linux-image-6.12.117+deb13-riscv64) a metapackage names
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
    *) cp "$src" "$dest" || die "$CURRENT: cannot copy ${src##*/} to $dest" ;;
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
      mkdir -p "$tree/modules" && mv "$tree/$dir/$release" "$tree/modules/$release" \
        || die "$CURRENT: cannot move $dir/$release to modules/"
      break
    fi
  done
  echo "$release" > "$tree/version" || die "cannot write $tree/version"
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
  chmod 755 "$tree/busybox" || die "cannot make $tree/busybox executable"
}

# -- apt, isolated from the host's ------------------------------------------------------------
# Mirrors are briefly inconsistent several times a day (an index whose size or hash does not
# match the Release file while the mirror syncs), and a host's mirror may be down or may not carry
# ARCH. So each suite is first asked for ARCH's own index only (trixie lists its arch:all
# packages there too); a suite's binary-all index is added only when a package does not resolve
# without it (bookworm, where riscv64 is no release architecture); an index that failed is
# forgiven, with a warning, when every package still resolves; a transient failure is retried
# with backoff; then the next mirror is tried. A package unpacked or downloaded before needs no
# network at all.

ATTEMPTS=${AXVISOR_FETCH_ATTEMPTS:-3}  # tries per mirror of an update or a download
DELAY=${AXVISOR_FETCH_DELAY:-2}        # seconds before the second try, doubled for each later one
# apt's words for failures that the same mirror may not repeat a few seconds later.
TRANSIENT='unexpected size|Hash Sum mismatch|Mirror sync|Could not connect|Connection failed|Connection refused|Connection reset|timed out|Temporary failure|Could not resolve|Unable to connect|Undetermined Error|50[0234] |Clearsigned file'

host_mirror() {  # the first Debian (non-security) mirror the host's apt uses, if any
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  cat "${files[@]}" 2>/dev/null \
    | sed -n -e 's/^[[:space:]]*URIs:[[:space:]]*//p' \
             -e 's/^[[:space:]]*deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\).*/\2/p' \
    | tr ' ' '\n' | grep -E '^https?://[^ ]*/debian/?$' | head -n 1 || true
}

mirrors() {  # the mirrors to try, in order, one a line: AXVISOR_DEBIAN_MIRROR, else the host's and deb.debian.org
  local list=${AXVISOR_DEBIAN_MIRROR:-} mirror
  [ -n "$list" ] || list="$(host_mirror) http://deb.debian.org/debian"
  for mirror in ${list//,/ }; do
    echo "${mirror%/}"
  done | awk '!seen[$0]++'
}

setup_apt() {  # apt's own directories and apt.conf; the mirrors to try
  APTDIR=$CACHE/apt/$ARCH
  APTLOG=$APTDIR/last.log
  DEBS=$CACHE/$ARCH/debs
  SUITES=()      # the suites the sources list names
  ALL_SUITES=()  # those whose binary-all index is needed too
  mkdir -p "$APTDIR/state/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/sources.list.d" \
    "$APTDIR/preferences.d" "$DEBS/.axvisor-requests" || die "cannot create $APTDIR and $DEBS"
  [[ $ATTEMPTS =~ ^[1-9][0-9]*$ ]] || die "AXVISOR_FETCH_ATTEMPTS=$ATTEMPTS: expected a whole number of tries, at least 1"
  [[ $DELAY =~ ^[0-9]+$ ]] || die "AXVISOR_FETCH_DELAY=$DELAY: expected whole seconds (0 for none)"
  mapfile -t MIRRORS < <(mirrors)
  [ ${#MIRRORS[@]} -gt 0 ] || die "AXVISOR_DEBIAN_MIRROR names no mirror"
  local mirror
  for mirror in "${MIRRORS[@]}"; do
    [[ $mirror =~ ^(https?|file):/[^[:space:]]+$ ]] \
      || die "AXVISOR_DEBIAN_MIRROR: '$mirror' is not a mirror URL (expected e.g. http://deb.debian.org/debian; several separated by spaces or commas)"
  done
  : > "$APTDIR/state/status"  # an empty dpkg status: the host's installed packages do not matter
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  case ${AXVISOR_DEBIAN_TRUSTED:-0} in
    1) SIGNED="trusted=yes" ;;  # a local, unsigned repository (the tests serve one)
    0) if [ -r "$keyring" ]; then
         SIGNED="signed-by=$keyring"
       else
         say "warning: $keyring is missing (Debian package debian-archive-keyring); not verifying signatures"
         SIGNED="trusted=yes"
       fi ;;
    *) die "AXVISOR_DEBIAN_TRUSTED=$AXVISOR_DEBIAN_TRUSTED: expected 1 (trust an unsigned repository) or 0" ;;
  esac
  cat > "$APTDIR/apt.conf" <<CONF
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
Acquire::Retries "0";
CONF
  # Retries are this script's (visible, bounded, then the next mirror), not apt's silent ones.
  export APT_CONFIG=$APTDIR/apt.conf  # read after the host's apt.conf.d, so its proxies still apply
}

write_sources() {  # write_sources MIRROR: a line per suite, ARCH's index, and binary-all where needed
  local suite arch
  for suite in "${SUITES[@]}"; do
    arch=$ARCH
    [[ " ${ALL_SUITES[*]} " == *" $suite "* ]] && arch=$ARCH,all
    echo "deb [arch=$arch $SIGNED] $1 $suite main"
  done > "$APTDIR/sources.list"
}

apt_run() {  # apt_run WHAT PROGRAM ARGS...: apt-get or apt-cache with our config; one error line on failure
  local what=$1; shift
  "$1" -q "${@:2}" >"$APTLOG" 2>&1 || die "$what failed: $(apt_error) (log: $APTLOG)"
}

apt_error() {  # what went wrong, in one line, from $APTLOG: apt's first specific E: or W: line, else an Err: reason
  local line
  line=$(grep -E '^[EW]: ' "$APTLOG" | grep -v -E 'Some index files failed|Download is performed unsandboxed' | head -n 1 || true)
  [ -n "$line" ] || line=$(grep -A 1 '^Err:' "$APTLOG" | sed -n '2{s/^ *//;p}' || true)
  line=${line#[EW]: }
  echo "${line:-see $APTLOG}"
}

retry_wait() {  # retry_wait ATTEMPT ERROR: sleep before the next try at a transient failure; 1 when none is left
  local attempt=$1 error=$2 delay
  grep -q -E "$TRANSIENT" <<<"$error" || return 1
  [ "$attempt" -lt "$ATTEMPTS" ] || return 1
  delay=$(( DELAY << (attempt - 1) ))
  say "transient failure, try $((attempt + 1)) of $ATTEMPTS in $delay s: $error"
  sleep "$delay"
}

resolves() {  # resolves NAME SUITE: true when the package index lists NAME in SUITE
  apt-cache -q show --no-all-versions "$1/$2" >/dev/null 2>&1
}

suite_failed() {  # suite_failed SUITE: the last apt-get update reported a failure for one of SUITE's files
  grep -E '^(Err:|[EW]: Failed to fetch)' "$APTLOG" | grep -q -E "[ /]$1[ /]"
}

refresh_index() {  # refresh_index MIRROR SPEC...: update until each NAME@SUITE resolves; 1 (LAST_ERROR set) if it cannot
  local mirror=$1 attempt=1 error spec missing added
  shift
  while :; do
    write_sources "$mirror"
    say "updating the package index ($(awk '{sub(/^\[arch=/, "", $2); print $(NF-1) " " $2}' "$APTDIR/sources.list" | paste -sd,)) from $mirror"
    error=''
    # apt-get update exits 0 when a mirror is unreachable; its Err: and "Failed to fetch" lines say so.
    if ! apt-get -q update >"$APTLOG" 2>&1 || grep -q -E '^Err:|^[EW]: Failed to fetch' "$APTLOG"; then
      error=$(apt_error)
    fi
    missing=()
    for spec in "$@"; do
      resolves "${spec%@*}" "${spec#*@}" || missing+=("$spec")
    done
    if [ ${#missing[@]} -eq 0 ]; then
      [ -z "$error" ] || say "warning: every package resolved without the index that failed: $error"
      return 0
    fi
    added=0
    for spec in "${missing[@]}"; do
      # Only a suite whose ARCH index arrived can tell that a package is not in it.
      if [[ " ${ALL_SUITES[*]} " != *" ${spec#*@} "* ]] && ! suite_failed "${spec#*@}"; then
        say "${spec%@*} is not in ${spec#*@}'s $ARCH index; adding ${spec#*@}'s binary-all index"
        ALL_SUITES+=("${spec#*@}")
        added=1
      fi
    done
    [ $added = 0 ] || continue
    spec=${missing[0]}
    if [ -z "$error" ]; then
      LAST_ERROR="${spec%@*} is not in Debian ${spec#*@} (main, $ARCH or all) at $mirror; check the name and the suite"
      return 1
    fi
    LAST_ERROR="${spec%@*} (${spec#*@}) does not resolve: apt-get update from $mirror failed: $error (log: $APTLOG)"
    retry_wait "$attempt" "$error" || return 1
    attempt=$((attempt + 1))
  done
}

show_progress() {  # show_progress FILE TOTAL: print how much of FILE has arrived every few seconds until killed
  local file=$1 total=$2 size
  while sleep 3 && kill -0 $$ 2>/dev/null; do  # ends with the script, even one interrupted
    size=$(stat -c %s "$file" 2>/dev/null || echo 0)
    [ "$size" -gt 0 ] || continue
    say "  $(( size >> 20 )) of $(( total >> 20 )) MiB"
  done
}

download() {  # download REAL SUITE MIRROR DEB SIZE: apt-get download into $DEBS, retried; 1 (LAST_ERROR set) if it fails
  local real=$1 suite=$2 mirror=$3 deb=$4 size=$5 attempt=1 error status progress fresh=0
  [ -f "$DEBS/$deb" ] || fresh=1
  while :; do
    # apt-get download writes straight to DEBS/DEB; a big package reports how much has arrived.
    progress=''
    if [ "$size" -gt $(( 8 << 20 )) ]; then
      show_progress "$DEBS/$deb" "$size" &
      progress=$!
    fi
    status=0
    (cd "$DEBS" && apt-get -q download "$real/$suite") >"$APTLOG" 2>&1 || status=$?
    if [ -n "$progress" ]; then kill "$progress" 2>/dev/null; wait "$progress" 2>/dev/null || true; fi
    [ $status != 0 ] || return 0
    [ $fresh = 0 ] || rm -f "$DEBS/$deb"  # never mistaken for a download, next time
    error=$(apt_error)
    LAST_ERROR="apt-get download $real/$suite from $mirror failed: $error (log: $APTLOG)"
    retry_wait "$attempt" "$error" || return 1
    attempt=$((attempt + 1))
  done
}

# -- one package --------------------------------------------------------------------------------

tree_ready() {  # tree_ready NAME SUITE: NAME was unpacked before from SUITE for the same request
  local dir dest
  dir=$(dest_dir "$1")
  dest=$(dest_tree "$1" "$2")
  # A tree from before requests were recorded was fetched under its directory's name.
  [ -f "$dest/.axvisor-version" ] && [ "$(cat "$dest/.axvisor-suite" 2>/dev/null)" = "$2" ] \
    && [ "$(cat "$dest/.axvisor-request" 2>/dev/null || echo "$dir")" = "$1" ]
}

cached() {  # cached NAME SUITE: 0 when NAME is in place without the network (unpacked before, or from its cached .deb)
  local pkg=$1 suite=$2 dest record real deb
  [ "$FORCE" = 0 ] || return 1
  dest=$(dest_tree "$pkg" "$suite")
  record=$DEBS/.axvisor-requests/$pkg@$suite
  if tree_ready "$pkg" "$suite"; then
    say "$pkg $(cat "$dest/.axvisor-version") ($suite) already in $dest"
    [ -f "$record" ] || remember_deb "$pkg" "$suite" "$dest"
    return 0
  fi
  [ -f "$record" ] && read -r real deb < "$record" && [ -f "$DEBS/$deb" ] || return 1
  if ! dpkg-deb -f "$DEBS/$deb" Version >/dev/null 2>&1; then
    say "$DEBS/$deb is damaged; downloading it again"
    rm -f "$DEBS/$deb"
    return 1
  fi
  say "$pkg ($suite): $deb was downloaded before"
  install_deb "$pkg" "$suite" "$real" "$deb"
}

remember_deb() {  # remember_deb NAME SUITE TREE: record the .deb a tree came from, if still in the cache
  local real version deb
  real=$(cat "$3/.axvisor-package" 2>/dev/null || echo "$1")
  version=$(sed 's/:/%3a/' "$3/.axvisor-version")  # apt's file names spell an epoch's colon so
  for deb in "${real}_${version}_$ARCH.deb" "${real}_${version}_all.deb"; do
    if [ -f "$DEBS/$deb" ]; then
      echo "$real $deb" > "$DEBS/.axvisor-requests/$1@$2"
      return 0
    fi
  done
}

fetch_package() {  # fetch_package NAME SUITE MIRROR: resolve and download NAME, then unpack it; 1 (LAST_ERROR set) on a mirror's failure
  local pkg=$1 suite=$2 mirror=$3 dir real deb size
  dir=$(dest_dir "$pkg")
  CURRENT=$pkg
  real=$pkg
  local resolve=resolve_${dir//[-.+]/_}
  if declare -F "$resolve" >/dev/null; then
    real=$("$resolve" "$pkg" "$suite") || exit 2
    [ "$real" = "$pkg" ] || say "$pkg/$suite stands for $real"
    CURRENT=$real
  fi
  # apt names the file it would write (URI, file name, size, hash), so an earlier download of
  # another version of the package is never mistaken for this one. It names nothing for a file
  # already in the working folder, so it is asked from an empty one.
  mkdir -p "$APTDIR/empty"
  (cd "$APTDIR/empty" && apt_run "apt-get download $real/$suite" apt-get download --print-uris "$real/$suite")
  deb=$(awk -v p="$real" 'index($2, p "_") == 1 {print $2; exit}' "$APTLOG")
  size=$(awk -v p="$real" 'index($2, p "_") == 1 {print $3; exit}' "$APTLOG")
  [ -n "$deb" ] && [[ $size =~ ^[0-9]+$ ]] || die "apt-get download $real/$suite named no .deb file (log: $APTLOG)"
  if [ -f "$DEBS/$deb" ]; then
    say "checking $deb ($(awk -v s="$size" 'BEGIN {printf "%.1f MB", s / 1e6}')), downloaded before"
  else
    say "downloading $real from $suite at $mirror ($(awk -v s="$size" 'BEGIN {printf "%.1f MB", s / 1e6}'))"
  fi
  download "$real" "$suite" "$mirror" "$deb" "$size" || return 1
  [ -f "$DEBS/$deb" ] || die "apt-get download $real/$suite did not write $DEBS/$deb"
  echo "$real $deb" > "$DEBS/.axvisor-requests/$pkg@$suite"
  install_deb "$pkg" "$suite" "$real" "$deb"
}

install_deb() {  # install_deb NAME SUITE REAL DEB: unpack DEB (of package REAL) and lay out its images
  local pkg=$1 suite=$2 real=$3 deb=$4 dir version
  dir=$(dest_dir "$pkg")
  local dest
  dest=$(dest_tree "$pkg" "$suite")
  CURRENT=$real
  version=$(dpkg-deb -f "$DEBS/$deb" Version) || die "$DEBS/$deb is not a Debian package"
  say "unpacking $deb into $dest"
  local tmp=$dest.tmp
  # Functions called in a condition run without set -e: each step checks its own status.
  rm -rf "$tmp" && mkdir -p "$tmp" || die "cannot create $tmp"
  dpkg-deb -x "$DEBS/$deb" "$tmp" || die "dpkg-deb -x $DEBS/$deb failed"
  local layout=layout_${dir//[-.+]/_}
  if declare -F "$layout" >/dev/null; then
    say "laying out $real's images in $dest"
    "$layout" "$tmp"
  fi
  { echo "$version" > "$tmp/.axvisor-version" && echo "$suite" > "$tmp/.axvisor-suite" \
    && echo "$pkg" > "$tmp/.axvisor-request" && echo "$real" > "$tmp/.axvisor-package" \
    && rm -rf "$dest" && mv "$tmp" "$dest"; } || die "cannot move $tmp to $dest"
  say "$real $version ready in $dest"
}

fetch_each() {  # fetch_each MIRROR SPEC...: fetch each NAME@SUITE not fetched yet; 1 when the mirror fails one
  local mirror=$1 spec
  shift
  for spec in "$@"; do
    [[ " ${FETCHED[*]} " == *" $spec "* ]] && continue
    fetch_package "${spec%@*}" "${spec#*@}" "$mirror" || return 1
    FETCHED+=("$spec")
  done
}

fetch_all() {  # fetch_all SPEC...: fetch each NAME@SUITE from the first mirror that serves them all
  local mirror i=0 spec
  FETCHED=()
  for spec in "$@"; do
    [[ " ${SUITES[*]} " == *" ${spec#*@} "* ]] || SUITES+=("${spec#*@}")
  done
  for mirror in "${MIRRORS[@]}"; do
    i=$((i + 1))
    if refresh_index "$mirror" "$@" && fetch_each "$mirror" "$@"; then
      return 0
    fi
    [ $i = ${#MIRRORS[@]} ] || say "$LAST_ERROR; trying ${MIRRORS[$i]}"
  done
  [ ${#MIRRORS[@]} = 1 ] || LAST_ERROR="$LAST_ERROR (tried ${MIRRORS[*]})"
  die "$LAST_ERROR"
}

report() {  # report NAME@SUITE...: the laid-out files of each package, with sizes (a modules tree counted)
  local spec pkg dest release
  for spec in "$@"; do
    pkg=${spec%@*}
    dest=$(dest_tree "$pkg" "${spec#*@}")
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
  local spec names=() suites=()
  for spec in "${specs[@]}"; do
    local name=${spec%@*} suite=$SUITE
    [[ $spec == *@* ]] && suite=${spec#*@}
    [[ $name =~ ^[a-z0-9][a-z0-9.+-]+$ ]] || die "$name is not a Debian package name"
    [[ $suite =~ ^[a-z][a-z0-9-]*$ ]] || die "$suite (in $spec) is not a Debian suite name"
    names+=("$name"); suites+=("$suite")
  done
  command -v apt-get >/dev/null || die "apt-get is missing (this script needs a Debian-based host)"
  command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (Debian package dpkg)"
  mkdir -p "$CACHE/$ARCH" || die "cannot create $CACHE/$ARCH (set AXVISOR_CACHE)"

  setup_apt
  local i needed=()
  for i in "${!names[@]}"; do
    cached "${names[$i]}" "${suites[$i]}" || needed+=("${names[$i]}@${suites[$i]}")
  done
  [ ${#needed[@]} = 0 ] || fetch_all "${needed[@]}"
  local reported=()
  for i in "${!names[@]}"; do reported+=("${names[$i]}@${suites[$i]}"); done
  report "${reported[@]}"
}

main "$@"
