"""BGP: the host BIRD on every node, the health-gated API VIP and the routers' configs, checked by real BIRD.

The namespace test runs the generated configs in network namespaces: one router, three control-plane nodes
(each with an API stand-in and the generated vip-health script) and, on cp-1, a BIRD configured the way
calico-node's is, to show that both BIRDs coexist and the router learns the VIP, pod blocks and pool routes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO, make_secret, require_tool
from netns_support import API_STANDIN, api_certificate, netns_unavailable, stop_process

from k8sseed.build import load_plan
from k8sseed.components.bird import bird_fragment
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.router_configs import router_configs
from k8sseed.templating import bird_string

PROFILE = REPO / "tests" / "profiles" / "bgp-test.yaml"
BIRD_CONF = "/etc/k8sseed/bird.conf"  # the seed's copy; the load-balancer phase installs it into /etc/bird/
VIP_SCRIPT = "/usr/local/sbin/k8sseed-vip-health"
BGP_SLACK = 3.0  # seconds allowed for BGP updates and scheduling on top of the health check's own delay
BFD_PROMISE = 3.0  # seconds from a power cut until the router drops the node (BFD detects in 1.5 s by default)


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> ClusterPlan:
    secret = make_secret(tmp_path_factory.mktemp("bgp-secret"))
    return load_plan(PROFILE, secret)[0]


def _files(plan: ClusterPlan, node: NodePlan) -> dict[str, str]:
    return {f.path: f.content for f in bird_fragment(plan, node).files}


def _node(plan: ClusterPlan, name: str) -> NodePlan:
    return next(n for n in plan.nodes if n.name == name)


def _bird_parse(conf: Path) -> None:
    result = subprocess.run([require_tool("bird"), "-p", "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, f"{conf.name}: {result.stderr}\n{conf.read_text()}"


# ---------------------------------------------------------------- generated files


def test_every_node_bird_conf_passes_bird_parse(plan, tmp_path):
    for node in plan.nodes:
        conf = tmp_path / f"{node.name}.conf"
        conf.write_text(_files(plan, node)[BIRD_CONF])
        _bird_parse(conf)


def test_router_sessions_detect_a_dead_peer_in_seconds_by_default(plan):
    """BFD (300 ms x 5) and a 9 s hold time on both sides, without a word about either in the profile."""
    assert "bfd" not in PROFILE.read_text() and "holdTime" not in PROFILE.read_text()
    bgp = plan.profile.bgp
    assert bgp is not None and bgp.bfd.enabled and bgp.bfd.detection_ms == 1500
    assert (bgp.hold_time, bgp.keepalive_time) == (9, 3)
    timers = "bfd { min rx interval 300 ms; min tx interval 300 ms; multiplier 5; };"
    for node in plan.nodes:
        conf = _files(plan, node)[BIRD_CONF]
        assert "protocol bfd {" in conf and timers in conf, node.name
        peer_block = conf.split("protocol bgp peer_tor_a {", 1)[1]
        assert "hold time 9;" in peer_block and "keepalive time 3;" in peer_block
        assert "bfd" not in conf.split("protocol bgp calico {", 1)[1].split("}", 2)[0], "no BFD over loopback"
    routers = router_configs(plan)
    assert "protocol bfd {" in routers["tor-a.bird.conf"] and timers in routers["tor-a.bird.conf"]
    assert "hold time 9;" in routers["tor-a.bird.conf"] and "keepalive time 3;" in routers["tor-a.bird.conf"]
    frr = routers["tor-a.frr.conf"]
    assert " receive-interval 300\n" in frr and " transmit-interval 300\n" in frr and " detect-multiplier 5\n" in frr
    for cp in plan.nodes:
        assert f" neighbor {cp.node.address} bfd profile K8SSEED\n" in frr
        assert f" neighbor {cp.node.address} timers 3 9\n" in frr
    assert "1500 ms" in routers["README.md"] and "hold time to 9 s" in routers["README.md"]


def test_every_built_example_profile_bird_conf_passes_bird_parse(built, tmp_path):
    """The build's own output: each node's /etc/bird/bird.conf and OUT/router/*.bird.conf of profiles/*.yaml."""
    checked = 0
    for stem, out in built.items():
        for seed in sorted(d for d in out.iterdir() if (d / "user-data").is_file()):
            files = {f["path"]: f["content"] for f in yaml.safe_load((seed / "user-data").read_text())["write_files"]}
            if BIRD_CONF in files:
                conf = tmp_path / f"{stem}-{seed.name}.conf"
                conf.write_text(files[BIRD_CONF])
                _bird_parse(conf)
                checked += 1
        for conf in sorted((out / "router").glob("*.bird.conf")) if (out / "router").is_dir() else ():
            _bird_parse(conf)
            checked += 1
    assert checked, "no example profile has a bgp section"


def test_router_configs_pass_bird_and_frr_checks(plan, tmp_path):
    files = router_configs(plan)
    assert set(files) == {"tor-a.bird.conf", "tor-a.frr.conf", "README.md"}
    (tmp_path / "tor-a.bird.conf").write_text(files["tor-a.bird.conf"])
    _bird_parse(tmp_path / "tor-a.bird.conf")
    (tmp_path / "tor-a.frr.conf").write_text(files["tor-a.frr.conf"])
    result = subprocess.run([require_tool("vtysh"), "--dryrun", "-f", str(tmp_path / "tor-a.frr.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    frr = files["tor-a.frr.conf"]
    assert "maximum-paths 64" in frr and "neighbor 172.20.0.13 remote-as 64512" in frr
    assert "permit 172.20.100.10/32" in frr and "permit 192.168.0.0/16 ge 26 le 32" in frr
    readme = files["README.md"]
    for text in ("172.20.100.10/32", "192.168.0.0/16", "10.30.0.0/24", "cp-3", "worker-1", "merge paths on"):
        assert text in readme
    password = dict(plan.bgp_passwords)["tor-a"]
    assert password in files["tor-a.bird.conf"] and password in frr and password not in readme


def _variant(tmp_path: Path, *replacements: tuple[str, str]) -> ClusterPlan:
    text = PROFILE.read_text()
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    profile = tmp_path / "variant.yaml"
    profile.write_text(text)
    return load_plan(profile, make_secret(tmp_path))[0]


def test_bfd_off_and_external_mode_configs_pass_bird_and_frr_checks(tmp_path):
    """bgp.bfd.enabled false leaves BFD out on both sides but keeps the short hold time; controlPlaneLB
    external keeps the host BIRD but announces no VIP. Custom timers reach both sides."""
    plan = _variant(tmp_path, ("  calicoListenPort: 1790\n",
                               "  calicoListenPort: 1790\n  bfd: {enabled: false}\n  holdTimeSeconds: 6\n"),
                    ("  mode: bgp\n", "  mode: external\n"))
    assert plan.profile.bgp is not None and not plan.profile.bgp.bfd.enabled and plan.profile.lb_mode == "external"
    for node in plan.nodes:
        files = _files(plan, node)
        assert set(files) == {BIRD_CONF}, "no VIP service outside bgp mode"
        assert "bfd" not in files[BIRD_CONF].replace("k8sseed", "") and "protocol static vip" not in files[BIRD_CONF]
        assert "hold time 6;" in files[BIRD_CONF] and "keepalive time 2;" in files[BIRD_CONF]
        (tmp_path / f"{node.name}.conf").write_text(files[BIRD_CONF])
        _bird_parse(tmp_path / f"{node.name}.conf")
    routers = router_configs(plan)
    assert str(plan.vip) not in routers["tor-a.bird.conf"] and "protocol bfd" not in routers["tor-a.bird.conf"]
    assert "hold time 6;" in routers["tor-a.bird.conf"]
    (tmp_path / "r.bird.conf").write_text(routers["tor-a.bird.conf"])
    _bird_parse(tmp_path / "r.bird.conf")
    (tmp_path / "r.frr.conf").write_text(routers["tor-a.frr.conf"])
    assert "bfd" not in routers["tor-a.frr.conf"] and "neighbor 172.20.0.11 timers 2 6" in routers["tor-a.frr.conf"]
    result = subprocess.run([require_tool("vtysh"), "--dryrun", "-f", str(tmp_path / "r.frr.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    custom = _variant(tmp_path, ("  calicoListenPort: 1790\n",
                                 "  calicoListenPort: 1790\n  bfd: {intervalMilliseconds: 1000, multiplier: 3}\n"))
    timers = "bfd { min rx interval 1000 ms; min tx interval 1000 ms; multiplier 3; };"
    assert timers in _files(custom, custom.nodes[0])[BIRD_CONF]
    routers = router_configs(custom)
    assert timers in routers["tor-a.bird.conf"] and " detect-multiplier 3\n" in routers["tor-a.frr.conf"]
    (tmp_path / "c.frr.conf").write_text(routers["tor-a.frr.conf"])
    result = subprocess.run([require_tool("vtysh"), "--dryrun", "-f", str(tmp_path / "c.frr.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_profile_without_bgp_gets_no_bird_and_no_router_configs(built):
    out = built["single-node"]
    assert not (out / "router").exists()
    for seed in (d for d in out.iterdir() if (d / "user-data").is_file()):
        paths = {f["path"] for f in yaml.safe_load((seed / "user-data").read_text())["write_files"]}
        assert BIRD_CONF not in paths and VIP_SCRIPT not in paths


def test_the_vip_is_announced_only_by_control_planes_and_only_through_its_protocol(plan):
    cp, worker = _files(plan, _node(plan, "cp-1")), _files(plan, _node(plan, "worker-1"))
    assert set(cp) == {BIRD_CONF, VIP_SCRIPT, "/etc/systemd/system/k8sseed-vip-health.service",
                       "/etc/sysctl.d/91-k8sseed-vip.conf"}
    assert set(worker) == {BIRD_CONF}
    assert "protocol static vip" in cp[BIRD_CONF] and "172.20.100.10" not in worker[BIRD_CONF]
    assert "disabled;" in cp[BIRD_CONF], "the VIP starts withdrawn until the API server is ready"
    for conf in (cp[BIRD_CONF], worker[BIRD_CONF]):
        assert "router id 100.127." in conf, "never the node IP: calico-node's BIRD uses it"
        assert "neighbor 172.20.0.1 as 64500" in conf and "port 1790" in conf
        assert "protocol kernel" not in conf, "calico-node programs the node's routes, not the host BIRD"
    assert 'interface "uplink0" 172.20.0.0/24;' in _files(plan, _node(plan, "cp-3"))[BIRD_CONF]
    assert "arp_ignore = 1" in cp["/etc/sysctl.d/91-k8sseed-vip.conf"]


def test_vip_health_script_is_shellcheck_clean(plan, tmp_path):
    script = tmp_path / "k8sseed-vip-health"
    script.write_text(_files(plan, _node(plan, "cp-2"))[VIP_SCRIPT])
    result = subprocess.run([require_tool("shellcheck"), "--shell=bash", "--severity=style", str(script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "https://172.20.0.12:6443/readyz" in script.read_text()


def test_bird_string_refuses_what_birds_lexer_cannot_hold():
    assert bird_string("tor-a") == '"tor-a"'
    for bad in ('a"b', "a\\b", "a\nb"):
        with pytest.raises(ValueError):
            bird_string(bad)


# ---------------------------------------------------------------- namespaces with real daemons


class Lab:
    """Namespaces, links and processes this test starts; torn down by PID and name only."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.prefix = f"k8sbgp-{os.getpid()}"
        self.namespaces: list[str] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", full], check=True)
        self.namespaces.append(full)
        self.ip(full, "link", "set", "lo", "up")
        return full

    @staticmethod
    def ip(ns: str, *args: str) -> str:
        return subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, text=True).stdout

    def start(self, key: str, ns: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.work / f"{key}.out", "wb")  # noqa: SIM115 - closed with the process
        self.procs[key] = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=log, stderr=subprocess.STDOUT,
                                           env={**os.environ, **(env or {})})
        log.close()

    def stop(self, key: str) -> None:
        stop_process(self.procs.pop(key))

    def close(self) -> None:
        for key in list(self.procs):
            self.stop(key)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


CALICO_STANDIN = """\
router id {node_ip};
log "{log}" all;
protocol device {{ }}
protocol static blocks {{
  ipv4;
  route 192.168.10.0/26 blackhole;   # a pod block inside podSubnet
  route 10.30.0.7/32 blackhole;      # a PureLB address from pool default (aggregation /32)
  route 10.200.0.0/24 blackhole;     # not the cluster's: the host BIRD must drop it
}}
protocol bgp host {{
  local {node_ip} port {port} as {asn};
  neighbor 127.0.0.1 port 179 as {asn};
  source address {node_ip};
  multihop;
  ipv4 {{ import none; export where proto = "blocks"; next hop self; }};
}}
"""


def _with_log_file(conf: str, log: Path) -> str:
    """The generated config with its syslog line pointed at a file; every protocol stays as generated."""
    lines = conf.splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.startswith("log syslog"))
    lines[index] = f'log "{log}" all;\n'
    return "".join(lines)


def _next_hops(lab: Lab, router: str, prefix: str) -> set[str]:
    routes = json.loads(lab.ip(router, "-j", "route", "show", prefix))
    hops: set[str] = set()
    for route in routes:
        if route.get("dst") != prefix.removesuffix("/32"):
            continue
        if "gateway" in route:
            hops.add(route["gateway"])
        hops.update(h["gateway"] for h in route.get("nexthops", []) if "gateway" in h)
    return hops


def _wait_for(what: str, predicate, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _birdc(socket: Path, *command: str) -> str:
    return subprocess.run(["birdc", "-s", str(socket), *command], capture_output=True, text=True).stdout


def _start_router(plan: ClusterPlan, lab: Lab, tmp_path: Path) -> str:
    """The router namespace: bridge br0 with the peer's address, BIRD running OUT/router/<peer>.bird.conf."""
    assert plan.profile.bgp is not None
    peer = plan.profile.bgp.peers[0]
    router = lab.ns("router")
    lab.ip(router, "link", "add", "br0", "type", "bridge")
    lab.ip(router, "addr", "add", f"{peer.address}/24", "dev", "br0")
    lab.ip(router, "link", "set", "br0", "up")
    router_conf = tmp_path / "router.conf"
    router_conf.write_text(_with_log_file(router_configs(plan)[f"{peer.name}.bird.conf"], tmp_path / "router.log"))
    lab.start("bird-router", router, ["bird", "-f", "-c", str(router_conf), "-s", str(tmp_path / "router.ctl"),
                                      "-P", str(tmp_path / "router.pid")])
    return router


def _start_control_plane(plan: ClusterPlan, lab: Lab, tmp_path: Path, router: str, index: int,
                         cp: NodePlan) -> str:
    """A control-plane namespace on the router's bridge: its generated BIRD config, an API stand-in and the
    generated vip-health script (binding the VIP on lo)."""
    p = plan.profile
    assert p.bgp is not None
    # Shared by every control plane's processes: written once, never rewritten while an earlier node's
    # stand-in or probe may be reading it (a truncated api_standin.py is an empty program that exits 0).
    ca_file = tmp_path / "cluster-ca.crt"
    if not ca_file.exists():
        ca_file.write_text(plan.pki.ca.cert_pem)
    standin = tmp_path / "api_standin.py"
    if not standin.exists():
        standin.write_text(API_STANDIN)
    ns = lab.ns(cp.name)
    nic = cp.node.interface_name or "eth0"
    lab.ip(router, "link", "add", f"v{index}", "type", "veth", "peer", "name", nic, "netns", ns)
    lab.ip(router, "link", "set", f"v{index}", "master", "br0", "up")
    lab.ip(ns, "addr", "add", str(cp.node.ip), "dev", nic)
    lab.ip(ns, "link", "set", nic, "up")
    lab.ip(ns, "route", "add", "default", "via", str(p.bgp.peers[0].address))
    files = _files(plan, cp)
    conf = tmp_path / f"{cp.name}.bird.conf"
    conf.write_text(_with_log_file(files[BIRD_CONF], tmp_path / f"{cp.name}.bird.log"))
    socket = tmp_path / f"{cp.name}.ctl"
    lab.start(f"bird-{cp.name}", ns, ["bird", "-f", "-c", str(conf), "-s", str(socket),
                                      "-P", str(tmp_path / f"{cp.name}.pid")])
    cert, key = api_certificate(plan, tmp_path, [cp.node.address], stem=cp.node.address)
    lab.start(f"api-{cp.name}", ns, [sys.executable, str(standin), cp.node.address,
                                     str(p.cluster.api_server_port), str(cert), str(key), cp.name])
    script = tmp_path / f"{cp.name}-vip-health"
    script.write_text(files[VIP_SCRIPT])
    lab.start(f"health-{cp.name}", ns, ["bash", str(script)], env={
        "K8SSEED_BIRD_SOCKET": str(socket), "K8SSEED_VIP_INTERFACE": "lo",
        "K8SSEED_VIP_INTERFACE_KIND": "existing", "K8SSEED_VIP_CA_FILE": str(ca_file)})
    return ns


def _power_off(lab: Lab, ns: str, cp: NodePlan) -> None:
    """What a power cut looks like from the router: the node's link goes silent, no BGP notification."""
    lab.ip(ns, "link", "set", cp.node.interface_name or "eth0", "down")


def _dump(lab: Lab, tmp_path: Path) -> None:
    for name in sorted(os.listdir(tmp_path)):
        if name.endswith((".log", ".out")):
            print(f"--- {name}\n{(tmp_path / name).read_text()[-3000:]}")
    for key, proc in sorted(lab.procs.items()):
        state = "running" if proc.poll() is None else f"exited {proc.returncode}"
        print(f"--- process {key}: {state}")
    print(_birdc(tmp_path / "router.ctl", "show", "protocols", "all"))


@pytest.mark.netns
@pytest.mark.slow
def test_router_sees_vip_ecmp_withdrawn_and_returned_with_the_api_server(plan, lab, tmp_path):
    require_tool("bird")
    require_tool("birdc")
    require_tool("curl")
    p = plan.profile
    assert p.bgp is not None
    vip = f"{plan.vip}/32"
    hc = p.health_check
    router = _start_router(plan, lab, tmp_path)
    control_planes = plan.control_planes
    standin = tmp_path / "api_standin.py"
    namespaces = {cp.name: _start_control_plane(plan, lab, tmp_path, router, index, cp)
                  for index, cp in enumerate(control_planes)}

    # calico-node's BIRD, as k8sseed configures Calico: listenPort calicoListenPort, BGPPeer 127.0.0.1:179.
    cp1 = control_planes[0]
    calico_conf = tmp_path / "calico.conf"
    calico_conf.write_text(CALICO_STANDIN.format(node_ip=cp1.node.address, port=p.bgp.calico_listen_port,
                                                 asn=p.bgp.as_number, log=tmp_path / "calico.log"))
    lab.start("bird-calico", namespaces[cp1.name], ["bird", "-f", "-c", str(calico_conf),
                                                     "-s", str(tmp_path / "calico.ctl"),
                                                     "-P", str(tmp_path / "calico.pid")])

    all_hops = {cp.node.address for cp in control_planes}
    try:
        took = _wait_for("the router's ECMP route to the VIP via every control plane",
                         lambda: _next_hops(lab, router, vip) == all_hops, 45)
        print(f"\nVIP {vip} reached ECMP via {sorted(all_hops)} {took:.1f} s after the daemons started")
        _wait_for("the pod block and PureLB address from calico-node",
                  lambda: _next_hops(lab, router, "192.168.10.0/26") == {cp1.node.address}
                  and _next_hops(lab, router, "10.30.0.7/32") == {cp1.node.address}, 15)
    except AssertionError:
        _dump(lab, tmp_path)
        raise
    assert _next_hops(lab, router, "10.200.0.0/24") == set(), "a non-cluster route from Calico leaked"
    for log in ("calico.log", f"{cp1.name}.bird.log"):
        text = (tmp_path / log).read_text()
        assert "Address already in use" not in text and "Cannot" not in text, text
    assert "Established" in _birdc(tmp_path / "calico.ctl", "show", "protocols", "host")
    assert "Established" in _birdc(tmp_path / f"{cp1.name}.ctl", "show", "protocols", "calico")
    for cp in control_planes:
        assert str(plan.vip) in lab.ip(namespaces[cp.name], "-4", "addr", "show", "dev", "lo")

    # A dead API server leaves the ECMP set within failures x (interval + probe timeout) + BGP.
    victim = control_planes[1]
    promised_withdraw = hc.failures * (hc.interval_seconds + 1) + BGP_SLACK
    lab.stop(f"api-{victim.name}")
    withdrawn = _wait_for(f"{victim.name} leaving the VIP's next hops",
                          lambda: _next_hops(lab, router, vip) == all_hops - {victim.node.address},
                          promised_withdraw)
    print(f"{victim.name}'s API server stopped: next hop withdrawn after {withdrawn:.1f} s "
          f"(promised {promised_withdraw:.0f} s)")
    _wait_for(f"{plan.vip} unbound on {victim.name} (after BIRD stopped announcing it)",
              lambda: str(plan.vip) not in lab.ip(namespaces[victim.name], "-4", "addr", "show", "dev", "lo"), 1)

    cert, key = tmp_path / f"{victim.node.address}.crt", tmp_path / f"{victim.node.address}.key"
    promised_return = hc.successes * (hc.interval_seconds + 1) + BGP_SLACK
    lab.start(f"api-{victim.name}", namespaces[victim.name],
              [sys.executable, str(standin), victim.node.address, str(p.cluster.api_server_port), str(cert), str(key),
               victim.name])
    returned = _wait_for(f"{victim.name} back in the VIP's next hops",
                         lambda: _next_hops(lab, router, vip) == all_hops, promised_return)
    print(f"{victim.name}'s API server restarted: next hop back after {returned:.1f} s "
          f"(promised {promised_return:.0f} s, includes the stand-in's start)")

    # A BIRD restart comes back with `vip` disabled; the health loop re-enables it.
    third = control_planes[2]
    lab.stop(f"bird-{third.name}")
    _wait_for(f"{third.name} leaving after its BIRD stopped",
              lambda: third.node.address not in _next_hops(lab, router, vip), 10)
    lab.start(f"bird-{third.name}", namespaces[third.name],
              ["bird", "-f", "-c", str(tmp_path / f"{third.name}.bird.conf"), "-s", str(tmp_path / f"{third.name}.ctl"),
               "-P", str(tmp_path / f"{third.name}.pid")])
    back = _wait_for(f"{third.name} back after its BIRD restarted",
                     lambda: _next_hops(lab, router, vip) == all_hops, 20)
    print(f"{third.name}'s BIRD restarted: VIP re-announced after {back:.1f} s")

    # Stopping the health service withdraws (drain).
    lab.stop(f"health-{third.name}")
    _wait_for(f"{third.name} leaving after its health service stopped",
              lambda: _next_hops(lab, router, vip) == all_hops - {third.node.address}, 3)
    _wait_for(f"{plan.vip} unbound on {third.name}",
              lambda: str(plan.vip) not in lab.ip(namespaces[third.name], "-4", "addr", "show", "dev", "lo"), 1)

    # A control plane loses power: no BGP notification, no withdraw. BFD takes it out of the ECMP set.
    assert p.bgp.bfd.enabled
    left = all_hops - {third.node.address, victim.node.address}
    _power_off(lab, namespaces[victim.name], victim)
    gone = _wait_for(f"{victim.name} leaving the VIP's next hops after its power cut",
                     lambda: _next_hops(lab, router, vip) == left, BFD_PROMISE + 10)
    print(f"{victim.name} powered off: the router dropped it as a next hop of the VIP after {gone:.1f} s "
          f"(BFD {p.bgp.bfd.interval_ms} ms x {p.bgp.bfd.multiplier}; hold time {p.bgp.hold_time} s)")
    assert gone <= BFD_PROMISE, f"BFD should drop a dead node within {BFD_PROMISE} s, took {gone:.1f} s"


@pytest.mark.netns
@pytest.mark.slow
def test_without_bfd_a_powered_off_control_plane_stays_a_next_hop_until_the_hold_time(lab, tmp_path):
    """The same power cut with bgp.bfd.enabled false: only the (short) BGP hold time ends it."""
    require_tool("bird")
    require_tool("curl")
    plan = _variant(tmp_path, ("  calicoListenPort: 1790\n", "  calicoListenPort: 1790\n  bfd: {enabled: false}\n"))
    assert plan.profile.bgp is not None and plan.profile.bgp.hold_time == 9
    vip = f"{plan.vip}/32"
    router = _start_router(plan, lab, tmp_path)
    first, second = plan.control_planes[:2]
    namespaces = {cp.name: _start_control_plane(plan, lab, tmp_path, router, index, cp)
                  for index, cp in enumerate((first, second))}
    both = {first.node.address, second.node.address}
    try:
        _wait_for("the router's ECMP route to the VIP via both control planes",
                  lambda: _next_hops(lab, router, vip) == both, 45)
    except AssertionError:
        _dump(lab, tmp_path)
        raise
    _power_off(lab, namespaces[second.name], second)
    hold = plan.profile.bgp.hold_time
    gone = _wait_for(f"{second.name} leaving the VIP's next hops", lambda: _next_hops(lab, router, vip) == {
        first.node.address}, hold + 5)
    print(f"\nwithout BFD: {second.name} powered off, dropped after {gone:.1f} s (hold time {hold} s, "
          f"keepalive {plan.profile.bgp.keepalive_time} s; BIRD's default hold time would make it up to 240 s)")
    assert gone > BFD_PROMISE, "without BFD only the hold time can notice a silent node"


def test_a_shared_gateway_that_is_no_bgp_peer_is_reported_once_at_its_own_line():
    """Six nodes inherit network.gateway: one finding, at the value to change, naming the nodes and the fix."""
    bad = REPO / "tests" / "profiles" / "bad" / "100-bgp-gateway-not-a-peer.yaml"
    result = subprocess.run([str(Path(sys.executable).parent / "k8sseed"), "validate", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line_no = int(lines[0].split(":")[1])
    assert bad.read_text().splitlines()[line_no - 1] == "  gateway: 10.20.0.254"
    assert "set network.gateway to 10.20.0.1" in lines[0] and "API VIP" in lines[0]


def test_the_seed_keeps_bird_conf_root_only_until_the_load_balancer_phase_installs_it_for_bird(built):
    """Debian's bird.service runs as user bird: a root-owned /etc/bird/bird.conf written by cloud-init made it
    fail at boot on images with bird2 preinstalled. The seed writes nothing under /etc/bird/; the
    load-balancer phase checks the seed's copy and installs it root:bird 0640 once bird2 (and its group) exist."""
    seed = built["reference"] / "cp-1"
    entries = {f["path"]: f for f in yaml.safe_load((seed / "user-data").read_text())["write_files"]}
    assert not [path for path in entries if path.startswith("/etc/bird/")]
    assert entries[BIRD_CONF]["permissions"] == "0600" and "k8sseed host BIRD" in entries[BIRD_CONF]["content"]
    script = next(f["content"] for f in entries.values() if "phase_load_balancer() {" in f["content"])
    phase = script.split("phase_load_balancer() {", 1)[1].split("\n}\n", 1)[0]
    steps = ["ensure_packages bird2", 'run bird -p -c "$CONF_DIR/bird.conf"',
             'run install -o root -g bird -m 0640 "$CONF_DIR/bird.conf" /etc/bird/bird.conf',
             "start_checked_service bird.service"]
    positions = [phase.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), phase
    assert "readonly CONF_DIR=/etc/k8sseed\n" in script and BIRD_CONF == "/etc/k8sseed/bird.conf"
