"""Control planes join one at a time and never leave a dead etcd member: the node script k8sseed-etcd against a
REAL etcd cluster (Debian etcd-server + etcd-client) on loopback addresses, TLS from a k8sseed-derived etcd CA with
client-certificate auth on, and HTTPS API server stand-ins with certificates from the cluster CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import node_dirs, require_tool
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from netns_support import API_STANDIN, stop_process

from k8sseed.pki import CertAndKey, derive_pki
from k8sseed.secrets import ClusterSecret
from k8sseed.templating import render

NAMES = ("cp-1", "cp-2", "cp-3")


def _sign(ca: CertAndKey, common_name: str, ips: tuple[str, ...], usages: list, stem: Path) -> tuple[Path, Path]:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if ips:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    crt, key_file = stem.with_suffix(".crt"), stem.with_suffix(".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return crt, key_file


class EtcdLab:
    """Up to three etcd members on 127.x.y.11-13 (random x.y: no clash with anything else on loopback) and an
    API server stand-in per member on :6443. Only the processes it started are ever stopped, by their PID."""

    def __init__(self, work: Path, flatcar: bool = False) -> None:
        self.work = work
        base = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}."
        self.ips = {name: f"{base}{11 + i}" for i, name in enumerate(NAMES)}
        self.unused_ip = f"{base}99"
        pki = derive_pki(ClusterSecret(os.urandom(32)), "2026-01-01", 3650)
        self.etcd_ca, self.cluster_ca = work / "etcd-ca.crt", work / "cluster-ca.crt"
        self.etcd_ca.write_text(pki.etcd_ca.cert_pem)
        (work / "etcd-ca.key").write_text(pki.etcd_ca.key_pem)
        (work / "etcd-ca.key").chmod(0o600)
        self.cluster_ca.write_text(pki.ca.cert_pem)
        both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        server = [ExtendedKeyUsageOID.SERVER_AUTH]
        self.certs = {n: _sign(pki.etcd_ca, n, (ip, "127.0.0.1"), both, work / f"etcd-{n}")
                      for n, ip in self.ips.items()}
        self.api_certs = {n: _sign(pki.ca, "kube-apiserver", (ip,), server, work / f"api-{n}")
                          for n, ip in self.ips.items()}
        self.admin = _sign(pki.etcd_ca, "test-admin", (), [ExtendedKeyUsageOID.CLIENT_AUTH], work / "etcd-admin")
        (work / "api_standin.py").write_text(API_STANDIN)
        self.etcd: dict[str, subprocess.Popen] = {}
        self.api: dict[str, subprocess.Popen] = {}
        self.script = work / "k8sseed-etcd"
        self.script.write_text(render("k8sseed-etcd.sh.j2", flatcar=flatcar))
        self.script.chmod(0o755)

    def peer_url(self, name: str) -> str:
        return f"https://{self.ips[name]}:2380"

    def client_url(self, name: str) -> str:
        return f"https://{self.ips[name]}:2379"

    def etcdctl(self, *args: str, endpoint: str = "cp-1", check: bool = True) -> subprocess.CompletedProcess[str]:
        crt, key = self.admin
        return subprocess.run(["etcdctl", "--endpoints", self.client_url(endpoint), "--cacert", str(self.etcd_ca),
                               "--cert", str(crt), "--key", str(key), "--dial-timeout", "3s",
                               "--command-timeout", "5s", *args],
                              capture_output=True, text=True, check=check, env={**os.environ, "ETCDCTL_API": "3"})

    def start_etcd(self, name: str, initial_cluster: str, state: str) -> None:
        crt, key = self.certs[name]
        tls = ["--cert-file", str(crt), "--key-file", str(key), "--trusted-ca-file", str(self.etcd_ca),
               "--client-cert-auth", "--peer-cert-file", str(crt), "--peer-key-file", str(key),
               "--peer-trusted-ca-file", str(self.etcd_ca), "--peer-client-cert-auth"]
        with open(self.work / f"etcd-{name}.log", "ab") as log:
            self.etcd[name] = subprocess.Popen(
                ["etcd", "--name", name, "--data-dir", str(self.work / f"data-{name}"), "--logger", "zap",
                 "--listen-client-urls", self.client_url(name), "--advertise-client-urls", self.client_url(name),
                 "--listen-peer-urls", self.peer_url(name), "--initial-advertise-peer-urls", self.peer_url(name),
                 "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
                 "--initial-cluster-token", "k8sseed-test", *tls],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.wait_healthy(name)

    def wait_healthy(self, name: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.etcdctl("endpoint", "health", endpoint=name, check=False).returncode == 0:
                return
            assert self.etcd[name].poll() is None, (self.work / f"etcd-{name}.log").read_text()[-3000:]
            time.sleep(0.3)
        raise AssertionError(f"etcd {name} not healthy: " + (self.work / f"etcd-{name}.log").read_text()[-3000:])

    def add_member(self, name: str) -> subprocess.CompletedProcess[str]:
        """etcdctl member add, retried while etcd refuses it as 'unhealthy cluster': with its strict
        reconfiguration check, etcd takes a member only once every started member has been connected for
        5 s, so an add right after a join is refused (kubeadm retries it the same way)."""
        deadline = time.monotonic() + 30
        while True:
            result = self.etcdctl("member", "add", name, f"--peer-urls={self.peer_url(name)}", check=False)
            if result.returncode == 0 or "unhealthy cluster" not in result.stderr or time.monotonic() > deadline:
                assert result.returncode == 0, result.stdout + result.stderr
                return result
            time.sleep(0.5)

    def member_add(self, name: str) -> str:
        """etcdctl member add, as kubeadm join does it; returns the ETCD_INITIAL_CLUSTER it prints."""
        out = self.add_member(name).stdout
        line = next(li for li in out.splitlines() if li.startswith("ETCD_INITIAL_CLUSTER="))
        return line.split("=", 1)[1].strip('"')

    def join(self, name: str) -> None:
        self.start_etcd(name, self.member_add(name), "existing")

    def start_api(self, name: str) -> None:
        crt, key = self.api_certs[name]
        self.api[name] = subprocess.Popen([sys.executable, str(self.work / "api_standin.py"), self.ips[name], "6443",
                                           str(crt), str(key), name], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def members(self) -> list[str]:
        return sorted(self.etcdctl("member", "list").stdout.splitlines())

    def node_script(self, *args: str, timeout: int = 20) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "K8SSEED_ETCD_CA_CERT": str(self.etcd_ca),
               "K8SSEED_ETCD_CA_KEY": str(self.work / "etcd-ca.key"), "K8SSEED_CLUSTER_CA": str(self.cluster_ca),
               "K8SSEED_ETCD_CLIENT_DIR": str(self.work / "client"),
               "K8SSEED_ETCD_TIMEOUT": str(timeout), "K8SSEED_ETCD_POLL": "1", "K8SSEED_ETCD_REPORT": "2"}
        return subprocess.run([str(self.script), *args], capture_output=True, text=True, env=env, timeout=timeout + 60)

    def health(self) -> str:
        """etcdctl endpoint health --cluster (etcdctl 3.4 prints it on stderr)."""
        result = self.etcdctl("endpoint", "health", "--cluster", check=False)
        return result.stdout + result.stderr

    def pair(self, *names: str) -> list[str]:
        return [v for n in names for v in (n, self.ips[n])]

    def close(self) -> None:
        for proc in [*self.api.values(), *self.etcd.values()]:
            stop_process(proc)


# The script as Debian/Ubuntu nodes get it (member lists read with python3) and as Flatcar nodes get it (jq).
@pytest.fixture(scope="module", params=[False, True], ids=["python3", "flatcar-jq"])
def lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    require_tool("etcd")
    require_tool("etcdctl")
    require_tool("openssl")
    if request.param:
        require_tool("jq")
    lab = EtcdLab(tmp_path_factory.mktemp("etcd-lab"), flatcar=request.param)
    try:
        lab.start_etcd("cp-1", f"cp-1={lab.peer_url('cp-1')}", "new")
        lab.start_api("cp-1")
        lab.join("cp-2")
        yield lab
    finally:
        lab.close()


def test_a_control_plane_waits_for_the_api_server_of_an_earlier_one_then_goes(lab):
    result = lab.node_script("wait-ready", *lab.pair("cp-1", "cp-2"), timeout=4)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"waiting for cp-2 ({lab.ips['cp-2']}): API server on {lab.ips['cp-2']}:6443 not ready" in result.stdout
    assert f"ERROR: waited 4s for cp-2 ({lab.ips['cp-2']}): API server" in result.stdout

    lab.start_api("cp-2")
    result = lab.node_script("wait-ready", *lab.pair("cp-1", "cp-2"))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("cp-1", "cp-2"):
        assert f"{name} ({lab.ips[name]}) is ready: etcd member " in result.stdout, result.stdout
    assert "started and healthy, API server ready" in result.stdout
    print(result.stdout)


def test_an_added_but_unstarted_member_holds_every_join_until_remove_member_takes_it_back(lab):
    lab.add_member("cp-3")   # a join cut off after member add
    assert any(", unstarted, , " + lab.peer_url("cp-3") in m for m in lab.members()), lab.members()

    start = time.monotonic()
    result = lab.node_script("wait-ready", *lab.pair("cp-1", "cp-2", "cp-3"), timeout=5)
    assert result.returncode == 1 and time.monotonic() - start >= 4, result.stdout + result.stderr  # whole seconds
    assert f"waiting for cp-3 ({lab.ips['cp-3']}): etcd member not started yet" in result.stdout, result.stdout
    assert f"ERROR: waited 5s for cp-3 ({lab.ips['cp-3']}): etcd member not started yet" in result.stdout

    # a later control plane (waiting for cp-1 and cp-2 only) does not add a second member meanwhile
    result = lab.node_script("wait-ready", *lab.pair("cp-1", "cp-2"), timeout=4)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"waiting for the etcd cluster: member {lab.peer_url('cp-3')} is added but not started yet"
            in result.stdout), result.stdout
    print(result.stdout)

    # cp-3 resets its half-joined attempt: first its member goes, asked through a healthy other member
    result = lab.node_script("remove-member", *lab.pair("cp-3", "cp-1", "cp-2"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"belongs to cp-3: removing it through cp-1 ({lab.ips['cp-1']})" in result.stdout, result.stdout
    assert "removed etcd member" in result.stdout
    print(result.stdout)
    members = lab.members()
    assert len(members) == 2 and not any(lab.peer_url("cp-3") in m for m in members), members
    health = lab.health()
    assert health.count("is healthy") == 2, health
    assert lab.etcdctl("put", "k8sseed-quorum", "kept").stdout.strip() == "OK"   # quorum: writes go through
    print(health)
    assert lab.node_script("wait-ready", *lab.pair("cp-1", "cp-2")).returncode == 0

    result = lab.node_script("remove-member", *lab.pair("cp-3", "cp-1", "cp-2"))
    assert result.returncode == 0 and "is not an etcd member" in result.stdout, result.stdout + result.stderr


def test_the_dead_member_of_a_reinstalled_control_plane_is_removed_and_quorum_kept(lab):
    lab.join("cp-3")
    lab.start_api("cp-3")
    assert lab.node_script("wait-ready", *lab.pair("cp-1", "cp-2", "cp-3")).returncode == 0
    stop_process(lab.etcd.pop("cp-3"))   # the machine dies; its member stays in the list
    assert any(lab.peer_url("cp-3") in m for m in lab.members())

    result = lab.node_script("remove-member", *lab.pair("cp-3", "cp-1", "cp-2"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "name 'cp-3'" in result.stdout and "removed etcd member" in result.stdout, result.stdout
    assert len(lab.members()) == 2
    assert lab.health().count("is healthy") == 2


def test_remove_member_refuses_to_guess_when_no_other_member_answers(lab):
    result = lab.node_script("remove-member", "cp-3", lab.ips["cp-3"], "cp-9", lab.unused_ip, timeout=3)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ERROR: no other etcd member answered within 3s" in result.stdout, result.stdout
    assert "not removing or resetting anything" in result.stdout


# ---- what the seeds carry


def _seed_files(seed: Path) -> dict[str, dict]:
    return {f["path"]: f for f in yaml.safe_load((seed / "user-data").read_text())["write_files"]}


def _env_array(seed: Path, tmp_path: Path, name: str) -> list[str]:
    env = tmp_path / f"{seed.name}.env"
    env.write_text(_seed_files(seed)["/etc/k8sseed/node.env"]["content"])
    out = subprocess.run(["bash", "-c", f'source "$1"; printf "%s\\n" "${{{name}[@]}}"', "_", str(env)],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


def test_each_control_plane_waits_for_the_control_planes_before_it_in_bootstrap_order(built, tmp_path):
    out = built["reference"]
    manifest = json.loads((out / "manifest.json").read_text())
    order = {n["name"]: n["bootstrapOrder"] for n in manifest["nodes"]}
    cps = sorted((n for n in manifest["nodes"] if n["role"] == "control-plane"), key=lambda n: n["bootstrapOrder"])
    for seed in node_dirs(out):
        earlier = _env_array(seed, tmp_path, "K8SSEED_EARLIER_CONTROL_PLANES")
        others = _env_array(seed, tmp_path, "K8SSEED_OTHER_CONTROL_PLANES")
        files = _seed_files(seed)
        if seed.name not in {n["name"] for n in cps}:
            assert earlier == [] and others == [], seed.name   # workers join in parallel
            assert "/usr/local/sbin/k8sseed-etcd" not in files
            continue
        want = [v for n in cps if n["bootstrapOrder"] < order[seed.name] for v in (n["name"], n["ip"].split("/")[0])]
        assert earlier == want, (seed.name, earlier)
        assert others == [v for n in cps if n["name"] != seed.name for v in (n["name"], n["ip"].split("/")[0])]
        assert files["/usr/local/sbin/k8sseed-etcd"]["permissions"] == "0755"
    assert _env_array(out / "cp-3", tmp_path, "K8SSEED_EARLIER_CONTROL_PLANES") == [
        "cp-1", "10.20.0.11", "cp-2", "10.20.0.12"]


def test_a_control_plane_join_waits_and_gives_back_its_etcd_member_before_any_reset(built):
    script = _seed_files(built["reference"] / "cp-2")["/usr/local/sbin/k8sseed-bootstrap"]["content"]
    join = script[script.index("kubeadm_join() {"):]
    join = join[:join.index("\n}\n")]
    wait, forget = join.index("wait_for_earlier_control_planes"), join.index("forget_own_etcd_member")
    assert join.index("wait_for_endpoint") < forget < wait < join.index("kubeadm_reset") < join.index("kubeadm join")
    assert "etcd_tool wait-ready" in script and "etcd_tool remove-member" in script


# The bootstrap's kubeadm_join with the node's commands recorded instead of run: `run` logs each command line and
# fails the ones the scenario names; sleep and the endpoint wait are skipped.
JOIN_HARNESS = r'''
set -euo pipefail
source "$1"
calls=$2 fail_join=$3 fail_remove=$4
run() {
  printf '%s\n' "$*" >>"$calls"
  if [[ $* == *"kubeadm join"* && $fail_join -gt 0 ]]; then fail_join=$((fail_join - 1)); return 1; fi
  if [[ $* == *remove-member* && $fail_remove == yes && $(grep -c "kubeadm join" "$calls") -gt 0 ]]; then return 1; fi
  return 0
}
sleep() { :; }
wait_for_endpoint() { :; }
place_shared_pki() { :; }
kubeadm_join
'''


def _join_run(built, tmp_path: Path, fail_join: int, fail_remove: bool) -> tuple[int, list[str], str]:
    files = _seed_files(built["reference"] / "cp-2")
    conf, state = tmp_path / "conf", tmp_path / "state"
    conf.mkdir()
    state.mkdir()
    (conf / "node.env").write_text(files["/etc/k8sseed/node.env"]["content"])
    script = files["/usr/local/sbin/k8sseed-bootstrap"]["content"]
    script = script.replace("readonly CONF_DIR=/etc/k8sseed", f"readonly CONF_DIR={conf}")
    script = script.replace("readonly STATE_DIR=/var/lib/k8sseed", f"readonly STATE_DIR={state}")
    script = script.replace("readonly LOG_FILE=/var/log/k8sseed-bootstrap.log", f"readonly LOG_FILE={tmp_path}/log")
    assert script.rstrip().endswith('main "$@"')
    (tmp_path / "bootstrap.sh").write_text(script.rstrip()[: -len('main "$@"')])
    (tmp_path / "harness.sh").write_text(JOIN_HARNESS)
    calls = tmp_path / "calls"
    calls.touch()
    result = subprocess.run(["bash", str(tmp_path / "harness.sh"), str(tmp_path / "bootstrap.sh"), str(calls),
                             str(fail_join), "yes" if fail_remove else "no"], capture_output=True, text=True)
    steps = [line.split(" /usr/local/sbin/k8sseed-etcd ")[-1].split()[0] if "k8sseed-etcd" in line
             else " ".join(line.split()[:2]) for line in calls.read_text().splitlines()]
    return result.returncode, steps, result.stderr


def test_a_failed_control_plane_join_gives_back_its_etcd_member_before_kubeadm_reset(built, tmp_path):
    status, steps, log = _join_run(built, tmp_path, fail_join=1, fail_remove=False)
    assert status == 0, log
    assert steps == ["remove-member", "wait-ready", "kubeadm join",
                     "remove-member", "wait-ready", "kubeadm reset", "kubeadm join"], steps


def test_no_reset_when_no_other_etcd_member_can_say_whether_this_node_is_a_member(built, tmp_path):
    status, steps, log = _join_run(built, tmp_path, fail_join=1, fail_remove=True)
    assert status == 1, log
    assert "kubeadm reset" not in steps and steps[-1] == "remove-member", steps
    assert "so it is not reset" in log, log
