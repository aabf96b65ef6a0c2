"""Host identity, users, time and the OS package mirror."""

from __future__ import annotations

from k8sseed.components import HostSettings, NodeFragment, NodeUser
from k8sseed.plan import ClusterPlan, NodePlan


def _users(plan: ClusterPlan) -> tuple[NodeUser, ...]:
    hashes = dict(plan.password_hashes)
    return tuple(NodeUser(user.name, user.shell, user.sudo, hashes.get(user.name), tuple(user.ssh_authorized_keys))
                 for user in plan.profile.users)


def system_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    p = plan.profile
    host = HostSettings(node.name, p.timezone, tuple(p.ntp_servers), p.mirrors.apt or None)
    return NodeFragment(host=host, users=_users(plan))
