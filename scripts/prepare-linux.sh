#!/usr/bin/env bash
# prepare-linux.sh --arch riscv64|arm64: everything a Linux guest of that architecture boots
# from, in the axvisor cache: its firmware (OpenSBI for riscv64, U-Boot qemu_arm64 for arm64),
# Debian's kernel and busybox (fetched), a busybox initramfs with the virtio modules and an ext4
# disk image (built). Runs without root; a step whose outputs are newer than its inputs is
# skipped. prepare-riscv-linux.sh and prepare-arm64-linux.sh call it; `--help` and
# scripts/README.md describe it.
set -euo pipefail

PROG=${PROG:-prepare-linux}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${AXVISOR_CACHE:-$HOME/.cache/axvisor}
ARCH=
OUT=
PYTHON=${PYTHON:-python3}
FORCE=0
REFETCH=()

say() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 2; }

usage() {
  cat <<'USAGE'
usage: scripts/prepare-linux.sh --arch riscv64|arm64 [--force] [--refetch]
       (scripts/prepare-riscv-linux.sh and scripts/prepare-arm64-linux.sh give the --arch)

Fetches the firmware (riscv64: opensbi; arm64: u-boot-qemu's qemu_arm64), linux-image-ARCH (on
arm64 its gzip'd Image unpacked) and busybox-static from Debian (fetch-debian-images.sh), then
builds the initramfs (build-initramfs.py) and the disk image (build-disk-image.py), each only
when missing or older than what it is built from. Prints the images' paths.

  --force     rebuild the initramfs and the disk image
  --refetch   download the Debian packages again

environment:
  AXVISOR_CACHE   cache directory (default ~/.cache/axvisor); images go to $AXVISOR_CACHE/ARCH
  PYTHON          Python 3.11+ that runs the build scripts (default python3)
  AXVISOR_DEBIAN_MIRROR and the other fetch-debian-images.sh variables (its --help) apply too
USAGE
}

stale() {  # stale OUTPUT INPUT...: true when OUTPUT is missing, forced, or older than an input
  local output=$1 input
  shift
  [ "$FORCE" = 1 ] && return 0
  [ -f "$output" ] || return 0
  for input in "$@"; do
    [ "$input" -nt "$output" ] && return 0
  done
  return 1
}

main() {
  while [ $# -gt 0 ]; do
    case $1 in
      --force) FORCE=1; shift ;;
      --refetch) REFETCH=(--force); shift ;;
      --arch) [ $# -ge 2 ] || die "--arch needs riscv64 or arm64"; ARCH=$2; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown argument $1 (see --help)" ;;
    esac
  done
  local firmware_package firmware
  case $ARCH in
    riscv64) firmware_package=opensbi; firmware=opensbi/fw_jump.bin ;;
    arm64) firmware_package=u-boot-qemu; firmware=u-boot-qemu/qemu_arm64/u-boot.bin ;;
    *) die "--arch ${ARCH:-(none)}: expected riscv64 or arm64" ;;
  esac
  OUT=$CACHE/$ARCH
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "$PYTHON is missing or older than 3.11 (set PYTHON)"
  mkdir -p "$OUT" || die "cannot create $OUT (set AXVISOR_CACHE)"
  # One preparation at a time per cache (parallel test runs share it).
  if command -v flock >/dev/null; then
    exec 9>"$OUT/.prepare.lock"
    flock 9
  fi

  say "fetching the Debian packages into $OUT"
  "$HERE/fetch-debian-images.sh" --arch "$ARCH" "${REFETCH[@]}" "$firmware_package" "linux-image-$ARCH" \
    busybox-static >/dev/null \
    || exit 2
  local release
  release=$(cat "$OUT/linux/version") || die "no $OUT/linux/version after fetching the kernel"

  if stale "$OUT/initramfs.cpio.gz" "$OUT/linux/version" "$OUT/linux/.axvisor-version" "$OUT/busybox/busybox" \
    "$HERE/build-initramfs.py" "$HERE/initramfs-init.sh" "$HERE"/guest_images/*.py; then
    "$PYTHON" "$HERE/build-initramfs.py" --arch "$ARCH" --output "$OUT/initramfs.cpio.gz" >/dev/null || exit 2
  else
    say "initramfs up to date: $OUT/initramfs.cpio.gz"
  fi

  # disk.ext4 stays pristine (tests copy it, the QEMU peer attaches it read-only): it is rebuilt
  # if anything changed it. VMs of the shipped configs write to their own copy, disk-vm.ext4,
  # made once and never overwritten, so what a guest saved there is kept. Its hash is checked
  # only when it was written after its .sha256 (a write moves its mtime), so a run of a cached
  # image does not read 80 MiB; a check that passes renews the .sha256's mtime.
  if stale "$OUT/disk.ext4" "$HERE/build-disk-image.py" \
    || { [ ! "$OUT/disk.ext4.sha256" -nt "$OUT/disk.ext4" ] \
         && ! (cd "$OUT" && sha256sum --status -c disk.ext4.sha256 2>/dev/null && touch disk.ext4.sha256); }; then
    "$PYTHON" "$HERE/build-disk-image.py" --arch "$ARCH" --output "$OUT/disk.ext4" >/dev/null || exit 2
    (cd "$OUT" && sha256sum disk.ext4 > disk.ext4.sha256)
  else
    say "disk image up to date: $OUT/disk.ext4"
  fi
  if [ ! -e "$OUT/disk-vm.ext4" ]; then
    cp --sparse=always "$OUT/disk.ext4" "$OUT/disk-vm.ext4"
    say "made the VMs' own disk: $OUT/disk-vm.ext4"
  fi

  printf 'kernel    %s (Linux %s)\n' "$OUT/linux/Image" "$release"
  printf 'modules   %s\n' "$OUT/linux/modules/$release"
  printf 'firmware  %s\n' "$OUT/$firmware"
  printf 'initramfs %s\n' "$OUT/initramfs.cpio.gz"
  printf 'disk      %s\n' "$OUT/disk.ext4"
  printf 'vmdisk    %s\n' "$OUT/disk-vm.ext4"
}

main "$@"
