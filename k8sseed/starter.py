"""What `k8sseed init` writes into a starter profile: nodes, endpoint, version and SSH keys from its options."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from k8sseed.profile.hosts import endpoint_problem
from k8sseed.profile.schema_check import profile_schema
from k8sseed.versions import NFTABLES_SINCE, canonical, facts_for, newest_known, release_problem

DEFAULT_ENDPOINT = "10.20.0.10:6443"
PLACEHOLDER_NETWORK = "10.20.0.0/24"  # where counted nodes go when the endpoint is a DNS name
_NAME = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NODE = re.compile(rf"(?:(?P<role>cp|worker):)?(?P<name>{_NAME})=(?P<ip>[0-9.]+/[0-9]{{1,2}})"
                   r"@(?P<mac>(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2})")
_COUNTS = re.compile(r"(?P<cps>[0-9]{1,2})(?:\+(?P<workers>[0-9]{1,3}))?")



class StarterError(ValueError):
    """An init option that cannot make a profile; the message names the option."""


@dataclass(frozen=True)
class StarterNode:
    name: str
    role: str
    ip: str
    mac: str


@dataclass(frozen=True)
class Starter:
    endpoint: str
    gateway: str
    nodes: tuple[StarterNode, ...]
    version: str
    proxy_mode: str
    ssh_keys: tuple[str, ...]
    placeholders: bool  # addresses and MACs were made up from counts
    pod_subnet: str
    service_subnet: str
    note: str | None = None  # what init chose that the user did not say (printed, not written)


def _free_range(candidates: tuple[str, ...], taken: list[ipaddress.IPv4Network]) -> str:
    """The first candidate that overlaps nothing taken (the node networks, the other cluster range)."""
    for text in candidates:
        if not any(ipaddress.IPv4Network(text).overlaps(net) for net in taken):
            return text
    return candidates[0]  # validation then says what overlaps


def parse_version(text: str | None) -> str:
    if text is None:
        return newest_known()
    version = canonical(text)
    problem = release_problem(version) if version else f"'{text}' is not a Kubernetes release version"
    if version and version != text.lstrip("v") and problem is None:
        problem = f"'{text}' has a leading zero: did you mean {version}?"
    if problem:
        raise StarterError(f"--kubernetes-version: {problem}")
    assert version is not None
    return version


def _counted(text: str, endpoint: str) -> tuple[StarterNode, ...]:
    match = _COUNTS.fullmatch(text)
    assert match
    cps, workers = int(match.group("cps")), int(match.group("workers") or 0)
    if not 1 <= cps <= 9 or workers > 200:
        raise StarterError(f"--nodes {text}: use 1 to 9 control-plane nodes and at most 200 workers")
    base = _node_network(endpoint)
    nodes = []
    for role, prefix, count, first in (("control-plane", "cp", cps, 11), ("worker", "worker", workers, 21)):
        for n in range(count):
            ip = base.network_address + first + n
            mac = "52:54:00:" + ":".join(f"{int(octet):02x}" for octet in str(ip).split(".")[1:])
            nodes.append(StarterNode(f"{prefix}-{n + 1}", role, f"{ip}/24", mac))
    return tuple(nodes)


def _is_address(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _node_network(endpoint: str) -> ipaddress.IPv4Network:
    """The endpoint address's /24, or the placeholder network when the endpoint is a DNS name."""
    host = endpoint.partition(":")[0]
    if _is_address(host):
        return ipaddress.IPv4Network(f"{host}/24", strict=False)
    return ipaddress.IPv4Network(PLACEHOLDER_NETWORK)


def _listed(text: str) -> tuple[StarterNode, ...]:
    nodes = []
    for entry in (e.strip() for e in text.split(",")):
        match = _NODE.fullmatch(entry)
        if not match:
            raise StarterError(f"--nodes: '{entry}' is not [cp:|worker:]NAME=IP/PREFIX@MAC "
                               "(e.g. cp-1=10.0.0.11/24@52:54:00:12:34:56)")
        try:
            iface = ipaddress.IPv4Interface(match.group("ip"))
        except ValueError:
            raise StarterError(f"--nodes: '{match.group('ip')}' in '{entry}' is not an IPv4 address with a "
                               "prefix length (e.g. 10.0.0.11/24)") from None
        name = match.group("name")
        role = match.group("role") or ("cp" if name.startswith(("cp", "control")) else "worker")
        nodes.append(StarterNode(name, "control-plane" if role == "cp" else "worker", str(iface),
                                 match.group("mac").lower()))
    return tuple(nodes)


def read_ssh_keys(values: tuple[str, ...]) -> tuple[str, ...]:
    """Each value is a public key file (one key per line) or the key text itself."""
    pattern = re.compile(profile_schema()["$defs"]["user"]["properties"]["sshAuthorizedKeys"]["items"]["pattern"])
    keys: list[str] = []
    for value in values:
        path = Path(value).expanduser()
        if not value.startswith(("ssh-", "ecdsa-", "sk-")) and path.is_file():
            try:
                lines = path.read_text("utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise StarterError(f"--ssh-key {value}: cannot read it: {exc}") from exc
            found = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
            if "PRIVATE KEY" in "".join(found):
                raise StarterError(f"--ssh-key {value} is a private key: give the public one ({value}.pub)")
        else:
            found = [value.strip()]
        for key in found:
            if not pattern.fullmatch(key):
                shown = key if len(key) <= 40 else key[:37] + "..."
                raise StarterError(f"--ssh-key: '{shown}' is not an OpenSSH public key line "
                                   "('ssh-ed25519 AAAA... comment') nor a file holding one")
            keys.append(key)
    return tuple(dict.fromkeys(keys))


def make_starter(endpoint: str | None, nodes: str | None, version: str | None,
                 ssh_keys: tuple[str, ...]) -> Starter:
    chosen = parse_version(version)
    problem = endpoint_problem(endpoint) if endpoint is not None else None
    if problem:
        raise StarterError(f"--endpoint '{endpoint}' {problem}")
    spec = (nodes or "3+1").strip()
    note = None
    if _COUNTS.fullmatch(spec):
        endpoint = endpoint or DEFAULT_ENDPOINT
        listed, placeholders = _counted(spec, endpoint), True
        host = endpoint.partition(":")[0]
        if not _is_address(host):
            note = (f"the endpoint {host} is a DNS name, so the nodes got placeholder addresses "
                    f"in {PLACEHOLDER_NETWORK}: edit nodes[].ip, nodes[].mac and network.gateway in the profile, "
                    "or run init again with --nodes NAME=IP/PREFIX@MAC,...")
    else:
        if not endpoint:
            raise StarterError("--endpoint is required with --nodes entries: the VIP or load balancer address "
                               "(HOST[:PORT]) that no node owns")
        listed, placeholders = _listed(spec), False
    first = ipaddress.IPv4Interface(listed[0].ip).network if listed else ipaddress.IPv4Network("10.20.0.0/24")
    facts = facts_for(chosen)
    assert facts is not None
    node_nets = [ipaddress.IPv4Interface(n.ip).network for n in listed]
    service = _free_range(("10.96.0.0/12", "172.20.0.0/16"), node_nets)
    pods = _free_range(("192.168.0.0/16", "10.244.0.0/16", "172.16.0.0/16"),
                       [*node_nets, ipaddress.IPv4Network(service)])
    return Starter(
        endpoint=endpoint, gateway=str(first.network_address + 1), nodes=listed, version=chosen,
        proxy_mode="nftables" if facts.minor >= NFTABLES_SINCE else "ipvs",
        ssh_keys=read_ssh_keys(ssh_keys), placeholders=placeholders, pod_subnet=pods, service_subnet=service,
        note=note,
    )
