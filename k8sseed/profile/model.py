"""The validated, defaulted profile as frozen dataclasses."""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass
from enum import Enum
from typing import Any

from k8sseed.profile.checks import endpoint_host_port
from k8sseed.registry_trust import mirror_registry_hosts
from k8sseed.versions import ETCD_DEFAULT, ETCD_RELEASES


class Role(str, Enum):
    CONTROL_PLANE = "control-plane"
    WORKER = "worker"
    ETCD = "etcd"  # an external etcd member (cluster.topology external-etcd)


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str | None = None


@dataclass(frozen=True)
class NodeBmc:
    """The machine's BMC for `k8sseed attach`: its Redfish service and, optionally, the system's Id."""

    redfish: str
    system_id: str | None = None


@dataclass(frozen=True)
class Node:
    name: str
    role: Role
    ip: ipaddress.IPv4Interface
    mac: str
    gateway: ipaddress.IPv4Address | None
    interface_name: str | None
    arch: str
    labels: tuple[tuple[str, str], ...]
    taints: tuple[Taint, ...] | None
    serial: str | None = None  # SMBIOS system serial number, for the seed server's /by-serial/
    system_uuid: str | None = None  # SMBIOS system UUID, lower-case, for /by-uuid/
    bmc: NodeBmc | None = None  # for k8sseed attach (Redfish virtual media)
    install: str | None = None  # "ubuntu-autoinstall": PXE-installed onto a blank disk by k8sseed serve

    @property
    def address(self) -> str:
        return str(self.ip.ip)

    @property
    def is_control_plane(self) -> bool:
        return self.role is Role.CONTROL_PLANE

    @property
    def is_etcd(self) -> bool:
        return self.role is Role.ETCD


@dataclass(frozen=True)
class User:
    name: str
    sudo: bool
    ssh_authorized_keys: tuple[str, ...]
    password: str | None
    hashed_password: str | None
    shell: str


@dataclass(frozen=True)
class Cluster:
    name: str
    kubernetes_version: str
    endpoint_host: str
    endpoint_port: int
    pod_subnet: str
    service_subnet: str
    dns_domain: str
    topology: str
    api_server_port: int
    bootstrap_token_ttl: str | None  # None: time-window tokens (bootstrap_token_window_days)
    join_timeout_seconds: int
    pki_not_before: str
    ca_validity_days: int
    bootstrap_token_window_days: int = 7

    @property
    def control_plane_endpoint(self) -> str:
        return f"{self.endpoint_host}:{self.endpoint_port}"


@dataclass(frozen=True)
class Ipvs:
    scheduler: str
    strict_arp: bool
    tcp_timeout: str | None
    tcp_fin_timeout: str | None
    udp_timeout: str | None


@dataclass(frozen=True)
class Mirrors:
    apt: str | None
    kubernetes_packages: str
    kubernetes_key: str | None  # URL or ASCII-armored block; None: k8sseed's default source
    kubernetes_key_fingerprint: str | None  # None: the pinned upstream fingerprint
    docker_packages: str
    docker_key: str | None
    docker_key_fingerprint: str | None
    image_repository: str
    cri_dockerd: str
    calico_operator: str
    calico_registry: str | None
    calicoctl: str
    purelb_crds: str
    purelb: str
    image_registries: tuple[tuple[str, str], ...]  # (registry host, mirror prefix), sorted
    docker_hub_mirrors: tuple[str, ...]
    registry_ca: str | None = None  # PEM CA certificate(s) of the site's private registry

    @property
    def registry_hosts(self) -> tuple[str, ...]:
        """The registries the nodes pull from through these mirrors (each trusts registry_ca)."""
        return mirror_registry_hosts(self.image_repository, self.calico_registry,
                                     (prefix for _, prefix in self.image_registries), self.docker_hub_mirrors)


@dataclass(frozen=True)
class HealthCheck:
    interval_seconds: int
    failures: int
    successes: int


@dataclass(frozen=True)
class Keepalived:
    virtual_router_id: int
    haproxy_port: int


@dataclass(frozen=True)
class BgpPeer:
    name: str
    address: ipaddress.IPv4Address
    as_number: int
    password: bool
    node_selector: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Bfd:
    enabled: bool
    interval_ms: int
    multiplier: int

    @property
    def detection_ms(self) -> int:
        return self.interval_ms * self.multiplier


@dataclass(frozen=True)
class Bgp:
    as_number: int
    calico_listen_port: int
    bfd: Bfd
    hold_time: int
    peers: tuple[BgpPeer, ...]

    @property
    def keepalive_time(self) -> int:
        """RFC 4271's suggestion: a third of the hold time."""
        return max(1, self.hold_time // 3)


@dataclass(frozen=True)
class Calico:
    version: str | None
    encapsulation: str | None
    nat_outgoing: bool
    block_size: int
    node_to_node_mesh: bool
    advertise_service_cluster_ips: bool
    service_external_ips: tuple[str, ...]
    calicoctl_sha256: str | None


@dataclass(frozen=True)
class LBPool:
    name: str
    subnet: ipaddress.IPv4Network
    range: str | None
    aggregation: str


@dataclass(frozen=True)
class PureLB:
    enabled: bool
    version: str
    pools: tuple[LBPool, ...]


@dataclass(frozen=True)
class Pxe:
    kernel: str
    initrd: str
    kernel_args: tuple[str, ...]


@dataclass(frozen=True)
class Autoinstall:
    """seedServer.autoinstall: the Ubuntu installer iPXE boots for nodes with install: ubuntu-autoinstall."""

    kernel: str
    initrd: str
    iso: str
    kernel_args: tuple[str, ...]
    layout: str  # subiquity storage layout: lvm or direct
    disk_match: tuple[tuple[str, str | bool], ...]  # subiquity's layout match, sorted by key


@dataclass(frozen=True)
class SeedServer:
    url: str | None
    allowed_networks: tuple[ipaddress.IPv4Network, ...]  # empty: the node subnets and loopback
    hand_out_once: bool
    pxe: Pxe | None
    autoinstall: Autoinstall | None = None


@dataclass(frozen=True)
class Etcd:
    """The external etcd members' release: version and the tarball sums per arch."""

    version: str
    sha256: tuple[tuple[str, str], ...]  # (arch, sum); empty: none known (only a preinstalled etcd will do)
    mirror: str  # tarball URL with {version} and {arch}

    def sha256_for(self, arch: str) -> str | None:
        return dict(self.sha256).get(arch)


@dataclass(frozen=True)
class SysextImage:
    """os.flatcar.sysext.NAME: a systemd-sysext image Ignition downloads and checks."""

    name: str  # the extension's name: /etc/extensions/NAME.raw, extension-release.NAME
    url: str  # with {arch}
    sha256: tuple[tuple[str, str], ...]  # (arch, sum)

    def url_for(self, arch: str) -> str:
        return self.url.replace("{arch}", arch)

    def sha256_for(self, arch: str) -> str | None:
        return dict(self.sha256).get(arch)


@dataclass(frozen=True)
class Flatcar:
    """os.flatcar: what Flatcar nodes download, since they have no package manager."""

    kubernetes_binaries: str  # URL with {version}, {arch}, {binary}
    kubernetes_sha256: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (arch, ((binary, sum), ...))
    sysext: tuple[SysextImage, ...] = ()  # os.flatcar.sysext, by name

    def sums_for(self, arch: str) -> dict[str, str]:
        return dict(dict(self.kubernetes_sha256).get(arch, ()))

    def sysext_image(self, name: str) -> SysextImage | None:
        return next((image for image in self.sysext if image.name == name), None)


def _flatcar(raw: dict[str, Any]) -> Flatcar:
    return Flatcar(raw["kubernetesBinaries"],
                   tuple((arch, tuple(sorted(sums.items()))) for arch, sums in sorted(raw["kubernetesSha256"].items())),
                   tuple(SysextImage(name, image["url"], tuple(sorted(image["sha256"].items())))
                         for name, image in sorted(raw.get("sysext", {}).items())))


@dataclass(frozen=True)
class Profile:
    cluster: Cluster
    lb_mode: str
    health_check: HealthCheck
    keepalived: Keepalived
    bgp: Bgp | None
    calico: Calico
    purelb: PureLB
    docker_source: str
    docker_version: str | None
    cri_dockerd_version: str | None
    cri_dockerd_sha256: tuple[tuple[str, str], ...]  # (arch, sum of that arch's tarball)
    kube_proxy_mode: str
    ipvs: Ipvs
    gateway: ipaddress.IPv4Address | None
    nameservers: tuple[str, ...]
    search_domains: tuple[str, ...]
    mtu: int | None
    mirrors: Mirrors
    os_family: str
    timezone: str
    ntp_servers: tuple[str, ...]
    users: tuple[User, ...]
    nodes: tuple[Node, ...]
    acknowledged: frozenset[str] = frozenset()  # warning ids the profile accepts
    seed_server: SeedServer | None = None
    etcd: Etcd | None = None  # set with cluster.topology external-etcd
    flatcar: Flatcar | None = None  # os.flatcar: only with os_family flatcar

    @property
    def external_etcd(self) -> bool:
        return self.cluster.topology == "external-etcd"

    def cri_dockerd_sha256_for(self, arch: str) -> str | None:
        return dict(self.cri_dockerd_sha256).get(arch)


def apply_defaults(schema: dict[str, Any], data: Any, defs: dict[str, Any]) -> Any:
    """Fill in the schema's defaults, recursively, on a copy of data."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    if isinstance(data, dict) and "properties" in schema:
        out = dict(data)
        for key, sub in schema["properties"].items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(sub, out[key], defs)
        return out
    if isinstance(data, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item, defs) for item in data]
    return data


def _node(raw: dict[str, Any]) -> Node:
    taints = raw.get("taints")
    return Node(
        name=raw["name"], role=Role(raw["role"]), ip=ipaddress.IPv4Interface(raw["ip"]), mac=raw["mac"].lower(),
        gateway=ipaddress.IPv4Address(raw["gateway"]) if raw.get("gateway") else None,
        interface_name=raw.get("interfaceName"), arch=raw["arch"],
        labels=tuple(sorted(raw["labels"].items())),
        taints=None if taints is None else tuple(Taint(t["key"], t["effect"], t.get("value")) for t in taints),
        serial=raw.get("serial"), system_uuid=raw["systemUuid"].lower() if raw.get("systemUuid") else None,
        bmc=NodeBmc(raw["bmc"]["redfish"].rstrip("/"), raw["bmc"].get("systemId")) if raw.get("bmc") else None,
        install=raw.get("install"),
    )


def _seed_server(raw: dict[str, Any]) -> SeedServer:
    pxe = raw.get("pxe")
    return SeedServer(
        url=raw.get("url"),
        allowed_networks=tuple(ipaddress.IPv4Network(n, strict=False) for n in raw["allowedNetworks"]),
        hand_out_once=raw["handOutOnce"],
        pxe=None if pxe is None else Pxe(pxe["kernel"], pxe["initrd"], tuple(pxe["kernelArgs"])),
        autoinstall=_autoinstall(raw["autoinstall"]) if "autoinstall" in raw else None,
    )


def _autoinstall(raw: dict[str, Any]) -> Autoinstall:
    storage = raw["storage"]
    return Autoinstall(raw["kernel"], raw["initrd"], raw["iso"], tuple(raw["kernelArgs"]), storage["layout"],
                       tuple(sorted(storage["match"].items())))


def _bgp(raw: dict[str, Any]) -> Bgp:
    return Bgp(
        as_number=raw["asNumber"], calico_listen_port=raw["calicoListenPort"],
        bfd=Bfd(raw["bfd"]["enabled"], raw["bfd"]["intervalMilliseconds"], raw["bfd"]["multiplier"]),
        hold_time=raw["holdTimeSeconds"],
        peers=tuple(BgpPeer(p["name"], ipaddress.IPv4Address(p["address"]), p["asNumber"], p["password"],
                            tuple(sorted(p["nodeSelector"].items()))) for p in raw["peers"]),
    )


def _sums(cri_dockerd: dict[str, Any], nodes: tuple[Node, ...]) -> tuple[tuple[str, str], ...]:
    """Per-arch tarball sums; a plain sum belongs to the one arch all nodes share (checks.py sees to that)."""
    sums = cri_dockerd.get("sha256")
    if isinstance(sums, str):
        return tuple((arch, sums) for arch in sorted({n.arch for n in nodes}))
    return tuple(sorted((sums or {}).items()))


def _etcd(raw: dict[str, Any], mirror: str) -> Etcd:
    version = raw.get("version") or ETCD_DEFAULT
    sums = raw.get("sha256") or ETCD_RELEASES.get(version, {})
    return Etcd(version, tuple(sorted(sums.items())), mirror)


def _fingerprint(text: str | None) -> str | None:
    return text.upper() if text else None


def build_model(data: dict[str, Any]) -> Profile:
    nodes = tuple(_node(n) for n in data["nodes"])
    c = data["cluster"]
    host, port = endpoint_host_port(c["controlPlaneEndpoint"], c["apiServerPort"])
    cluster = Cluster(
        name=c["name"], kubernetes_version=c["kubernetesVersion"].lstrip("v"), endpoint_host=host, endpoint_port=port,
        pod_subnet=c["podSubnet"], service_subnet=c["serviceSubnet"], dns_domain=c["dnsDomain"],
        topology=c["topology"], api_server_port=c["apiServerPort"], bootstrap_token_ttl=c.get("bootstrapTokenTTL"),
        join_timeout_seconds=c["joinTimeoutSeconds"], pki_not_before=c["pki"]["notBefore"],
        ca_validity_days=c["pki"]["caValidityDays"], bootstrap_token_window_days=c["bootstrapTokenWindowDays"],
    )
    rt, kp, net, mi, os_ = data["runtime"], data["kubeProxy"], data["network"], data["mirrors"], data["os"]
    ipvs = kp["ipvs"]
    lb, ca, pl = data["controlPlaneLB"], data["calico"], data["purelb"]
    hc, ka = lb["healthCheck"], lb["keepalived"]
    return Profile(
        cluster=cluster,
        lb_mode=lb["mode"],
        health_check=HealthCheck(hc["intervalSeconds"], hc["failures"], hc["successes"]),
        keepalived=Keepalived(ka["virtualRouterId"], ka["haproxyPort"]),
        bgp=_bgp(data["bgp"]) if "bgp" in data else None,
        calico=Calico(ca.get("version"), ca.get("encapsulation"), ca["natOutgoing"], ca["blockSize"],
                      ca["nodeToNodeMesh"], ca["advertiseServiceClusterIPs"], tuple(ca["serviceExternalIPs"]),
                      ca.get("calicoctlSha256")),
        purelb=PureLB(pl["enabled"], pl["version"],
                      tuple(LBPool(p["name"], ipaddress.IPv4Network(p["subnet"]), p.get("range"), p["aggregation"])
                            for p in pl["pools"])),
        docker_source=rt["docker"]["source"], docker_version=rt["docker"].get("version"),
        cri_dockerd_version=rt["criDockerd"].get("version"), cri_dockerd_sha256=_sums(rt["criDockerd"], nodes),
        kube_proxy_mode=kp["mode"],
        ipvs=Ipvs(ipvs["scheduler"], ipvs["strictARP"], ipvs.get("tcpTimeout"), ipvs.get("tcpFinTimeout"),
                  ipvs.get("udpTimeout")),
        gateway=ipaddress.IPv4Address(net["gateway"]) if net.get("gateway") else None,
        nameservers=tuple(net["nameservers"]), search_domains=tuple(net["searchDomains"]), mtu=net.get("mtu"),
        mirrors=Mirrors(mi.get("apt"), mi["kubernetesPackages"], mi.get("kubernetesKey"),
                        _fingerprint(mi.get("kubernetesKeyFingerprint")), mi["dockerPackages"], mi.get("dockerKey"),
                        _fingerprint(mi.get("dockerKeyFingerprint")), mi["imageRepository"],
                        mi["criDockerd"], mi["calicoOperator"], mi.get("calicoRegistry"), mi["calicoctl"],
                        mi["purelbCRDs"], mi["purelb"], tuple(sorted(mi["imageRegistries"].items())),
                        tuple(mi["dockerHubMirrors"]), mi.get("registryCA")),
        os_family=os_["family"], timezone=os_["timezone"], ntp_servers=tuple(os_["ntpServers"]),
        users=tuple(User(u["name"], u["sudo"], tuple(u["sshAuthorizedKeys"]), u.get("password"),
                         u.get("hashedPassword"), u["shell"]) for u in os_["users"]),
        nodes=nodes,
        acknowledged=frozenset(data["acknowledge"]),
        seed_server=_seed_server(data["seedServer"]) if "seedServer" in data else None,
        etcd=_etcd(data["etcd"], mi["etcd"]) if c["topology"] == "external-etcd" else None,
        flatcar=_flatcar(os_["flatcar"]) if "flatcar" in os_ else None,
    )
