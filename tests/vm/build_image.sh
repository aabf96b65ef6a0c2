#!/bin/bash
# Build (or find in the cache) the Debian 12 VM image used by the k8sseed VM tests.
#
#   sudo tests/vm/build_image.sh            # build if needed, print IMAGE=/KERNEL=/INITRD= lines
#   tests/vm/build_image.sh --print         # print the paths if the image is cached, exit 3 if not
#   tests/vm/build_image.sh --key           # print the cache key only
#   sudo tests/vm/build_image.sh --prune    # build if needed, then delete other cached images
#
# The image is cached OUTSIDE the repository in ${K8SSEED_VM_CACHE:-/var/cache/k8sseed-vm}/<key>/
# where <key> is a sha256 of this script, of everything under tests/vm/guest/ and of
# $K8SSEED_VM_EXTRA_PACKAGES. It contains:
#   rootfs.img   raw ext4 root filesystem (whole-disk, no partition table: root=/dev/vda)
#   vmlinuz      the image's kernel, for direct kernel boot
#   initrd.img   its initramfs (virtio + ext4 modules only)
#   image.env    IMAGE=, KERNEL=, INITRD=, KEY=, BUILT_AT=, BUILD_SECONDS=
#   packages.txt dpkg -l of the image
# No loop device or mount of the image is needed: the ext4 image is populated with mkfs.ext4 -d.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${K8SSEED_VM_CACHE:-/var/cache/k8sseed-vm}"
MIRROR="${K8SSEED_VM_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
# K8SSEED_VM_FLAVOUR=real: no stand-ins (kubeadm, kubelet, kubectl, cri-dockerd, calicoctl and their units): the
# real ones arrive the way a site's mirror delivers them (make e2e-real). A bigger disk for images and etcd.
FLAVOUR="${K8SSEED_VM_FLAVOUR:-standin}"
case "$FLAVOUR" in standin) DEFAULT_SIZE=4G ;; real) DEFAULT_SIZE=10G ;;
  *) echo "build_image.sh: K8SSEED_VM_FLAVOUR is standin or real, not '$FLAVOUR'" >&2; exit 2 ;; esac
IMAGE_SIZE="${K8SSEED_VM_IMAGE_SIZE:-$DEFAULT_SIZE}"

# Packages the node bootstrap installs (so its apt-get install succeeds offline), plus what the
# image needs to boot and run cloud-init. Keep this list in sync with tests/vm/README.md.
BASE_INCLUDE="systemd,systemd-sysv,udev,kmod,iproute2,procps,ca-certificates,dbus"
PACKAGES=(
  linux-image-amd64 initramfs-tools e2fsprogs
  cloud-init dbus sudo openssh-server
  docker.io iptables apparmor
  bird2 ipvsadm ipset conntrack keepalived haproxy
  curl ca-certificates gnupg apt-transport-https chrony kmod iproute2 procps openssl jq
  socat ethtool ebtables lsb-release less locales
  etcd-server etcd-client
)
# shellcheck disable=SC2206
EXTRA=(${K8SSEED_VM_EXTRA_PACKAGES:-})

compute_key() {
  (
    cd "$HERE"
    printf 'extra=%s\n' "${K8SSEED_VM_EXTRA_PACKAGES:-}"
    if [ "$FLAVOUR" != standin ]; then printf 'flavour=%s\n' "$FLAVOUR"; fi
    find build_image.sh guest -type f | LC_ALL=C sort | while read -r f; do
      printf '%s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
      # the executable bit matters (git keeps only that; umask-dependent bits must not)
      if [ "$f" != build_image.sh ] && [ -x "$f" ]; then echo x; else echo -; fi
    done
  ) | sha256sum | cut -c1-16
}

KEY="$(compute_key)"
OUT="$CACHE/$KEY"

print_paths() {
  cat "$OUT/image.env"
}

case "${1:-}" in
  --key) echo "$KEY"; exit 0 ;;
  --print)
    if [ -f "$OUT/image.env" ]; then print_paths; exit 0; fi
    echo "image $KEY not built (run: sudo $0)" >&2; exit 3 ;;
  ""|--prune) ;;
  *) echo "usage: $0 [--print|--key|--prune]" >&2; exit 2 ;;
esac

if [ -f "$OUT/image.env" ] && [ "${1:-}" != --prune ]; then
  print_paths; exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "build_image.sh: must run as root to build (debootstrap/chroot)" >&2; exit 1
fi
for t in debootstrap mkfs.ext4 unshare sha256sum flock; do
  command -v "$t" >/dev/null || { echo "build_image.sh: missing $t (apt-get install debootstrap e2fsprogs util-linux)" >&2; exit 1; }
done

mkdir -p "$CACHE/debs"
exec 9>"$CACHE/.lock"
flock 9

if [ ! -f "$OUT/image.env" ]; then
  START=$(date +%s)
  WORK="$CACHE/tmp-$KEY-$$"
  ROOT="$WORK/root"
  rm -rf "$WORK"; mkdir -p "$ROOT"
  cleanup() {
    # never rm -rf through a mount (a bind-mounted /dev would take host device nodes with it)
    local m
    for m in $(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
    if awk -v w="$WORK/" 'index($2, w) == 1 {found=1} END {exit !found}' /proc/mounts; then
      echo "build_image.sh: mounts left under $WORK, not removing it" >&2; return
    fi
    rm -rf "$WORK"
  }
  trap cleanup EXIT
  log() { echo "[build_image $(date +%T)] $*" >&2; }

  log "debootstrap $SUITE (minbase) from $MIRROR into $ROOT"
  # in a private mount namespace: whatever debootstrap mounts in the target dies with it
  unshare --mount --propagation private debootstrap --variant=minbase --include="$BASE_INCLUDE" --cache-dir="$CACHE/debs" \
    "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
      tail -40 "$WORK/debootstrap.log" >&2; exit 1; }

  # lean: no docs, man pages, translations in anything installed from here on
  cat >"$ROOT/etc/dpkg/dpkg.cfg.d/01-k8sseed-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF
  cat >"$ROOT/etc/apt/apt.conf.d/90-k8sseed" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
  cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
  # never start services inside the chroot
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  echo "k8sseed-vm" >"$ROOT/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

  log "apt-get install ${#PACKAGES[@]}+${#EXTRA[@]} packages in chroot"
  mkdir -p "$CACHE/debs"
  # a private mount namespace: the chroot's mounts vanish when it exits, whatever happens
  unshare --mount --propagation private /bin/bash -euo pipefail -c '
    R="$1"; DEBS="$2"; shift 2
    mount -t proc proc "$R/proc"
    mount -t sysfs sysfs "$R/sys"
    mount --bind /dev "$R/dev"
    mount -t devpts devpts "$R/dev/pts" -o newinstance,ptmxmode=0666 || true
    mount --bind "$DEBS" "$R/var/cache/apt/archives"
    export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin
    chroot "$R" apt-get update -q
    chroot "$R" apt-get install -y -q -o Dpkg::Options::=--force-confold "$@"
    chroot "$R" apt-get clean
    umount "$R/var/cache/apt/archives"
  ' _ "$ROOT" "$CACHE/debs" "${PACKAGES[@]}" "${EXTRA[@]}" >"$WORK/apt.log" 2>&1 || {
      tail -60 "$WORK/apt.log" >&2; exit 1; }

  log "configuring image"
  # test-only files: stand-ins, cloud-init config, collector units
  cp -a --no-preserve=ownership "$HERE/guest/rootfs/." "$ROOT/"
  chmod 755 "$ROOT/usr/bin/kubeadm" "$ROOT/usr/bin/kubelet" "$ROOT/usr/bin/kubectl" \
    "$ROOT/usr/local/bin/cri-dockerd" "$ROOT/usr/local/bin/calicoctl" "$ROOT/usr/local/sbin/k8sseed-test-collect" \
    "$ROOT/usr/local/sbin/k8sseed-test-console"
  if [ "$FLAVOUR" = real ]; then
    rm -rf "$ROOT/usr/bin/kubeadm" "$ROOT/usr/bin/kubelet" "$ROOT/usr/bin/kubectl" "$ROOT/usr/local/bin/cri-dockerd" \
      "$ROOT/usr/local/bin/calicoctl" "$ROOT/usr/lib/k8sseed-standin" "$ROOT/etc/k8sseed-standin" \
      "$ROOT/etc/systemd/system/kubelet.service" "$ROOT/etc/systemd/system/kubelet.service.d"
  fi

  cat >"$ROOT/etc/fstab" <<'EOF'
/dev/vda  /  ext4  rw,errors=remount-ro  0  1
/swapfile none swap sw 0 0
EOF
  # a small swap file so that "swap off (and out of fstab)" is observable. Filled with 0xff, not
  # zeros: mkfs.ext4 -d would leave zero blocks as holes, and the kernel refuses a swapfile with holes
  head -c 64M /dev/zero | tr '\0' '\377' >"$ROOT/swapfile"
  chmod 600 "$ROOT/swapfile"
  mkswap "$ROOT/swapfile" >/dev/null

  # locale: cloud-init's locale module sets en_US.UTF-8 by default
  echo "en_US.UTF-8 UTF-8" >"$ROOT/etc/locale.gen"
  echo "LANG=en_US.UTF-8" >"$ROOT/etc/default/locale"

  # lean: no kernel modules for hardware a QEMU guest does not have (about 200 MB)
  for d in sound drivers/gpu drivers/media drivers/infiniband drivers/iio drivers/staging \
           drivers/net/wireless drivers/bluetooth net/bluetooth net/mac80211 \
           net/wireless drivers/isdn drivers/comedi; do
    rm -rf "$ROOT"/usr/lib/modules/*/kernel/"$d"
  done
  # Ethernet drivers: only e1000, the NIC of the netboot test (QEMU's iPXE ROM for it runs under SeaBIOS)
  for k in "$ROOT"/usr/lib/modules/*/kernel/drivers/net/ethernet; do
    find "$k" -mindepth 1 -maxdepth 1 ! -name intel -exec rm -rf {} +
    find "$k/intel" -mindepth 1 -maxdepth 1 ! -name e1000 -exec rm -rf {} +
  done

  # initramfs: only what is needed to mount an ext4 root on virtio-blk (small = fast under TCG)
  echo "MODULES=list" >"$ROOT/etc/initramfs-tools/conf.d/k8sseed.conf"
  # ahci/sr_mod/isofs too: the seed CD-ROM is then probed early, before cloud-init-local looks
  printf '%s\n' virtio_pci virtio_blk virtio_scsi virtio_net ext4 crc32c_generic ahci sr_mod cdrom isofs >>"$ROOT/etc/initramfs-tools/modules"

  unshare --mount --propagation private /bin/bash -euo pipefail -c '
    R="$1"
    mount -t proc proc "$R/proc"
    mount -t sysfs sysfs "$R/sys"
    mount --bind /dev "$R/dev"
    export LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin
    chroot "$R" locale-gen
    for k in "$R"/usr/lib/modules/*; do chroot "$R" depmod -a "$(basename "$k")"; done
    chroot "$R" update-initramfs -u -k all
    chroot "$R" systemctl enable systemd-networkd.service k8sseed-test-collect.service \
      k8sseed-test-console.service
    # nothing in the VM may reach out: no timers that fetch, no fsck-scrub churn
    chroot "$R" systemctl disable apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
      e2scrub_reap.service fstrim.timer 2>/dev/null || true
    chroot "$R" systemctl mask systemd-timesyncd.service 2>/dev/null || true
    # etcd-server is there for the kubeadm stand-in (stacked etcd as a transient unit): the packaged unit never runs
    chroot "$R" systemctl disable etcd.service 2>/dev/null || true
    chroot "$R" systemctl mask etcd.service
    # no login prompt on the serial console: its vhangup() would cut the test console mirror
    chroot "$R" systemctl mask serial-getty@ttyS0.service
    chroot "$R" passwd -l root
  ' _ "$ROOT" >>"$WORK/apt.log" 2>&1 || { tail -40 "$WORK/apt.log" >&2; exit 1; }

  # first-boot state: fresh machine-id, no ssh host keys, no cloud-init state, no leftovers
  rm -f "$ROOT/usr/sbin/policy-rc.d"
  : >"$ROOT/etc/machine-id"; rm -f "$ROOT/var/lib/dbus/machine-id"
  rm -f "$ROOT"/etc/ssh/ssh_host_*
  rm -rf "$ROOT/var/lib/cloud" "$ROOT/var/log/cloud-init"* "$ROOT/tmp/"* "$ROOT/var/tmp/"*
  rm -rf "$ROOT/usr/share/doc"/*/[!c]* "$ROOT/usr/share/man" "$ROOT/usr/share/info"
  find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  rm -f "$ROOT/etc/resolv.conf"; : >"$ROOT/etc/resolv.conf"   # the VMs have no DNS (restrict=on)
  find "$ROOT/var/log" -type f -exec truncate -s0 {} +
  chroot "$ROOT" dpkg -l >"$WORK/packages.txt"

  mkdir -p "$WORK/out"
  KVER=$(basename "$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -1)" | sed 's/^vmlinuz-//')
  cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/out/vmlinuz"
  cp "$ROOT/boot/initrd.img-$KVER" "$WORK/out/initrd.img"
  chmod 644 "$WORK/out/vmlinuz" "$WORK/out/initrd.img"

  log "mkfs.ext4 -d ($IMAGE_SIZE, $(du -sh "$ROOT" | cut -f1) used)"
  rm -f "$WORK/out/rootfs.img"
  truncate -s "$IMAGE_SIZE" "$WORK/out/rootfs.img"
  mkfs.ext4 -q -F -L k8sseed-root -E root_owner=0:0 -d "$ROOT" "$WORK/out/rootfs.img"
  mv "$WORK/packages.txt" "$WORK/out/packages.txt"
  cp "$WORK/apt.log" "$WORK/out/build.log"
  END=$(date +%s)
  cat >"$WORK/out/image.env" <<EOF
IMAGE=$OUT/rootfs.img
KERNEL=$OUT/vmlinuz
INITRD=$OUT/initrd.img
KERNEL_VERSION=$KVER
KEY=$KEY
BUILT_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
BUILD_SECONDS=$((END - START))
EOF
  rm -rf "$OUT"
  mv "$WORK/out" "$OUT"
  if [ "$FLAVOUR" = standin ]; then ln -sfn "$KEY" "$CACHE/current"; else ln -sfn "$KEY" "$CACHE/current-$FLAVOUR"; fi
  log "built $OUT in $((END - START)) s"
fi

if [ "${1:-}" = --prune ]; then
  for d in "$CACHE"/*/; do
    d="${d%/}"; b="$(basename "$d")"
    [ "$b" = "$KEY" ] || [ "$b" = debs ] || [ -L "$d" ] && continue
    # the other flavour's newest image stays
    for link in "$CACHE"/current*; do [ "$(readlink "$link")" = "$b" ] && continue 2; done
    rm -rf "$d"
  done
fi
print_paths
