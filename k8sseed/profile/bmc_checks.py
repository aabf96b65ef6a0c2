"""Semantic checks of the nodes' `bmc` sections (for `k8sseed attach`)."""

from __future__ import annotations

from collections.abc import Iterator

from k8sseed.errors import Finding
from k8sseed.profile.source import Source


def check_unique_bmc_systems(src: Source) -> Iterator[Finding]:
    """One Redfish system is one machine: two nodes on it would get each other's ISO."""
    nodes = src.data.get("nodes") if isinstance(src.data, dict) else None
    seen: dict[tuple[str, str], int] = {}
    for i, node in enumerate(nodes if isinstance(nodes, list) else []):
        bmc = node.get("bmc") if isinstance(node, dict) else None
        if not isinstance(bmc, dict) or not isinstance(bmc.get("redfish"), str) \
                or not isinstance(bmc.get("systemId"), str):
            continue
        key = (bmc["redfish"].rstrip("/").lower(), bmc["systemId"])
        if key in seen:
            yield src.finding(("nodes", i, "bmc", "systemId"),
                              f"system '{bmc['systemId']}' at {bmc['redfish']} is already nodes[{seen[key]}]'s "
                              "machine: every node has its own")
        else:
            seen[key] = i


def bmc_findings(src: Source) -> list[Finding]:
    return list(check_unique_bmc_systems(src))
