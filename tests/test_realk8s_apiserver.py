"""The real API server's verdict on what the seeds make it do, on loopback (tests/realk8s_apiserver.py).

- kube-apiserver starts with the seed's encryption-at-rest configuration, and Secrets land in etcd encrypted;
- kubeadm's certificates phase takes the seed's pre-placed CA instead of making its own;
- the init node's window token: kubeadm creates it from the seed's configuration, the bootstrap pins the window's
  end on it, and the API server honours that end (the token authenticates before it, not after);
- the control planes' join-tokens timer keeps the three window tokens with real `kubeadm token create`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
import time

import pytest
import yaml
from conftest import PROFILES, make_secret, node_dirs, run_cli
from realk8s_apiserver import control_plane, written_files
from realk8s_support import KUBERNETES_RELEASES, real_bin

from k8sseed.join_tokens import tokens_kept_at
from k8sseed.profile.load import load_profile
from k8sseed.secrets import read_secret

pytestmark = pytest.mark.realk8s
RELEASE = KUBERNETES_RELEASES[0]
NOW = int(dt.datetime(2026, 12, 7, 12, tzinfo=dt.timezone.utc).timestamp())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """The reference profile at the newest built release, its init node's control plane running."""
    work = tmp_path_factory.mktemp("apiserver-lab")
    data = yaml.safe_load((PROFILES / "reference.yaml").read_text())
    data["cluster"]["kubernetesVersion"] = RELEASE
    profile = work / "profile.yaml"
    profile.write_text(yaml.safe_dump(data, sort_keys=False))
    secret = make_secret(work)
    out = work / "out"
    result = run_cli("build", str(profile), "-o", str(out), "--secret", str(secret), "--now", str(NOW))
    assert result.returncode == 0, result.stderr
    seeds = {s.name: s for s in node_dirs(out)}
    with control_plane(seeds["cp-1"], RELEASE, work / "cp-1") as cp:
        yield cp, seeds, profile, secret


def test_secrets_are_stored_encrypted_with_the_seeds_key(lab):
    cp, seeds, _, _ = lab
    cp.kubectl("create", "secret", "generic", "lab-probe", "--namespace", "default", "--from-literal=k=plain-text")
    stored = cp.etcdctl("get", "/registry/secrets/default/lab-probe", "--print-value-only").stdout
    assert b"plain-text" not in stored
    provider = yaml.safe_load(written_files(seeds["cp-1"])["/etc/kubernetes/encryption/config.yaml"])
    first = provider["resources"][0]["providers"][0]
    kind, key_name = next(iter(first)), first[next(iter(first))]["keys"][0]["name"]
    assert stored.startswith(f"k8s:enc:{kind}:v1:{key_name}:".encode()), stored[:60]
    assert cp.kubectl("get", "secret", "lab-probe", "-o", "jsonpath={.data.k}").stdout == \
        base64.b64encode(b"plain-text").decode()


def test_kubeadm_issues_the_api_server_certificate_from_the_seeds_ca(lab):
    cp, seeds, _, _ = lab
    ca = written_files(seeds["cp-1"])["/etc/k8sseed/pki/ca.crt"]
    assert (cp.pki / "ca.crt").read_text() == ca
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(cp.pki / "ca.crt"), str(cp.pki / "apiserver.crt")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _token_secret(cp, token_id: str) -> dict:
    found = cp.kubectl("get", "secret", "--namespace", "kube-system", f"bootstrap-token-{token_id}", "-o", "json")
    data = json.loads(found.stdout)["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _whoami(cp, token: str) -> subprocess.CompletedProcess[str]:
    kubectl = real_bin(f"kubernetes-{RELEASE}", "kubectl")
    return subprocess.run([str(kubectl), "--server", cp.server, "--certificate-authority", str(cp.pki / "ca.crt"),
                           "--tls-server-name", "kubernetes", "--token", token, "--kubeconfig", os.devnull,
                           "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
                          capture_output=True, text=True)


def _pin_function(seed) -> str:
    script = written_files(seed)["/usr/local/sbin/k8sseed-bootstrap"]
    match = re.search(r"^pin_init_token_end\(\) \{\n.*?^\}\n", script, re.MULTILINE | re.DOTALL)
    assert match, "the bootstrap has no pin_init_token_end"
    return match.group(0)


def test_the_init_token_gets_the_end_of_the_builds_window_and_the_api_server_honours_it(lab, tmp_path):
    cp, seeds, _, _ = lab
    init = next(d for d in yaml.safe_load_all(cp.config.read_text()) if d["kind"] == "InitConfiguration")
    token = init["bootstrapTokens"][0]["token"]
    token_id = token.split(".")[0]
    cp.kubeadm("init", "phase", "bootstrap-token", "--config", str(cp.config), "--kubeconfig", str(cp.kubeconfig))
    created = dt.datetime.fromisoformat(_token_secret(cp, token_id)["expiration"].replace("Z", "+00:00"))
    assert created > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=13), "kubeadm took the seed's ttl"

    env = written_files(seeds["cp-1"])["/etc/k8sseed/node.env"]
    end = re.search(r"^K8SSEED_INIT_TOKEN_EXPIRES=(\S+)$", env, re.MULTILINE).group(1)
    kubectl_dir = real_bin(f"kubernetes-{RELEASE}", "kubectl").parent
    # The node's function as written, with the admin kubeconfig of this lab in place of /etc/kubernetes/admin.conf.
    shell = (f"set -euo pipefail\n{env}\nlog() {{ echo \"$*\"; }}\nrun() {{ \"$@\"; }}\n"
             f"kubectl() {{ command kubectl --kubeconfig {cp.kubeconfig} \"${{@:3}}\"; }}\n"
             f"{_pin_function(seeds['cp-1'])}pin_init_token_end\n")
    pinned = subprocess.run(["bash", "-c", shell], capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{kubectl_dir}:{os.environ['PATH']}"})
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    assert _token_secret(cp, token_id)["expiration"] == end

    if dt.datetime.fromisoformat(end.replace("Z", "+00:00")) > dt.datetime.now(dt.timezone.utc):
        who = _whoami(cp, token)
        assert who.returncode == 0 and who.stdout == f"system:bootstrap:{token_id}", who.stdout + who.stderr
    past = '{"stringData":{"expiration":"2026-01-01T00:00:00Z"}}'
    cp.kubectl("patch", "secret", "--namespace", "kube-system", f"bootstrap-token-{token_id}", "--type", "merge",
               "--patch", past)
    deadline = time.monotonic() + 15  # the authenticator reads Secrets through an informer: allow it to catch up
    refused = _whoami(cp, token)
    while refused.returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        refused = _whoami(cp, token)
    assert refused.returncode != 0 and "Unauthorized" in refused.stderr, refused.stdout + refused.stderr
    # Leave the token as the bootstrap left it, for the timer test on the same control plane.
    cp.kubectl("patch", "secret", "--namespace", "kube-system", f"bootstrap-token-{token_id}", "--type", "merge",
               "--patch", json.dumps({"stringData": {"expiration": end}}))


def test_the_join_tokens_timer_keeps_three_window_tokens_with_real_kubeadm(lab, tmp_path):
    cp, seeds, profile, secret = lab
    files = written_files(seeds["cp-2"])
    env_file = tmp_path / "node.env"
    env_file.write_text(files["/etc/k8sseed/node.env"])
    script = tmp_path / "k8sseed-join-tokens"
    script.write_text(files["/usr/local/sbin/k8sseed-join-tokens"])
    now = int(dt.datetime.now(dt.timezone.utc).timestamp())
    bin_dir = real_bin(f"kubernetes-{RELEASE}", "kubeadm").parent
    ran = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "K8SSEED_NOW": str(now),
                              "K8SSEED_ENV_FILE": str(env_file), "K8SSEED_ADMIN_KUBECONFIG": str(cp.kubeconfig)})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    loaded = load_profile(profile)
    key = read_secret(secret).bootstrap_token_key
    window = loaded.profile.cluster.bootstrap_token_window_days * 86400
    for kept in tokens_kept_at(key, window, now):
        token_id, token_secret = kept.token.split(".")
        stored = _token_secret(cp, token_id)
        assert stored["token-secret"] == token_secret
        assert stored["usage-bootstrap-authentication"] == "true"
        end = dt.datetime.fromisoformat(stored["expiration"].replace("Z", "+00:00"))
        assert abs(end.timestamp() - kept.expires) < 120, (stored["expiration"], kept.expires_rfc3339)
