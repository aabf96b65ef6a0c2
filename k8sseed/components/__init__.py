"""Node components: each turns the plan for one node into a NodeFragment.

A fragment says what the node needs in carrier-neutral terms (files, environment for the bootstrap, host
settings, users, units to start); k8sseed/carriers/ turns the merged fragments into cloud-init or Ignition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from k8sseed.plan import ClusterPlan, NodePlan


@dataclass(frozen=True)
class NodeFile:
    path: str
    content: str
    permissions: str = "0644"


@dataclass(frozen=True)
class NodeDownload:
    """A file the carrier fetches at first boot and checks against its sha256 before it lands (Ignition's
    `contents.source` + `verification.hash`); no carrier writes it unchecked."""

    path: str
    url: str
    sha256: str
    permissions: str = "0644"


@dataclass(frozen=True)
class NodeUser:
    name: str
    shell: str
    sudo: bool  # passwordless sudo for everything
    password_hash: str | None  # crypt hash; None: the password is locked
    ssh_authorized_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostSettings:
    hostname: str
    timezone: str
    ntp_servers: tuple[str, ...] = ()
    package_mirror: str | None = None  # the OS package mirror (apt on Debian and Ubuntu)


@dataclass(frozen=True)
class NodeFragment:
    files: tuple[NodeFile, ...] = ()
    env: tuple[tuple[str, str | tuple[str, ...]], ...] = ()  # assignments for /etc/k8sseed/node.env
    host: HostSettings | None = None  # one component (system) sets it
    users: tuple[NodeUser, ...] = ()
    start_units: tuple[str, ...] = ()  # systemd units enabled, then started once the node is configured
    downloads: tuple[NodeDownload, ...] = ()  # files fetched and checked by the carrier (Flatcar's sysext images)
    trusted_cas: tuple[str, ...] = ()  # PEM CAs the carrier's own fetches trust (Ignition's TLS), besides the system's


Component = Callable[[ClusterPlan, NodePlan], NodeFragment]
