"""Semantic checks the schema cannot express; each returns findings, never raises."""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import re
import string
from collections.abc import Callable, Iterator
from typing import Any

from k8sseed.errors import Finding, ProfileWarning
from k8sseed.profile.schema_check import profile_schema
from k8sseed.profile.source import Source
from k8sseed.registry_trust import ca_problem, mirror_registry_hosts
from k8sseed.repository_keys import (
    DOCKER_KEY_FINGERPRINT,
    KUBERNETES_KEY_FINGERPRINT,
    UPSTREAM_DOCKER_PACKAGES,
    UPSTREAM_KUBERNETES_PACKAGES,
    armored_key_fingerprints,
    is_inline_key,
)
from k8sseed.router_id import ROUTER_ID_NETWORK, bird_router_id
from k8sseed.versions import (
    CRI_DOCKERD_RELEASES,
    ETCD_DEFAULT,
    ETCD_RELEASES,
    IPVS_DEPRECATED_SINCE,
    NFTABLES_SINCE,
    PURELB_V2_SINCE,
    MinorFacts,
    canonical,
    cri_dockerd_docker_problem,
    cri_dockerd_releases_text,
    cri_dockerd_sum,
    facts_for,
    kubeadm_etcd_problem,
    patch_beyond_table,
    release_problem,
)

Check = Callable[[Source], Iterator[Finding]]


def _get(data: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(key, int):
            if not isinstance(data, list) or key >= len(data):
                return None
        elif not isinstance(data, dict):
            return None
        data = data[key] if isinstance(key, int) else data.get(key)
    return data


def _iface(text: Any) -> ipaddress.IPv4Interface | None:
    return _parse_iface(text) if isinstance(text, str) and "/" in text else None


def _net(text: Any) -> ipaddress.IPv4Network | None:
    return _parse_net(text) if isinstance(text, str) else None


def _addr(text: Any) -> ipaddress.IPv4Address | None:
    return _parse_addr(text) if isinstance(text, str) else None


# Each node's address is read by several checks: parse each text once (the parsed values are immutable).
@functools.lru_cache(maxsize=8192)
def _parse_iface(text: str) -> ipaddress.IPv4Interface | None:
    try:
        return ipaddress.IPv4Interface(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=8192)
def _parse_net(text: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        return None


@functools.lru_cache(maxsize=8192)
def _parse_addr(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _nodes(src: Source) -> list[tuple[int, dict[str, Any]]]:
    nodes = _get(src.data, "nodes")
    return [(i, n) for i, n in enumerate(nodes) if isinstance(n, dict)] if isinstance(nodes, list) else []


def endpoint_host_port(endpoint: str, default_port: int) -> tuple[str, int]:
    host, _, port = endpoint.partition(":")
    return host, int(port) if port else default_port


def check_unique(src: Source) -> Iterator[Finding]:
    for key, what in (("name", "node name"), ("ip", "address"), ("mac", "MAC address")):
        seen: dict[str, int] = {}
        for i, node in _nodes(src):
            value = node.get(key)
            if not isinstance(value, str):
                continue
            norm = value.lower() if key == "mac" else value.split("/")[0] if key == "ip" else value
            if norm in seen:
                yield src.finding(("nodes", i, key),
                                  f"{what} '{value}' is already used by nodes[{seen[norm]}]: every node needs its own")
            else:
                seen[norm] = i


def check_subnets(src: Source) -> Iterator[Finding]:
    cluster = _get(src.data, "cluster") or {}
    defaults = {"podSubnet": "192.168.0.0/16", "serviceSubnet": "10.96.0.0/12"}
    for key, other in (("podSubnet", "serviceSubnet"), ("serviceSubnet", "podSubnet")):
        net = _net(cluster.get(key)) if isinstance(cluster, dict) else None
        if net and str(net) != cluster.get(key):
            clash = _net(_get(src.data, "cluster", other) or defaults[other])
            hint = (f"its network {net} would overlap cluster.{other} {clash}: pick another range"
                    if clash and net.overlaps(clash) else f"did you mean '{net}'?")
            yield src.finding(("cluster", key), f"'{cluster.get(key)}' has host bits set: {hint}")
    pod = _net(_get(src.data, "cluster", "podSubnet") or defaults["podSubnet"])
    svc = _net(_get(src.data, "cluster", "serviceSubnet") or defaults["serviceSubnet"])
    if pod and svc and pod.overlaps(svc):
        yield src.finding(("cluster", "serviceSubnet"),
                          f"service subnet {svc} overlaps the pod subnet {pod}: choose disjoint ranges")
    ifaces = [(i, node, iface) for i, node in _nodes(src) if (iface := _iface(node.get("ip")))]
    for label, net in (("pod", pod), ("service", svc)):
        hit = [(i, iface) for i, _, iface in ifaces if net and iface.network.overlaps(net)]
        if hit and len(hit) == len(ifaces):  # one cause: the cluster range sits on the node network
            nets = ", ".join(dict.fromkeys(str(iface.network) for _, iface in hit))
            yield src.finding(("cluster", f"{label}Subnet"), f"{net} overlaps the node network ({nets}): routing "
                                                              f"would break; move cluster.{label}Subnet elsewhere")
            continue
        for i, iface in hit:
            yield src.finding(("nodes", i, "ip"),
                              f"node network {iface.network} overlaps the {label} subnet {net}: routing would "
                              f"break; fix the address or move cluster.{label}Subnet elsewhere")
    for i, node, iface in ifaces:
        if iface.ip == iface.network.network_address or (
                iface.network.prefixlen < 31 and iface.ip == iface.network.broadcast_address):
            yield src.finding(("nodes", i, "ip"),
                              f"'{node['ip']}' is the network or broadcast address of {iface.network}: "
                              "pick a host address")


def check_gateways(src: Source) -> Iterator[Finding]:
    """A node's own gateway is blamed on the node; the shared network.gateway is blamed once when it is
    outside every node's subnet, and otherwise the odd node out's address is what is wrong."""
    shared = _addr(_get(src.data, "network", "gateway"))
    inside: list[tuple[int, dict[str, Any], ipaddress.IPv4Interface]] = []
    outside: list[tuple[int, dict[str, Any], ipaddress.IPv4Interface]] = []
    for i, node in _nodes(src):
        iface = _iface(node.get("ip"))
        own = _addr(node.get("gateway"))
        if not iface:
            continue
        if own:
            if own not in iface.network:
                yield src.finding(("nodes", i, "gateway"), f"gateway {own} is not in {node.get('name', 'the node')}'s "
                                                          f"subnet {iface.network}: fix the gateway or the address")
            elif own == iface.ip:
                yield src.finding(("nodes", i, "gateway"), f"gateway {own} is the node's own address")
        elif shared:
            (inside if shared in iface.network else outside).append((i, node, iface))
    if outside and not inside:
        nets = ", ".join(dict.fromkeys(str(iface.network) for _, _, iface in outside))
        yield src.finding(("network", "gateway"), f"gateway {shared} is outside every node's subnet ({nets}): "
                                                  "fix the gateway, or give each node its own 'gateway'")
        return
    common = ", ".join(dict.fromkeys(str(iface.network) for _, _, iface in inside))
    for i, node, iface in outside:
        yield src.finding(("nodes", i, "ip"), f"{iface} puts {node.get('name', 'the node')} in {iface.network}, "
                                              f"but the shared gateway {shared} and the other nodes are in {common}: "
                                              "fix the address, or give this node its own 'gateway'")
    for i, _node, iface in inside:
        if iface.ip == shared:
            yield src.finding(("nodes", i, "ip"), f"{iface.ip} is network.gateway's address: a node cannot be its own "
                                                  "gateway; fix the address")


def check_endpoint(src: Source) -> Iterator[Finding]:
    endpoint = _get(src.data, "cluster", "controlPlaneEndpoint")
    if not isinstance(endpoint, str) or not re.fullmatch(r"[^:\s]+(:[0-9]{1,5})?", endpoint):
        return  # the schema reports its shape
    host, port = endpoint_host_port(endpoint, 6443)
    if not 1 <= port <= 65535:
        yield src.finding(("cluster", "controlPlaneEndpoint"), f"port {port} is outside 1-65535")
    ip = _addr(host)
    if ip is None:
        return
    for i, node in _nodes(src):
        iface = _iface(node.get("ip"))
        if iface and iface.ip == ip:
            yield src.finding(("nodes", i, "ip"),
                              f"{ip} is the control-plane endpoint: the endpoint must be a VIP or load balancer "
                              "address that no node owns, or every node would depend on this one")


def check_control_planes(src: Source) -> Iterator[Finding]:
    nodes = _nodes(src)
    if not nodes:
        return
    count = sum(1 for _, n in nodes if n.get("role") == "control-plane")
    if count == 0:
        yield src.finding(("nodes",),
                          "no node has role 'control-plane': the first control-plane node runs kubeadm init")
    elif count % 2 == 0 and _get(src.data, "cluster", "topology") != "external-etcd":
        yield src.finding(("nodes",),
                          f"{count} control-plane nodes: stacked etcd needs a majority of members to keep quorum, "
                          f"so {count} nodes tolerate no more failures than {count - 1}; use an odd number (1, 3 or 5)")


ETCD_MAX_MEMBERS = 7


def check_etcd_members(src: Source) -> Iterator[Finding]:
    """external-etcd: an odd number of etcd nodes (1 for labs, with a warning; 3, 5 or 7); role etcd only there."""
    nodes = _nodes(src)
    etcd = [(i, n) for i, n in nodes if n.get("role") == "etcd"]
    topology = _get(src.data, "cluster", "topology")
    if topology not in (None, "stacked", "external-etcd"):
        return  # the schema reports the typo; no guess about which topology was meant
    if topology != "external-etcd":
        for i, _ in etcd:
            yield src.finding(("nodes", i, "role"), "role 'etcd' is for cluster.topology: external-etcd; with "
                                                    "stacked etcd the control-plane nodes run etcd themselves")
        return
    count = len(etcd)
    if not nodes:
        return
    if count == 0:
        yield src.finding(("nodes",), "cluster.topology external-etcd needs nodes with role 'etcd' (3, 5 or 7 of "
                                      "them): no node runs etcd")
    elif count % 2 == 0:
        yield src.finding(("nodes",),
                          f"{count} etcd nodes: etcd needs a majority of its members ({count // 2 + 1} of {count}) to "
                          f"keep quorum, so {count} members tolerate no more failures than {count - 1} and vote "
                          f"slower; use an odd number: 3 (tolerates 1 failure), 5 (2) or 7 (3)")
    elif count > ETCD_MAX_MEMBERS:
        yield src.finding(("nodes",),
                          f"{count} etcd nodes: every write waits for a majority ({count // 2 + 1}), and etcd "
                          f"recommends at most {ETCD_MAX_MEMBERS} members; use 3, 5 or 7")
    sums = _get(src.data, "etcd", "sha256")
    if isinstance(sums, dict) and sums:
        archs = sorted({n.get("arch", "amd64") for _, n in etcd if isinstance(n.get("arch", "amd64"), str)})
        missing = [a for a in archs if a not in sums]
        if missing:
            yield src.finding(("etcd", "sha256"),
                              f"no sum for {', '.join(missing)}, which etcd node(s) run: add "
                              f"{', '.join(f'{a}: <sha256 of the etcd {a} tarball>' for a in missing)}")


_ETCD_RELEASE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")


def check_etcd_version(src: Source) -> Iterator[Finding]:
    """external-etcd: an etcd.version the Kubernetes release's kubeadm init accepts (its ExternalEtcdVersion check)."""
    if _get(src.data, "cluster", "topology") != "external-etcd":
        return
    etcd = _get(src.data, "etcd", "version")
    kubernetes = _get(src.data, "cluster", "kubernetesVersion")
    release = canonical(kubernetes) if isinstance(kubernetes, str) else None
    if not isinstance(etcd, str) or not _ETCD_RELEASE.fullmatch(etcd) or release is None:
        return  # no pin (the default passes every minor), or the schema and check_version report the shape
    problem = kubeadm_etcd_problem(release, etcd)
    if problem:
        yield src.finding(("etcd", "version"), problem)


def check_version(src: Source) -> Iterator[Finding]:
    version = _get(src.data, "cluster", "kubernetesVersion")
    where = ("cluster", "kubernetesVersion")
    text = canonical(version) if isinstance(version, str) else None
    if text is None:
        return  # the schema reports its shape
    if text != version.lstrip("v"):
        problem = release_problem(text)
        hint = f"did you mean '{text}'?" if problem is None else f"and {problem}"
        yield src.finding(where, f"'{version}' has a leading zero, which no Kubernetes release has: {hint}")
        return
    problem = release_problem(version)
    if problem:
        yield src.finding(where, problem)
        return
    facts = facts_for(version)
    mode = _get(src.data, "kubeProxy", "mode")
    if facts and mode == "nftables" and facts.minor < NFTABLES_SINCE:
        yield src.finding(("kubeProxy", "mode"),
                          f"kube-proxy nftables mode needs Kubernetes 1.31 or newer (it is alpha behind a feature "
                          f"gate before); use ipvs or iptables with {version}")


def _schema_default(*keys: str) -> Any:
    """The schema's default for a profile path, so that no check restates it."""
    node: Any = profile_schema()
    for key in keys:
        node = node["properties"][key]
    return node.get("default")


def check_runtime_api(src: Source) -> Iterator[Finding]:
    """cri-dockerd must speak an API the nodes' Docker answers, or no node ever gets a container runtime."""
    version = _get(src.data, "cluster", "kubernetesVersion")
    facts = facts_for(version) if isinstance(version, str) and canonical(version) else None
    chosen = _get(src.data, "runtime", "criDockerd", "version")
    cri_dockerd = chosen if isinstance(chosen, str) else (facts.cri_dockerd if facts else None)
    if cri_dockerd not in CRI_DOCKERD_RELEASES:
        return
    family = _get(src.data, "os", "family") or _schema_default("os", "family")
    source = _get(src.data, "runtime", "docker", "source") or _schema_default("runtime", "docker", "source")
    problem = cri_dockerd_docker_problem(cri_dockerd, family, source, _get(src.data, "runtime", "docker", "version"))
    if problem:
        where = ("runtime", "criDockerd", "version") if isinstance(chosen, str) else ("cluster", "kubernetesVersion")
        yield src.finding(where, problem)


def _archs_in_use(src: Source) -> list[str]:
    archs = (n.get("arch", "amd64") for _, n in _nodes(src))
    return sorted({a for a in archs if isinstance(a, str)})


def check_cri_dockerd(src: Source) -> Iterator[Finding]:
    version = _get(src.data, "runtime", "criDockerd", "version")
    if isinstance(version, str) and version not in CRI_DOCKERD_RELEASES:
        yield src.finding(("runtime", "criDockerd", "version"),
                          f"cri-dockerd {version} is not a release k8sseed knows of; known releases: "
                          f"{cri_dockerd_releases_text()} (or leave version out for the version table's choice)")
    sums = _get(src.data, "runtime", "criDockerd", "sha256")
    archs = _archs_in_use(src)
    where = ("runtime", "criDockerd", "sha256")
    if isinstance(sums, str) and len(archs) > 1:
        example = ", ".join(f"{a}: ..." for a in archs)
        yield src.finding(where, f"the nodes run {' and '.join(archs)}, and each arch has its own tarball: give one "
                                 f"sum per arch, e.g. sha256: {{{example}}}")
    elif isinstance(sums, dict) and sums:
        missing = [a for a in archs if a not in sums]
        if missing:
            yield src.finding(where, f"no sum for {', '.join(missing)}, which node(s) run: add "
                                     f"{', '.join(f'{a}: <sha256 of the {a} tarball>' for a in missing)}")


def check_url_placeholders(src: Source) -> Iterator[Finding]:
    allowed = {"kubernetesPackages": {"minor"}, "dockerPackages": {"family"}, "criDockerd": {"version", "arch"},
               "etcd": {"version", "arch"},
               "apt": set(), "calicoOperator": {"version"}, "calicoctl": {"version", "arch"}, "purelbCRDs": {"version"},
               "purelb": {"version"}, "kubernetesKey": {"minor"}, "dockerKey": {"family"}}
    mirrors = _get(src.data, "mirrors")
    if not isinstance(mirrors, dict):
        return
    for key, names in allowed.items():
        url = mirrors.get(key)
        if not isinstance(url, str) or is_inline_key(url):
            continue
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(url) if name is not None}
        except ValueError:
            yield src.finding(("mirrors", key), f"'{url}' has an unbalanced '{{' or '}}'")
            continue
        for name in sorted(used - names):
            known = ", ".join("{" + n + "}" for n in sorted(names)) or "none"
            yield src.finding(("mirrors", key), f"unknown placeholder '{{{name}}}' in '{url}' (known here: {known})")


_REPOSITORY_KEYS = (
    # (key setting, fingerprint setting, packages setting, upstream packages URL, pinned upstream fingerprint)
    ("kubernetesKey", "kubernetesKeyFingerprint", "kubernetesPackages", UPSTREAM_KUBERNETES_PACKAGES,
     KUBERNETES_KEY_FINGERPRINT),
    ("dockerKey", "dockerKeyFingerprint", "dockerPackages", UPSTREAM_DOCKER_PACKAGES, DOCKER_KEY_FINGERPRINT),
)


def check_repository_keys(src: Source) -> Iterator[Finding]:
    mirrors = _get(src.data, "mirrors")
    if not isinstance(mirrors, dict):
        return
    for key, fingerprint_key, packages_key, upstream, pinned_upstream in _REPOSITORY_KEYS:
        value, override = mirrors.get(key), mirrors.get(fingerprint_key)
        pinned = override.upper() if isinstance(override, str) else pinned_upstream
        if (isinstance(override, str) and pinned != pinned_upstream and value is None
                and mirrors.get(packages_key, upstream) == upstream):
            yield src.finding(("mirrors", fingerprint_key),
                              f"the nodes would get the upstream key ({pinned_upstream}) from {upstream}, which "
                              f"can never match {pinned}: point mirrors.{packages_key} at the mirror that signs "
                              f"with this key, or set mirrors.{key} to that key")
        if not isinstance(value, str) or not is_inline_key(value):
            continue
        try:
            found = armored_key_fingerprints(value)
        except ValueError as error:
            yield src.finding(("mirrors", key), f"the key block is not usable: {error}")
            continue
        if pinned not in found:
            held = ", ".join(found) or "no version-4 key"
            yield src.finding(("mirrors", key),
                              f"the key block holds {held}, not the pinned {pinned}: paste the repository's "
                              f"signing key, or, if your mirror re-signs the repository with this key, set "
                              f"mirrors.{fingerprint_key} to its fingerprint")


def check_registry_ca(src: Source) -> Iterator[Finding]:
    mirrors = _get(src.data, "mirrors")
    if not isinstance(mirrors, dict) or not isinstance(mirrors.get("registryCA"), str):
        return
    problem = ca_problem(mirrors["registryCA"])
    if problem:
        yield src.finding(("mirrors", "registryCA"), problem)
        return
    prefixes = mirrors.get("imageRegistries") if isinstance(mirrors.get("imageRegistries"), dict) else {}
    hubs = mirrors.get("dockerHubMirrors") if isinstance(mirrors.get("dockerHubMirrors"), list) else []
    defaults = {k: v.get("default") for k, v in profile_schema()["properties"]["mirrors"]["properties"].items()}
    # https downloads from the site (packages, tarballs, manifests) trust it through the system trust store.
    site_urls = [key for key, value in mirrors.items()
                 if isinstance(value, str) and value.startswith("https://") and value != defaults.get(key)]
    if not site_urls and not mirror_registry_hosts(mirrors.get("imageRepository"), mirrors.get("calicoRegistry"),
                                                   [p for p in prefixes.values() if isinstance(p, str)],
                                                   [h for h in hubs if isinstance(h, str)]):
        yield src.finding(("mirrors", "registryCA"),
                          "no mirror setting points at the site, so nothing would use this CA: set "
                          "mirrors.imageRepository, calicoRegistry, imageRegistries or an https dockerHubMirrors "
                          "entry to your registry (or an https package or download mirror)")


def check_pki_dates(src: Source) -> Iterator[Finding]:
    text = _get(src.data, "cluster", "pki", "notBefore")
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        return
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        yield src.finding(("cluster", "pki", "notBefore"), f"'{text}' is not a calendar date (YYYY-MM-DD)")
        return
    if not dt.date(2000, 1, 1) <= day <= dt.date(2099, 12, 31):
        yield src.finding(("cluster", "pki", "notBefore"),
                          f"'{text}' is outside 2000-01-01..2099-12-31: use the day the cluster is first built")


def _control_plane_nodes(src: Source) -> list[tuple[int, dict[str, Any]]]:
    return [(i, n) for i, n in _nodes(src) if n.get("role") == "control-plane"]


def check_lb_mode(src: Source) -> Iterator[Finding]:
    mode = _get(src.data, "controlPlaneLB", "mode") or "external"
    if mode == "node-local":  # no VIP: check_node_local
        return
    endpoint = _get(src.data, "cluster", "controlPlaneEndpoint")
    if mode == "external" or not isinstance(endpoint, str) or not re.fullmatch(r"[^:\s]+(:[0-9]{1,5})?", endpoint):
        return
    host, port = endpoint_host_port(endpoint, _get(src.data, "cluster", "apiServerPort") or 6443)
    vip = _addr(host)
    where = ("cluster", "controlPlaneEndpoint")
    if vip is None:
        yield src.finding(where, f"controlPlaneLB.mode {mode} serves a VIP: the endpoint host must be an IPv4 "
                                 f"address, not '{host}' (a DNS name can point at the VIP for humans)")
        return
    for key in ("podSubnet", "serviceSubnet"):
        net = _net(_get(src.data, "cluster", key))
        if net and vip in net:
            yield src.finding(where, f"the VIP {vip} lies in cluster.{key} {net}: pick an address outside it")
    if mode == "bgp" and not isinstance(_get(src.data, "bgp"), dict):
        yield src.finding(("controlPlaneLB", "mode"), "mode bgp announces the VIP to routers: add a 'bgp' section "
                                                      "with asNumber and peers")
    if mode == "bgp":
        for _, node in _nodes(src):
            iface = _iface(node.get("ip"))
            if iface and vip in iface.network:
                yield src.finding(where, f"the BGP VIP {vip} lies in the node subnet {iface.network} "
                                         f"({node.get('name')}): nodes would ARP for it instead of routing to it; "
                                         "pick a VIP outside every node subnet")
                break
    if mode != "keepalived-haproxy":
        return
    haproxy_port = _get(src.data, "controlPlaneLB", "keepalived", "haproxyPort") or 8443
    api_port = _get(src.data, "cluster", "apiServerPort") or 6443
    if haproxy_port == api_port:
        yield src.finding(("controlPlaneLB", "keepalived", "haproxyPort"),
                          f"HAProxy and the API server would both bind {api_port} on the control-plane nodes: "
                          "use another port (the kubeadm HA guide uses 8443)")
    if port != haproxy_port:
        other = "" if port == api_port else f" (or set controlPlaneLB.keepalived.haproxyPort: {port})"
        yield src.finding(where, f"with keepalived-haproxy the endpoint must use HAProxy's port: "
                                 f"write {host}:{haproxy_port}{other}")
    cps = [(i, n, _iface(n.get("ip"))) for i, n in _control_plane_nodes(src)]
    with_vip = [c for c in cps if c[2] and vip in c[2].network]
    without = [c for c in cps if c[2] and vip not in c[2].network]
    if without and not with_vip:
        nets = ", ".join(dict.fromkeys(str(c[2].network) for c in without))
        yield src.finding(where, f"VRRP moves the VIP {vip} between control-plane nodes on one subnet, but it is "
                                 f"outside theirs ({nets}): pick a free address in the nodes' subnet")
    for i, node, iface in without if with_vip else []:
        yield src.finding(("nodes", i, "ip"), f"VRRP moves the VIP {vip} between control-plane nodes on one "
                                              f"subnet, but {node.get('name')} is in {iface.network}")
    for i, node in _control_plane_nodes(src):
        if not node.get("interfaceName"):
            yield src.finding(("nodes", i), "keepalived needs the interface name: set interfaceName (e.g. uplink0) "
                                            "on every control-plane node; the NIC is renamed to it at boot")


# Ports something else on every node (or every control plane) listens on, even on 127.0.0.1 only.
NODE_PORTS = {10248: "the kubelet's health check", 10250: "the kubelet", 10249: "kube-proxy's metrics",
              10256: "kube-proxy's health check", 10257: "kube-controller-manager", 10259: "kube-scheduler",
              2379: "etcd", 2380: "etcd", 2381: "etcd's metrics", 9099: "calico-node's health check"}


def check_node_local(src: Source) -> Iterator[Finding]:
    """node-local: the endpoint is a name every node maps to its own HAProxy on 127.0.0.1, on a free port."""
    endpoint = _get(src.data, "cluster", "controlPlaneEndpoint")
    if (_get(src.data, "controlPlaneLB", "mode") != "node-local" or not isinstance(endpoint, str)
            or not re.fullmatch(r"[^:\s]+(:[0-9]{1,5})?", endpoint)):
        return
    where = ("cluster", "controlPlaneEndpoint")
    api_port = _get(src.data, "cluster", "apiServerPort")
    if type(api_port) is not int:  # missing, or wrong (the schema reports that)
        api_port = 6443
    name = _get(src.data, "cluster", "name")
    host, _, port_text = endpoint.partition(":")
    example = f"api.{name if isinstance(name, str) else 'cluster'}.internal:{api_port + 1}"
    if _addr(host) is not None:
        yield src.finding(where, f"with controlPlaneLB.mode node-local every node reaches the API through its own "
                                 f"load balancer, found by name (/etc/hosts maps it to 127.0.0.1): write a DNS "
                                 f"name with a port, e.g. {example}, not the address {host}")
        return
    node_names = {n.get("name") for _, n in _nodes(src) if isinstance(n.get("name"), str)}
    if host in node_names:
        yield src.finding(where, f"'{host}' is a node's name, which its /etc/hosts maps to itself: pick a name "
                                 f"of its own for the endpoint, e.g. {example}")
    port = int(port_text) if port_text else api_port
    if port == api_port:
        yield src.finding(where, f"with node-local the endpoint port is the port of the load balancer on every "
                                 f"node, and the API server holds {api_port} on control-plane nodes: write "
                                 f"{host}:{api_port + 1}")
        return
    reserved = dict(NODE_PORTS)
    if isinstance(_get(src.data, "bgp"), dict):
        reserved[179] = "the host BIRD"
        listen = _get(src.data, "bgp", "calicoListenPort")
        reserved[listen if type(listen) is int else 1790] = "calico-node's BIRD"
    if port in reserved:
        yield src.finding(where, f"port {port} is taken by {reserved[port]} on the nodes: use another port for "
                                 f"the node-local load balancer, e.g. {host}:{api_port + 1}")


def _node_peers(node: dict[str, Any], peers: list[Any]) -> list[tuple[dict[str, Any], ipaddress.IPv4Address]] | None:
    """The bgp.peers a node's BIRD talks to (router in its subnet, nodeSelector matching), as (peer, address);
    None when the node's address or a peer is broken (the schema reports those)."""
    iface = _iface(node.get("ip"))
    labels = node.get("labels") if isinstance(node.get("labels"), dict) else {}
    usable = [(p, _addr(p.get("address"))) for p in peers if isinstance(p, dict)]
    usable = [(p, a) for p, a in usable if a is not None and isinstance(p.get("nodeSelector", {}), dict)]
    if iface is None or len(usable) < len(peers):
        return None
    return [(p, address) for p, address in usable if address in iface.network
            and all(labels.get(k) == v for k, v in p.get("nodeSelector", {}).items())]


def check_bgp(src: Source) -> Iterator[Finding]:
    bgp = _get(src.data, "bgp")
    if not isinstance(bgp, dict):
        return
    listen = bgp.get("calicoListenPort", 1790)
    if listen == 179:
        yield src.finding(("bgp", "calicoListenPort"), "the host BIRD owns TCP 179 on every node; calico-node's "
                                                      "BIRD must listen elsewhere (default 1790)")
    reserved = {_get(src.data, "cluster", "apiServerPort") or 6443: "the API server",
                _get(src.data, "controlPlaneLB", "keepalived", "haproxyPort") or 8443: "HAProxy",
                10250: "the kubelet", 2379: "etcd", 2380: "etcd"}
    if listen in reserved:
        yield src.finding(("bgp", "calicoListenPort"), f"port {listen} is taken by {reserved[listen]}")
    peers = bgp.get("peers") if isinstance(bgp.get("peers"), list) else []
    node_ips = {str(_iface(n.get("ip")).ip): n.get("name") for _, n in _nodes(src) if _iface(n.get("ip"))}
    seen_names: dict[str, int] = {}
    seen_addrs: dict[str, int] = {}
    for j, peer in enumerate(peers):
        if not isinstance(peer, dict):
            continue
        name, address = peer.get("name"), peer.get("address")
        if isinstance(name, str):
            if name in seen_names:
                yield src.finding(("bgp", "peers", j, "name"), f"peer name '{name}' is used twice")
            seen_names[name] = j
        if isinstance(address, str):
            if address in seen_addrs:
                yield src.finding(("bgp", "peers", j, "address"),
                                  f"{address} is listed twice: a router keeps one session per neighbor address")
            seen_addrs[address] = j
            if address in node_ips:
                yield src.finding(("bgp", "peers", j, "address"), f"{address} is node {node_ips[address]}: "
                                                                  "peers are the routers, not cluster nodes")
            if peer.get("asNumber") == bgp.get("asNumber"):
                yield src.finding(("bgp", "peers", j, "asNumber"), "the router must be in another AS than the "
                                                                  "cluster (eBGP): ECMP and next hops rely on it")
    usable = [(p, _addr(p.get("address"))) for p in peers if isinstance(p, dict)]
    usable = [(p, a) for p, a in usable if a is not None and isinstance(p.get("nodeSelector", {}), dict)]
    if len(usable) < len(peers):
        return  # the schema reports the broken peer
    lonely: list[tuple[int, dict[str, Any], ipaddress.IPv4Interface]] = []
    checked = 0
    for i, node in _nodes(src):
        iface = _iface(node.get("ip"))
        matching = _node_peers(node, peers)
        if iface is None or matching is None:
            continue
        checked += 1
        if not matching:
            lonely.append((i, node, iface))
    if checked > 1 and len(lonely) == checked:  # one cause: the peers, not every node
        nets = ", ".join(dict.fromkeys(str(iface.network) for _, _, iface in lonely))
        yield src.finding(("bgp", "peers"), f"no node has a BGP peer: no bgp.peers address (with a matching "
                                            f"nodeSelector) is in the node subnets ({nets}); peer with the routers "
                                            "on the nodes' own subnets")
        return
    for i, node, iface in lonely:
        yield src.finding(("nodes", i), f"{node.get('name')} has no BGP peer: no bgp.peers address is in its "
                                        f"subnet {iface.network} with a matching nodeSelector, so its pod "
                                        "routes would never reach the fabric")


def check_bgp_gateway(src: Source) -> Iterator[Finding]:
    """Nodes import no routes from the routers: what only the routers know (the VIP, and without the node mesh
    the other nodes' pod blocks) is reached through the default gateway, so the gateway must be a BGP peer."""
    bgp = _get(src.data, "bgp")
    if not isinstance(bgp, dict) or not isinstance(bgp.get("peers"), list):
        return
    vip_mode = (_get(src.data, "controlPlaneLB", "mode") or "external") == "bgp"
    mesh = _get(src.data, "calico", "nodeToNodeMesh") is True
    if not vip_mode and mesh:
        return
    needs = " and ".join(filter(None, ["the API VIP" if vip_mode else "",
                                       "the other nodes' pod blocks (calico.nodeToNodeMesh is off)" if not mesh
                                       else ""]))
    why = (f"{needs} are routed only by the BGP peers and nodes import no routes from them, so a node reaches "
           "them through its default gateway; with another gateway every join times out")
    default_gw = _addr(_get(src.data, "network", "gateway"))
    wrong_default: list[tuple[str, list[str]]] = []  # (node name, its peers' addresses)
    for i, node in _nodes(src):
        iface, own = _iface(node.get("ip")), _addr(node.get("gateway"))
        gw = own or default_gw
        matching = _node_peers(node, bgp["peers"])
        if not iface or not gw or not matching or gw not in iface.network:
            continue  # no peer, or a gateway outside the subnet: reported by check_bgp and check_gateways
        addresses = [str(a) for _, a in matching]
        if str(gw) in addresses:
            continue
        if own:
            yield src.finding(("nodes", i, "gateway"),
                              f"gateway {gw} of {node.get('name')} is not one of its BGP peers "
                              f"({', '.join(addresses)}): "
                              f"{why}; set this gateway to {addresses[0]} (or add {gw} to bgp.peers if it is a "
                              "router that speaks BGP with the nodes)")
        else:
            wrong_default.append((str(node.get("name")), addresses))
    if wrong_default:
        names = ", ".join(name for name, _ in wrong_default[:6])
        if len(wrong_default) > 6:
            names += f" and {len(wrong_default) - 6} more"
        first = wrong_default[0][1][0]
        yield src.finding(("network", "gateway"),
                          f"gateway {default_gw} is not a BGP peer of {names} (their peers: "
                          f"{', '.join(sorted({a for _, addrs in wrong_default for a in addrs}))}): {why}; set "
                          f"network.gateway to {first} (or add {default_gw} to bgp.peers if it is a router that "
                          "speaks BGP with the nodes, or give those nodes their own gateway)")


def check_external_ips(src: Source) -> Iterator[Finding]:
    cidrs = _get(src.data, "calico", "serviceExternalIPs")
    for j, cidr in enumerate(cidrs if isinstance(cidrs, list) else []):
        net = _net(cidr)
        if net and str(net) != cidr:
            yield src.finding(("calico", "serviceExternalIPs", j), f"'{cidr}' has host bits set: did you mean '{net}'?")


def check_purelb(src: Source) -> Iterator[Finding]:
    purelb = _get(src.data, "purelb")
    if not isinstance(purelb, dict):
        return
    if not purelb.get("enabled"):
        for j, pool in enumerate(purelb.get("pools") if isinstance(purelb.get("pools"), list) else []):
            subnet = _net(pool.get("subnet")) if isinstance(pool, dict) else None
            if subnet and str(subnet) != pool.get("subnet"):
                yield src.finding(("purelb", "pools", j, "subnet"), f"host bits set: did you mean '{subnet}'?")
        return
    version = purelb.get("version", "0.16.6")
    release = re.fullmatch(r"([0-9]+)\.([0-9]+)\.([0-9]+)", version) if isinstance(version, str) else None
    if release and tuple(int(x) for x in release.groups()) < PURELB_V2_SINCE:
        yield src.finding(("purelb", "version"), f"PureLB {version} speaks purelb.io/v1; k8sseed renders the "
                                                 "purelb.io/v2 resources of PureLB 0.15 and newer")
    pools = purelb.get("pools") if isinstance(purelb.get("pools"), list) else []
    named = all(isinstance(p, dict) and isinstance(p.get("name"), str) for p in pools)  # else the schema spoke
    if named and not any(p.get("name") == "default" for p in pools):
        yield src.finding(("purelb", "pools"), "PureLB needs a pool named 'default' (Services without the "
                                               "purelb.io/service-group annotation use it)")
    taken = [(f"cluster.{k}", _net(_get(src.data, "cluster", k) or d))
             for k, d in (("podSubnet", "192.168.0.0/16"), ("serviceSubnet", "10.96.0.0/12"))]
    node_nets = {_iface(n.get("ip")).network for _, n in _nodes(src) if _iface(n.get("ip"))}
    names: set[str] = set()
    for j, pool in enumerate(pools):
        if not isinstance(pool, dict):
            continue
        if pool.get("name") in names:
            yield src.finding(("purelb", "pools", j, "name"), f"pool '{pool.get('name')}' is defined twice")
        names.add(pool.get("name"))
        subnet = _net(pool.get("subnet"))
        if subnet is None:
            continue
        if str(subnet) != pool.get("subnet"):
            yield src.finding(("purelb", "pools", j, "subnet"), f"host bits set: did you mean '{subnet}'?")
        for label, net in taken:
            if net and subnet.overlaps(net):
                yield src.finding(("purelb", "pools", j, "subnet"), f"{subnet} overlaps {label} {net}")
        local = any(subnet.subnet_of(n) or n.subnet_of(subnet) for n in node_nets)
        if not local and not isinstance(_get(src.data, "bgp"), dict):
            yield src.finding(("purelb", "pools", j, "subnet"), f"{subnet} is not a node subnet, so its addresses "
                                                                "must be routed: add a 'bgp' section")
        rng = pool.get("range")
        if isinstance(rng, str) and "-" in rng:
            first, last = (_addr(x) for x in rng.split("-", 1))
            if first is None or last is None or first not in subnet or last not in subnet or first > last:
                yield src.finding(("purelb", "pools", j, "range"), f"'{rng}' is not an ascending range inside {subnet}")


def check_users(src: Source) -> Iterator[Finding]:
    users = _get(src.data, "os", "users")
    if not isinstance(users, list):
        return
    seen: set[str] = set()
    for i, user in enumerate(users):
        if not isinstance(user, dict):
            continue
        if "password" in user and "hashedPassword" in user:
            yield src.finding(("os", "users", i, "password"), "give either 'password' or 'hashedPassword', not both")
        name = user.get("name")
        if isinstance(name, str):
            if name in seen:
                yield src.finding(("os", "users", i, "name"), f"user '{name}' is listed twice")
            if name == "root":
                yield src.finding(("os", "users", i, "name"),
                                  "'root' cannot be managed here: add a named user with sudo instead")
            seen.add(name)


# NodeRestriction lets a kubelet set only these labels of the kubernetes.io / k8s.io namespaces on itself.
_KUBELET_LABELS = {"kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
                   "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
                   "failure-domain.beta.kubernetes.io/region",
                   "failure-domain.beta.kubernetes.io/zone", "topology.kubernetes.io/region",
                   "topology.kubernetes.io/zone"}
_KUBELET_PREFIXES = ("kubelet.kubernetes.io/", "node.kubernetes.io/")


def check_labels(src: Source) -> Iterator[Finding]:
    for i, node in _nodes(src):
        labels = node.get("labels")
        if not isinstance(labels, dict):
            continue
        for key in labels:
            prefix = key.split("/")[0] if "/" in key else ""
            restricted = prefix.endswith(("kubernetes.io", "k8s.io"))
            if restricted and key not in _KUBELET_LABELS and not key.startswith(_KUBELET_PREFIXES):
                message = (f"the kubelet may not set '{key}' on its own node (NodeRestriction admission), "
                           "so the join would fail; use your own prefix (e.g. example.com/role) or label the "
                           "node with kubectl after it joined")
                yield src.finding(("nodes", i, "labels", key), message, at_key=True)


CALICO_NODE_INTERNAL_IP_SINCE = (3, 22, 0)  # Installation nodeAddressAutodetectionV4.kubernetes: NodeInternalIP


def check_calico_version(src: Source) -> Iterator[Finding]:
    version = _get(src.data, "calico", "version")
    if not isinstance(version, str) or not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version):
        return
    if tuple(int(part) for part in version.split(".")) < CALICO_NODE_INTERNAL_IP_SINCE:
        yield src.finding(("calico", "version"),
                          f"Calico {version} cannot take each node's address from its Kubernetes Node "
                          "(nodeAddressAutodetectionV4.kubernetes, which keeps a VIP from becoming the node's BGP "
                          "address): use Calico 3.22 or newer")


def check_token_lifetime(src: Source) -> Iterator[Finding]:
    cluster = _get(src.data, "cluster")
    if isinstance(cluster, dict) and "bootstrapTokenTTL" in cluster and "bootstrapTokenWindowDays" in cluster:
        yield src.finding(("cluster", "bootstrapTokenWindowDays"),
                          "time-window join tokens and bootstrapTokenTTL (one token with a fixed lifetime) exclude "
                          "each other: remove bootstrapTokenTTL to keep the windows, or this key")


def check_bird_router_ids(src: Source) -> Iterator[Finding]:
    """Each node's host BIRD takes 100.127.<low 16 bits of its address> as router id (k8sseed/router_id.py)."""
    if not isinstance(_get(src.data, "bgp"), dict):
        return
    seen: dict[str, tuple[int, str]] = {}
    for i, node in _nodes(src):
        iface = _iface(node.get("ip"))
        if iface is None:
            continue
        if iface.ip in ROUTER_ID_NETWORK:
            yield src.finding(("nodes", i, "ip"), f"{iface.ip} is inside {ROUTER_ID_NETWORK}, where the host BIRD "
                                                  "takes its router id (which must differ from the node IP that "
                                                  "calico-node's BIRD uses): give the node an address outside it")
            continue
        router_id = bird_router_id(iface.ip)
        if router_id in seen:
            other, address = seen[router_id]
            yield src.finding(("nodes", i, "ip"), f"{iface.ip} and nodes[{other}]'s {address} end in the same 16 bits,"
                                                  f" so both host BIRDs would use router id {router_id}: give one "
                                                  "of them an address whose last two octets differ")
        else:
            seen[router_id] = (i, str(iface.ip))


CHECKS: tuple[Check, ...] = (check_labels, check_unique, check_subnets, check_gateways, check_endpoint,
                             check_control_planes, check_version, check_cri_dockerd, check_runtime_api,
                             check_url_placeholders, check_registry_ca,
                             check_repository_keys, check_pki_dates, check_users, check_lb_mode, check_bgp,
                             check_bgp_gateway, check_purelb, check_external_ips, check_calico_version,
                             check_node_local, check_etcd_members, check_etcd_version, check_bird_router_ids,
                             check_token_lifetime)


def semantic_findings(src: Source) -> list[Finding]:
    findings: list[Finding] = []
    for check in CHECKS:
        findings.extend(check(src))
    return findings


def _can_log_in(src: Source) -> bool:
    users = _get(src.data, "os", "users")
    return any(isinstance(u, dict) and (u.get("sshAuthorizedKeys") or u.get("password") or u.get("hashedPassword"))
               for u in (users if isinstance(users, list) else []))


def _cri_dockerd_without_sum(src: Source, facts: MinorFacts | None) -> tuple[str, list[str]] | None:
    """(version, archs) when nodes would install cri-dockerd with no sum from the profile nor the version table."""
    if _get(src.data, "runtime", "criDockerd", "sha256"):
        return None  # a sum per arch in use: check_cri_dockerd sees to that
    chosen = _get(src.data, "runtime", "criDockerd", "version")
    version = chosen if isinstance(chosen, str) else (facts.cri_dockerd if facts else None)
    if version is None:
        return None  # no Kubernetes minor known: check_version reports that
    archs = [a for a in (_archs_in_use(src) or ["amd64"]) if cri_dockerd_sum(version, a) is None]
    return (version, archs) if archs else None


def warnings_for(src: Source) -> list[ProfileWarning]:
    """Things that build fine but deserve a word: each one something the user can act on."""
    out: list[ProfileWarning] = []
    version = _get(src.data, "cluster", "kubernetesVersion")
    facts = facts_for(version) if isinstance(version, str) else None
    newer = patch_beyond_table(version) if isinstance(version, str) else None
    if newer:
        out.append(ProfileWarning("kubernetes-patch-unknown",
                                  f"Kubernetes {version.lstrip('v')} is newer than {newer.newest}, the newest "
                                  f"{newer.minor_text} release k8sseed knows of: check that it exists "
                                  "(kubernetes.io/releases), or the nodes fail to install it"))
    mode = _get(src.data, "kubeProxy", "mode") or "ipvs"
    if facts and mode == "ipvs" and facts.minor >= IPVS_DEPRECATED_SINCE:
        out.append(ProfileWarning("ipvs-deprecated",
                                  f"kube-proxy ipvs mode is deprecated from Kubernetes 1.35 (KEP-5495) and "
                                  f"{version} logs a warning at startup; consider kubeProxy.mode: nftables"))
    unverified = _cri_dockerd_without_sum(src, facts)
    if unverified:
        version, archs = unverified
        example = ", ".join(f"{a}: ..." for a in archs)
        out.append(ProfileWarning("cri-dockerd-unverified",
                                  f"runtime.criDockerd.sha256 is not set and k8sseed's version table has no sum for "
                                  f"cri-dockerd {version} ({', '.join(archs)}): nodes download it over HTTPS without "
                                  f"a checksum check; set the release tarball's sum (sha256: {{{example}}}), or use a "
                                  "cri-dockerd release the table has sums for"))
    if _get(src.data, "bgp") is not None and not _get(src.data, "calico", "calicoctlSha256"):
        out.append(ProfileWarning("calicoctl-unverified",
                                  "calico.calicoctlSha256 is not set: the init node downloads calicoctl (for the BGP "
                                  "resources) over HTTPS without a checksum check, unless calicoctl at the Calico "
                                  "release is already installed; set it to the binary's sha256"))
    if _get(src.data, "cluster", "bootstrapTokenTTL") == "0":
        out.append(ProfileWarning("token-never-expires",
                                  "the bootstrap token never expires (cluster.bootstrapTokenTTL: 0) so nodes added "
                                  "later can join; anyone holding a seed can join a node until you delete the "
                                  "token: remove bootstrapTokenTTL to use time-window tokens (the default), which "
                                  "let later nodes join without a standing credential"))
    if _get(src.data, "cluster", "topology") == "external-etcd":
        etcd_nodes = sum(1 for _, n in _nodes(src) if n.get("role") == "etcd")
        if etcd_nodes == 1:
            out.append(ProfileWarning("single-etcd-member",
                                      "one etcd node: the cluster stops when it stops, and its data has no copy; "
                                      "for anything but a lab use 3 etcd nodes (one may fail) or 5 (two may)"))
        version = _get(src.data, "etcd", "version") or ETCD_DEFAULT
        if etcd_nodes and not _get(src.data, "etcd", "sha256") and version not in ETCD_RELEASES:
            out.append(ProfileWarning("etcd-unverified",
                                      f"etcd {version} is not in k8sseed's table ({', '.join(ETCD_RELEASES)}) and "
                                      "etcd.sha256 is not set: etcd nodes use an etcd binary already installed at "
                                      "that version and refuse to download one unchecked; set etcd.sha256 to the "
                                      "release tarballs' sums to let them download it"))
    if not _can_log_in(src):
        out.append(ProfileWarning("no-login-user",
                                  "no os.users entry has an SSH key or a password, so nobody can log in to the nodes "
                                  "to debug a failed bootstrap: add sshAuthorizedKeys to a user"))
    return out
