#!/bin/bash
# Install Debian packages without starting their daemons, and leave every unit they enable disabled: the tests
# need etcd, BIRD, FRR, HAProxy and Keepalived as programs, and a developer's machine should not start an etcd, a
# BGP daemon and a load balancer at boot because someone ran `make deps`. Works with and without a running systemd
# (systemctl enables and disables units offline; it stops them only where systemd runs).
# Usage (as root): tools/apt-install-disabled.sh PACKAGE...
set -euo pipefail

POLICY_RC_D="${POLICY_RC_D:-/usr/sbin/policy-rc.d}"
SYSTEMD_RUNNING_MARK="${SYSTEMD_RUNNING_MARK:-/run/systemd/system}"  # exists when systemd is PID 1 (sd_booted)

enabled_units() {
  { systemctl list-unit-files --state=enabled --no-legend --no-pager 2>/dev/null || true; } | awk '{print $1}' | sort -u
}

forbid_service_starts() {
  # invoke-rc.d, which package scripts start daemons through, asks policy-rc.d first: 101 is "action forbidden".
  # An existing policy belongs to whoever set up this machine: keep it as it is.
  [[ ! -e $POLICY_RC_D ]] || return 1
  printf '#!/bin/sh\n# written by k8sseed tools/apt-install-disabled.sh while packages install\nexit 101\n' \
    >"$POLICY_RC_D"
  chmod 0755 "$POLICY_RC_D"
}

install_packages() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

disable_new_units() {
  local before="$1" unit
  local -a added
  mapfile -t added < <(comm -13 <(printf '%s\n' "$before") <(enabled_units) | sed '/^$/d')
  for unit in "${added[@]}"; do
    systemctl disable --quiet "$unit" || echo "apt-install-disabled: could not disable $unit: disable it by hand" >&2
    if [[ -d $SYSTEMD_RUNNING_MARK ]]; then
      systemctl stop "$unit" || true
    fi
  done
  if (( ${#added[@]} )); then
    echo "apt-install-disabled: left disabled (the packages just installed had enabled them): ${added[*]}"
  fi
}

main() {
  local before
  before="$(enabled_units)"
  if forbid_service_starts; then
    trap 'rm -f "$POLICY_RC_D"' EXIT
  fi
  install_packages "$@"
  disable_new_units "$before"
}

main "$@"
