"""ClusterPlan: every per-node decision, as pure data (no disk, no output formats)."""

from __future__ import annotations

import functools
import ipaddress
import time
from dataclasses import dataclass
from enum import Enum

from k8sseed.join_tokens import DAY, WindowToken, token_for_time
from k8sseed.pki import CertAndKey, ClusterPKI, issue_leaf
from k8sseed.profile.model import BgpPeer, Node, Profile
from k8sseed.repository_keys import (
    DOCKER_KEY_FINGERPRINT,
    KUBERNETES_KEY_FINGERPRINT,
    default_docker_key,
    default_kubernetes_key,
    is_inline_key,
)
from k8sseed.router_id import bird_router_id
from k8sseed.secrets import ClusterSecret
from k8sseed.versions import MinorFacts, cri_dockerd_sum, facts_for

CRI_SOCKET = "unix:///var/run/cri-dockerd.sock"
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380


@dataclass(frozen=True)
class EtcdMemberCerts:
    """What one external etcd member carries: its server certificate (also its client certificate towards its
    peers' client port) and its peer certificate, both from the etcd CA."""

    server: CertAndKey
    peer: CertAndKey


class Duty(str, Enum):
    """What a node does in phase 5 (kubeadm)."""

    INIT = "init"  # first control-plane node: kubeadm init (unless the split-brain guard finds a cluster)
    CONTROL_PLANE_JOIN = "control-plane-join"
    WORKER_JOIN = "worker-join"
    ETCD = "etcd"  # an external etcd member: runs etcd as a systemd service, no kubeadm


@dataclass(frozen=True)
class NodePlan:
    node: Node
    duty: Duty
    bootstrap_order: int  # 0 for the init node, then control planes, then workers

    @property
    def name(self) -> str:
        return self.node.name


@dataclass(frozen=True)
class ClusterPlan:
    profile: Profile
    facts: MinorFacts
    pki: ClusterPKI
    bootstrap_token: str
    nodes: tuple[NodePlan, ...]
    password_hashes: tuple[tuple[str, str], ...]  # (user, crypt hash)
    bgp_passwords: tuple[tuple[str, str], ...]  # (peer name, MD5 key) for peers with password: true
    vrrp_password: str
    status_keys: tuple[tuple[str, str], ...] = ()  # (node, hex HMAC key for its status reports)
    # external etcd: each etcd node's certificates, and each control plane's apiserver-etcd-client certificate
    etcd_member_certs: tuple[tuple[str, EtcdMemberCerts], ...] = ()
    etcd_client_certs: tuple[tuple[str, CertAndKey], ...] = ()
    secrets_encryption_key: str = ""  # base64 secretbox key for Secrets at rest (control-plane seeds only)

    # Time-window join tokens (the default): the build window's token (also in bootstrap_token) and the key control
    # planes derive the other windows' tokens from. None/"" with cluster.bootstrapTokenTTL.
    window_token: WindowToken | None = None
    bootstrap_token_key: str = ""  # hex

    @property
    def external_etcd(self) -> bool:
        return self.profile.external_etcd

    @property
    def etcd_nodes(self) -> tuple[NodePlan, ...]:
        return tuple(n for n in self.nodes if n.node.is_etcd)

    def etcd_certs_for(self, node: NodePlan) -> EtcdMemberCerts:
        return dict(self.etcd_member_certs)[node.name]

    def etcd_client_cert_for(self, node: NodePlan) -> CertAndKey:
        return dict(self.etcd_client_certs)[node.name]

    def etcd_client_url(self, node: NodePlan) -> str:
        return f"https://{node.node.address}:{ETCD_CLIENT_PORT}"

    def etcd_peer_url(self, node: NodePlan) -> str:
        return f"https://{node.node.address}:{ETCD_PEER_PORT}"

    @property
    def etcd_endpoints(self) -> tuple[str, ...]:
        return tuple(self.etcd_client_url(n) for n in self.etcd_nodes)

    @property
    def flatcar(self) -> bool:
        """Flatcar nodes: /usr is read-only, no package manager, no Python."""
        return self.profile.os_family == "flatcar"

    @property
    def sbin_dir(self) -> str:
        """Where k8sseed's node scripts go (Flatcar's /usr is read-only: /opt/bin, which is on its PATH)."""
        return "/opt/bin" if self.flatcar else "/usr/local/sbin"

    @property
    def bin_dir(self) -> str:
        """Where downloaded binaries go (cri-dockerd; on Flatcar also kubeadm, kubelet, kubectl)."""
        return "/opt/bin" if self.flatcar else "/usr/local/bin"

    def status_key(self, node: NodePlan) -> str:
        return self._status_key_by_node[node.name]

    @functools.cached_property
    def _status_key_by_node(self) -> dict[str, str]:
        """Built once (a dict per call made a 1000-node build quadratic)."""
        return dict(self.status_keys)

    @property
    def vip(self) -> ipaddress.IPv4Address | None:
        """The control-plane VIP k8sseed itself serves (bgp and keepalived-haproxy modes; node-local has none)."""
        if self.profile.lb_mode in ("external", "node-local"):
            return None
        return ipaddress.IPv4Address(self.profile.cluster.endpoint_host)

    def bgp_peers_for(self, node: NodePlan) -> tuple[BgpPeer, ...]:
        """Routers this node peers with: in its subnet, and matching the peer's node selector."""
        if self.profile.bgp is None:
            return ()
        labels = dict(node.node.labels)
        return tuple(p for p in self.profile.bgp.peers
                     if p.address in node.node.ip.network
                     and all(labels.get(k) == v for k, v in p.node_selector))

    def bird_router_id(self, node: NodePlan) -> str:
        """Router id of the host BIRD: never the node IP, which calico-node's BIRD uses."""
        return bird_router_id(node.node.ip.ip)

    @property
    def calico_version(self) -> str:
        return calico_version(self.profile, self.facts)

    @property
    def calico_encapsulation(self) -> str:
        if self.profile.calico.encapsulation:
            return self.profile.calico.encapsulation
        return "None" if self.profile.bgp else "VXLAN"

    @property
    def init_node(self) -> NodePlan:
        return next(n for n in self.nodes if n.duty is Duty.INIT)

    @property
    def control_planes(self) -> tuple[NodePlan, ...]:
        return tuple(n for n in self.nodes if n.node.is_control_plane)

    def earlier_control_planes(self, node: NodePlan) -> tuple[NodePlan, ...]:
        """The control planes a control-plane node waits for before it joins (each a started etcd member with a
        ready API server), in bootstrap order: stacked etcd grows one member at a time. Workers wait for none, and
        with external etcd nobody does: a control-plane join adds no etcd member there."""
        if not node.node.is_control_plane or self.external_etcd:
            return ()
        return tuple(sorted((cp for cp in self.control_planes if cp.bootstrap_order < node.bootstrap_order),
                            key=lambda cp: cp.bootstrap_order))

    def other_control_planes(self, node: NodePlan) -> tuple[NodePlan, ...]:
        """The etcd members a control plane may ask to remove its own member before a reset, in bootstrap order
        (none with external etcd: a control plane has no etcd member there)."""
        if not node.node.is_control_plane or self.external_etcd:
            return ()
        return tuple(sorted((cp for cp in self.control_planes if cp.name != node.name),
                            key=lambda cp: cp.bootstrap_order))

    @property
    def api_server_sans(self) -> tuple[str, ...]:
        names = [self.profile.cluster.endpoint_host]
        for cp in self.control_planes:
            names += [cp.node.address, cp.name]
        return tuple(dict.fromkeys(names))

    @property
    def cri_dockerd_version(self) -> str:
        return self.profile.cri_dockerd_version or self.facts.cri_dockerd

    @property
    def pause_image(self) -> str:
        return pause_image(self.profile, self.facts)

    def cri_dockerd_sha256(self, arch: str) -> str | None:
        """The sum a node checks its cri-dockerd tarball against: the profile's, else the version table's."""
        return self.profile.cri_dockerd_sha256_for(arch) or cri_dockerd_sum(self.cri_dockerd_version, arch)

    def cri_dockerd_url(self, arch: str) -> str:
        version = self.cri_dockerd_version
        return self.profile.mirrors.cri_dockerd.format(version=version, arch=arch)

    @property
    def kubernetes_repo_url(self) -> str:
        return self.profile.mirrors.kubernetes_packages.format(minor=self.facts.minor_text)

    @property
    def docker_repo_url(self) -> str:
        return self.profile.mirrors.docker_packages.format(family=self.profile.os_family)

    @property
    def kubernetes_key(self) -> str:
        """The Kubernetes repository key's source: a URL, or the ASCII-armored key itself."""
        chosen = self.profile.mirrors.kubernetes_key
        if chosen is None:
            return default_kubernetes_key(self.profile.mirrors.kubernetes_packages, self.kubernetes_repo_url)
        return chosen if is_inline_key(chosen) else chosen.format(minor=self.facts.minor_text)

    @property
    def kubernetes_key_fingerprint(self) -> str:
        return self.profile.mirrors.kubernetes_key_fingerprint or KUBERNETES_KEY_FINGERPRINT

    @property
    def docker_key(self) -> str:
        chosen = self.profile.mirrors.docker_key
        if chosen is None:
            return default_docker_key(self.docker_repo_url)
        return chosen if is_inline_key(chosen) else chosen.format(family=self.profile.os_family)

    @property
    def docker_key_fingerprint(self) -> str:
        return self.profile.mirrors.docker_key_fingerprint or DOCKER_KEY_FINGERPRINT

    def api_probe_targets(self) -> tuple[str, ...]:
        """Where the init node looks for an existing cluster before it inits: endpoint, then every CP."""
        c = self.profile.cluster
        targets = [c.control_plane_endpoint] + [f"{cp.node.address}:{c.api_server_port}" for cp in self.control_planes]
        return tuple(dict.fromkeys(targets))


def calico_version(profile: Profile, facts: MinorFacts) -> str:
    """The profile's Calico release, else the version table's for its Kubernetes minor."""
    return profile.calico.version or facts.calico


def pause_image(profile: Profile, facts: MinorFacts) -> str:
    """The sandbox image, as kubeadm pulls it and cri-dockerd is told to use it (through imageRepository)."""
    return f"{profile.mirrors.image_repository}/pause:{facts.pause}"


def _hash_passwords(profile: Profile, secret: ClusterSecret) -> tuple[tuple[str, str], ...]:
    hashes = []
    for user in profile.users:
        if user.hashed_password:
            hashes.append((user.name, user.hashed_password))
        elif user.password:
            from passlib.hash import sha512_crypt  # imported lazily: only builds with passwords pay for it

            hasher = sha512_crypt.using(salt=secret.password_salt(user.name), rounds=656000)
            hashes.append((user.name, hasher.hash(user.password)))
    return tuple(hashes)


def make_plan(profile: Profile, secret: ClusterSecret, pki: ClusterPKI, now: int | None = None) -> ClusterPlan:
    """`now`: the build's time in seconds since the epoch; it picks the join token's window (None: the clock)."""
    facts = facts_for(profile.cluster.kubernetes_version)
    if facts is None:  # the profile checks reject this first
        raise ValueError(f"unsupported Kubernetes version {profile.cluster.kubernetes_version}")
    first_cp = next(n for n in profile.nodes if n.is_control_plane)
    ordered = [first_cp] + [n for n in profile.nodes if n.is_control_plane and n is not first_cp]
    ordered += [n for n in profile.nodes if not n.is_control_plane and not n.is_etcd]
    # etcd members last: they wait for nobody (they form their cluster among themselves), and the init node
    # keeps order 0 as in every other topology.
    ordered += [n for n in profile.nodes if n.is_etcd]
    order = {n.name: i for i, n in enumerate(ordered)}

    def duty(node: Node) -> Duty:
        if node is first_cp:
            return Duty.INIT
        if node.is_etcd:
            return Duty.ETCD
        return Duty.CONTROL_PLANE_JOIN if node.is_control_plane else Duty.WORKER_JOIN

    nodes = tuple(NodePlan(n, duty(n), order[n.name]) for n in profile.nodes)
    peers = profile.bgp.peers if profile.bgp else ()
    bgp_passwords = tuple((p.name, secret.bgp_password(p.name)) for p in peers if p.password)
    member_certs, client_certs = _etcd_certs(profile, secret, pki) if profile.external_etcd else ((), ())
    window_token, token = None, secret.bootstrap_token
    if profile.cluster.bootstrap_token_ttl is None:
        window = profile.cluster.bootstrap_token_window_days * DAY
        window_token = token_for_time(secret.bootstrap_token_key, window, int(time.time()) if now is None else now)
        token = window_token.token
    return ClusterPlan(profile, facts, pki, token, nodes, _hash_passwords(profile, secret),
                       bgp_passwords, secret.vrrp_password,
                       tuple((n.name, secret.status_key(n.name)) for n in profile.nodes),
                       member_certs, client_certs,
                       secrets_encryption_key=secret.secrets_encryption_key, window_token=window_token,
                       bootstrap_token_key=secret.bootstrap_token_key.hex() if window_token else "")


def _etcd_certs(profile: Profile, secret: ClusterSecret, pki: ClusterPKI) -> tuple[
        tuple[tuple[str, EtcdMemberCerts], ...], tuple[tuple[str, CertAndKey], ...]]:
    """Every etcd member's server and peer certificate and every control plane's etcd client certificate,
    issued here from the etcd CA (no node but the build holds its key in this topology)."""
    members = []
    for n in profile.nodes:
        if n.is_etcd:
            names, ips = (n.name, "localhost"), (n.address, "127.0.0.1")
            members.append((n.name, EtcdMemberCerts(
                server=issue_leaf(secret, pki.etcd_ca, f"etcd-server/{n.name}", n.name, server=True,
                                  dns_names=names, ips=ips),
                peer=issue_leaf(secret, pki.etcd_ca, f"etcd-peer/{n.name}", n.name, server=True,
                                dns_names=names, ips=ips))))
    # kubeadm's name for the API server's etcd client certificate; one key per control plane.
    clients = tuple((n.name, issue_leaf(secret, pki.etcd_ca, f"apiserver-etcd-client/{n.name}",
                                        "kube-apiserver-etcd-client", server=False))
                    for n in profile.nodes if n.is_control_plane)
    return tuple(members), clients
