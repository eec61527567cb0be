#!/usr/bin/env bash
# Installs the Debian packages the local testbed uses on this machine (run as root).
# Idempotent: installs only what is missing. Nothing comes from anywhere but Debian's archive.
#   iproute2          network namespaces, veth pairs, bridges (ip)
#   procps            ps/pkill for checks and teardown
#   openssh-server    sshd on every emulated host; openssh-client to reach them
#   busybox-static    udhcpc/tftp clients for interop tests, and the VM initramfs
#   bind9-dnsutils    dig, curl: DNS and HTTP clients for interop tests
#   dnsmasq-base      the alternative services backend
#   ipxe              undionly.kpxe / ipxe.efi served by TFTP to PXE clients
#   radvd             the service nodes' bare IPv6 router advertisements: without one iPXE waits
#                     ≈16 s for IPv6 on every network boot
#   qemu-system-x86   the VMs (ipxe-qemu gives their network boot ROMs)
#   cpio              packing initramfs images
#   taktuk            exec/put/BroadcastEnv --method taktuk (emulated VMs run its engine too)
#   pdsh, clustershell  the peers `npm run bench -- exec` measures kabootstrap's exec against
#   netcat-openbsd    the `nc | tee | nc` chain `npm run bench -- broadcast` measures
#   dropbear-bin, kexec-tools, fdisk, e2fsprogs, libc-bin
#                     copied (with their libraries) into the deployment environment image
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
wanted=(iproute2 procps openssh-server openssh-client busybox-static bind9-dnsutils curl dnsmasq-base ipxe radvd
  qemu-system-x86 ipxe-qemu cpio taktuk pdsh clustershell netcat-openbsd dropbear-bin kexec-tools fdisk e2fsprogs libc-bin)
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "debian-packages: all ${#wanted[@]} packages present" >&2
  exit 0
fi
echo "debian-packages: installing ${missing[*]}" >&2
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
