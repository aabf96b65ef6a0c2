"""Hostile and sloppy values: each is rejected with a clear message, or arrives on the node as data, not syntax."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from conftest import PROFILES, require_tool

from k8sseed.errors import ProfileError
from k8sseed.pki import derive_pki
from k8sseed.plan import make_plan
from k8sseed.profile import load_profile_text
from k8sseed.secrets import ClusterSecret
from k8sseed.seed import build_seed

HOSTILE = [
    "x'; rm -rf / #",
    'x"; reboot; echo "',
    "$(reboot)",
    "`reboot`",
    "a;b&c|d",
    "a;b&c(d)*e,f=g",
    "a\nb",
    "key: value",
    "# comment",
    "&anchor *alias",
    "!!python/object/apply:os.system ['reboot']",
    "} protocol bgp evil { neighbor 6.6.6.6 as 1; }",
    "backend evil\n  server x 6.6.6.6:1",
    "nul\x00byte",
    "ｋｕｂｅ‐ａｄｍｉｎ",  # full-width look-alikes
    "\u202etxt.exe",
    "A" * 5000,
]

# (where in the profile, how to put the value there, how to find it again in a node's seed)
FIELDS = {
    "cluster.name": (("cluster", "name"), None),
    "nodes[0].name": (("nodes", 0, "name"), None),
    "nodes[3].labels value": (("nodes", 3, "labels", "example.com/role"), None),
    "nodes[3].taints[0].value": (("nodes", 3, "taints", 0, "value"), None),
    "os.users[0].name": (("os", "users", 0, "name"), None),
    "os.users[0].password": (("os", "users", 0, "password"), "password"),
    "os.users[0].sshAuthorizedKeys[0] comment": (("os", "users", 0, "sshAuthorizedKeys", 0), "sshkey"),
    "mirrors.kubernetesPackages": (("mirrors", "kubernetesPackages"), "url"),
    "mirrors.apt": (("mirrors", "apt"), "url"),
    "os.ntpServers[0]": (("os", "ntpServers", 0), None),
    "os.timezone": (("os", "timezone"), None),
    "runtime.docker.version": (("runtime", "docker", "version"), None),
    "bgp.peers[0].name": (("bgp", "peers", 0, "name"), None),
    "purelb.pools[0].name": (("purelb", "pools", 0, "name"), None),
}

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE6K6GTdUHxlGkq8tdbuiXjpKqxxP2cX3Q7fUVJbE2Qk"


def _base() -> dict:
    data = yaml.safe_load((PROFILES / "reference.yaml").read_text())
    data["nodes"][3]["labels"] = {"example.com/role": "ok"}
    data["nodes"][3]["taints"] = [{"key": "example.com/x", "value": "ok", "effect": "NoSchedule"}]
    return data


def _put(data: dict, path: tuple, value: str) -> None:
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _value_for(kind: str | None, hostile: str) -> str:
    if kind == "sshkey":
        return f"{KEY} {hostile}"
    if kind == "url":
        return f"https://mirror.example.com/{hostile}"
    return hostile


def _seeds(text: str):
    loaded = load_profile_text(text)
    secret = ClusterSecret(b"k" * 32)
    c = loaded.profile.cluster
    plan = make_plan(loaded.profile, secret, derive_pki(secret, c.pki_not_before, c.ca_validity_days))
    return [build_seed(plan, n) for n in plan.nodes]


def _sourced(env_text: str, variable: str, tmp_path) -> str:
    env = tmp_path / "node.env"
    env.write_text(env_text)
    return subprocess.run(["bash", "-c", f'source "$1"; printf %s "${variable}"', "bash", str(env)],
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_value_is_rejected_or_inert(field, hostile, tmp_path):
    path, kind = FIELDS[field]
    value = _value_for(kind, hostile)
    data = _base()
    _put(data, path, value)
    text = yaml.safe_dump(data, allow_unicode=True, width=10_000)
    try:
        seeds = _seeds(text)
    except ProfileError as exc:
        rendered = str(exc)
        assert len(rendered.splitlines()) == len(exc.findings)  # one line per finding: nothing leaks a newline
        assert any(f.path.startswith(field.split(" ")[0].split(".")[0]) for f in exc.findings), rendered
        return
    for seed in seeds:
        user_data = yaml.safe_load(seed.user_data)  # still one well-formed document
        assert isinstance(user_data, dict)
        files = {f["path"]: f["content"] for f in user_data["write_files"]}
        if kind == "password":
            assert hostile not in seed.user_data.decode()
            assert user_data["users"][0]["hashed_passwd"].startswith("$6$")
        elif kind == "sshkey":
            assert user_data["users"][0]["ssh_authorized_keys"] == [value]
        elif kind == "url" and path[-1] == "kubernetesPackages":
            assert _sourced(files["/etc/k8sseed/node.env"], "K8SSEED_KUBERNETES_REPO", tmp_path) == value
        elif kind == "url":
            assert user_data["apt"]["primary"][0]["uri"] == value
    env = seeds[0].user_data.decode()
    assert "reboot" not in env or kind in ("password", "sshkey", "url")


def test_every_accepted_hostile_url_keeps_node_env_shellcheck_clean(tmp_path):
    shellcheck = require_tool("shellcheck")
    for hostile in HOSTILE:
        data = _base()
        _put(data, ("mirrors", "kubernetesPackages"), f"https://mirror.example.com/{hostile}")
        try:
            seeds = _seeds(yaml.safe_dump(data, allow_unicode=True, width=10_000))
        except ProfileError:
            continue
        files = {f["path"]: f["content"] for f in yaml.safe_load(seeds[0].user_data)["write_files"]}
        env = tmp_path / "node.env"
        env.write_text(files["/etc/k8sseed/node.env"])
        assert subprocess.run([shellcheck, "--shell=bash", str(env)], capture_output=True).returncode == 0
