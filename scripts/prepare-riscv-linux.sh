#!/usr/bin/env bash
# prepare-riscv-linux.sh: scripts/prepare-linux.sh --arch riscv64 (its --help says what it does).
PROG=prepare-riscv-linux exec "$(dirname "${BASH_SOURCE[0]}")/prepare-linux.sh" --arch riscv64 "$@"
