"""Semantic checks for what `k8sseed serve` reads from the profile: node identities and the server section."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from k8sseed.errors import Finding
from k8sseed.profile.source import Source


def _nodes(src: Source) -> list[tuple[int, dict[str, Any]]]:
    nodes = src.data.get("nodes") if isinstance(src.data, dict) else None
    return [(i, n) for i, n in enumerate(nodes) if isinstance(n, dict)] if isinstance(nodes, list) else []


def check_unique_identities(src: Source) -> Iterator[Finding]:
    """One serial number or system UUID names one machine: the server could not tell two apart."""
    for key, what in (("serial", "serial number"), ("systemUuid", "system UUID")):
        seen: dict[str, int] = {}
        for i, node in _nodes(src):
            value = node.get(key)
            if not isinstance(value, str):
                continue
            norm = value.lower()
            if norm in seen:
                yield src.finding(("nodes", i, key), f"{what} '{value}' is already used by nodes[{seen[norm]}]: "
                                  "every machine has its own")
            else:
                seen[norm] = i


def check_allowed_networks(src: Source) -> Iterator[Finding]:
    server = src.data.get("seedServer") if isinstance(src.data, dict) else None
    networks = server.get("allowedNetworks") if isinstance(server, dict) else None
    for i, text in enumerate(networks if isinstance(networks, list) else []):
        if not isinstance(text, str):
            continue
        try:
            ipaddress.IPv4Network(text, strict=True)
        except ValueError:
            yield src.finding(("seedServer", "allowedNetworks", i),
                              f"'{text}' has host bits set: write the network address "
                              f"({ipaddress.IPv4Network(text, strict=False)})")
        else:
            if ipaddress.IPv4Network(text).prefixlen == 0:
                yield src.finding(("seedServer", "allowedNetworks", i),
                                  "0.0.0.0/0 would hand the seeds (they hold the cluster's keys) to any address: "
                                  "list the networks the nodes boot in")


def check_installer_nodes(src: Source) -> Iterator[Finding]:
    """install: ubuntu-autoinstall needs the installer to boot and an Ubuntu cluster (subiquity installs Ubuntu)."""
    data = src.data if isinstance(src.data, dict) else {}
    server = data.get("seedServer")
    has_installer = isinstance(server, dict) and isinstance(server.get("autoinstall"), dict)
    os_section = data.get("os")
    family = os_section.get("family") if isinstance(os_section, dict) else None
    for i, node in _nodes(src):
        if node.get("install") != "ubuntu-autoinstall":
            continue
        if not has_installer:
            yield src.finding(("nodes", i, "install"), "ubuntu-autoinstall needs the installer to boot: add "
                              "seedServer.autoinstall (kernel, initrd and iso of the Ubuntu live-server ISO)")
        if family != "ubuntu":
            yield src.finding(("nodes", i, "install"), f"the Ubuntu installer installs Ubuntu, but os.family is "
                              f"'{family}': set os.family: ubuntu, or remove install from this node")


def seed_server_findings(src: Source) -> list[Finding]:
    return [*check_unique_identities(src), *check_allowed_networks(src), *check_installer_nodes(src)]
