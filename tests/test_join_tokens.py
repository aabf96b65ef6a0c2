"""Time-window join tokens: the token math, the control planes' timer script (run against kubeadm and kubectl
stand-ins that keep the token Secrets as files), and what the seeds carry."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, make_secret, require_tool, run_cli

from k8sseed.build import load_plan
from k8sseed.join_tokens import DAY, TOKEN_ALPHABET, token_for_time, tokens_kept_at, window_index, window_token
from k8sseed.seed import user_data_dict
from k8sseed.templating import render_static

TOKEN = re.compile(r"\A[a-z0-9]{6}\.[a-z0-9]{16}\Z")  # cluster-bootstrap's BootstrapTokenPattern
KEY = bytes(range(32))
WEEK = 7 * DAY
NOW = 1_790_000_000  # 2026-09-21, inside window 2959 of 7 days
REFERENCE = PROFILES / "reference.yaml"


def test_window_tokens_have_kubeadms_format_and_differ_per_window():
    tokens = [window_token(KEY, WEEK, k).token for k in range(2000, 2200)]
    assert all(TOKEN.match(t) for t in tokens)
    assert len(set(tokens)) == len(tokens)
    assert len({t[:6] for t in tokens}) == len(tokens), "token ids (the Secret names) must not collide either"


def test_window_tokens_depend_on_the_key_and_the_window_length():
    assert window_token(KEY, WEEK, 5).token == window_token(KEY, WEEK, 5).token
    assert window_token(KEY, WEEK, 5).token != window_token(bytes(32), WEEK, 5).token
    assert window_token(KEY, WEEK, 5).token != window_token(KEY, 14 * DAY, 5).token


def test_characters_are_spread_over_the_whole_alphabet():
    text = "".join(window_token(KEY, WEEK, k).token.replace(".", "") for k in range(3000))
    counts = [text.count(c) for c in TOKEN_ALPHABET]
    expected = len(text) / 36
    assert min(counts) > 0.85 * expected and max(counts) < 1.15 * expected


@pytest.mark.parametrize("offset", [0, 1, WEEK // 2, WEEK - 1])
def test_a_seed_built_anywhere_in_a_window_stays_valid_at_least_one_window(offset):
    start = window_index(NOW, WEEK) * WEEK
    token = token_for_time(KEY, WEEK, start + offset)
    assert token.index == window_index(NOW, WEEK)
    assert WEEK <= token.expires - (start + offset) <= 2 * WEEK
    assert token.expires_rfc3339.endswith("T00:00:00Z")  # windows of whole days start at midnight UTC


def test_the_kept_tokens_cover_the_previous_current_and_next_window():
    kept = tokens_kept_at(KEY, WEEK, NOW)
    k = window_index(NOW, WEEK)
    assert [t.index for t in kept] == [k - 1, k, k + 1]
    assert all(t.expires > NOW for t in kept), "a kept token is never already expired"
    # The token a seed built at any time in the previous, this or the next window carries is among them.
    for moment in (NOW - WEEK, NOW, NOW + WEEK):
        assert token_for_time(KEY, WEEK, moment) in kept


# ---- the timer's script on a control plane, with kubeadm/kubectl stand-ins ----

KUBEADM_STANDIN = r"""#!/bin/bash
# kubeadm stand-in: `token create TOKEN ... --ttl Ns` stores the Secret as a file; an existing one is an error.
set -eu
echo "kubeadm $*" >> "$STATE/calls"
[[ $1 == token && $2 == create ]] || exit 3
token=$3; id=${token%%.*}
[[ ! -e $STATE/bootstrap-token-$id ]] || { echo "a token with id \"$id\" already exists" >&2; exit 1; }
while (($#)); do case $1 in --ttl) ttl=$2; shift ;; esac; shift; done
echo "$token $ttl" > "$STATE/bootstrap-token-$id"
"""
KUBECTL_STANDIN = r"""#!/bin/bash
# kubectl stand-in: `get secret NAME` succeeds when the stand-in kubeadm created NAME.
set -eu
echo "kubectl $*" >> "$STATE/calls"
name=${*: -1}
[[ -e $STATE/$name ]]
"""


@pytest.fixture()
def node(tmp_path: Path) -> dict[str, Path]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("kubeadm", KUBEADM_STANDIN), ("kubectl", KUBECTL_STANDIN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "k8sseed-join-tokens"
    script.write_text(render_static("k8sseed-join-tokens.sh.j2"))
    script.chmod(0o755)
    env_file = tmp_path / "node.env"
    env_file.write_text(f"K8SSEED_TOKEN_KEY={KEY.hex()}\nK8SSEED_TOKEN_WINDOW_SECONDS={WEEK}\n"
                        "K8SSEED_CLOCK_NOT_BEFORE=1767225600\n")
    admin = tmp_path / "admin.conf"
    admin.write_text("apiVersion: v1\nkind: Config\n")
    return {"bin": bin_dir, "state": state, "script": script, "env": env_file, "admin": admin}


def _run(node: dict[str, Path], now: int | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{node['bin']}:{os.environ['PATH']}", "STATE": str(node["state"]),
           "K8SSEED_ENV_FILE": str(node["env"]), "K8SSEED_ADMIN_KUBECONFIG": str(node["admin"])}
    if now is not None:
        env["K8SSEED_NOW"] = str(now)
    return subprocess.run([str(node["script"]), *args], capture_output=True, text=True, env=env, timeout=60)


def _secrets(node: dict[str, Path]) -> dict[str, tuple[str, str]]:
    return {p.name: tuple(p.read_text().split()) for p in node["state"].glob("bootstrap-token-*")}


def test_timer_script_is_shellcheck_clean(node):
    result = subprocess.run([require_tool("shellcheck"), "--shell=bash", "--severity=style", str(node["script"])],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_timer_script_computes_the_same_tokens_as_the_build(node):
    for k in (0, 1, 2958, 2959, 2960, 10**6):
        result = _run(node, None, "token", str(k))
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == window_token(KEY, WEEK, k).token


def test_timer_script_creates_the_previous_current_and_next_windows_tokens(node):
    result = _run(node, NOW)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = {f"bootstrap-token-{t.token[:6]}": (t.token, f"{t.expires - NOW}s")
                for t in tokens_kept_at(KEY, WEEK, NOW)}
    assert _secrets(node) == expected
    create = next(line for line in (node["state"] / "calls").read_text().splitlines() if "token create" in line)
    assert "--usages signing,authentication" in create
    assert "--groups system:bootstrappers:kubeadm:default-node-token" in create


def test_timer_script_is_idempotent_and_adds_only_the_new_window_later(node):
    assert _run(node, NOW).returncode == 0
    first = _secrets(node)
    calls = node["state"] / "calls"
    calls.write_text("")
    assert _run(node, NOW + 3600).returncode == 0
    assert _secrets(node) == first
    assert "token create" not in calls.read_text(), "existing tokens are left alone"
    assert _run(node, NOW + WEEK).returncode == 0
    added = set(_secrets(node)) - set(first)
    assert added == {f"bootstrap-token-{window_token(KEY, WEEK, window_index(NOW, WEEK) + 2).token[:6]}"}


def test_timer_script_accepts_a_token_another_control_plane_created_meanwhile(node):
    # kubectl says "absent" once, then kubeadm finds it exists: the race between two control planes.
    racing = node["bin"] / "kubectl"
    racing.write_text(KUBECTL_STANDIN.replace('[[ -e $STATE/$name ]]',
                                              '[[ -e $STATE/$name && -e $STATE/seen-$name ]] || '
                                              '{ touch "$STATE/seen-$name"; false; }'))
    token = window_token(KEY, WEEK, window_index(NOW, WEEK)).token
    (node["state"] / f"bootstrap-token-{token[:6]}").write_text(f"{token} 1s\n")
    result = _run(node, NOW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "created by another control plane meanwhile" in result.stdout


def test_timer_script_waits_for_the_control_plane_and_for_a_synchronised_clock(node):
    node["admin"].unlink()
    result = _run(node, NOW)
    assert result.returncode == 0 and "nothing to do" in result.stdout
    assert not (node["state"] / "calls").exists()
    node["admin"].write_text("apiVersion: v1\n")
    result = _run(node, 86400)  # 1970: the clock is not set yet
    assert result.returncode == 1 and "not synchronised" in result.stdout
    assert _secrets(node) == {}


def test_timer_script_fails_when_the_api_refuses(node):
    (node["bin"] / "kubeadm").write_text("#!/bin/bash\nexit 1\n")
    result = _run(node, NOW)
    assert result.returncode == 1 and "the timer tries again" in result.stdout


# ---- what the seeds carry ----

def _docs(files: dict[str, str], path: str) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(files[path])}


def _files(plan, node) -> dict[str, str]:
    return {f["path"]: f["content"] for f in user_data_dict(plan, node)["write_files"]}


def test_seeds_carry_the_build_windows_token_and_only_control_planes_the_key(tmp_path):
    plan = load_plan(REFERENCE, make_secret(tmp_path), now=NOW)[0]
    window = plan.window_token
    assert window is not None and window.index == window_index(NOW, WEEK)
    init = _docs(_files(plan, plan.init_node), "/etc/k8sseed/kubeadm-init.yaml")["InitConfiguration"]
    assert init["bootstrapTokens"][0]["token"] == window.token
    # kubeadm defaults ttl before it validates and refuses expires beside it: init gets two windows as ttl, and the
    # bootstrap pins the window's end on the token right after init (test_realk8s_kubeadm runs real kubeadm on it).
    assert init["bootstrapTokens"][0]["ttl"] == "336h" and "expires" not in init["bootstrapTokens"][0]
    init_env = _files(plan, plan.init_node)["/etc/k8sseed/node.env"]
    assert f"K8SSEED_INIT_TOKEN_EXPIRES={window.expires_rfc3339}\n" in init_env
    assert f"K8SSEED_INIT_TOKEN_ID={window.token.split('.')[0]}\n" in init_env
    for node in plan.nodes:
        files = _files(plan, node)
        if node.name != plan.init_node.name:
            join = _docs(files, "/etc/k8sseed/kubeadm-join.yaml")["JoinConfiguration"]
            assert join["discovery"]["bootstrapToken"]["token"] == window.token
        carries_key = plan.bootstrap_token_key in files["/etc/k8sseed/node.env"]
        assert carries_key == node.node.is_control_plane, node.name
        assert ("/etc/systemd/system/k8sseed-join-tokens.timer" in files) == node.node.is_control_plane


def test_bootstrap_token_ttl_overrides_the_windows(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text(REFERENCE.read_text().replace("  pki:\n", "  bootstrapTokenTTL: 24h\n  pki:\n", 1))
    plan = load_plan(profile, make_secret(tmp_path), now=NOW)[0]
    assert plan.window_token is None and plan.bootstrap_token_key == ""
    init = _docs(_files(plan, plan.init_node), "/etc/k8sseed/kubeadm-init.yaml")["InitConfiguration"]
    assert init["bootstrapTokens"][0]["ttl"] == "24h" and "expires" not in init["bootstrapTokens"][0]
    assert all("/usr/local/sbin/k8sseed-join-tokens" not in _files(plan, n) for n in plan.nodes)


def _mask(text: str, token: str, expires: str) -> str:
    return text.replace(token, "<token>").replace(token.split(".")[0], "<id>").replace(expires, "<expires>")


def test_a_rebuild_in_a_new_window_changes_only_the_token_lines(tmp_path):
    secret = make_secret(tmp_path)
    old, new = tmp_path / "old", tmp_path / "new"
    for out, now in ((old, NOW), (new, NOW + WEEK)):
        result = run_cli("build", str(REFERENCE), "-o", str(out), "--secret", str(secret), "--now", str(now))
        assert result.returncode == 0, result.stderr
    plans = [load_plan(REFERENCE, secret, now=n)[0] for n in (NOW, NOW + WEEK)]
    tokens = [(p.window_token.token, p.window_token.expires_rfc3339) for p in plans]
    assert tokens[0] != tokens[1]
    for seed in sorted(old.glob("*/user-data")):
        before, after = seed.read_text(), (new / seed.parent.name / "user-data").read_text()
        assert before != after
        assert _mask(before, *tokens[0]) == _mask(after, *tokens[1]), seed.parent.name
        changed = [a for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
        assert all(tokens[0][0].split(".")[0] in line or tokens[0][1] in line for line in changed)
        assert (seed.parent / "network-config").read_bytes() == (new / seed.parent.name / "network-config").read_bytes()


def test_a_build_for_a_long_past_time_says_its_token_has_expired(tmp_path):
    result = run_cli("build", str(REFERENCE), "-o", str(tmp_path / "out"), "--secret", str(make_secret(tmp_path)),
                     "--now", "2026-01-01")
    assert result.returncode == 0
    assert "join token of this build's time window expired at 2026-01-15T00:00:00Z" in result.stderr


def test_now_accepts_epoch_seconds_and_iso_times_and_refuses_others(tmp_path):
    secret = make_secret(tmp_path)
    a = run_cli("build", str(REFERENCE), "-o", str(tmp_path / "a"), "--secret", str(secret), "--now", "1790000000")
    b = run_cli("build", str(REFERENCE), "-o", str(tmp_path / "b"), "--secret", str(secret),
                "--now", "2026-09-21T14:13:20Z")
    assert a.returncode == b.returncode == 0
    assert (tmp_path / "a/worker-1/user-data").read_bytes() == (tmp_path / "b/worker-1/user-data").read_bytes()
    bad = run_cli("build", str(REFERENCE), "-o", str(tmp_path / "c"), "--secret", str(secret), "--now", "soon")
    assert bad.returncode == 2 and "--now 'soon'" in bad.stderr and not (tmp_path / "c").exists()
