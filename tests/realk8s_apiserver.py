"""A real control plane on loopback, made from a seed: etcd and kube-apiserver built by `make real-k8s`, the
certificates issued by real kubeadm from the seed's pre-placed PKI, the seed's own encryption configuration.

What it leaves out is what needs a machine (kubelet, containers, the VIP): the VM proof covers those. What it
gives is the real API server's verdict, in seconds, on what the seeds make it do.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from realk8s_support import folder_of, real_bin, stop

from k8sseed.components.kubernetes import PKI_DIR


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def written_files(seed: Path) -> dict[str, str]:
    return {e["path"]: e["content"] for e in yaml.safe_load((seed / "user-data").read_text())["write_files"]}


@dataclass(frozen=True)
class ControlPlane:
    server: str  # https://127.0.0.1:PORT
    kubeconfig: Path  # kubeadm's super-admin.conf (system:masters: no RBAC bootstrap here), server moved here
    config: Path  # the seed's kubeadm init configuration, with paths and addresses moved to this lab
    pki: Path
    etcd_endpoint: str
    release: str
    work: Path

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        kubectl = real_bin(f"kubernetes-{self.release}", "kubectl")
        result = subprocess.run([str(kubectl), "--kubeconfig", str(self.kubeconfig), *args],
                                capture_output=True, text=True, input=stdin)
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stdout}{result.stderr}"
        return result

    def kubeadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        kubeadm = real_bin(f"kubernetes-{self.release}", "kubeadm")
        result = subprocess.run([str(kubeadm), *args], capture_output=True, text=True)
        assert result.returncode == 0, f"kubeadm {' '.join(args)}: {result.stdout}{result.stderr}"
        return result

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        etcdctl = real_bin(_etcd_folder(), "etcdctl")
        pki = self.pki
        result = subprocess.run(
            [str(etcdctl), "--endpoints", self.etcd_endpoint, "--cacert", str(pki / "etcd/ca.crt"),
             "--cert", str(pki / "apiserver-etcd-client.crt"), "--key", str(pki / "apiserver-etcd-client.key"),
             *args], capture_output=True)
        assert result.returncode == 0, result.stderr.decode()
        return result  # bytes: values in etcd are binary


def _etcd_folder() -> str:
    return folder_of("etcd-")


def _lab_config(seed_files: dict[str, str], pki: Path, work: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The seed's kubeadm init documents with the certificate directory moved into the lab; everything else
    (names, addresses, SANs, endpoint, tokens, extra args) as the seed has it. The lab reaches the API server on
    loopback by the name `kubernetes`, which kubeadm puts in every API server certificate."""
    documents = list(yaml.safe_load_all(seed_files["/etc/k8sseed/kubeadm-init.yaml"]))
    for doc in documents:
        if doc["kind"] == "ClusterConfiguration":
            doc["certificatesDir"] = str(pki)
    config = work / "kubeadm-init.yaml"
    config.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return config, documents


def _place_shared_pki(seed_files: dict[str, str], pki: Path) -> None:
    """What the bootstrap's place_shared_pki does on a node: the seed's 8 shared files into the PKI directory."""
    for path, content in seed_files.items():
        if path.startswith(f"{PKI_DIR}/"):
            target = pki / path.removeprefix(f"{PKI_DIR}/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(0o600)


def _wait_ready(url: str, ca: Path, cert: Path, key: Path, process: subprocess.Popen, log: Path,
                limit: float, resolve: tuple[str, ...] = ()) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        probe = subprocess.run(["curl", "-sf", "--cacert", str(ca), "--cert", str(cert), "--key", str(key),
                                *resolve, url], capture_output=True, text=True)
        if probe.returncode == 0:
            return
        if process.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer (exit {process.poll()}):\n{log.read_text()[-4000:]}")


@contextmanager
def control_plane(seed: Path, release: str, work: Path) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver for the init node of a built seed, on loopback ports, stopped afterwards."""
    files = written_files(seed)
    pki = work / "pki"
    _place_shared_pki(files, pki)
    config, documents = _lab_config(files, pki, work)
    cluster = next(d for d in documents if d["kind"] == "ClusterConfiguration")
    init = next(d for d in documents if d["kind"] == "InitConfiguration")
    kubeadm = real_bin(f"kubernetes-{release}", "kubeadm")
    certs = subprocess.run([str(kubeadm), "init", "phase", "certs", "all", "--config", str(config)],
                           capture_output=True, text=True)
    assert certs.returncode == 0, certs.stdout + certs.stderr
    assert "Using existing ca certificate authority" in certs.stdout, certs.stdout  # the seed's CA, not a new one
    kubeconfigs = work / "kubeconfig"
    admin = subprocess.run([str(kubeadm), "init", "phase", "kubeconfig", "super-admin", "--config", str(config),
                            "--kubeconfig-dir", str(kubeconfigs)], capture_output=True, text=True)
    assert admin.returncode == 0, admin.stdout + admin.stderr

    etcd_client, etcd_peer, api_port = free_port(), free_port(), free_port()
    etcd_log, api_log = work / "etcd.log", work / "kube-apiserver.log"
    etcd_url = f"https://127.0.0.1:{etcd_client}"
    etcd = subprocess.Popen(
        [str(real_bin(_etcd_folder(), "etcd")), "--name", "lab", "--data-dir", str(work / "etcd-data"),
         "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
         "--listen-peer-urls", f"https://127.0.0.1:{etcd_peer}",
         "--initial-advertise-peer-urls", f"https://127.0.0.1:{etcd_peer}",
         "--initial-cluster", f"lab=https://127.0.0.1:{etcd_peer}", "--listen-metrics-urls", "",
         "--cert-file", str(pki / "etcd/server.crt"), "--key-file", str(pki / "etcd/server.key"),
         "--client-cert-auth", "--trusted-ca-file", str(pki / "etcd/ca.crt"),
         "--peer-cert-file", str(pki / "etcd/peer.crt"), "--peer-key-file", str(pki / "etcd/peer.key"),
         "--peer-client-cert-auth", "--peer-trusted-ca-file", str(pki / "etcd/ca.crt")],
        stdout=etcd_log.open("w"), stderr=subprocess.STDOUT)
    processes = [etcd]
    try:
        _wait_ready(f"{etcd_url}/health", pki / "etcd/ca.crt", pki / "etcd/healthcheck-client.crt",
                    pki / "etcd/healthcheck-client.key", etcd, etcd_log, 60)
        encryption = files["/etc/kubernetes/encryption/config.yaml"]
        (work / "encryption.yaml").write_text(encryption)
        api_args = {
            # The node's address for the kubernetes Service's endpoint (loopback is refused there); nothing in the
            # lab connects to it: the API server listens on loopback only.
            "advertise-address": init["localAPIEndpoint"]["advertiseAddress"], "bind-address": "127.0.0.1",
            "secure-port": str(api_port),
            "etcd-servers": etcd_url, "etcd-cafile": str(pki / "etcd/ca.crt"),
            "etcd-certfile": str(pki / "apiserver-etcd-client.crt"),
            "etcd-keyfile": str(pki / "apiserver-etcd-client.key"),
            "tls-cert-file": str(pki / "apiserver.crt"), "tls-private-key-file": str(pki / "apiserver.key"),
            "client-ca-file": str(pki / "ca.crt"),
            "service-account-key-file": str(pki / "sa.pub"),
            "service-account-signing-key-file": str(pki / "sa.key"),
            "service-account-issuer": f"https://kubernetes.default.svc.{cluster['networking']['dnsDomain']}",
            "service-cluster-ip-range": cluster["networking"]["serviceSubnet"],
            "authorization-mode": "Node,RBAC", "enable-bootstrap-token-auth": "true",
            "enable-admission-plugins": "NodeRestriction",
            "requestheader-client-ca-file": str(pki / "front-proxy-ca.crt"),
            "proxy-client-cert-file": str(pki / "front-proxy-client.crt"),
            "proxy-client-key-file": str(pki / "front-proxy-client.key"),
            "requestheader-allowed-names": "front-proxy-client",
            "requestheader-username-headers": "X-Remote-User", "requestheader-group-headers": "X-Remote-Group",
            "requestheader-extra-headers-prefix": "X-Remote-Extra-",
            "kubelet-client-certificate": str(pki / "apiserver-kubelet-client.crt"),
            "kubelet-client-key": str(pki / "apiserver-kubelet-client.key"),
            "encryption-provider-config": str(work / "encryption.yaml"),
        }
        api = subprocess.Popen([str(real_bin(f"kubernetes-{release}", "kube-apiserver")),
                                *(f"--{k}={v}" for k, v in api_args.items())],
                               stdout=api_log.open("w"), stderr=subprocess.STDOUT)
        processes.append(api)
        server = f"https://127.0.0.1:{api_port}"
        kubeconfig = kubeconfigs / "super-admin.conf"
        data = yaml.safe_load(kubeconfig.read_text())
        data["clusters"][0]["cluster"]["server"] = server  # the seed's endpoint is a VIP this lab does not have
        data["clusters"][0]["cluster"]["tls-server-name"] = "kubernetes"
        kubeconfig.write_text(yaml.safe_dump(data))
        _wait_ready(f"https://kubernetes:{api_port}/readyz", pki / "ca.crt", pki / "apiserver-kubelet-client.crt",
                    pki / "apiserver-kubelet-client.key", api, api_log, 120,
                    ("--resolve", f"kubernetes:{api_port}:127.0.0.1"))
        yield ControlPlane(server, kubeconfig, config, pki, etcd_url, release, work)
    finally:
        for process in reversed(processes):
            stop(process)
