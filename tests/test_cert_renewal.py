"""Control planes renew their kubeadm certificates before expiry: the timer's script, run against stand-ins for
kubeadm and crictl on a temporary /etc/kubernetes, and the units and kubelet settings on the seeds."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO, make_secret, node_dirs, require_tool
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from k8sseed.build import load_plan
from k8sseed.seed import user_data_dict

SCRIPT = "/usr/local/sbin/k8sseed-cert-renewal"
SERVICE = "/etc/systemd/system/k8sseed-cert-renewal.service"
TIMER = "/etc/systemd/system/k8sseed-cert-renewal.timer"
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]

# crictl stand-in: pods are files under $CRICTL_STATE/pods (content: component); removing one makes "the kubelet"
# create its successor unless the component is in $CRICTL_NEVER_BACK. Every call is logged.
CRICTL = textwrap.dedent('''\
    #!/usr/bin/env python3
    import os, sys
    from pathlib import Path
    state = Path(os.environ["CRICTL_STATE"])
    pods = state / "pods"
    args = sys.argv[1:]
    with open(state / "crictl.log", "a") as log:
        log.write(" ".join(args) + "\\n")
    assert args[0] == "--runtime-endpoint", args
    args = args[2:]
    def opt(name):
        return args[args.index(name) + 1] if name in args else None
    if args[0] == "pods":
        component = opt("--label").split("=", 1)[1]
        assert opt("--namespace") == "kube-system"
        for pod in sorted(pods.iterdir()):
            if pod.read_text() == component:
                print(pod.name)
    elif args[0] == "stopp":
        assert (pods / args[1]).exists()
    elif args[0] == "rmp":
        component = (pods / args[1]).read_text()
        (pods / args[1]).unlink()
        if component not in os.environ.get("CRICTL_NEVER_BACK", "").split():
            generation = int(args[1].rsplit("-", 1)[1]) + 1
            (pods / f"{component}-{generation}").write_text(component)
    elif args[0] == "ps":
        if (pods / opt("--pod")).exists():
            print("container-of-" + opt("--pod"))
    else:
        sys.exit(f"crictl stand-in: unexpected {args}")
''')

KUBEADM = textwrap.dedent('''\
    #!/bin/bash
    printf '%s\\n' "$*" >>"$CRICTL_STATE/kubeadm.log"
    if [[ "$*" == "certs renew all" ]]; then
      exit "${KUBEADM_RENEW_EXIT:-0}"
    fi
''')


def _certificate(common_name: str, days_left: float, is_ca: bool = False) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=300))
            .not_valid_after(now + dt.timedelta(days=days_left))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def _kubeconfig(cert_pem: bytes) -> str:
    data = base64.b64encode(cert_pem).decode()
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "users": [
        {"name": "kubernetes-admin", "user": {"client-certificate-data": data, "client-key-data": "eA=="}}]})


@dataclass
class Node:
    """A control plane's /etc/kubernetes with every certificate valid for `days` unless overridden."""

    root: Path
    state: Path
    bin: Path

    def run(self, **env: str) -> subprocess.CompletedProcess[str]:
        full = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}", "CRICTL_STATE": str(self.state),
                "K8SSEED_KUBERNETES_DIR": str(self.root), "K8SSEED_READY_TIMEOUT": "10",
                "K8SSEED_RENEW_BEFORE_DAYS": "60", "K8SSEED_CRI_SOCKET": "unix:///var/run/cri-dockerd.sock", **env}
        return subprocess.run(["bash", str(self.bin / "k8sseed-cert-renewal")], capture_output=True, text=True,
                              env=full, timeout=60)

    def log(self, tool: str) -> list[str]:
        path = self.state / f"{tool}.log"
        return path.read_text().splitlines() if path.exists() else []

    def restarted(self) -> list[str]:
        """Components whose pod was removed, in order."""
        return [line.split()[3].rsplit("-", 1)[0] for line in self.log("crictl") if line.split()[2] == "rmp"]


@pytest.fixture(scope="module")
def renewal_files(tmp_path_factory) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("renewal-plan")
    plan = load_plan(REPO / "profiles" / "reference.yaml", make_secret(work))[0]
    cp = next(n for n in plan.nodes if n.node.is_control_plane)
    return {f["path"]: f for f in user_data_dict(plan, cp)["write_files"]}


@pytest.fixture
def node(tmp_path, renewal_files) -> Node:
    root, state, tools = tmp_path / "etc-kubernetes", tmp_path / "state", tmp_path / "bin"
    for directory in (root / "manifests", root / "pki" / "etcd", state / "pods", tools):
        directory.mkdir(parents=True)
    (root / "manifests" / "kube-apiserver.yaml").write_text("kind: Pod\n")
    for name in ("ca", "front-proxy-ca", "etcd/ca"):
        (root / "pki" / f"{name}.crt").write_bytes(_certificate(name, 3000, is_ca=True))
    for name in ("apiserver", "apiserver-kubelet-client", "front-proxy-client", "apiserver-etcd-client",
                 "etcd/server", "etcd/peer", "etcd/healthcheck-client"):
        (root / "pki" / f"{name}.crt").write_bytes(_certificate(name, 300))
    for conf in ("admin.conf", "controller-manager.conf", "scheduler.conf"):
        (root / conf).write_text(_kubeconfig(_certificate(conf, 300)))
    for component in COMPONENTS:
        (state / "pods" / f"{component}-1").write_text(component)
    (tools / "k8sseed-cert-renewal").write_text(renewal_files[SCRIPT]["content"])
    for name, text in (("crictl", CRICTL), ("kubeadm", KUBEADM)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    return Node(root, state, tools)


def test_nothing_is_renewed_while_every_certificate_has_time_left(node):
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert "nothing to renew" in result.stderr
    assert node.log("kubeadm") == [] and node.restarted() == []


def test_a_leaf_certificate_close_to_expiry_is_renewed_and_the_static_pods_restart_in_order(node):
    (node.root / "pki" / "apiserver.crt").write_bytes(_certificate("apiserver", 20))
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert f"{node.root}/pki/apiserver.crt" in result.stderr
    assert node.log("kubeadm") == ["certs check-expiration", "certs renew all"]
    assert node.restarted() == COMPONENTS
    # Through cri-dockerd's socket, pod by pod: stop, remove, then wait for the kubelet's new pod to run.
    assert all("--runtime-endpoint unix:///var/run/cri-dockerd.sock" in line for line in node.log("crictl"))
    calls = [line.split()[2:4] for line in node.log("crictl")]
    assert calls.index(["stopp", "etcd-1"]) < calls.index(["rmp", "etcd-1"]) < calls.index(["ps", "--pod"])
    assert sorted(p.name for p in (node.state / "pods").iterdir()) == [f"{c}-2" for c in sorted(COMPONENTS)]


def test_an_expiring_kubeconfig_certificate_triggers_the_renewal(node):
    (node.root / "scheduler.conf").write_text(_kubeconfig(_certificate("scheduler", 5)))
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert f"{node.root}/scheduler.conf" in result.stderr
    assert "certs renew all" in node.log("kubeadm")


def test_an_expired_etcd_certificate_is_renewed_too(node):
    (node.root / "pki" / "etcd" / "peer.crt").write_bytes(_certificate("etcd-peer", -3))
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert node.restarted() == COMPONENTS


def test_a_failed_renewal_restarts_nothing_and_fails_the_unit(node):
    (node.root / "pki" / "apiserver.crt").write_bytes(_certificate("apiserver", 20))
    result = node.run(KUBEADM_RENEW_EXIT="1")
    assert result.returncode == 1
    assert "kubeadm certs renew all failed" in result.stderr
    assert node.restarted() == []


def test_a_pod_that_does_not_come_back_stops_the_run_before_the_next_component(node):
    (node.root / "pki" / "apiserver.crt").write_bytes(_certificate("apiserver", 20))
    result = node.run(CRICTL_NEVER_BACK="kube-apiserver", K8SSEED_READY_TIMEOUT="3")
    assert result.returncode == 1
    assert "kube-apiserver did not come back within 3s" in result.stderr
    assert node.restarted() == ["etcd", "kube-apiserver"]


def test_a_ca_near_its_end_is_reported_and_not_renewed(node):
    (node.root / "pki" / "front-proxy-ca.crt").write_bytes(_certificate("front-proxy-ca", 10, is_ca=True))
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert "WARNING: the CA" in result.stderr and "front-proxy-ca.crt" in result.stderr
    assert node.log("kubeadm") == []


def test_a_node_that_is_not_a_control_plane_yet_does_nothing(node):
    (node.root / "manifests" / "kube-apiserver.yaml").unlink()
    (node.root / "pki" / "apiserver.crt").write_bytes(_certificate("apiserver", 1))
    result = node.run()
    assert result.returncode == 0 and "not a control plane yet" in result.stderr
    assert node.log("kubeadm") == [] and node.log("crictl") == []


def test_only_control_planes_carry_the_renewal_timer_and_enable_it(built):
    timer = Path(TIMER).name
    for stem, out in built.items():
        roles = {n["name"]: n["role"] for n in json.loads((out / "manifest.json").read_text())["nodes"]}
        script = "/opt/bin/k8sseed-cert-renewal" if stem == "flatcar" else SCRIPT  # Flatcar's /usr is read-only
        for seed in node_dirs(out):
            user_data = yaml.safe_load((seed / "user-data").read_text())
            paths = {f["path"] for f in user_data["write_files"]}
            enabled = ["systemctl", "enable", timer] in user_data["runcmd"]
            started = any(cmd[:3] == ["systemctl", "start", "--no-block"] and timer in cmd
                          for cmd in user_data["runcmd"])
            if roles[seed.name] == "control-plane":
                assert {script, SERVICE, TIMER} <= paths, f"{stem}/{seed.name}"
                assert enabled and started, f"{stem}/{seed.name}"
            else:
                assert not {script, SERVICE, TIMER} & paths, f"{stem}/{seed.name}"
                assert not enabled and not started, f"{stem}/{seed.name}"


def test_the_renewal_units_pass_systemd_analyze_verify(renewal_files, tmp_path):
    analyze = require_tool("systemd-analyze")
    for path in (SERVICE, TIMER):
        (tmp_path / Path(path).name).write_text(renewal_files[path]["content"])
    result = subprocess.run([analyze, "verify", str(tmp_path / Path(SERVICE).name), str(tmp_path / Path(TIMER).name)],
                            capture_output=True, text=True)
    problems = [line for line in result.stderr.splitlines()
                if "Unknown" in line or "Invalid" in line or "bad-setting" in line or "Failed to parse" in line]
    assert not problems, result.stderr
    timer = renewal_files[TIMER]["content"]
    assert "OnCalendar=daily" in timer and "Persistent=true" in timer and "RandomizedDelaySec=" in timer


def test_the_renewal_script_passes_shellcheck(renewal_files, tmp_path):
    shellcheck = require_tool("shellcheck")
    script = tmp_path / "k8sseed-cert-renewal"
    script.write_text(renewal_files[SCRIPT]["content"])
    result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(script)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def test_the_kubelet_rotates_its_client_certificate_and_self_signs_its_serving_one(renewal_files):
    docs = {d["kind"]: d for d in yaml.safe_load_all(renewal_files["/etc/k8sseed/kubeadm-init.yaml"]["content"])}
    kubelet = docs["KubeletConfiguration"]
    assert kubelet["rotateCertificates"] is True
    assert "serverTLSBootstrap" not in kubelet  # no approver for kubelet-serving CSRs: see README


def test_nodes_that_renew_certificates_with_crictl_install_cri_tools(built):
    """kubeadm's package stopped depending on cri-tools in 1.32 (kubernetes/release#3626): the Debian and Ubuntu
    nodes install it by name, or the renewal timer finds no crictl a year after the cluster came up."""
    checked = 0
    for out in built.values():
        for seed in node_dirs(out):
            files = {f["path"]: f["content"]
                     for f in yaml.safe_load((seed / "user-data").read_text())["write_files"]}
            renewal = files.get("/usr/local/sbin/k8sseed-cert-renewal", "")
            if "crictl" not in renewal:
                continue
            bootstrap = files["/usr/local/sbin/k8sseed-bootstrap"]
            install = next(line for line in bootstrap.splitlines() if "apt-get install" in line and "pinned[@]" in line)
            assert install.rstrip().endswith(" cri-tools"), install
            checked += 1
    assert checked, "no seed with the renewal timer"
