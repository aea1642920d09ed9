#!/usr/bin/env bash
# prepare-arm64-linux.sh: scripts/prepare-linux.sh --arch arm64 (its --help says what it does).
PROG=prepare-arm64-linux exec "$(dirname "${BASH_SOURCE[0]}")/prepare-linux.sh" --arch arm64 "$@"
