"""External etcd, proven with the REAL etcd (Debian's etcd-server): three members run from the generated seeds
(the config files, the unit's ExecStartPre/ExecStart, the certificates and the node script k8sseed-etcd-member)
on loopback addresses. They form a cluster over TLS; one killed keeps quorum; it returns with its data; a fresh
data directory with the same seed rejoins as the same name without a duplicate member; a control plane's
apiserver-etcd-client certificate reads the cluster and its quorum wait passes."""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from netns_support import stop_process
from test_bad_profiles import K8SSEED

from k8sseed.versions import kubeadm_etcd_problem, newest_minor_taking_etcd

REPO = Path(__file__).resolve().parent.parent
ETCD = shutil.which("etcd")
ETCDCTL = shutil.which("etcdctl")
pytestmark = pytest.mark.skipif(not ETCD or not ETCDCTL, reason="needs etcd and etcdctl (apt-get install etcd-server "
                                                                 "etcd-client)")
MEMBERS = ("etcd-1", "etcd-2", "etcd-3")
SEED_ETC = "/etc/k8sseed/etcd"


def _etcd_version() -> str:
    out = subprocess.run([ETCD or "etcd", "--version"], capture_output=True, text=True).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("etcd Version:"))


def _lab_profile(base: str) -> dict:
    """profiles/external-etcd.yaml on loopback addresses, pinned to the etcd installed here; its Kubernetes is the
    newest whose kubeadm takes that etcd (Debian 12's 3.4.23: 1.30) if its own does not (no kubeadm runs here)."""
    profile = yaml.safe_load((REPO / "profiles" / "external-etcd.yaml").read_text())
    for node in profile["nodes"]:
        node["ip"] = base + node["ip"].split(".")[-1]
    profile["network"] = {"gateway": base + "1", "nameservers": [base + "1"]}
    profile["etcd"] = {"version": _etcd_version()}
    if kubeadm_etcd_problem(profile["cluster"]["kubernetesVersion"], profile["etcd"]["version"]):
        profile["cluster"]["kubernetesVersion"] = newest_minor_taking_etcd(profile["etcd"]["version"]).newest
    profile["acknowledge"] = ["token-never-expires", "etcd-unverified"]
    profile["cluster"]["joinTimeoutSeconds"] = 60
    return profile


def _files(seed: Path) -> dict[str, str]:
    text = (seed / "user-data").read_text()
    return {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}


def _unit_line(unit: str, key: str) -> list[str]:
    return shlex.split(next(line for line in unit.splitlines() if line.startswith(key + "="))[len(key) + 1:])


class Member:
    """One etcd node: its seed's files under root/, run the way its unit runs them (paths moved into root/)."""

    def __init__(self, name: str, seed: Path, root: Path) -> None:
        self.name, self.root = name, root
        self.files = _files(seed)
        for path, content in self.files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        for stem in ("etcd-new", "etcd-existing"):
            config = root / f"{SEED_ETC.lstrip('/')}/{stem}.yaml"
            text = config.read_text().replace(SEED_ETC, str(root) + SEED_ETC).replace(
                "/var/lib/etcd", str(root / "var/lib/etcd"))
            config.write_text(text)
        unit = self.files["/etc/systemd/system/k8sseed-etcd.service"]
        self.pre = _unit_line(unit, "ExecStartPre")
        self.exec_start = _unit_line(unit, "ExecStart")
        assert self.pre[0] == "+/usr/local/sbin/k8sseed-etcd-member" and self.pre[1] == "prepare"
        assert self.exec_start == ["/usr/local/bin/etcd", "--config-file", "/run/k8sseed-etcd/etcd.yaml"]
        self.script = root / "usr/local/sbin/k8sseed-etcd-member"
        self.script.chmod(0o755)
        self.ip = self.pre[3]
        self.proc: subprocess.Popen | None = None
        self.log = root / "etcd.log"

    @property
    def env(self) -> dict[str, str]:
        pki = self.root / SEED_ETC.lstrip("/") / "pki"
        return {**os.environ, "K8SSEED_ETCD_CA_CERT": str(pki / "ca.crt"),
                "K8SSEED_ETCD_CLIENT_CERT": str(pki / "server.crt"), "K8SSEED_ETCD_CLIENT_KEY": str(pki / "server.key"),
                "K8SSEED_ETCD_CONFIG_DIR": str(self.root / SEED_ETC.lstrip("/")),
                "K8SSEED_ETCD_RUN_DIR": str(self.root / "run/k8sseed-etcd"),
                "K8SSEED_ETCD_DATA_DIR": str(self.root / "var/lib/etcd")}

    def prepare(self) -> str:
        result = subprocess.run([str(self.script), *self.pre[1:]], env=self.env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start(self) -> str:
        """ExecStartPre, then ExecStart (with the etcd of this machine), as systemd would."""
        said = self.prepare()
        (self.root / "var/lib/etcd").mkdir(parents=True, exist_ok=True, mode=0o700)
        config = self.root / "run/k8sseed-etcd/etcd.yaml"
        with self.log.open("a") as log:
            self.proc = subprocess.Popen([ETCD or "etcd", "--config-file", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return said

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)
        self.proc = None


class Lab:
    def __init__(self, work: Path) -> None:
        base = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}."
        profile = work / "lab.yaml"
        profile.write_text(yaml.safe_dump(_lab_profile(base), sort_keys=False))
        secret = work / "lab.secret"
        secret.write_text("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")
        secret.chmod(0o600)
        out = work / "out"
        result = subprocess.run([str(K8SSEED), "build", str(profile), "-o", str(out), "--secret", str(secret)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        self.out = out
        self.members = {n: Member(n, out / n, work / n) for n in MEMBERS}
        # The control plane's own client certificate (apiserver-etcd-client) is what etcdctl uses here.
        cp = _files(out / "cp-1")
        self.client = work / "cp-1-client"
        self.client.mkdir()
        for name, path in (("ca.crt", "/etc/k8sseed/pki/etcd/ca.crt"),
                           ("client.crt", "/etc/k8sseed/pki/apiserver-etcd-client.crt"),
                           ("client.key", "/etc/k8sseed/pki/apiserver-etcd-client.key")):
            (self.client / name).write_text(cp[path])
        self.cp_env = cp["/etc/k8sseed/node.env"]

    def endpoints(self, *names: str) -> str:
        return ",".join(f"https://{self.members[n].ip}:2379" for n in names or MEMBERS)

    def etcdctl(self, *args: str, endpoints: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [ETCDCTL or "etcdctl", f"--endpoints={endpoints or self.endpoints()}",
             f"--cacert={self.client / 'ca.crt'}", f"--cert={self.client / 'client.crt'}",
             f"--key={self.client / 'client.key'}", "--dial-timeout=3s", "--command-timeout=5s", *args],
            capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=30)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def members_json(self, via: str = "etcd-1") -> list[dict]:
        return json.loads(self.etcdctl("member", "list", "-w", "json", endpoints=self.endpoints(via)).stdout)["members"]

    def wait_cluster_healthy(self, count: int, limit: float = 60) -> float:
        start = time.monotonic()
        last = None
        while time.monotonic() - start < limit:
            last = self.etcdctl("endpoint", "health", "--cluster", "-w", "json", check=False,
                                endpoints=self.endpoints(*(n for n, m in self.members.items() if m.proc)))
            if last.returncode == 0:
                health = json.loads(last.stdout)
                if len(health) == count and all(h["health"] for h in health):
                    return time.monotonic() - start
            time.sleep(0.5)
        logs = "\n".join(f"--- {n}\n{m.log.read_text()[-2000:]}" for n, m in self.members.items() if m.log.exists())
        raise AssertionError(f"not {count} healthy members: {last.stdout if last else ''} {last.stderr if last else ''}"
                             f"\n{logs}")

    def close(self) -> None:
        for member in self.members.values():
            member.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = Lab(tmp_path_factory.mktemp("etcd-lab"))
    yield lab
    lab.close()


def test_three_members_form_the_cluster_over_tls_from_their_seeds(lab):
    said = [lab.members[n].start() for n in MEMBERS]
    assert "forming the cluster from the profile (initial-cluster-state new)" in said[0], said[0]
    took = lab.wait_cluster_healthy(3)
    print(f"\n3 etcd members healthy {took:.1f}s after the last start")
    members = lab.members_json()
    assert sorted(m["name"] for m in members) == list(MEMBERS)
    assert all(url.startswith("https://") for m in members for url in m["peerURLs"] + m["clientURLs"])


def test_a_client_without_a_certificate_from_the_etcd_ca_is_refused(lab):
    result = subprocess.run([ETCDCTL or "etcdctl", f"--endpoints={lab.endpoints('etcd-1')}",
                             f"--cacert={lab.client / 'ca.crt'}", "--dial-timeout=3s", "--command-timeout=3s",
                             "endpoint", "health"], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "ETCDCTL_API": "3"})
    assert result.returncode != 0


def test_the_control_planes_quorum_wait_passes_with_their_own_client_certificate(lab):
    ips = [lab.members[n].ip for n in MEMBERS]
    assert f"K8SSEED_ETCD_MEMBER_IPS=({' '.join(ips)})" in lab.cp_env
    assert "K8SSEED_ETCD_QUORUM=2" in lab.cp_env
    script = lab.members["etcd-1"].script
    env = {**os.environ, "K8SSEED_ETCD_CA_CERT": str(lab.client / "ca.crt"),
           "K8SSEED_ETCD_CLIENT_CERT": str(lab.client / "client.crt"),
           "K8SSEED_ETCD_CLIENT_KEY": str(lab.client / "client.key"), "K8SSEED_ETCD_TIMEOUT": "20"}
    result = subprocess.run([str(script), "wait-healthy", "2", *ips], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "3 of 3 etcd members healthy" in result.stdout, result.stdout + result.stderr


def test_one_member_killed_the_cluster_keeps_quorum(lab):
    lab.members["etcd-3"].kill()
    lab.etcdctl("put", "k8sseed/quorum", "kept", endpoints=lab.endpoints("etcd-1", "etcd-2"))
    assert "kept" in lab.etcdctl("get", "k8sseed/quorum", endpoints=lab.endpoints("etcd-2")).stdout
    health = lab.etcdctl("endpoint", "health", endpoints=lab.endpoints(), check=False)
    assert health.returncode != 0 and lab.members["etcd-3"].ip in health.stderr + health.stdout


def test_the_killed_member_returns_with_its_data(lab):
    ids = {m["name"]: m["ID"] for m in lab.members_json()}
    said = lab.members["etcd-3"].start()
    assert "holds this member's data: restarting as the same member" in said, said
    lab.wait_cluster_healthy(3)
    assert {m["name"]: m["ID"] for m in lab.members_json()} == ids
    assert "kept" in lab.etcdctl("get", "k8sseed/quorum", endpoints=lab.endpoints("etcd-3")).stdout


def test_a_reimaged_member_rejoins_from_the_same_seed_without_a_duplicate(lab):
    before = {m["name"]: m["ID"] for m in lab.members_json()}
    member = lab.members["etcd-3"]
    member.kill()
    shutil.rmtree(member.root / "var/lib/etcd")
    said = member.start()
    assert "(re-imaged): removing it" in said and "removed member" in said and "added etcd-3" in said, said
    lab.wait_cluster_healthy(3)
    after = {m["name"]: m["ID"] for m in lab.members_json()}
    assert sorted(after) == list(MEMBERS) and len(lab.members_json()) == 3
    assert after["etcd-1"] == before["etcd-1"] and after["etcd-3"] != before["etcd-3"]
    assert "kept" in lab.etcdctl("get", "k8sseed/quorum", endpoints=lab.endpoints("etcd-3")).stdout
    # Its next restart is an ordinary one: the data is there again.
    member.kill()
    assert "holds this member's data" in member.start()
    lab.wait_cluster_healthy(3)


def test_the_runbooks_remove_command_takes_a_member_out_and_is_idempotent(lab):
    """What `k8sseed runbook` prints for an etcd node taken out of the profile, run on a remaining member."""
    keep = lab.members["etcd-1"]
    ips = [lab.members[n].ip for n in ("etcd-1", "etcd-2")]
    first = subprocess.run([str(keep.script), "remove", "etcd-3", *ips], env=keep.env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0 and "removed member" in first.stdout, first.stdout + first.stderr
    lab.members["etcd-3"].stop()
    assert sorted(m["name"] for m in lab.members_json()) == ["etcd-1", "etcd-2"]
    again = subprocess.run([str(keep.script), "remove", "etcd-3", *ips], env=keep.env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0 and "nothing to remove" in again.stdout, again.stdout + again.stderr
    lab.wait_cluster_healthy(2)
