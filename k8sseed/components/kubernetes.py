"""Phases 3 and 5: Kubernetes packages, pre-placed shared PKI and the kubeadm configs."""

from __future__ import annotations

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.components.kubeadm_config import init_documents, init_token_env, join_configuration
from k8sseed.plan import ClusterPlan, Duty, NodePlan
from k8sseed.templating import render
from k8sseed.yamltext import dump_all, dump_documents

# The seed keeps the shared PKI here; the bootstrap copies it into /etc/kubernetes/pki before every init or
# control-plane join, because `kubeadm reset` (run before retrying a cut-off init or join) empties that directory.
PKI_DIR = "/etc/k8sseed/pki"


def shared_pki_files(plan: ClusterPlan) -> tuple[NodeFile, ...]:
    """The 8 files every stacked control-plane node must share (placed into /etc/kubernetes/pki by the
    bootstrap); kubeadm makes the per-node rest. With external etcd the etcd CA key stays with the build: the
    control plane gets its etcd client certificate ready-made (external_etcd.py)."""
    pki = plan.pki
    etcd_ca_key = () if plan.external_etcd else (NodeFile(f"{PKI_DIR}/etcd/ca.key", pki.etcd_ca.key_pem, "0600"),)
    return (
        NodeFile(f"{PKI_DIR}/ca.crt", pki.ca.cert_pem),
        NodeFile(f"{PKI_DIR}/ca.key", pki.ca.key_pem, "0600"),
        NodeFile(f"{PKI_DIR}/front-proxy-ca.crt", pki.front_proxy_ca.cert_pem),
        NodeFile(f"{PKI_DIR}/front-proxy-ca.key", pki.front_proxy_ca.key_pem, "0600"),
        NodeFile(f"{PKI_DIR}/etcd/ca.crt", pki.etcd_ca.cert_pem),
        *etcd_ca_key,
        NodeFile(f"{PKI_DIR}/sa.key", pki.sa_key_pem, "0600"),
        NodeFile(f"{PKI_DIR}/sa.pub", pki.sa_pub_pem),
    )


KUBERNETES_BINARIES = ("kubeadm", "kubelet", "kubectl")


def flatcar_kubelet_files(plan: ClusterPlan) -> tuple[NodeFile, ...]:
    """What the kubelet package brings elsewhere: its unit and kubeadm's drop-in, for the binary in /opt/bin."""
    kubelet = f"{plan.bin_dir}/kubelet"
    return (
        NodeFile("/etc/systemd/system/kubelet.service", render("kubelet.service.j2", kubelet=kubelet)),
        NodeFile("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
                 render("kubelet-kubeadm.conf.j2", kubelet=kubelet)),
    )


def flatcar_downloads(plan: ClusterPlan, node: NodePlan) -> tuple[tuple[str, str], ...]:
    """K8SSEED_<BINARY>_URL and _SHA256 for the bootstrap's downloads on Flatcar."""
    flatcar = plan.profile.flatcar
    assert flatcar is not None, "the profile checks require os.flatcar with os.family flatcar"
    sums = flatcar.sums_for(node.node.arch)
    version = plan.profile.cluster.kubernetes_version
    return tuple(pair for binary in KUBERNETES_BINARIES for pair in (
        (f"K8SSEED_{binary.upper()}_URL",
         flatcar.kubernetes_binaries.format(version=version, arch=node.node.arch, binary=binary)),
        (f"K8SSEED_{binary.upper()}_SHA256", sums[binary])))


def kubernetes_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    c = plan.profile.cluster
    files = [NodeFile("/etc/k8sseed/cluster-ca.crt", plan.pki.ca.cert_pem)]
    if node.node.is_control_plane:
        files += shared_pki_files(plan)
    if node.duty is Duty.INIT:
        files.append(NodeFile("/etc/k8sseed/kubeadm-init.yaml", dump_all(init_documents(plan, node)), "0600"))
    # Every control-plane node, the init node included (split-brain guard), can join as control plane.
    join = join_configuration(plan, node, node.node.is_control_plane)
    files.append(NodeFile("/etc/k8sseed/kubeadm-join.yaml", dump_documents([join]), "0600"))
    if plan.flatcar:
        files += flatcar_kubelet_files(plan)
    return NodeFragment(
        files=tuple(files),
        env=(
            ("K8SSEED_KUBERNETES_VERSION", c.kubernetes_version),
            ("K8SSEED_KUBERNETES_REPO", plan.kubernetes_repo_url),
            ("K8SSEED_DUTY", node.duty.value),
            ("K8SSEED_API_ENDPOINT", c.control_plane_endpoint),
            ("K8SSEED_API_PORT", str(c.api_server_port)),
            ("K8SSEED_API_PROBES", plan.api_probe_targets() if node.duty is Duty.INIT else ()),
            ("K8SSEED_JOIN_TIMEOUT", str(c.join_timeout_seconds)),
            *(init_token_env(plan) if node.duty is Duty.INIT else ()),
            *(flatcar_downloads(plan, node) if plan.flatcar else ()),
        ),
    )
