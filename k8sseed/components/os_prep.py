"""Phase 1, prepare-os: kernel modules, sysctls, the packages kube-proxy and kubeadm expect."""

from __future__ import annotations

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan

BASE_MODULES = ("overlay", "br_netfilter")
IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack")
# apparmor: Docker (Debian's docker.io as Docker CE) only recommends it, but on a kernel with AppArmor enabled
# dockerd refuses to start any container without apparmor_parser ("AppArmor enabled on system but the
# docker-default profile could not be loaded"): found by the real VM run on a Debian image without it.
BASE_PACKAGES = ("curl", "ca-certificates", "gnupg", "conntrack", "socat", "ethtool", "iptables", "ipset",
                 "ipvsadm", "bird2", "apparmor")
# Flatcar has no package manager: the bootstrap checks that its image has these commands (it ships them).
FLATCAR_COMMANDS = ("curl", "conntrack", "socat", "ethtool", "iptables", "ipset", "ipvsadm", "jq")
SYSCTLS = (
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
    ("net.ipv4.ip_forward", "1"),
)


def kernel_modules(plan: ClusterPlan) -> tuple[str, ...]:
    if plan.profile.kube_proxy_mode != "ipvs":
        return BASE_MODULES
    scheduler = f"ip_vs_{plan.profile.ipvs.scheduler}"
    modules = BASE_MODULES + IPVS_MODULES
    return modules if scheduler in modules else (*modules, scheduler)


def os_prep_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    modules = kernel_modules(plan)
    return NodeFragment(
        files=(
            NodeFile("/etc/modules-load.d/k8sseed.conf",
                     "# Loaded at boot for Docker, bridged pod traffic and kube-proxy (k8sseed)\n"
                     + "".join(f"{m}\n" for m in modules)),
            NodeFile("/etc/sysctl.d/90-k8sseed.conf",
                     "# Kubernetes networking (k8sseed)\n" + "".join(f"{k} = {v}\n" for k, v in SYSCTLS)),
        ),
        env=(("K8SSEED_KERNEL_MODULES", modules),
             ("K8SSEED_OS_PACKAGES", FLATCAR_COMMANDS if plan.flatcar else BASE_PACKAGES)),
    )
