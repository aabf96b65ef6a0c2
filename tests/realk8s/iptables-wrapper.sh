#!/bin/sh
# iptables, ip6tables and their -save/-restore in the VM proof's kube-proxy image all point here. The first call
# picks the backend the node already uses (kubelet's KUBE-IPTABLES-HINT chain, else whichever holds more rules),
# points the six names at xtables-legacy-multi or xtables-nft-multi, and runs the command again through them.
# busybox sh: the image has no bash. The same logic as upstream's iptables-wrapper, written for this image.
set -eu

hint_in() {
    # shellcheck disable=SC2086 # $1 is the multi-call binary and its applet, two words on purpose
    { $1 iptables-save -t mangle || true; $1 ip6tables-save -t mangle || true; } 2>/dev/null | grep -q KUBE-IPTABLES-HINT
}

rule_count() {
    # shellcheck disable=SC2086
    { timeout 5 $1 iptables-save || true; timeout 5 $1 ip6tables-save || true; } 2>/dev/null | grep -c '^-' || true
}

select_mode() {
    if hint_in xtables-legacy-multi; then
        echo legacy
    elif hint_in xtables-nft-multi; then
        echo nft
    elif [ "$(rule_count xtables-legacy-multi)" -gt "$(rule_count xtables-nft-multi)" ]; then
        echo legacy
    else
        echo nft
    fi
}

mode="$(select_mode)"
for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    rm -f "/usr/sbin/$cmd"
    ln -s "xtables-$mode-multi" "/usr/sbin/$cmd"
done
exec "/usr/sbin/$(basename "$0")" "$@"
