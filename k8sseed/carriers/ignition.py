"""Ignition: a NodeConfig and the node's network as one Ignition config (spec 3.3.0) for Flatcar.

3.3.0 is what Butane's `flatcar` 1.0.0 variant emits; every Flatcar release since 3185.0.0 reads it (a newer
Ignition reads older specs too). Files go in as data: URLs, owned by root, replacing what the image has; the
files under /etc/systemd/system become systemd units, and the units the node starts are enabled, so systemd
starts them on the first boot right after Ignition (no runcmd: Ignition runs in the initramfs).
"""

from __future__ import annotations

import json
import posixpath
import urllib.parse
from typing import Any

from k8sseed.components import NodeDownload, NodeFile, NodeUser
from k8sseed.components.network import NodeNetwork
from k8sseed.node_config import NodeConfig

SPEC_VERSION = "3.3.0"
UNIT_DIR = "/etc/systemd/system"
NETWORK_DIR = "/etc/systemd/network"
# Characters a data: URL may carry unescaped (RFC 2397 uses URL characters; Ignition decodes percent-escapes).
_SAFE = "-_.~/:=@+,;!*'()"


def data_url(text: str) -> str:
    return "data:," + urllib.parse.quote(text, safe=_SAFE)


def _file(path: str, content: str, mode: int) -> dict[str, Any]:
    return {"path": path, "overwrite": True, "user": {"name": "root"}, "group": {"name": "root"},
            "contents": {"source": data_url(content)}, "mode": mode}


def _download(d: NodeDownload) -> dict[str, Any]:
    """A remote file Ignition fetches and checks: spec 3.1.0 and later take sha256 as well as sha512 (3.0.0 only
    sha512); a mismatch fails the Ignition stage, so an unchecked image never lands."""
    return {"path": d.path, "overwrite": True, "user": {"name": "root"}, "group": {"name": "root"},
            "contents": {"source": d.url, "verification": {"hash": f"sha256-{d.sha256}"}},
            "mode": int(d.permissions, 8)}


def sudoers_file(user: NodeUser) -> NodeFile:
    """What cloud-init's `sudo: ALL=(ALL) NOPASSWD:ALL` writes, as a sudoers drop-in."""
    return NodeFile(f"/etc/sudoers.d/k8sseed-{user.name}", f"{user.name} ALL=(ALL) NOPASSWD:ALL\n", "0440")


def networkd_files(network: NodeNetwork) -> tuple[NodeFile, ...]:
    """systemd-networkd files for the static address on the NIC with the node's MAC. The 00- prefix sorts
    before Flatcar's catch-all DHCP file (zz-default.network), so this one matches the NIC first."""
    name = network.interface_name or "primary"
    files = []
    match = f"[Match]\nMACAddress={network.mac}\n" if network.mac else f"[Match]\nName={name}\n"
    if network.interface_name and network.mac:
        files.append(NodeFile(f"{NETWORK_DIR}/00-k8sseed-{name}.link",
                              f"# Written by k8sseed\n{match}\n[Link]\nName={network.interface_name}\n"))
    lines = ["# Written by k8sseed: the node's static address (the same as network-config's)", match.rstrip("\n")]
    if network.mtu:
        lines += ["", "[Link]", f"MTUBytes={network.mtu}"]
    lines += ["", "[Network]", "DHCP=no", f"Address={network.address}"]
    if network.gateway:
        lines.append(f"Gateway={network.gateway}")
    lines += [f"DNS={server}" for server in network.nameservers]
    if network.search_domains:
        lines.append("Domains=" + " ".join(network.search_domains))
    files.append(NodeFile(f"{NETWORK_DIR}/00-k8sseed-{name}.network", "\n".join(lines) + "\n"))
    return tuple(files)


def host_files(config: NodeConfig) -> tuple[NodeFile, ...]:
    """The files that carry what cloud-init's host modules do: hostname, time servers, sudo rules."""
    host = config.host
    files = [NodeFile("/etc/hostname", host.hostname + "\n")]
    if host.ntp_servers:
        files.append(NodeFile("/etc/systemd/timesyncd.conf.d/10-k8sseed.conf",
                              "# Written by k8sseed\n[Time]\nNTP=" + " ".join(host.ntp_servers) + "\n"))
    files += [sudoers_file(user) for user in config.users if user.sudo]
    return tuple(files)


def _user(user: NodeUser) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": user.name, "shell": user.shell}
    if user.password_hash is not None:
        entry["passwordHash"] = user.password_hash
    if user.ssh_authorized_keys:
        entry["sshAuthorizedKeys"] = list(user.ssh_authorized_keys)
    return entry


def ignition_config(config: NodeConfig, network: NodeNetwork) -> dict[str, Any]:
    if config.host.package_mirror:
        raise ValueError("an OS package mirror has no meaning on Flatcar (no package manager)")
    files: list[dict[str, Any]] = []
    units: dict[str, dict[str, Any]] = {}
    for f in (*config.files, *host_files(config), *networkd_files(network)):
        folder, name = posixpath.split(f.path)
        if folder == UNIT_DIR:
            units[name] = {"name": name, "contents": f.content}
        else:
            files.append(_file(f.path, f.content, int(f.permissions, 8)))
    files += [_download(d) for d in config.downloads]
    for name in config.start_units:
        units.setdefault(name, {"name": name})["enabled"] = True
    result: dict[str, Any] = {"ignition": {"version": SPEC_VERSION}}
    if config.trusted_cas:  # Ignition's own HTTPS fetches (the downloads above) trust these besides the system's
        result["ignition"]["security"] = {"tls": {"certificateAuthorities": [
            {"source": data_url(ca)} for ca in config.trusted_cas]}}
    if config.users:
        result["passwd"] = {"users": [_user(user) for user in config.users]}
    result["storage"] = {"files": files,
                         "links": [{"path": "/etc/localtime", "overwrite": True, "hard": False,
                                    "target": f"/usr/share/zoneinfo/{config.host.timezone}"}]}
    result["systemd"] = {"units": list(units.values())}
    return result


def ignition_bytes(config: NodeConfig, network: NodeNetwork) -> bytes:
    return (json.dumps(ignition_config(config, network), indent=2, sort_keys=False) + "\n").encode("utf-8")
