#!/usr/bin/env bash
# Builds the x86_64 test guests into flat binaries (and the riscv64 parking kernel): build.sh OUTPUT_DIR [NAME...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTPUT_DIR [NAME...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(hello mmio irq smp memory echo bench ivc)
command -v gcc >/dev/null || { echo "build.sh: gcc is missing (Debian: apt-get install gcc)" >&2; exit 2; }
mkdir -p "$out"
cflags=(-O2 -ffreestanding -fno-pic -fno-pie -no-pie -nostdlib -static -mno-red-zone -mgeneral-regs-only
        -fno-stack-protector -fno-asynchronous-unwind-tables -mcmodel=large -Wall -Wextra -Werror
        -Wl,--build-id=none -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments -Wl,-T,"$here/guest.ld")
# A riscv64 kernel that only parks its hart (wfi; j .-4), for firmware-only VMs; little-endian words.
printf '\x73\x00\x50\x10\x6f\xf0\xdf\xff' > "$out/riscv64-park.bin"
for name in "${names[@]}"; do
  gcc "${cflags[@]}" -o "$out/$name.elf" "$here/start.S" "$here/guest.c" "$here/$name.c"
  objcopy -O binary "$out/$name.elf" "$out/$name.bin"
done
