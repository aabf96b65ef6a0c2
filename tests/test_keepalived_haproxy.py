"""keepalived-haproxy mode: the generated Keepalived/HAProxy configs, checked by the real daemons and run in
network namespaces (three control planes and a client on one bridge) to measure VIP failover."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLE_PROFILES, REPO, make_secret, require_tool
from netns_support import API_STANDIN, api_certificate, netns_unavailable, stop_process, wait_tcp

from k8sseed.build import load_plan
from k8sseed.components.keepalived_haproxy import (
    CHECK_SCRIPT,
    CHECK_WEIGHT,
    CLUSTER_CA,
    HAPROXY_CFG,
    KEEPALIVED_CONF,
    TUNNEL_TIMEOUT,
    haproxy_cfg,
    vrrp_priority,
)
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.seed import build_seed, node_config
from k8sseed.templating import config_word

pytestmark = pytest.mark.netns

PROFILE = REPO / "tests" / "profiles" / "keepalived-test.yaml"
OUR_FILES = (KEEPALIVED_CONF, CHECK_SCRIPT, HAPROXY_CFG)


needs_netns = pytest.mark.skipif(netns_unavailable() is not None, reason=netns_unavailable() or "")


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> ClusterPlan:
    secret = make_secret(tmp_path_factory.mktemp("keepalived-secret"))
    loaded, _, _ = load_plan(PROFILE, secret)
    return loaded


def _written(plan: ClusterPlan, node: NodePlan) -> dict[str, dict]:
    user_data = yaml.safe_load(build_seed(plan, node).user_data)
    return {f["path"]: f for f in user_data["write_files"]}


@pytest.fixture(scope="module")
def files(plan: ClusterPlan) -> dict[str, dict[str, dict]]:
    """{node name: {path: write_files entry}} from the real user-data."""
    return {node.name: _written(plan, node) for node in plan.nodes}


# ---------------------------------------------------------------- what the seeds carry


def test_only_control_planes_get_keepalived_and_haproxy(plan, files):
    for node in plan.nodes:
        present = {p for p in OUR_FILES if p in files[node.name]}
        assert present == (set(OUR_FILES) if node.node.is_control_plane else set()), node.name


def _node_paths(plan: ClusterPlan, node: NodePlan) -> set[str]:
    """Every file the node gets, whatever carries it (NoCloud user-data or Ignition: a Flatcar profile may have no
    NoCloud rendering)."""
    return {f.path for f in node_config(plan, node).files}


def _example_plans(tmp_path: Path) -> list[ClusterPlan]:
    secret = make_secret(tmp_path)
    return [load_plan(profile, secret)[0] for profile in EXAMPLE_PROFILES]


def test_other_modes_write_no_keepalived_or_haproxy(tmp_path):
    others = [p for p in _example_plans(tmp_path) if p.profile.lb_mode != "keepalived-haproxy"]
    assert others, "the example profiles should exercise the other endpoint modes"
    for other in others:
        # node-local mode runs its own HAProxy (test_node_local_lb.py), with no Keepalived.
        ours = set(OUR_FILES) - ({HAPROXY_CFG} if other.profile.lb_mode == "node-local" else set())
        for node in other.nodes:
            assert not ours & _node_paths(other, node), f"{other.profile.cluster.name}/{node.name}"


def _keepalived_nodes(plan: ClusterPlan, tmp_path: Path) -> list[tuple[str, NodePlan, dict[str, dict]]]:
    """(label, node, written files) for every control plane of the test profile and of every example profile
    in keepalived-haproxy mode."""
    plans = [plan, *(p for p in _example_plans(tmp_path) if p.profile.lb_mode == "keepalived-haproxy")]
    return [(f"{p.profile.cluster.name}/{cp.name}", cp, _written(p, cp)) for p in plans for cp in p.control_planes]


def test_file_modes_keep_the_vrrp_password_private(plan, files):
    for cp in plan.control_planes:
        written = files[cp.name]
        assert written[KEEPALIVED_CONF]["permissions"] == "0600"
        assert plan.vrrp_password in written[KEEPALIVED_CONF]["content"]
        assert written[CHECK_SCRIPT]["permissions"] == "0755"
        assert written[HAPROXY_CFG]["permissions"] == "0644"


def test_init_node_has_the_top_priority_and_any_failing_node_ranks_below_every_healthy_one(plan, files):
    priorities = {cp.name: vrrp_priority(plan, cp) for cp in plan.control_planes}
    assert max(priorities, key=priorities.get) == plan.init_node.name
    ordered = [priorities[cp.name] for cp in sorted(plan.control_planes, key=lambda n: n.bootstrap_order)]
    assert ordered == sorted(ordered, reverse=True) and len(set(ordered)) == len(ordered)
    assert min(priorities.values()) > max(priorities.values()) - CHECK_WEIGHT
    for cp in plan.control_planes:
        conf = files[cp.name][KEEPALIVED_CONF]["content"]
        assert f"priority {priorities[cp.name]}\n" in conf
        assert f"weight -{CHECK_WEIGHT}\n" in conf
        assert "state BACKUP\n" in conf and "nopreempt" not in conf


def test_vrrp_is_unicast_to_the_other_control_planes(plan, files):
    for cp in plan.control_planes:
        conf = files[cp.name][KEEPALIVED_CONF]["content"]
        peers = conf.split("unicast_peer {", 1)[1].split("}", 1)[0].split()
        assert peers == [o.node.address for o in plan.control_planes if o is not cp]
        assert f"unicast_src_ip {cp.node.address}\n" in conf
        assert f"interface {cp.node.interface_name}\n" in conf
        assert f"{plan.vip}/32 dev {cp.node.interface_name}" in conf, "a host route: never a second subnet address"


def test_haproxy_balances_over_every_api_server(plan, files):
    port = plan.profile.cluster.api_server_port
    for cp in plan.control_planes:
        cfg = files[cp.name][HAPROXY_CFG]["content"]
        servers = [line.split()[1:3] for line in cfg.splitlines() if line.strip().startswith("server ")]
        assert servers == [[o.name, f"{o.node.address}:{port}"] for o in plan.control_planes]
        assert f"bind *:{plan.profile.keepalived.haproxy_port}\n" in cfg


def test_config_words_refuse_what_would_need_escaping():
    assert config_word("cp-1") == "cp-1"
    for bad in ("a b", 'x"y', "x}", "#c", "!c", "", "a\nb"):
        with pytest.raises(ValueError):
            config_word(bad)


# ---------------------------------------------------------------- real consumers


def test_haproxy_accepts_every_generated_config(plan, tmp_path):
    haproxy = require_tool("haproxy")
    for i, (label, _, written) in enumerate(_keepalived_nodes(plan, tmp_path)):
        cfg = tmp_path / f"{i}-haproxy.cfg"
        cfg.write_text(written[HAPROXY_CFG]["content"])
        result = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
        assert result.returncode == 0, f"{label}: {result.stdout}{result.stderr}"


def test_check_script_passes_shellcheck_and_bash_n(plan, files, tmp_path):
    shellcheck = require_tool("shellcheck")
    script = tmp_path / "check_apiserver.sh"
    script.write_text(files[plan.init_node.name][CHECK_SCRIPT]["content"])
    result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "--insecure" not in text and " -k" not in text, "the check verifies the API server's certificate"
    assert "--cacert \"$CLUSTER_CA\"" in text and f"CLUSTER_CA={CLUSTER_CA}" in text


def _local_copy(workdir: Path, written: dict[str, dict], ca_file: Path) -> Path:
    """keepalived.conf and the check script under workdir; only their paths are rewritten, no VRRP logic."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "check_apiserver.sh"
    script.write_text(written[CHECK_SCRIPT]["content"].replace(CLUSTER_CA, str(ca_file)))
    script.chmod(0o755)
    conf = workdir / "keepalived.conf"
    conf.write_text(written[KEEPALIVED_CONF]["content"].replace(CHECK_SCRIPT, str(script)))
    conf.chmod(0o600)
    return conf


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@needs_netns
def test_keepalived_accepts_every_generated_config(plan, tmp_path):
    keepalived = require_tool("keepalived")
    ns = f"k8sseed-kt-{os.getpid()}"
    _ip("netns", "add", ns)
    try:
        broken = None
        for i, (label, cp, written) in enumerate(_keepalived_nodes(plan, tmp_path)):
            # -t insists that the interface and the check script exist: one fresh namespace each.
            if i:
                _ip("netns", "del", ns)
                _ip("netns", "add", ns)
            _ip("-n", ns, "link", "add", cp.node.interface_name, "type", "veth", "peer", "name", "peer0")
            conf = _local_copy(tmp_path / str(i), written, tmp_path / "ca.crt")
            result = subprocess.run(["ip", "netns", "exec", ns, keepalived, "-t", "-f", str(conf)],
                                    capture_output=True, text=True)
            assert result.returncode == 0, f"{label}: {result.stdout}{result.stderr}"
            broken = conf
        assert broken is not None
        broken.write_text(broken.read_text().replace("virtual_router_id", "virtual_router_idd"))
        result = subprocess.run(["ip", "netns", "exec", ns, keepalived, "-t", "-f", str(broken)],
                                capture_output=True, text=True)
        assert result.returncode != 0, "keepalived -t has no teeth: it accepted a misspelt keyword"
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


# ---------------------------------------------------------------- VRRP failover in network namespaces

@dataclass
class Member:
    node: NodePlan
    ns: str
    workdir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    alive: bool = True


@dataclass
class Lab:
    plan: ClusterPlan
    members: dict[str, Member]
    client_ns: str
    ca_file: Path
    started: list[subprocess.Popen] = field(default_factory=list)

    def start(self, member: Member, what: str, argv: list[str]) -> subprocess.Popen:
        log = open(member.workdir / f"{what}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(["ip", "netns", "exec", member.ns, *argv], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        member.procs[what] = proc
        self.started.append(proc)
        return proc

    def start_api(self, member: Member) -> None:
        script = member.workdir.parent / "api_stand_in.py"
        cert, key = member.workdir.parent / "apiserver.crt", member.workdir.parent / "apiserver.key"
        self.start(member, "api", [sys.executable, str(script), member.node.node.address,
                                   str(self.plan.profile.cluster.api_server_port), str(cert), str(key),
                                   member.node.name])

    def start_haproxy(self, member: Member) -> None:
        self.start(member, "haproxy", ["haproxy", "-db", "-f", str(member.workdir / "haproxy.cfg")])

    def start_keepalived(self, member: Member) -> None:
        w = member.workdir
        self.start(member, "keepalived", ["keepalived", "-n", "-l", "-D", "-P", "-f", str(w / "keepalived.conf"),
                                          "-p", str(w / "keepalived.pid"), "-r", str(w / "vrrp.pid"),
                                          "-c", str(w / "checkers.pid")])

    def vip_addresses(self, member: Member) -> list[str]:
        """The VIP as configured on the member's interfaces (address/prefix), e.g. ['10.77.0.10/32']."""
        return [line.split()[3] for line in _ip("-n", member.ns, "-o", "-4", "addr", "show").splitlines()
                if line.split()[3].startswith(f"{self.plan.vip}/")]

    def vip_holders(self) -> set[str]:
        vip = f"inet {self.plan.vip}/"
        return {name for name, m in self.members.items()
                if m.alive and vip in _ip("-n", m.ns, "-o", "-4", "addr", "show")}

    def get_via_vip(self, timeout: float = 1.0) -> tuple[bool, str]:
        """HTTPS GET /healthz through VIP:haproxyPort from the client, trusting only the cluster CA."""
        url = f"https://{self.plan.profile.cluster.control_plane_endpoint}/healthz"
        result = subprocess.run(["ip", "netns", "exec", self.client_ns, "curl", "--silent", "--fail",
                                 "--max-time", str(timeout), "--cacert", str(self.ca_file), "--dump-header", "-",
                                 "--write-out", "verify=%{ssl_verify_result}", url], capture_output=True, text=True)
        served_by = next((line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
                          if line.lower().startswith("x-served-by:")), "")
        return result.returncode == 0 and "verify=0" in result.stdout and " 200" in result.stdout, served_by

    def wait_for(self, holder: str, limit: float) -> float:
        """Seconds until `holder` alone (of the live nodes) has the VIP and a request through it succeeds."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            if self.vip_holders() == {holder} and self.get_via_vip()[0]:
                return time.monotonic() - start
            time.sleep(0.1)
        raise AssertionError(f"{holder} did not take over within {limit}s: holders {self.vip_holders()}, "
                             f"request through the VIP ok={self.get_via_vip()[0]}\n{self.logs()}")

    def logs(self) -> str:
        out = []
        for m in self.members.values():
            for log in sorted(m.workdir.glob("*.log")):
                out.append(f"--- {m.node.name} {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)


@pytest.fixture(scope="module")
def lab(plan: ClusterPlan, files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    for tool in ("keepalived", "haproxy", "curl"):
        require_tool(tool)
    root = tmp_path_factory.mktemp("vrrp-lab")
    tag = f"k8sseed-{os.getpid()}"
    switch, client = f"{tag}-sw", f"{tag}-client"
    namespaces = [switch, client]
    ca_file = root / "cluster-ca.crt"
    ca_file.write_text(plan.pki.ca.cert_pem)
    (root / "api_stand_in.py").write_text(API_STANDIN)
    api_certificate(plan, root, plan.api_server_sans)
    members = {}
    for cp in plan.control_planes:
        workdir = root / cp.name
        _local_copy(workdir, files[cp.name], ca_file)
        (workdir / "haproxy.cfg").write_text(files[cp.name][HAPROXY_CFG]["content"])
        members[cp.name] = Member(cp, f"{tag}-{cp.name}", workdir)
    lab = Lab(plan, members, client, ca_file)
    try:
        _ip("netns", "add", switch)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        prefix = plan.control_planes[0].node.ip.network.prefixlen
        client_ip = f"{next(plan.control_planes[0].node.ip.network.hosts()) + 99}/{prefix}"
        ports = [(m.ns, m.node.node.interface_name, str(m.node.node.ip)) for m in members.values()]
        for i, (ns, iface, address) in enumerate([*ports, (client, "eth0", client_ip)]):
            _ip("netns", "add", ns)
            namespaces.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "add", iface, "type", "veth", "peer", "name", f"port{i}", "netns", switch)
            _ip("-n", ns, "addr", "add", address, "dev", iface)
            _ip("-n", ns, "link", "set", iface, "up")
            _ip("-n", switch, "link", "set", f"port{i}", "master", "br0", "up")
        yield lab
    finally:
        for proc in reversed(lab.started):
            stop_process(proc)
        for m in members.values():  # a SIGKILLed keepalived parent can leave its VRRP child behind
            child = _vrrp_child(m)
            if child:
                os.kill(child, signal.SIGKILL)
        for ns in reversed(namespaces):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def _vrrp_child(member: Member) -> int | None:
    """The PID of the VRRP process our keepalived forked, if it still runs (checked, not trusted)."""
    try:
        pid = int((member.workdir / "vrrp.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(member.workdir / "keepalived.conf").encode() in cmdline else None


def _crash_keepalived(member: Member) -> None:
    """SIGKILL the whole keepalived, freezing the parent first so it neither respawns nor signals its child."""
    parent = member.procs["keepalived"]
    os.kill(parent.pid, signal.SIGSTOP)
    child = _vrrp_child(member)
    assert child, "keepalived's VRRP process is not running"
    os.kill(child, signal.SIGKILL)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=5)


def test_vrrp_failover_in_network_namespaces(lab: Lab):
    plan, members = lab.plan, lab.members
    order = sorted(members.values(), key=lambda m: m.node.bootstrap_order)
    init, second, third = order[0], order[1], order[2]
    assert init.node.name == plan.init_node.name
    port = plan.profile.keepalived.haproxy_port

    # Before kubeadm init no API server answers: every check fails alike and base priorities decide.
    for m in order:
        lab.start_haproxy(m)
    for m in order:
        wait_tcp(m.ns, "127.0.0.1", port)
        lab.start_keepalived(m)
    deadline = time.monotonic() + 15
    while lab.vip_holders() != {init.node.name} and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # and it stays there
    assert lab.vip_holders() == {init.node.name}, lab.logs()
    assert not lab.get_via_vip()[0], "nothing should answer before an API server is up"

    # kubeadm init brings the first API server up, the others join: the init node keeps the VIP.
    for m in order:
        lab.start_api(m)
        wait_tcp(m.ns, m.node.node.address, plan.profile.cluster.api_server_port)
    first_ok = lab.wait_for(init.node.name, 15)
    time.sleep(3)  # every check passes now: priorities 150/149/148, no flapping
    assert lab.vip_holders() == {init.node.name}, lab.logs()
    assert lab.vip_addresses(init) == [f"{plan.vip}/32"], "the VIP must be a /32, not a second subnet address"
    served = {lab.get_via_vip()[1] for _ in range(6)}
    assert served <= set(members) and len(served) > 1, f"HAProxy should balance over the API servers: {served}"
    for m in order:  # the generated check script passes on every node, verifying the certificate for the VIP
        check = subprocess.run(["ip", "netns", "exec", m.ns, "bash", str(m.workdir / "check_apiserver.sh")])
        assert check.returncode == 0, f"{m.node.name}: check_apiserver.sh fails with every API server up"
    print(f"\nVIP {plan.vip} on {init.node.name}; first request through it {first_ok:.1f}s after the APIs came up")

    # 1. The holder's HAProxy and API server die: its check fails, its priority drops below the others'.
    for what in ("haproxy", "api"):
        os.kill(init.procs[what].pid, signal.SIGKILL)
        init.procs[what].wait(timeout=5)
    service_failover = lab.wait_for(second.node.name, 20)
    print(f"HAProxy + API killed on {init.node.name} (keepalived up): {second.node.name} holds the VIP and "
          f"answers after {service_failover:.1f}s")

    # 2. The new holder is lost (keepalived SIGKILLed, link down as on power-off): the last one takes over.
    time.sleep(1)
    _crash_keepalived(second)
    for what in ("haproxy", "api"):
        os.kill(second.procs[what].pid, signal.SIGKILL)
    _ip("-n", second.ns, "link", "set", second.node.node.interface_name, "down")
    second.alive = False
    node_failover = lab.wait_for(third.node.name, 20)
    assert lab.vip_addresses(third) == [f"{plan.vip}/32"]
    print(f"{second.node.name} lost (keepalived SIGKILL + link down): {third.node.name} holds the VIP and "
          f"answers after {node_failover:.1f}s")

    # 3. The init node's API server and HAProxy come back: once its check passes it preempts the VIP again.
    lab.start_api(init)
    lab.start_haproxy(init)
    recovery = lab.wait_for(init.node.name, 20)
    print(f"API + HAProxy back on {init.node.name}: it preempts, VIP and requests back after {recovery:.1f}s")
    assert service_failover < 10 and node_failover < 10, "failover should take seconds, not tens of seconds"


# ---------------------------------------------------------------- long-lived sessions through HAProxy

# Run as: python3 tls_echo.py CERT KEY ADDRESS:PORT...: a TLS server on each address that answers HAProxy's
# `GET /healthz` check with 200 and echoes every line of any other connection (an idle `kubectl exec` stand-in).
TLS_ECHO = r'''
import socket, ssl, sys, threading

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])


def serve(conn):
    with conn:
        try:
            tls = context.wrap_socket(conn, server_side=True)
            reader = tls.makefile("rb")
            first = reader.readline()
            if first.startswith(b"GET "):
                tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return
            line = first
            while line:
                tls.sendall(line)
                line = reader.readline()
        except OSError:
            pass


def listen(address):
    host, port = address.rsplit(":", 1)
    server = socket.create_server((host, int(port)))
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


for address in sys.argv[4:]:
    threading.Thread(target=listen, args=(address,), daemon=True).start()
listen(sys.argv[3])
'''

IDLE_CLIENT = r'''
import socket, ssl, sys, time

port, idle = int(sys.argv[1]), float(sys.argv[2])
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    tls = context.wrap_socket(raw)
    reader = tls.makefile("rb")
    tls.sendall(b"before\n")
    assert reader.readline() == b"before\n"
    opened = time.monotonic()
    time.sleep(idle)
    try:
        tls.sendall(b"after\n")
        answer = reader.readline()
    except OSError as error:
        answer = repr(error).encode()
    print(f"{time.monotonic() - opened:.1f} {answer!r}")
'''


@needs_netns
@pytest.mark.slow
def test_an_idle_api_session_through_haproxy_outlives_the_client_and_server_timeouts(plan, tmp_path):
    """`timeout tunnel` keeps a forwarded connection open while it idles past `timeout client/server`.

    Rendered with client/server lowered to 2 s (the real 35 s would make this test slow), the same config
    without its tunnel line shows the cut it prevents."""
    haproxy = require_tool("haproxy")
    generated = haproxy_cfg(plan)
    assert f"timeout tunnel {TUNNEL_TIMEOUT}\n" in generated and "timeout client 35s\n" in generated
    fast = haproxy_cfg(plan, client_server_timeout="2s")
    without_tunnel = "".join(line for line in fast.splitlines(keepends=True) if "timeout tunnel" not in line)
    assert without_tunnel != fast
    cert, key = api_certificate(plan, tmp_path, plan.api_server_sans)
    (tmp_path / "tls_echo.py").write_text(TLS_ECHO)
    (tmp_path / "idle_client.py").write_text(IDLE_CLIENT)
    ns = f"k8sseed-tun-{os.getpid()}"
    port = plan.profile.keepalived.haproxy_port
    backends = [f"{cp.node.address}:{plan.profile.cluster.api_server_port}" for cp in plan.control_planes]
    procs: list[subprocess.Popen] = []
    results = {}
    _ip("netns", "add", ns)
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        for cp in plan.control_planes:
            _ip("-n", ns, "addr", "add", f"{cp.node.address}/32", "dev", "lo")
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(tmp_path / "tls_echo.py"),
                                       str(cert), str(key), *backends]))
        for address in backends:
            host, backend_port = address.split(":")
            wait_tcp(ns, host, int(backend_port))
        for label, text in (("with tunnel", fast), ("without tunnel", without_tunnel)):
            cfg = tmp_path / f"haproxy-{label.replace(' ', '-')}.cfg"
            cfg.write_text(text)
            check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
            proxy = subprocess.Popen(["ip", "netns", "exec", ns, haproxy, "-db", "-f", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proxy)
            wait_tcp(ns, "127.0.0.1", port)
            time.sleep(2.5)  # two checks: every API server stand-in is up for HAProxy
            client = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(tmp_path / "idle_client.py"),
                                     str(port), "6"], capture_output=True, text=True, timeout=30)
            assert client.returncode == 0, client.stderr
            results[label] = client.stdout.strip()
            stop_process(proxy)
    finally:
        for proc in procs:
            stop_process(proc)
        subprocess.run(["ip", "netns", "del", ns], check=False)
    print(f"\nidle 6 s with timeout client/server 2s: {results}")
    assert results["with tunnel"].endswith("b'after\\n'"), results
    assert not results["without tunnel"].endswith("b'after\\n'"), f"the cut this guards against: {results}"
