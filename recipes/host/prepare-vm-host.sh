#!/bin/sh
# Makes a freshly installed Debian host ready to run a testbed's VMs; run over SSH as root, one
# step per call: `sh -c "$(cat prepare-vm-host.sh)" prepare-vm-host STEP ARGS...`.
# Every step is idempotent: it checks first and changes only what is missing, printing one
# `changed: ...` line per change (a second run prints none). A step's other output is
# `key: value` lines the controller reads (accel, nic, note).
#   packages ALLOW PKG...      the runtime's Debian packages; apt-get only for missing ones, and only
#                              when ALLOW is yes (otherwise a missing package fails the step)
#   kvm                        accel: kvm when /dev/kvm opens read-write, else tcg
#   disk DIR MB                a tmpfs of MB at DIR for the VMs' disk images (grown, never shrunk)
#   neigh DIR THRESH2 THRESH3  the kernel's neighbour table thresholds raised (DIR: .../neigh/default);
#                              a note instead where DIR is absent (a network namespace)
#   bridge BRIDGE [NIC]        the NIC facing the VMs (default: the one the SSH client came through)
#                              enslaved to BRIDGE, its IPv4 addresses and routes moved onto it
#   bridged BRIDGE             fails unless BRIDGE has a port and a global IPv4 address; nic: its port
set -eu
step=$1
shift

changed() { echo "changed: $*"; }

case "$step" in
packages)
  allow=$1
  shift
  missing=''
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
  done
  [ -z "$missing" ] && exit 0
  if [ "$allow" != yes ]; then
    echo "missing Debian packages:$missing (installing them is not allowed)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  changed "installed$missing"
  ;;

kvm)
  # Opening the device is the test: it exists without a usable KVM when nested virtualisation is off.
  if [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null; then echo 'accel: kvm'; else echo 'accel: tcg'; fi
  ;;

disk)
  dir=$1
  mb=$2
  want=$((mb * 1024 * 1024))
  mkdir -p "$dir"
  fstype=$(findmnt -n -o FSTYPE --mountpoint "$dir" || true)
  if [ -z "$fstype" ]; then
    mount -t tmpfs -o "size=${mb}m,mode=0755" kabootstrap "$dir"
    changed "tmpfs of ${mb} MB at $dir"
  elif [ "$fstype" != tmpfs ]; then
    echo "$dir is a $fstype mount, not tmpfs" >&2
    exit 1
  else
    have=$(findmnt -n -b -o SIZE --mountpoint "$dir")
    if [ "$have" -lt "$want" ]; then
      mount -o "remount,size=${mb}m" "$dir"
      changed "tmpfs at $dir grown to ${mb} MB"
    fi
  fi
  ;;

neigh)
  dir=$1
  if [ ! -e "$dir/gc_thresh3" ]; then
    # A host that is a network namespace (the local twin's) does not see the thresholds: they are
    # its machine's, raised there.
    echo "note: no neighbour table thresholds under $dir (a network namespace: its machine's apply)"
    exit 0
  fi
  for kv in "gc_thresh2=$2" "gc_thresh3=$3"; do
    k=${kv%%=*}
    v=${kv#*=}
    cur=$(cat "$dir/$k")
    if [ "$cur" -lt "$v" ]; then
      echo "$v" >"$dir/$k"
      changed "$k $cur -> $v"
    fi
  done
  ;;

bridge)
  br=$1
  nic=${2:-}
  if [ -z "$nic" ]; then
    # The NIC the controller's SSH session came through: on Grid'5000 the primary one, which
    # deployment put in the KaVLAN, where the VMs' network is.
    # shellcheck disable=SC2086 # SSH_CONNECTION is "client-ip client-port server-ip server-port"
    set -- $SSH_CONNECTION
    nic=$(ip -o route get "$1" | sed -n 's/.* dev \([^ ]*\).*/\1/p')
  fi
  [ -n "$nic" ] || {
    echo 'cannot tell which NIC faces the VMs' >&2
    exit 1
  }
  if [ "$nic" = "$br" ] || ip -o link show dev "$nic" | grep -q " master $br "; then
    echo "nic: $(ip -o link show master "$br" | sed -n '1s/^[0-9]*: \([^:@]*\).*/\1/p')"
    exit 0
  fi
  mac=$(cat "/sys/class/net/$nic/address")
  addrs=$(ip -o -4 addr show dev "$nic" scope global | awk '{print $4}')
  routes=$(ip -4 route show dev "$nic" | grep -v 'proto kernel' || true)
  # The move is one script run in a session of its own (setsid): the SSH session that started it
  # may stall or drop while the address changes NIC, and the script must finish either way (the
  # controller checks the result over a new connection). The bridge takes the NIC's MAC so that
  # neighbours' ARP entries, and so the session's packets, stay valid. On any failure it puts the
  # addresses and routes back on the NIC. Script and log have no fixed path: hosts that share a
  # file system (a local twin's namespaces) must not run each other's.
  move=$(
    echo 'restore() {'
    echo "  ip link set dev '$nic' nomaster 2>/dev/null"
    for a in $addrs; do echo "  ip addr del '$a' dev '$br' 2>/dev/null; ip addr add '$a' dev '$nic' 2>/dev/null"; done
    echo "$routes" | while read -r r; do if [ -n "$r" ]; then echo "  ip route replace $r dev '$nic' 2>/dev/null"; fi; done
    echo '  exit 1'
    echo '}'
    echo "ip link show dev '$br' >/dev/null 2>&1 || ip link add '$br' type bridge || exit 1"
    echo "ip link set dev '$br' address '$mac' && ip link set dev '$br' up || restore"
    echo "ip link set dev '$nic' master '$br' || restore"
    for a in $addrs; do echo "ip addr del '$a' dev '$nic' && ip addr add '$a' dev '$br' || restore"; done
    echo "$routes" | while read -r r; do if [ -n "$r" ]; then echo "ip route replace $r dev '$br' || restore"; fi; done
    echo 'exit 0'
  )
  log=$(mktemp)
  if ! setsid -w sh -c "$move" </dev/null >"$log" 2>&1; then
    echo "moving $nic into $br failed, put back: $(tail -n 3 "$log")" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  echo "nic: $nic"
  changed "$nic in bridge $br with$(echo "$addrs" | tr '\n' ' ' | sed 's/^/ /')"
  ;;

bridged)
  br=$1
  [ -n "$(ip -o link show master "$br")" ] || {
    echo "bridge $br has no port" >&2
    exit 1
  }
  ip -o -4 addr show dev "$br" scope global | grep -q inet || {
    echo "bridge $br has no IPv4 address" >&2
    exit 1
  }
  echo "nic: $(ip -o link show master "$br" | sed -n '1s/^[0-9]*: \([^:@]*\).*/\1/p')"
  ;;

*)
  echo "unknown step $step" >&2
  exit 2
  ;;
esac
