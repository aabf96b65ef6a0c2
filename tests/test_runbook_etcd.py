"""The removal runbook's etcd commands, run as printed against a real 3-member etcd cluster (Debian's etcd-server)
on loopback: the member of the control plane leaving the profile goes, the others stay healthy."""

from __future__ import annotations

import json
import shlex
import subprocess
import time

from conftest import require_tool
from netns_support import stop_process
from test_etcd_membership import EtcdLab

from k8sseed.runbook import ETCD_SCRIPT, Remaining, RemovedNode, control_plane_steps


def _join_when_etcd_allows(lab: EtcdLab, name: str) -> None:
    """etcd refuses a member add until the previous new member has caught up ("unhealthy cluster")."""
    for _ in range(30):
        try:
            lab.join(name)
            return
        except subprocess.CalledProcessError:
            time.sleep(1)
    lab.join(name)


def test_the_runbooks_etcd_commands_remove_the_leaving_control_planes_member(tmp_path):
    for tool in ("etcd", "etcdctl", "openssl"):
        require_tool(tool)
    lab = EtcdLab(tmp_path)
    try:
        lab.start_etcd("cp-1", f"cp-1={lab.peer_url('cp-1')}", "new")
        lab.join("cp-2")
        _join_when_etcd_allows(lab, "cp-3")
        assert len(lab.members()) == 3
        # A running cluster, not one that just grew: etcd refuses to remove a voting member (503) until the others
        # have been connected for its health interval (5 s), and k8sseed-etcd reports that refusal as an error.
        deadline = time.monotonic() + 30
        while lab.health().count("is healthy") < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(6)
        remaining = Remaining((("cp-1", lab.ips["cp-1"]), ("cp-2", lab.ips["cp-2"])), "external", False)
        steps = control_plane_steps(RemovedNode("cp-3", "control-plane", lab.ips["cp-3"]), remaining)
        commands = [shlex.split(c) for step in steps for c in step.commands if ETCD_SCRIPT in c]
        assert [words[2] for words in commands] == ["remove-member", "members"]
        for words in commands:
            assert words[:2] == ["sudo", ETCD_SCRIPT]
            result = lab.node_script(*words[2:])
            assert result.returncode == 0, result.stdout + result.stderr
        listed = json.dumps(json.loads(result.stdout))
        again = lab.node_script(*commands[0][2:])
        assert again.returncode == 0 and "is not an etcd member" in again.stdout, "running it twice is harmless"
        assert lab.peer_url("cp-3") not in listed and lab.peer_url("cp-1") in listed
        stop_process(lab.etcd.pop("cp-3"))
        assert len(lab.members()) == 2
        assert lab.health().count("is healthy") == 2
    finally:
        lab.close()
