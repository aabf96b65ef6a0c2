"""The runbook for a profile change: what to run on the cluster, generated from the previous build's manifest
(names, roles, addresses) and the new profile. Nodes that left need draining, etcd member removal and deletion;
nodes that were added may need files of running nodes replaced before they boot (VRRP peers, routers).

A rebuild cannot take a node out of a running cluster (nodes never re-read their seeds, and nothing runs a
controller), so removal is a person's job; this module writes their exact commands. Each role has its own
function in ROLE_STEPS; a role without one gets an explicit "by hand" step.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k8sseed.components.keepalived_haproxy import HAPROXY_CFG, KEEPALIVED_CONF
from k8sseed.profile.model import Profile

ETCD_SCRIPT = "/usr/local/sbin/k8sseed-etcd"
ETCD_MEMBER_SCRIPT = "/usr/local/sbin/k8sseed-etcd-member"  # on external etcd nodes
DRAIN = ("kubectl", "drain", "{name}", "--ignore-daemonsets", "--delete-emptydir-data")


@dataclass(frozen=True)
class Step:
    text: str  # what and why, one line
    commands: tuple[str, ...] = ()  # shell lines, each quoted
    where: str = "anywhere with kubectl and the cluster's admin kubeconfig"


@dataclass(frozen=True)
class RemovedNode:
    name: str
    role: str
    ip: str  # address without prefix

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> RemovedNode:
        return cls(str(entry["name"]), str(entry.get("role", "?")), str(entry.get("ip", "")).split("/")[0])


@dataclass(frozen=True)
class Remaining:
    """What the new profile keeps: its control planes (name, address) in bootstrap order, and the init node."""

    control_planes: tuple[tuple[str, str], ...]
    lb_mode: str
    has_bgp: bool
    external_etcd: bool = False
    etcd_members: tuple[tuple[str, str], ...] = ()  # external etcd nodes (name, address) that keep running

    @classmethod
    def from_profile(cls, profile: Profile, running: set[str] | None = None) -> Remaining:
        """`running`: the nodes of the previous build; a node new in the profile is no etcd member yet."""
        cps = tuple((n.name, n.address) for n in profile.nodes
                    if n.is_control_plane and (running is None or n.name in running))
        etcd = tuple((n.name, n.address) for n in profile.nodes if n.is_etcd and (running is None or n.name in running))
        return cls(cps, profile.lb_mode, profile.bgp is not None, profile.external_etcd, etcd)


def _line(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)


def _drain(node: RemovedNode) -> Step:
    return Step(f"move {node.name}'s workloads away (PodDisruptionBudgets are respected)",
                (_line(*(w.format(name=node.name) for w in DRAIN)),))


def _delete(node: RemovedNode) -> Step:
    return Step(f"remove the Node object of {node.name}", (_line("kubectl", "delete", "node", node.name),))


def _retire(node: RemovedNode) -> Step:
    return Step(f"power {node.name} off and detach its seed ISO; to reuse the machine, wipe its disk first "
                "(or run 'kubeadm reset -f' on it), since its kubelet still holds the cluster's credentials",
                where=node.name)


def worker_steps(node: RemovedNode, remaining: Remaining) -> tuple[Step, ...]:
    return (_drain(node), _delete(node), _retire(node))


def control_plane_steps(node: RemovedNode, remaining: Remaining) -> tuple[Step, ...]:
    """Stacked etcd: the member goes before the machine, one control plane at a time, so quorum is never lost."""
    steps = [_drain(node)]
    others = [word for name, address in remaining.control_planes for word in (name, address)]
    if others and not remaining.external_etcd:  # external etcd: a control plane holds no etcd member
        first = remaining.control_planes[0][0]
        steps.append(Step(
            f"remove {node.name}'s etcd member (peer URL https://{node.ip}:2380) through a healthy remaining "
            f"member; 'kubeadm reset -f' on {node.name} itself does the same while it still runs",
            (_line("sudo", ETCD_SCRIPT, "remove-member", node.name, node.ip, *others),),
            where=f"one of the remaining control planes, e.g. {first}"))
        steps.append(Step("check that etcd lists only the remaining members and is healthy before the next removal",
                          (_line("sudo", ETCD_SCRIPT, "members", remaining.control_planes[0][1]),),
                          where=first))
    steps += [_delete(node), _retire(node)]
    return tuple(steps)


def etcd_steps(node: RemovedNode, remaining: Remaining) -> tuple[Step, ...]:
    """External etcd: the member goes before the machine (no Node object: an etcd node is not a Kubernetes node)."""
    steps = []
    if remaining.etcd_members:
        first, ips = remaining.etcd_members[0][0], [address for _, address in remaining.etcd_members]
        steps.append(Step(f"remove {node.name}'s etcd member (peer URL https://{node.ip}:2380) through a healthy "
                          "remaining member, before it is powered off, so the quorum is counted without it",
                          (_line("sudo", ETCD_MEMBER_SCRIPT, "remove", node.name, *ips),),
                          where=f"one of the remaining etcd nodes, e.g. {first}"))
        steps.append(Step("check that etcd lists only the remaining members before the next removal",
                          (_line("sudo", ETCD_MEMBER_SCRIPT, "members", ips[0]),), where=first))
    steps.append(Step(f"the API servers still list https://{node.ip}:2379 in --etcd-servers and skip it while it "
                      "does not answer; to drop it, remove it from /etc/kubernetes/manifests/kube-apiserver.yaml on "
                      "each control plane, one at a time (the kubelet restarts the API server)",
                      where="each control plane"))
    steps.append(Step(f"power {node.name} off and detach its seed ISO; wipe its disk before reusing the machine "
                      "(it holds the etcd data and its member key)", where=node.name))
    return tuple(steps)


RoleSteps = Callable[[RemovedNode, Remaining], tuple[Step, ...]]
ROLE_STEPS: dict[str, RoleSteps] = {"worker": worker_steps, "control-plane": control_plane_steps, "etcd": etcd_steps}


def _by_hand(node: RemovedNode, remaining: Remaining) -> tuple[Step, ...]:
    return (Step(f"{node.name} has role '{node.role}', which this k8sseed has no runbook for: take it out of the "
                 "cluster by hand, then power it off", where=node.name),)


def removal_steps(previous: dict[str, Any], profile: Profile) -> tuple[tuple[RemovedNode, tuple[Step, ...]], ...]:
    """For every node of the previous build that the profile no longer lists, in the previous bootstrap order
    reversed: workers first, control planes after them, the first control plane last."""
    kept = {n.name for n in profile.nodes}
    entries = [n for n in previous.get("nodes", []) if isinstance(n, dict) and isinstance(n.get("name"), str)
               and n["name"] not in kept]
    entries.sort(key=lambda n: n.get("bootstrapOrder", 0) if isinstance(n.get("bootstrapOrder"), int) else 0,
                 reverse=True)
    running = {n["name"] for n in previous.get("nodes", []) if isinstance(n, dict) and isinstance(n.get("name"), str)}
    remaining = Remaining.from_profile(profile, running)
    result = []
    for entry in entries:
        node = RemovedNode.from_manifest(entry)
        result.append((node, ROLE_STEPS.get(node.role, _by_hand)(node, remaining)))
    return tuple(result)


def _install(profile_path: str, node: str, path: str, reload: str) -> Step:
    local = f"{node}.{path.rsplit('/', 1)[1]}"
    # The file may hold a key (VRRP password): private copies, removed once installed. `cp` onto the existing file
    # keeps its owner and mode.
    return Step(f"give {node} this build's {path} and reload {reload}",
                ("(umask 077 && " + _line("k8sseed", "render", profile_path, node, "--write-file", path)
                 + " > " + shlex.quote(local) + ")",
                 f"# copy {local} to {node}, then on {node}:",
                 _line("sudo", "cp", local, path) + " && " + _line("sudo", "systemctl", "reload", reload)
                 + " && " + _line("rm", "-f", local)),
                where=f"where you build, then {node}")


def addition_steps(previous: dict[str, Any], profile: Profile, profile_path: str) -> tuple[Step, ...]:
    """Before nodes new in the profile boot: what the running nodes and the routers must learn first."""
    before = {n["name"] for n in previous.get("nodes", []) if isinstance(n, dict) and isinstance(n.get("name"), str)}
    added = [n for n in profile.nodes if n.name not in before]
    if not added:
        return ()
    steps: list[Step] = []
    if profile.bgp is not None:
        steps.append(Step("apply this build's router/*.conf to the routers, so that the new nodes' BGP sessions "
                          "come up", where="the routers"))
    new_cps = [n for n in added if n.is_control_plane]
    running_cps = [n.name for n in profile.nodes if n.is_control_plane and n.name in before]
    if new_cps and profile.lb_mode == "keepalived-haproxy":
        # Unicast VRRP: a running control plane sends its adverts only to the peers it was built with. A new one
        # that hears none takes the VIP too (two holders), so the running ones must know it before it boots.
        for name in running_cps:
            steps.append(_install(profile_path, name, KEEPALIVED_CONF, "keepalived"))
            steps.append(_install(profile_path, name, HAPROXY_CFG, "haproxy"))
    elif new_cps and profile.lb_mode == "node-local":
        steps += [_install(profile_path, n.name, HAPROXY_CFG, "haproxy") for n in profile.nodes if n.name in before]
    return tuple(steps)


def after_notes(removed: tuple[tuple[RemovedNode, tuple[Step, ...]], ...], profile: Profile) -> tuple[str, ...]:
    notes = []
    remaining = Remaining.from_profile(profile)
    if remaining.has_bgp and removed:
        notes.append("apply the new router/*.conf of this build to the routers: they still list the removed nodes "
                     "as BGP neighbours")
    if any(node.role == "control-plane" for node, _ in removed) and remaining.lb_mode in ("node-local",
                                                                                         "keepalived-haproxy"):
        notes.append("the HAProxy of nodes built before keeps the removed control planes as backends (marked down "
                     "by its health check) until those nodes are re-imaged from this build")
    return tuple(notes)


def _step_lines(number: int, step: Step) -> list[str]:
    return [f"{number}. [{step.where}] {step.text}", *(f"     {command}" for command in step.commands)]


def render_runbook(removed: tuple[tuple[RemovedNode, tuple[Step, ...]], ...], profile: Profile,
                   additions: tuple[Step, ...] = ()) -> str:
    lines: list[str] = []
    number = 0
    if additions:
        lines.append("Runbook: before the new nodes boot:")
        for step in additions:
            number += 1
            lines += _step_lines(number, step)
    if not removed:
        return "\n".join(lines) + "\n" if lines else ""
    lines.append(f"Runbook: {len(removed)} node(s) left the profile: {', '.join(n.name for n, _ in removed)}."
                 " One node at a time, in this order:")
    for node, steps in removed:
        lines.append(f"# {node.name} ({node.role}, {node.ip})")
        for step in steps:
            number += 1
            lines += _step_lines(number, step)
    for note in after_notes(removed, profile):
        number += 1
        lines.append(f"{number}. {note}")
    return "\n".join(lines) + "\n"
