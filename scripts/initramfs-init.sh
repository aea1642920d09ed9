#!/bin/sh
# /init of the axvisor Linux test initramfs (scripts/build-initramfs.py puts this file there).
#
# Prints the marker line first (the boot benchmark measures the time to it), mounts proc, sys
# and devtmpfs, loads the kernel modules listed in /lib/modules/$(uname -r)/modules.load (in
# dependency order, built by build-initramfs.py) and then does what init.script= on the kernel
# command line says:
#
#   init.script=poweroff  power off right after the marker and the mounts, loading nothing
#   init.script=check     load the modules, check each virtio device present, print
#                         "axvisor-init: check ok" or "axvisor-init: check failed: ...", power off
#   init.script=shell     (the default) load the modules, run a shell on the console
#                         (setsid cttyhack sh), power off when it exits
#   init.script=/PATH     load the modules, run /PATH with sh (an --extra-file), power off
#
# axvisor.ip=ADDRESS/PREFIX (with shell or /PATH) gives eth0 that address once the modules are
# loaded, so two VMs on one link can reach each other without typing.
#
# The init never exits: the kernel panics when init does. Powering off is `poweroff -f`, a
# reboot(2) straight to the kernel's SBI/PSCI/ACPI power-off.

echo "axvisor-init: starting"
export PATH=/bin HOME=/root

say() { echo "axvisor-init: $*"; }

stop() {
  sync
  poweroff -f
  sleep 2
  say "poweroff failed; halting here"
  while :; do sleep 3600; done
}

mount -t proc proc /proc || say "cannot mount /proc"
mount -t sysfs sysfs /sys || say "cannot mount /sys"
mount -t devtmpfs devtmpfs /dev || say "cannot mount /dev (devtmpfs)"

script=shell
address=
for arg in $(cat /proc/cmdline); do
  case $arg in
    init.script=*) script=${arg#init.script=} ;;
    axvisor.ip=*) address=${arg#axvisor.ip=} ;;
  esac
done

[ "$script" = poweroff ] && stop

load_modules() {  # insmod each module of modules.load in order; false if any failed
  release=$(uname -r)
  dir=/lib/modules/$release
  if [ ! -f "$dir/modules.load" ]; then
    say "no modules for kernel $release in this initramfs (built for: $(ls /lib/modules))"
    return 1
  fi
  loaded=0
  failed=
  while read -r path; do
    if insmod "$dir/$path"; then
      loaded=$((loaded + 1))
    else
      name=${path##*/}
      failed="$failed ${name%.ko}"
    fi
  done < "$dir/modules.load"
  say "modules loaded: $loaded${failed:+; failed:$failed}"
  [ -z "$failed" ]
}

wait_for() {  # wait_for PATH: up to 5 s for a device node to appear
  i=0
  while [ ! -e "$1" ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  [ -e "$1" ]
}

check() {  # check each virtio device present; say which were absent
  failures=
  fail() { say "check: $*"; failures="$failures; $*"; }
  load_modules || fail "modules did not load"
  if wait_for /dev/vda; then
    if mount -t ext4 -o ro /dev/vda /mnt; then
      say "disk: /hello.txt: $(cat /mnt/hello.txt)"
      if [ -f /mnt/bench.bin.sha256 ]; then
        if (cd /mnt && sha256sum -c -s bench.bin.sha256); then say "disk: /bench.bin checksum ok"; else fail "/bench.bin checksum mismatch"; fi
      fi
      umount /mnt
    else
      fail "cannot mount /dev/vda as ext4"
    fi
  else
    say "disk: no /dev/vda"
  fi
  rng=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
  if [ -n "$rng" ] && [ "$rng" != none ]; then
    bytes=$(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
    if [ ${#bytes} -eq 32 ]; then say "hwrng: $rng: $bytes"; else fail "hwrng $rng gave '${bytes}'"; fi
  else
    say "hwrng: none"
  fi
  if [ -e /dev/hvc0 ]; then
    if echo "axvisor-init: hello on hvc0" > /dev/hvc0; then say "console: wrote to /dev/hvc0"; else fail "cannot write /dev/hvc0"; fi
  else
    say "console: no /dev/hvc0"
  fi
  for net in /sys/class/net/eth*; do
    [ -e "$net" ] || { say "net: no ethernet device"; break; }
    if ip link set "${net##*/}" up; then say "net: ${net##*/} up, $(cat "$net/address")"; else fail "cannot bring ${net##*/} up"; fi
  done
  if [ -z "$failures" ]; then
    say "check ok (uptime $(cut -d' ' -f1 /proc/uptime) s)"
  else
    say "check failed: ${failures#; }"
  fi
}

configure_network() {  # eth0 gets axvisor.ip= when the command line gives one
  [ -n "$address" ] || return 0
  wait_for /sys/class/net/eth0 || { say "net: no eth0 for $address"; return 1; }
  ip addr add "$address" dev eth0 && ip link set eth0 up && say "net: eth0 $address"
}

hostname axvisor
case $script in
  check)
    check
    ;;
  /*)
    load_modules
    configure_network
    sh "$script"
    say "$script exited with status $?"
    ;;
  *)
    [ "$script" = shell ] || say "unknown init.script=$script (expected poweroff, check, shell or /PATH); starting a shell"
    load_modules
    configure_network
    say "ready; exit the shell to power off"
    PS1='axvisor# ' setsid cttyhack sh
    ;;
esac
stop
