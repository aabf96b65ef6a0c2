"""Semantic checks the schema cannot express; each returns findings, never raises."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import string
from collections.abc import Callable, Iterator
from typing import Any

from k8sseed.errors import Finding
from k8sseed.profile.source import Source
from k8sseed.repository_keys import (
    DOCKER_KEY_FINGERPRINT,
    KUBERNETES_KEY_FINGERPRINT,
    UPSTREAM_DOCKER_PACKAGES,
    UPSTREAM_KUBERNETES_PACKAGES,
    armored_key_fingerprints,
    is_inline_key,
)
from k8sseed.versions import IPVS_DEPRECATED_SINCE, NFTABLES_SINCE, PURELB_V2_SINCE, facts_for, supported_minors

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
    try:
        return ipaddress.IPv4Interface(text) if isinstance(text, str) and "/" in text else None
    except ValueError:
        return None


def _net(text: Any) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(text, strict=False) if isinstance(text, str) else None
    except ValueError:
        return None


def _addr(text: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text) if isinstance(text, str) else None
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
    for key in ("podSubnet", "serviceSubnet"):
        net = _net(cluster.get(key)) if isinstance(cluster, dict) else None
        if net and str(net) != cluster.get(key):
            yield src.finding(("cluster", key), f"'{cluster.get(key)}' has host bits set: did you mean '{net}'?")
    pod = _net(_get(src.data, "cluster", "podSubnet") or "192.168.0.0/16")
    svc = _net(_get(src.data, "cluster", "serviceSubnet") or "10.96.0.0/12")
    if pod and svc and pod.overlaps(svc):
        yield src.finding(("cluster", "serviceSubnet"),
                          f"service subnet {svc} overlaps the pod subnet {pod}: choose disjoint ranges")
    for i, node in _nodes(src):
        iface = _iface(node.get("ip"))
        if not iface:
            continue
        for label, net in (("pod", pod), ("service", svc)):
            if net and iface.network.overlaps(net):
                yield src.finding(("nodes", i, "ip"),
                                  f"node network {iface.network} overlaps the {label} subnet {net}: "
                                  f"routing would break; move cluster.{label}Subnet elsewhere")
        if iface.ip == iface.network.network_address or (
                iface.network.prefixlen < 31 and iface.ip == iface.network.broadcast_address):
            yield src.finding(("nodes", i, "ip"),
                              f"'{node['ip']}' is the network or broadcast address of {iface.network}: "
                              "pick a host address")


def check_gateways(src: Source) -> Iterator[Finding]:
    default_gw = _addr(_get(src.data, "network", "gateway"))
    for i, node in _nodes(src):
        iface = _iface(node.get("ip"))
        own = _addr(node.get("gateway"))
        gw = own or default_gw
        if not iface or not gw:
            continue
        path = ("nodes", i, "gateway") if own else ("network", "gateway")
        if gw not in iface.network:
            yield src.finding(path, f"gateway {gw} is not in {node.get('name', 'the node')}'s subnet {iface.network}: "
                                    "set a per-node 'gateway' or fix the address")
        elif gw == iface.ip:
            yield src.finding(path, f"gateway {gw} is the node's own address")


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
    elif count % 2 == 0:
        yield src.finding(("nodes",),
                          f"{count} control-plane nodes: stacked etcd needs a majority of members to keep quorum, "
                          f"so {count} nodes tolerate no more failures than {count - 1}; use an odd number (1, 3 or 5)")


def check_version(src: Source) -> Iterator[Finding]:
    version = _get(src.data, "cluster", "kubernetesVersion")
    if not isinstance(version, str) or not re.fullmatch(r"v?1\.[0-9]+\.[0-9]+", version):
        return
    facts = facts_for(version)
    if facts is None:
        yield src.finding(("cluster", "kubernetesVersion"),
                          f"Kubernetes {version} is not in k8sseed's version table; "
                          f"supported minors: {supported_minors()}")
        return
    mode = _get(src.data, "kubeProxy", "mode")
    if mode == "nftables" and facts.minor < NFTABLES_SINCE:
        yield src.finding(("kubeProxy", "mode"),
                          f"kube-proxy nftables mode needs Kubernetes 1.31 or newer (it is alpha behind a feature "
                          f"gate before); use ipvs or iptables with {version}")


def check_url_placeholders(src: Source) -> Iterator[Finding]:
    allowed = {"kubernetesPackages": {"minor"}, "dockerPackages": {"family"}, "criDockerd": {"version", "arch"},
               "apt": set(), "calicoOperator": {"version"}, "purelbCRDs": {"version"}, "purelb": {"version"},
               "kubernetesKey": {"minor"}, "dockerKey": {"family"}}
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
        yield src.finding(where, f"with keepalived-haproxy the endpoint must use HAProxy's port: "
                                 f"write {host}:{haproxy_port} (or set controlPlaneLB.keepalived.haproxyPort: {port})")
    for i, node in _control_plane_nodes(src):
        iface = _iface(node.get("ip"))
        if iface and vip not in iface.network:
            yield src.finding(("nodes", i, "ip"), f"VRRP moves the VIP {vip} between control-plane nodes on one "
                                                  f"subnet, but {node.get('name')} is in {iface.network}")
        if not node.get("interfaceName"):
            yield src.finding(("nodes", i), "keepalived needs the interface name: set interfaceName (e.g. uplink0) "
                                            "on every control-plane node; the NIC is renamed to it at boot")


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
    for i, node in _nodes(src):
        iface = _iface(node.get("ip"))
        labels = node.get("labels") if isinstance(node.get("labels"), dict) else {}
        if iface is None:
            continue
        usable = [(p, _addr(p.get("address"))) for p in peers if isinstance(p, dict)]
        usable = [(p, a) for p, a in usable if a is not None and isinstance(p.get("nodeSelector", {}), dict)]
        if len(usable) < len(peers):
            continue  # the schema reports the broken peer
        matching = [p for p, address in usable if address in iface.network
                    and all(labels.get(k) == v for k, v in p.get("nodeSelector", {}).items())]
        if not matching:
            yield src.finding(("nodes", i), f"{node.get('name')} has no BGP peer: no bgp.peers address is in its "
                                            f"subnet {iface.network} with a matching nodeSelector, so its pod "
                                            "routes would never reach the fabric")


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


CHECKS: tuple[Check, ...] = (check_labels, check_unique, check_subnets, check_gateways, check_endpoint,
                             check_control_planes, check_version, check_url_placeholders, check_repository_keys,
                             check_pki_dates, check_users,
                             check_lb_mode, check_bgp, check_purelb, check_external_ips)


def semantic_findings(src: Source) -> list[Finding]:
    findings: list[Finding] = []
    for check in CHECKS:
        findings.extend(check(src))
    return findings


def warnings_for(src: Source) -> list[str]:
    """Things that build fine but deserve a word."""
    out: list[str] = []
    version = _get(src.data, "cluster", "kubernetesVersion")
    facts = facts_for(version) if isinstance(version, str) else None
    mode = _get(src.data, "kubeProxy", "mode") or "ipvs"
    if facts and mode == "ipvs" and facts.minor >= IPVS_DEPRECATED_SINCE:
        out.append(f"kube-proxy ipvs mode is deprecated from Kubernetes 1.35 (KEP-5495) and {version} logs a warning "
                   "at startup; consider kubeProxy.mode: nftables")
    if not _get(src.data, "runtime", "criDockerd", "sha256"):
        out.append("runtime.criDockerd.sha256 is not set: nodes download cri-dockerd over HTTPS without a checksum "
                   "check; set it to the release tarball's sha256")
    if _get(src.data, "cluster", "bootstrapTokenTTL") in (None, "0"):
        out.append("the bootstrap token never expires (cluster.bootstrapTokenTTL: 0) so nodes added later can join; "
                   "anyone holding a seed can join a node until you delete the token")
    return out
