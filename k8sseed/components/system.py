"""Host identity, users, time and the OS package mirror: plain cloud-config modules."""

from __future__ import annotations

from typing import Any

from k8sseed.components import NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan


def _users(plan: ClusterPlan) -> list[dict[str, Any]]:
    hashes = dict(plan.password_hashes)
    users = []
    for user in plan.profile.users:
        entry: dict[str, Any] = {"name": user.name, "shell": user.shell}
        if user.sudo:
            entry["sudo"] = "ALL=(ALL) NOPASSWD:ALL"
        if user.name in hashes:
            entry["hashed_passwd"] = hashes[user.name]
            entry["lock_passwd"] = False
        else:
            entry["lock_passwd"] = True
        if user.ssh_authorized_keys:
            entry["ssh_authorized_keys"] = list(user.ssh_authorized_keys)
        users.append(entry)
    return users


def system_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    p = plan.profile
    config: dict[str, Any] = {
        "hostname": node.name,
        "preserve_hostname": False,
        "manage_etc_hosts": "localhost",
        "timezone": p.timezone,
        "ssh_pwauth": False,
        "disable_root": True,
    }
    users = _users(plan)
    if users:
        config["users"] = users
    if p.ntp_servers:
        config["ntp"] = {"enabled": True, "servers": list(p.ntp_servers)}
    if p.mirrors.apt:
        config["apt"] = {"primary": [{"arches": ["default"], "uri": p.mirrors.apt}]}
    return NodeFragment(cloud_config=config)
