#!/usr/bin/env bash
# axvisor.sh: set up, test, check and run the Python hypervisor. `./axvisor.sh help` lists commands.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"

PACKAGES=(axaddrspace axvcpu axdevice axvm axvisor)
PYTHON=${PYTHON:-python3}
VENV="$ROOT/.venv"
TOOLS="$ROOT/.tools"
HVCONFIG="$ROOT/.hvconfig.toml"
# Debian packages the project needs on the host (installed by setup when running as root): the
# compilers and tools the tests use (.ci/run requires every one of them there), QEMU as the
# reference peer, and what fetches the Debian guest images (apt's keyring for Debian).
APT_PACKAGES=(gcc libc6-dev linux-libc-dev python3-dev binutils device-tree-compiler binutils-riscv64-linux-gnu
              binutils-aarch64-linux-gnu
              gdb-multiarch e2fsprogs iproute2 iputils-ping qemu-system-misc qemu-system-arm debian-archive-keyring curl)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'axvisor.sh: %s\n' "$*" >&2; exit 2; }

usage() {
  cat <<'USAGE'
usage: ./axvisor.sh COMMAND [ARGS...]

  setup               install poetry if missing, create .venv, install every package (idempotent)
  test                run each package's tests on its own, then the workspace tests and the
                      layering contract; prints pytest's summary lines
  run [CONFIG...]     run VMs (no argument: the default list from .hvconfig.toml, see defconfig)
  check [CONFIG...]   validate VM configs (no argument: configs/vms/*.toml)
  defconfig           write .hvconfig.toml with the default VM for this host
  images              fetch and build the Debian guest images into ~/.cache/axvisor
  build               build the x86_64 test guests into build/guests and a wheel of every
                      package into dist/
  clean               remove environments and build outputs (keeps downloaded guest images)
  help                this text
USAGE
}

python_ok() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "axvisor.sh: missing Debian packages: ${missing[*]} (install them with apt-get as root)" >&2
    return 0
  fi
  say "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
}

poetry_bin() {
  if command -v poetry >/dev/null; then command -v poetry; return; fi
  if [ ! -x "$TOOLS/poetry/bin/poetry" ]; then
    say "installing poetry into $TOOLS/poetry"
    "$PYTHON" -m venv "$TOOLS/poetry"
    "$TOOLS/poetry/bin/pip" install -q --disable-pip-version-check poetry
  fi
  echo "$TOOLS/poetry/bin/poetry"
}

setup_stamp() {
  cat pyproject.toml poetry.lock packages/*/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1
}

# run and check start at once when .venv already matches the project files; only then is setup's
# Debian package check (a dpkg-query per package, over a second on a busy machine) skipped, and
# `./axvisor.sh setup` itself always makes it.
ensure_setup() {
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.axvisor-setup" 2>/dev/null)" = "$(setup_stamp)" ]; then
    return 0
  fi
  cmd_setup
}

cmd_setup() {
  python_ok || die "$PYTHON is missing or older than 3.11; install Python 3.11+ (Debian: apt-get install python3)"
  apt_install "${APT_PACKAGES[@]}"
  local stamp; stamp=$(setup_stamp)
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.axvisor-setup" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  local poetry; poetry=$(poetry_bin)
  say "creating the workspace environment in .venv"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  POETRY_VIRTUALENVS_IN_PROJECT=true VIRTUAL_ENV="$VENV" "$poetry" install --no-interaction -q
  echo "$stamp" > "$VENV/.axvisor-setup"
}

# The local packages a package declares as path dependencies, lowest first.
local_deps() {
  "$PYTHON" - "$1" <<'PY'
import sys, tomllib
deps = tomllib.load(open(f"packages/{sys.argv[1]}/pyproject.toml", "rb"))["tool"]["poetry"]["dependencies"]
print(" ".join(name for name, spec in deps.items() if isinstance(spec, dict) and "path" in spec))
PY
}

# A venv per package holding only that package, its declared dependencies and the test tools,
# so a package that imports something it does not declare fails its own tests.
isolated_env() {
  local pkg=$1 env="$ROOT/.venvs/$1" stamp
  stamp=$(cat "packages/$pkg/pyproject.toml" $(for d in $(local_deps "$pkg"); do echo "packages/$d/pyproject.toml"; done) | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$env/.axvisor-setup" 2>/dev/null)" != "$stamp" ]; then
    say "creating the isolated environment for $pkg"
    "$PYTHON" -m venv --clear "$env"
    "$env/bin/pip" install -q --disable-pip-version-check pytest pytest-timeout hypothesis poetry-core
    "$env/bin/pip" install -q --disable-pip-version-check "packages/$pkg"
    echo "$stamp" > "$env/.axvisor-setup"
  fi
  # Installed copies go stale when sources change: point the package and its dependencies at the tree.
  "$env/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e "packages/$pkg" \
    $(for d in $(local_deps "$pkg"); do echo "-e packages/$d"; done) >&2
  echo "$env"
}

cmd_test() {
  cmd_setup
  build_guests
  local summary=() status=0 env out
  for pkg in "${PACKAGES[@]}"; do
    env=$(isolated_env "$pkg")
    say "testing $pkg on its own"
    out=$(mktemp)
    if (cd "packages/$pkg" && "$env/bin/python" -m pytest tests -q -p no:cacheprovider "$@") 2>&1 | tee "$out"; then :; else status=1; fi
    summary+=("$pkg: $(tail -n 1 "$out")")
    rm -f "$out"
  done
  say "workspace tests"
  out=$(mktemp)
  if "$VENV/bin/python" -m pytest tests -q -p no:cacheprovider "$@" 2>&1 | tee "$out"; then :; else status=1; fi
  summary+=("workspace: $(tail -n 1 "$out")")
  rm -f "$out"
  say "layering contract (import-linter)"
  if "$VENV/bin/lint-imports" --no-cache; then summary+=("layering: kept"); else summary+=("layering: BROKEN"); status=1; fi
  say "ruff"
  if "$VENV/bin/ruff" check --quiet $(ls -d packages tests benches scripts 2>/dev/null); then summary+=("ruff: clean"); else summary+=("ruff: problems"); status=1; fi
  say "types (mypy, configured in pyproject.toml)"
  if "$VENV/bin/mypy"; then summary+=("types: clean"); else summary+=("types: problems"); status=1; fi
  say "summary"
  printf '  %s\n' "${summary[@]}"
  return $status
}

cmd_defconfig() {
  # Hardware KVM runs the x86 hello guest; anywhere else (no KVM, or PVM's software nesting, where
  # x86 kernel code is emulated) the default is Debian's riscv64 Linux on the software CPU.
  local vm=configs/vms/linux-riscv64-virt-smp1.toml
  if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ]; then
    vm=configs/vms/hello-x86_64-kvm-smp1.toml
  fi
  printf '# Written by ./axvisor.sh defconfig; `./axvisor.sh run` with no argument runs these VMs.\nvms = ["%s"]\n' "$vm" > "$HVCONFIG"
  echo "wrote $HVCONFIG: vms = [\"$vm\"]"
}

# Fetch or build the Debian images the given configs name (cached; quick when present). The
# scripts' progress (==> lines, and how much of a big download has arrived) goes to stderr; only
# their list of paths on stdout is dropped.
ensure_images() {
  local configs; configs=$(cat "$@" 2>/dev/null || true)
  if grep -q '\.cache/axvisor/riscv64/\(linux\|initramfs\|disk\)' <<<"$configs"; then
    scripts/prepare-riscv-linux.sh >/dev/null
  fi
  if grep -q '\.cache/axvisor/riscv64/u-boot-qemu' <<<"$configs"; then
    scripts/fetch-debian-images.sh opensbi u-boot-qemu >/dev/null
  elif grep -q '\.cache/axvisor/riscv64/opensbi' <<<"$configs"; then
    scripts/fetch-debian-images.sh opensbi >/dev/null
  fi
  if grep -q '\.cache/axvisor/arm64/' <<<"$configs"; then
    scripts/prepare-arm64-linux.sh >/dev/null
  fi
  if grep -q '\.cache/axvisor/amd64/linux' <<<"$configs"; then
    scripts/fetch-debian-images.sh --arch amd64 linux-image-amd64 >/dev/null
  fi
}

cmd_images() {
  scripts/fetch-debian-images.sh opensbi u-boot-qemu
  scripts/prepare-riscv-linux.sh
  scripts/prepare-arm64-linux.sh
  scripts/fetch-debian-images.sh --arch amd64 linux-image-amd64
}

default_vms() {
  [ -f "$HVCONFIG" ] || cmd_defconfig >&2
  "$PYTHON" - "$HVCONFIG" <<'PY'
import sys, tomllib
try:
    vms = tomllib.load(open(sys.argv[1], "rb"))["vms"]
    assert isinstance(vms, list) and vms and all(isinstance(v, str) for v in vms)
except Exception:
    sys.exit(f"axvisor.sh: {sys.argv[1]}: vms: expected a non-empty array of config paths (rewrite it with ./axvisor.sh defconfig)")
print("\n".join(vms))
PY
}

cmd_run() {
  ensure_setup
  if [ $# -eq 0 ]; then
    local vms; vms=$(default_vms) || exit 2
    mapfile -t args <<<"$vms"
    set -- "${args[@]}"
  fi
  # The x86 test guests (and the riscv parking kernel) only for configs that boot them: the
  # default riscv64 Linux VM needs no gcc.
  if grep -q 'build/guests/' "$@" 2>/dev/null; then build_guests; fi
  ensure_images "$@"
  # -m axvisor, not the axvisor script: its __main__ imports the CLI with garbage collection paused
  # (axvisor/startup_gc.py); -P keeps the current directory off sys.path, as the script does
  exec "$VENV/bin/python" -P -m axvisor run "$@"
}

cmd_check() {
  ensure_setup
  [ $# -gt 0 ] || set -- configs/vms/*.toml
  exec "$VENV/bin/axvisor" check "$@"
}

# The x86_64 test guests (tests/guests), rebuilt when a source is newer than the images.
build_guests() {
  local out="$ROOT/build/guests" newest
  newest=$(ls -t tests/guests/* | head -n 1)
  if [ ! -f "$out/hello.bin" ] || [ "$newest" -nt "$out/hello.bin" ]; then
    say "building the x86_64 test guests into build/guests"
    tests/guests/build.sh "$out"
  fi
}

cmd_build() {
  build_guests
  local poetry; poetry=$(poetry_bin)
  mkdir -p dist
  for pkg in "${PACKAGES[@]}"; do
    (cd "packages/$pkg" && "$poetry" build -q --output "$ROOT/dist")
  done
  ls dist
}

cmd_clean() {
  rm -rf .venv .venvs .tools dist build .pytest_cache .ruff_cache .hypothesis
  find . -name __pycache__ -type d -prune -exec rm -rf {} +
}

command=${1:-help}
[ $# -gt 0 ] && shift
case "$command" in
  setup) cmd_setup ;;
  test) cmd_test "$@" ;;
  run) cmd_run "$@" ;;
  check) cmd_check "$@" ;;
  defconfig) cmd_defconfig ;;
  images) cmd_images ;;
  build) cmd_build ;;
  clean) cmd_clean ;;
  help|-h|--help) usage ;;
  *) usage >&2; die "unknown command '$command'" ;;
esac
