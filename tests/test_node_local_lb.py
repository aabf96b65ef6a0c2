"""node-local mode: every node's own HAProxy on 127.0.0.1 in front of all API servers. The generated configs are
checked by HAProxy and shellcheck, then run for real in network namespaces (three API stand-ins and a node on one
bridge) to see connections spread, an API server that stops answering dropped and taken back, and the failover
time measured against the bound the profile's healthCheck sets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLE_PROFILES, REPO, make_secret, require_tool
from netns_support import api_certificate, netns_unavailable, stop_process, wait_tcp

from k8sseed.build import load_plan
from k8sseed.components.bootstrap import ENV_PATH
from k8sseed.components.node_local_lb import (
    CLUSTER_CA,
    HAPROXY_CFG,
    HOSTS_SCRIPT,
    LISTEN_ADDRESS,
    detection_bound_seconds,
    return_bound_seconds,
)
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.seed import build_seed, node_config

PROFILE = REPO / "tests" / "profiles" / "node-local-test.yaml"
OUR_FILES = (HAPROXY_CFG, HOSTS_SCRIPT)
# Scheduling jitter of two busy cores on top of the bound the health check itself sets.
SLACK_SECONDS = 3.0

pytestmark = pytest.mark.netns

needs_netns = pytest.mark.skipif(netns_unavailable() is not None, reason=netns_unavailable() or "")


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> ClusterPlan:
    secret = make_secret(tmp_path_factory.mktemp("node-local-secret"))
    return load_plan(PROFILE, secret)[0]


def _written(plan: ClusterPlan, node: NodePlan) -> dict[str, dict]:
    user_data = yaml.safe_load(build_seed(plan, node).user_data)
    return {f["path"]: f for f in user_data["write_files"]}


@pytest.fixture(scope="module")
def files(plan: ClusterPlan) -> dict[str, dict[str, dict]]:
    """{node name: {path: write_files entry}} from the real user-data."""
    return {node.name: _written(plan, node) for node in plan.nodes}


def _node_paths(plan: ClusterPlan, node: NodePlan) -> set[str]:
    """Every file the node gets, whatever carries it (NoCloud user-data or Ignition: a Flatcar profile may have no
    NoCloud rendering)."""
    return {f.path for f in node_config(plan, node).files}


def _example_plans(tmp_path: Path) -> list[ClusterPlan]:
    secret = make_secret(tmp_path)
    return [load_plan(profile, secret)[0] for profile in EXAMPLE_PROFILES]


def _node_env(written: dict[str, dict]) -> dict[str, str]:
    env = {}
    for line in written[ENV_PATH]["content"].splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key] = value
    return env


# ---------------------------------------------------------------- what the seeds carry


def test_every_node_control_planes_included_gets_the_same_balancer(plan, files):
    configs = {name: written[HAPROXY_CFG]["content"] for name, written in files.items()}
    assert set(configs) == {n.name for n in plan.nodes}
    assert len(set(configs.values())) == 1, "one config for all nodes: the balancer does not depend on the node"
    for written in files.values():
        assert written[HAPROXY_CFG]["permissions"] == "0644"
        assert written[HOSTS_SCRIPT]["permissions"] == "0755"


def test_haproxy_listens_on_loopback_at_the_endpoint_port_and_balances_over_every_api_server(plan, files):
    cfg = files[plan.init_node.name][HAPROXY_CFG]["content"]
    c = plan.profile.cluster
    assert f"    bind {LISTEN_ADDRESS}:{c.endpoint_port}\n" in cfg
    assert "bind *" not in cfg and "0.0.0.0" not in cfg, "the balancer is for this node only"
    servers = [line.split()[1:] for line in cfg.splitlines() if line.strip().startswith("server ")]
    assert servers == [[cp.name, f"{cp.node.address}:{c.api_server_port}"] for cp in plan.control_planes]


def test_health_check_uses_the_profiles_settings_and_verifies_the_cluster_ca(plan, files):
    hc = plan.profile.health_check
    assert (hc.interval_seconds, hc.failures, hc.successes) == (1, 2, 3), "the test profile's own values"
    cfg = files[plan.init_node.name][HAPROXY_CFG]["content"]
    default_server = next(line for line in cfg.splitlines() if line.strip().startswith("default-server "))
    words = default_server.split()
    assert words[words.index("inter") + 1] == f"{hc.interval_seconds}s"
    assert words[words.index("fall") + 1] == str(hc.failures)
    assert words[words.index("rise") + 1] == str(hc.successes)
    assert words[words.index("verify") + 1] == "required" and words[words.index("ca-file") + 1] == CLUSTER_CA
    assert "check" in words and "on-marked-down" in words
    assert "http-check send meth GET uri /readyz\n" in cfg and "http-check connect ssl\n" in cfg
    assert "verify none" not in cfg


def test_kubeadm_and_the_bootstrap_reach_the_api_through_the_endpoint_name(plan, files):
    c = plan.profile.cluster
    assert plan.vip is None, "node-local serves no VIP"
    init_docs = list(yaml.safe_load_all(files[plan.init_node.name]["/etc/k8sseed/kubeadm-init.yaml"]["content"]))
    cluster_config = next(d for d in init_docs if d["kind"] == "ClusterConfiguration")
    # kubeadm writes controlPlaneEndpoint into kubelet.conf, admin.conf, the kube-proxy kubeconfig and
    # cluster-info: every one of them resolves the name to the node's own HAProxy.
    assert cluster_config["controlPlaneEndpoint"] == f"{c.endpoint_host}:{c.endpoint_port}"
    assert c.endpoint_host in cluster_config["apiServer"]["certSANs"]
    for node in plan.nodes:
        join = yaml.safe_load(files[node.name]["/etc/k8sseed/kubeadm-join.yaml"]["content"])
        assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == c.control_plane_endpoint
        env = _node_env(files[node.name])
        assert env["K8SSEED_LB_MODE"] == "node-local" and env["K8SSEED_VIP"] == "''"
        assert env["K8SSEED_API_ENDPOINT"] == c.control_plane_endpoint
        script = files[node.name][HOSTS_SCRIPT]["content"]
        assert f"readonly NAME={c.endpoint_host}\n" in script and f"readonly ADDRESS={LISTEN_ADDRESS}\n" in script


def test_the_bootstrap_starts_the_balancer_before_kubeadm(plan, files):
    script = files[plan.init_node.name]["/usr/local/sbin/k8sseed-bootstrap"]["content"]
    branch = script.split("    node-local)\n", 1)[1].split(";;", 1)[0]
    steps = [line.strip() for line in branch.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert steps[:4] == ["ensure_packages haproxy", "run haproxy -c -f /etc/haproxy/haproxy.cfg",
                         f"run {HOSTS_SCRIPT}", "start_checked_service haproxy.service"]
    main = script.split("main() {", 1)[1]
    assert main.index("phase load-balancer") < main.index("phase kubeadm")


def test_other_modes_write_no_node_local_files(tmp_path):
    others = [p for p in _example_plans(tmp_path) if p.profile.lb_mode != "node-local"]
    assert others and len(others) < len(EXAMPLE_PROFILES), "the examples hold node-local and other modes"
    for other in others:
        for node in other.nodes:
            assert HOSTS_SCRIPT not in _node_paths(other, node), f"{other.profile.cluster.name}/{node.name}"


def test_adding_a_worker_leaves_every_existing_seed_unchanged(tmp_path):
    """The balancer lists control planes only: a worker added later needs no new seed for the running nodes."""
    secret = make_secret(tmp_path)
    grown = tmp_path / "grown.yaml"
    grown.write_text(PROFILE.read_text() + '  - {name: worker-c, role: worker, ip: 10.78.0.23/24, '
                                           'mac: "52:54:00:78:00:23"}\n')
    before, after = load_plan(PROFILE, secret)[0], load_plan(grown, secret)[0]
    new_nodes = {n.name: n for n in after.nodes}
    for node in before.nodes:
        assert build_seed(before, node).user_data == build_seed(after, new_nodes[node.name]).user_data, node.name
    assert _written(after, new_nodes["worker-c"])[HAPROXY_CFG] == _written(before, before.nodes[-1])[HAPROXY_CFG]


# ---------------------------------------------------------------- real consumers


def _node_local_configs(plan: ClusterPlan, tmp_path: Path) -> list[tuple[str, str]]:
    """(label, haproxy.cfg) of the test profile and every node-local example profile."""
    plans = [plan, *(p for p in _example_plans(tmp_path) if p.profile.lb_mode == "node-local")]
    assert len(plans) > 1, "profiles/node-local.yaml should be an example"
    return [(f"{p.profile.cluster.name}/{n.name}", _written(p, n)[HAPROXY_CFG]["content"]) for p in plans
            for n in p.nodes]


def test_haproxy_accepts_every_generated_config_without_a_warning(plan, tmp_path):
    haproxy = require_tool("haproxy")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(plan.pki.ca.cert_pem)
    last = None
    for i, (label, content) in enumerate(_node_local_configs(plan, tmp_path)):
        cfg = tmp_path / f"{i}-haproxy.cfg"
        cfg.write_text(content.replace(CLUSTER_CA, str(ca_file)))
        result = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{label}: {output}"
        assert "WARNING" not in output and "ALERT" not in output, f"{label}: {output}"
        last = cfg
    assert last is not None
    last.write_text(last.read_text().replace("on-marked-down shutdown-sessions", "on-marked-down shutdown-session"))
    result = subprocess.run([haproxy, "-c", "-f", str(last)], capture_output=True, text=True)
    assert result.returncode != 0, "haproxy -c has no teeth: it accepted a misspelt server option"


def _hosts_script(files, tmp_path: Path) -> Path:
    script = tmp_path / "k8sseed-local-endpoint"
    script.write_text(next(iter(files.values()))[HOSTS_SCRIPT]["content"])
    script.chmod(0o755)
    return script


def test_hosts_script_passes_shellcheck(files, tmp_path):
    shellcheck = require_tool("shellcheck")
    script = _hosts_script(files, tmp_path)
    result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(script)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_hosts_script_maps_the_endpoint_name_to_the_local_balancer_once(plan, files, tmp_path):
    script, hosts = _hosts_script(files, tmp_path), tmp_path / "hosts"
    name = plan.profile.cluster.endpoint_host
    original = "127.0.0.1 localhost\n127.0.1.1 worker-a.lab worker-a\n# a comment naming " + name + "\n"
    hosts.write_text(original)
    hosts.chmod(0o644)
    first = subprocess.run([str(script), str(hosts)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    ours = f"{LISTEN_ADDRESS} {name} # k8sseed node-local API endpoint\n"
    assert hosts.read_text() == original + ours
    assert oct(hosts.stat().st_mode & 0o777) == "0o644"
    again = subprocess.run([str(script), str(hosts)], capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout == "" and hosts.read_text() == original + ours
    # A line left by an earlier profile (another endpoint name) is replaced, not kept beside.
    hosts.write_text(original + "127.0.0.1 api.old.internal # k8sseed node-local API endpoint\n")
    assert subprocess.run([str(script), str(hosts)], capture_output=True).returncode == 0
    assert hosts.read_text() == original + ours
    # Someone else's entry for the name would win the lookup: refused, with the reason.
    hosts.write_text(original + f"10.78.0.11 {name} api\n")
    refused = subprocess.run([str(script), str(hosts)], capture_output=True, text=True)
    assert refused.returncode == 1 and f"maps {name} to 10.78.0.11" in refused.stderr
    assert hosts.read_text() == original + f"10.78.0.11 {name} api\n"


# cloud-init's own /etc/hosts update (manage_etc_hosts: localhost), run on every boot, with the Debian distro's
# 127.0.1.1 for the host name: it re-renders every line (tabs, comments glued on) when the host name changes.
CLOUD_INIT_HOSTS_UPDATE = r'''
import sys
from cloudinit.distros import debian

distro = debian.Distro("debian", {}, None)
distro.hosts_fn = sys.argv[1]
distro.update_etc_hosts(sys.argv[2], sys.argv[2] + ".lab")
'''


def _resolve(hosts: Path, name: str) -> str | None:
    """The address the resolver's `files` source gives for name: the first line that lists it."""
    for line in hosts.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if name in fields[1:]:
            return fields[0]
    return None


def test_cloud_init_rewriting_etc_hosts_on_a_later_boot_keeps_the_endpoint_local(plan, files, tmp_path):
    system_python = "/usr/bin/python3"
    if subprocess.run([system_python, "-c", "import cloudinit.distros.debian"], capture_output=True).returncode:
        pytest.fail("cloud-init's Python package is not installed: .ci/run installs it (apt-get install cloud-init)")
    script, hosts = _hosts_script(files, tmp_path), tmp_path / "hosts"
    name = plan.profile.cluster.endpoint_host
    hosts.write_text("127.0.0.1 localhost\n127.0.1.1 worker-a.lab worker-a\n")
    assert subprocess.run([str(script), str(hosts)], capture_output=True).returncode == 0
    (tmp_path / "update.py").write_text(CLOUD_INIT_HOSTS_UPDATE)
    subprocess.run([system_python, str(tmp_path / "update.py"), str(hosts), "worker-renamed"], check=True)
    assert "worker-renamed" in hosts.read_text(), "cloud-init did not rewrite the file: the test has no teeth"
    assert _resolve(hosts, name) == LISTEN_ADDRESS, hosts.read_text()
    again = subprocess.run([str(script), str(hosts)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert _resolve(hosts, name) == LISTEN_ADDRESS and hosts.read_text().count(name) == 1, hosts.read_text()


# ---------------------------------------------------------------- the balancer running in network namespaces

# Run as: python3 api_stand_in.py ADDRESS PORT CERT KEY NAME UNREADY_FLAG. A kube-apiserver stand-in over TLS:
# /readyz answers 200, or 503 while the file UNREADY_FLAG exists (an API server that lost etcd, or shuts down);
# every other path answers 200 naming the server (X-Served-By). HTTP/1.1 keep-alive, as kubelet's connections.
API_STAND_IN = r'''
import http.server, os, socketserver, ssl, sys

address, port, cert, key, name, unready_flag = sys.argv[1:]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/readyz" and os.path.exists(unready_flag):
            code, body = 503, b"[-]etcd failed: reason withheld\nreadyz check failed\n"
        else:
            code, body = 200, name.encode() + b"\n"
        self.send_response(code)
        self.send_header("X-Served-By", name)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def server_bind(self):  # HTTPServer's own looks the address up in DNS, which stalls in a namespace
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):  # the TLS handshake runs in the request's thread
        request.settimeout(5)
        tls = context.wrap_socket(request, server_side=True)
        tls.settimeout(300)  # idle keep-alive sessions stay open (a watch)
        super().finish_request(tls, client_address)


Server((address, int(port)), Handler).serve_forever()
'''

# Run as: python3 session_client.py PORT NAME CA. One kept-alive TLS session to 127.0.0.1:PORT, verified for NAME
# against CA (as kubelet's watch): prints "SERVED-BY <server>", then "CLOSED <seconds> <how>" once the session
# is closed under it (or after 120 s).
SESSION_CLIENT = r'''
import socket, ssl, sys, time

port, name, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=ca)
tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname=name)
tls.sendall(f"GET /version HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
reader = tls.makefile("rb")
served, length = "", 0
assert reader.readline().split()[1] == b"200"
for line in iter(reader.readline, b"\r\n"):
    key, _, value = line.decode().partition(":")
    if key.lower() == "x-served-by":
        served = value.strip()
    if key.lower() == "content-length":
        length = int(value)
reader.read(length)
print("SERVED-BY", served, flush=True)
tls.settimeout(120)
opened = time.monotonic()
try:
    how = "eof" if tls.recv(1) == b"" else "data"
except OSError as error:
    how = type(error).__name__
print("CLOSED", f"{time.monotonic() - opened:.2f}", how, flush=True)
'''


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@dataclass
class ApiServer:
    node: NodePlan
    ns: str
    unready_flag: Path
    proc: subprocess.Popen | None = None


@dataclass
class Lab:
    plan: ClusterPlan
    root: Path
    node_ns: str
    apis: dict[str, ApiServer]
    ca_file: Path
    started: list[subprocess.Popen] = field(default_factory=list)
    haproxy: subprocess.Popen | None = None

    def start(self, ns: str, log_name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        log = open(self.root / f"{log_name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        piped = "stdout" in kwargs  # the caller reads stdout; stderr still goes to the log
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=kwargs.pop("stdout", log),
                                stderr=log if piped else subprocess.STDOUT, **kwargs)
        log.close()
        self.started.append(proc)
        return proc

    def start_api(self, name: str, stem: str = "apiserver") -> None:
        api = self.apis[name]
        self.stop_api(name)
        api.proc = self.start(api.ns, f"api-{name}", [
            sys.executable, str(self.root / "api_stand_in.py"), api.node.node.address,
            str(self.plan.profile.cluster.api_server_port), str(self.root / f"{stem}.crt"),
            str(self.root / f"{stem}.key"), name, str(api.unready_flag)])
        wait_tcp(api.ns, api.node.node.address, self.plan.profile.cluster.api_server_port)

    def stop_api(self, name: str) -> None:
        api = self.apis[name]
        if api.proc is not None:
            os.kill(api.proc.pid, signal.SIGCONT)  # a frozen one must be able to die
            stop_process(api.proc)
            api.proc = None

    def start_haproxy(self) -> None:
        self.haproxy = self.start(self.node_ns, "haproxy", ["haproxy", "-db", "-f", str(self.root / "haproxy.cfg")])
        wait_tcp(self.node_ns, LISTEN_ADDRESS, self.plan.profile.cluster.endpoint_port)

    def request(self, timeout: float = 1.0) -> tuple[bool, str]:
        """GET /version through the node's balancer as kubelet does: the endpoint name resolved to 127.0.0.1 (what
        /etc/hosts says on a node), the certificate verified for that name against the cluster CA only."""
        c = self.plan.profile.cluster
        result = subprocess.run(
            ["ip", "netns", "exec", self.node_ns, "curl", "--silent", "--fail", "--max-time", str(timeout),
             "--cacert", str(self.ca_file), "--resolve", f"{c.endpoint_host}:{c.endpoint_port}:{LISTEN_ADDRESS}",
             "--dump-header", "-", "--output", "/dev/null", f"https://{c.control_plane_endpoint}/version"],
            capture_output=True, text=True)
        served = next((line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
                       if line.lower().startswith("x-served-by:")), "")
        return result.returncode == 0, served

    def served_by(self, count: int) -> Counter:
        return Counter(self.request()[1] or "failed" for _ in range(count))

    def log_offset(self) -> int:
        return (self.root / "haproxy.log").stat().st_size

    def until_logged(self, text: str, offset: int, limit: float) -> float:
        """Seconds from now until HAProxy's own log (stderr in the foreground) shows text after offset."""
        start = time.monotonic()
        log = self.root / "haproxy.log"
        while time.monotonic() - start < limit:
            with log.open("rb") as f:
                f.seek(offset)
                if text.encode() in f.read():
                    return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"HAProxy did not log '{text}' within {limit:.0f}s\n{self.logs()}")

    def until_dropped(self, name: str, limit: float) -> float:
        """Seconds from now until HAProxy takes `name` out of the pool (its health checks mark it DOWN); then two
        rounds of requests must all succeed on the other servers."""
        dropped = self.until_logged(f"Server kube-apiservers/{name} is DOWN", self.log_offset(), limit)
        served = self.served_by(2 * len(self.apis))
        assert name not in served and "failed" not in served, f"after {name} is DOWN: {served}\n{self.logs()}"
        return dropped

    def until_served_by(self, name: str, limit: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < limit:
            if self.request()[1] == name:
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"{name} got no request within {limit:.0f}s\n{self.logs()}")

    def until_back(self, name: str, limit: float) -> float:
        """Seconds from now until `name` is UP again and serves a request."""
        start, offset = time.monotonic(), self.log_offset()
        self.until_logged(f"Server kube-apiservers/{name} is UP", offset, limit)
        self.until_served_by(name, limit - (time.monotonic() - start))
        return time.monotonic() - start

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                         for log in sorted(self.root.glob("*.log")))


@pytest.fixture(scope="module")
def lab(plan: ClusterPlan, files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    for tool in ("haproxy", "curl"):
        require_tool(tool)
    root = tmp_path_factory.mktemp("node-local-lab")
    tag = f"k8sseed-nl-{os.getpid()}"
    switch = f"{tag}-sw"
    node = next(n for n in plan.nodes if not n.node.is_control_plane)
    node_ns = f"{tag}-{node.name}"
    ca_file = root / "cluster-ca.crt"
    ca_file.write_text(plan.pki.ca.cert_pem)
    (root / "api_stand_in.py").write_text(API_STAND_IN)
    (root / "session_client.py").write_text(SESSION_CLIENT)
    api_certificate(plan, root, plan.api_server_sans)
    # The same names, signed by another cluster's CA: a server that answers but is not one of ours.
    other = load_plan(PROFILE, make_secret(root, "other.secret"))[0]
    api_certificate(other, root, plan.api_server_sans, stem="impostor")
    # The node's generated config, with only the CA file's path moved into the lab.
    (root / "haproxy.cfg").write_text(files[node.name][HAPROXY_CFG]["content"].replace(CLUSTER_CA, str(ca_file)))
    apis = {cp.name: ApiServer(cp, f"{tag}-{cp.name}", root / f"{cp.name}.unready") for cp in plan.control_planes}
    lab = Lab(plan, root, node_ns, apis, ca_file)
    namespaces = [switch]
    try:
        _ip("netns", "add", switch)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        ports = [(a.ns, str(a.node.node.ip)) for a in apis.values()] + [(node_ns, str(node.node.ip))]
        for i, (ns, address) in enumerate(ports):
            _ip("netns", "add", ns)
            namespaces.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"port{i}", "netns", switch)
            _ip("-n", ns, "addr", "add", address, "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", switch, "link", "set", f"port{i}", "master", "br0", "up")
        yield lab
    finally:
        for proc in reversed(lab.started):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            stop_process(proc)
        for ns in reversed(namespaces):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@needs_netns
def test_first_boot_balancer_waits_for_the_first_api_server_and_never_uses_a_foreign_one(lab: Lab):
    """As on the init node: HAProxy starts before kubeadm init, with no API server up. The first one is used as
    soon as its /readyz passes; one presenting another CA's certificate never gets a connection."""
    lab.start_haproxy()
    ok, _ = lab.request()
    assert not ok, "nothing should answer before an API server is up"
    first, second, third = lab.apis
    lab.start_api(first)
    lab.start_api(second, stem="impostor")
    came_up = lab.until_served_by(first, return_bound_seconds(lab.plan) + SLACK_SECONDS)
    print(f"\nfirst API server ({first}) in use {came_up:.1f}s after it started")
    served = lab.served_by(12)
    assert served == Counter({first: 12}), f"only {first} may serve; the impostor must stay out: {served}"
    lab.start_api(second)
    lab.start_api(third)


@needs_netns
def test_balancer_spreads_connections_over_the_three_api_servers(lab: Lab):
    bound = return_bound_seconds(lab.plan) + SLACK_SECONDS
    for name in lab.apis:
        lab.until_served_by(name, bound)
    served = lab.served_by(30)
    assert set(served) == set(lab.apis), f"every API server gets connections, and none fails: {served}"
    assert min(served.values()) >= 6, f"spread evenly: {served}"
    print(f"\n30 requests through 127.0.0.1:{lab.plan.profile.cluster.endpoint_port}: {dict(sorted(served.items()))}")


@needs_netns
def test_an_unready_api_server_is_dropped_and_taken_back(lab: Lab):
    """/readyz answers 503 (the API server lost etcd, or is shutting down): out within the health check's
    bound, back in once it is ready again."""
    name = list(lab.apis)[1]
    api = lab.apis[name]
    detect, back = detection_bound_seconds(lab.plan) + SLACK_SECONDS, return_bound_seconds(lab.plan) + SLACK_SECONDS
    api.unready_flag.touch()
    try:
        dropped = lab.until_dropped(name, detect)
    finally:
        api.unready_flag.unlink()
    returned = lab.until_back(name, back)
    hc = lab.plan.profile.health_check
    print(f"\n{name} unready (/readyz 503): out of the pool after {dropped:.1f}s (bound {detect - SLACK_SECONDS}s "
          f"+ {SLACK_SECONDS}s slack for {hc.failures} failures at {hc.interval_seconds}s), back "
          f"{returned:.1f}s after it was ready again")
    assert dropped <= detect and returned <= back


@needs_netns
def test_a_frozen_api_server_is_dropped_and_taken_back(lab: Lab):
    """The API server stops answering altogether (SIGSTOP: the kernel still accepts connections, nothing
    answers them, as with a hung process): requests time out until the checks take it out."""
    name = list(lab.apis)[2]
    api = lab.apis[name]
    assert api.proc is not None
    detect, back = detection_bound_seconds(lab.plan) + SLACK_SECONDS, return_bound_seconds(lab.plan) + SLACK_SECONDS
    os.kill(api.proc.pid, signal.SIGSTOP)
    try:
        dropped = lab.until_dropped(name, detect)
    finally:
        os.kill(api.proc.pid, signal.SIGCONT)
    returned = lab.until_back(name, back)
    print(f"\n{name} frozen (SIGSTOP): out of the pool after {dropped:.1f}s (bound {detect - SLACK_SECONDS}s + "
          f"{SLACK_SECONDS}s slack), back {returned:.1f}s after SIGCONT")
    assert dropped <= detect and returned <= back


@needs_netns
def test_open_sessions_to_a_dropped_api_server_are_closed(lab: Lab):
    """A kept-alive session (kubelet's watch) on the server that is taken out is closed by HAProxy, so the
    client reconnects to a healthy one at once; before that it stays open."""
    c = lab.plan.profile.cluster
    client = lab.start(lab.node_ns, "session-client",
                       [sys.executable, str(lab.root / "session_client.py"), str(c.endpoint_port), c.endpoint_host,
                        str(lab.ca_file)], stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None
    first = client.stdout.readline().split()
    assert first[:1] == ["SERVED-BY"] and first[1] in lab.apis, first
    name = first[1]
    time.sleep(2)
    assert client.poll() is None, "the idle session must stay open while its server is healthy"
    api = lab.apis[name]
    api.unready_flag.touch()
    marked = time.monotonic()
    try:
        client.wait(timeout=detection_bound_seconds(lab.plan) + SLACK_SECONDS)
        closed_after = time.monotonic() - marked
    finally:
        api.unready_flag.unlink()
    line = client.stdout.readline().split()
    assert line[:1] == ["CLOSED"], line
    print(f"\nsession on {name} closed {closed_after:.1f}s after its /readyz turned 503 ({line[2]})")
    lab.until_back(name, return_bound_seconds(lab.plan) + SLACK_SECONDS)
