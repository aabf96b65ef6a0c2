"""Node components: each turns the plan for one node into a NodeFragment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from k8sseed.plan import ClusterPlan, NodePlan


@dataclass(frozen=True)
class NodeFile:
    path: str
    content: str
    permissions: str = "0644"


@dataclass(frozen=True)
class NodeFragment:
    files: tuple[NodeFile, ...] = ()
    env: tuple[tuple[str, str | tuple[str, ...]], ...] = ()  # assignments for /etc/k8sseed/node.env
    cloud_config: dict[str, Any] = field(default_factory=dict)  # top-level cloud-config keys
    runcmd: tuple[tuple[str, ...], ...] = ()


Component = Callable[[ClusterPlan, NodePlan], NodeFragment]
