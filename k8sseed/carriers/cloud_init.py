"""cloud-init: a NodeConfig as #cloud-config user-data (NoCloud seeds)."""

from __future__ import annotations

import functools
from typing import Any

from k8sseed.components import NodeFile, NodeUser
from k8sseed.node_config import NodeConfig
from k8sseed.yamltext import dump, dump_mapping, dump_memoised


def _user(user: NodeUser) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": user.name, "shell": user.shell}
    if user.sudo:
        entry["sudo"] = "ALL=(ALL) NOPASSWD:ALL"
    if user.password_hash is not None:
        entry["hashed_passwd"] = user.password_hash
        entry["lock_passwd"] = False
    else:
        entry["lock_passwd"] = True
    if user.ssh_authorized_keys:
        entry["ssh_authorized_keys"] = list(user.ssh_authorized_keys)
    return entry


def _head(config: NodeConfig) -> dict[str, Any]:
    """The cloud-config modules before write_files: identity, users, time, package mirror."""
    host = config.host
    head: dict[str, Any] = {
        "hostname": host.hostname,
        "preserve_hostname": False,
        "manage_etc_hosts": "localhost",
        "timezone": host.timezone,
        "ssh_pwauth": False,
        "disable_root": True,
    }
    if config.users:
        head["users"] = [_user(user) for user in config.users]
    if host.ntp_servers:
        head["ntp"] = {"enabled": True, "servers": list(host.ntp_servers)}
    if host.package_mirror:
        head["apt"] = {"primary": [{"arches": ["default"], "uri": host.package_mirror}]}
    return head


def _runcmd(config: NodeConfig) -> list[list[str]]:
    if not config.start_units:
        return []
    # --no-block: cloud-final (running these commands) finishes now; the bootstrap takes minutes. No
    # After=cloud-final in the units: multi-user.target orders after it, and cloud-final after
    # multi-user.target, so that ordering would be a cycle that systemd breaks by dropping the job.
    return [["systemctl", "daemon-reload"],
            *(["systemctl", "enable", unit] for unit in config.start_units),
            ["systemctl", "start", "--no-block", *config.start_units]]


def _file_entry(f: NodeFile) -> dict[str, Any]:
    return {"path": f.path, "content": f.content, "owner": "root:root", "permissions": f.permissions}


@functools.lru_cache(maxsize=512)
def _file_entry_yaml(f: NodeFile) -> str:
    """One write_files entry as a YAML sequence item. Most entries (the bootstrap script, units, templates) are
    the same on every node: they are dumped once per build instead of once per node."""
    return dump([_file_entry(f)])


def _refuse_downloads(config: NodeConfig) -> None:
    if config.downloads:  # write_files has no checksum: never land an unchecked image
        raise ValueError(f"cloud-init cannot fetch and check {config.downloads[0].path}")


def user_data_dict(config: NodeConfig) -> dict[str, Any]:
    _refuse_downloads(config)
    return {**_head(config), "write_files": [_file_entry(f) for f in config.files], "runcmd": _runcmd(config)}


def user_data_text(config: NodeConfig) -> str:
    """`#cloud-config` + the YAML of user_data_dict, byte for byte (a test holds it to that), with the
    write_files entries dumped through a cache."""
    _refuse_downloads(config)
    return ("#cloud-config\n" + dump_mapping(_head(config)) + "write_files:\n"
            + "".join(_file_entry_yaml(f) for f in config.files) + dump_memoised({"runcmd": _runcmd(config)}))
