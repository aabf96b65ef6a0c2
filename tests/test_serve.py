"""`k8sseed serve` as a real process on loopback: seeds as cloud-init's nocloud-net reads them, ISOs in ranges,
iPXE, access control, hand-out-once, traversal and symlink attempts, a rebuild while clients read, and
signed status reports good and forged."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets as pysecrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import K8SSEED, make_secret, require_tool, run_cli
from serve_support import SERIALS, UUIDS, Lab, Server, build, lab_profile, make_lab

from k8sseed.secrets import read_secret
from k8sseed.serve.reports import signed_body

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with the cloud-init package the tests install


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("serve-lab"))


@pytest.fixture(scope="module")
def server(lab: Lab):
    with Server(lab) as running:
        yield running


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def macs(out: Path) -> dict[str, str]:
    return {n["name"]: n["mac"] for n in manifest(out)["nodes"]}


def test_seed_files_by_name_mac_serial_and_uuid(lab: Lab, server: Server):
    mac = macs(lab.out)
    for node, prefix in (("cp-1", "/cp-1/"), ("cp-1", f"/by-mac/{mac['cp-1']}/"),
                         ("cp-1", f"/by-mac/{mac['cp-1'].upper().replace(':', '-')}/"),
                         ("cp-1", f"/by-serial/{SERIALS['cp-1']}/"), ("worker-1", f"/by-serial/{SERIALS['worker-1']}/"),
                         ("cp-2", f"/by-uuid/{UUIDS['cp-2']}/"), ("cp-2", f"/by-uuid/{UUIDS['cp-2'].lower()}/")):
        for name in ("user-data", "meta-data", "network-config"):
            status, _, body = server.get(prefix + name)
            assert status == 200, (prefix, name)
            assert body == (lab.out / node / name).read_bytes(), (prefix, name)
        status, _, body = server.get(prefix + "vendor-data")
        assert (status, body) == (200, b""), "vendor-data: cloud-init retries a failed fetch; an empty answer is 'none'"
    for missing in ("/by-mac/52:54:00:99:99:99/user-data", "/by-serial/NOPE/user-data", "/nope/user-data",
                    "/cp-1/secret-data", "/by-uuid/00000000-0000-0000-0000-000000000000/meta-data"):
        assert server.get(missing)[0] == 404, missing
    log = server.log()
    assert "client=127.0.0.1 GET /cp-1/user-data 200" in log
    assert "client=127.0.0.1 GET /nope/user-data 404" in log and "refused" in log


def test_cloud_init_reads_the_seed_over_http(lab: Lab, server: Server):
    """cloud-init's own read_seeded (what nocloud-net calls with the s= URL) against the server."""
    if not Path(SYSTEM_PYTHON).exists() or subprocess.run([SYSTEM_PYTHON, "-c", "import cloudinit"]).returncode:
        pytest.fail("cloud-init is not installed: .ci/run installs it (apt-get install cloud-init)")
    mac = macs(lab.out)["worker-1"]
    script = ("import json,sys; from cloudinit import util\n"
              "md, ud, vd = util.read_seeded(sys.argv[1], timeout=5, retries=0)[:3]\n"
              "print(json.dumps({'md': md, 'ud': ud.decode(), 'vd': vd.decode() if vd is not None else None}))")
    result = subprocess.run([SYSTEM_PYTHON, "-c", script, f"{server.url}by-mac/{mac}/"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["md"] == yaml.safe_load((lab.out / "worker-1" / "meta-data").read_text())
    assert got["ud"] == (lab.out / "worker-1" / "user-data").read_text()
    assert got["vd"] == ""


def test_paths_outside_the_seeds_are_refused(lab: Lab, server: Server):
    attempts = [b"/../manifest.json", b"/%2e%2e/%2e%2e/etc/passwd", b"/cp-1/..%2f..%2fetc%2fpasswd",
                b"/cp-1/%2e%2e/cp-2/user-data", b"/by-mac/../cp-1/user-data", b"/manifest.json",
                b"/router/tor-a.bird.conf", b"/cp-1.iso", b"/iso/../cp-1.iso", b"/cp-1//user-data",
                b"/cp-1/user-data%00.txt", b"/iso/router.iso", b"//etc/passwd", b"/cp-1/%ff",
                b"/cp-1/\x1b[2J%0a2026-01-01 INFO client=10.0.0.1 GET /fake 200"]
    for target in attempts:
        answer = server.raw(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 403, 404), (target, answer[:200])
        assert b"PRIVATE KEY" not in answer and b"root:" not in answer and b"password" not in answer, target
    log = server.log()
    assert log.count("refused") >= len(attempts)
    assert "\x1b" not in log and "\n2026-01-01 INFO client=10.0.0.1" not in log, "client text cannot forge log lines"


def test_symbolic_links_are_never_followed(tmp_path: Path):
    lab = make_lab(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "user-data").write_text("OUTSIDE-SECRET\n")
    (lab.out / "cp-2" / "user-data").unlink()
    (lab.out / "cp-2" / "user-data").symlink_to(outside / "user-data")
    shutil.rmtree(lab.out / "worker-1")
    (lab.out / "worker-1").symlink_to(outside)
    (lab.out / "worker-2.iso").unlink()
    (lab.out / "worker-2.iso").symlink_to(outside / "user-data")
    with Server(lab) as server:
        for path in ("/cp-2/user-data", "/worker-1/user-data", "/iso/worker-2.iso",
                     f"/by-mac/{macs(lab.out)['worker-1']}/user-data"):
            status, _, body = server.get(path)
            assert status == 403, path
            assert b"OUTSIDE-SECRET" not in body
        assert server.get("/cp-1/user-data")[0] == 200
        assert "symbolic link" in server.log()
        # read in advance at start: every seed file but the linked ones (cp-2's user-data, worker-1's three)
        expected = 3 * len(manifest(lab.out)["nodes"]) - 1 - 3
        assert f"; {expected} seed files, " in server.log(), server.log()


def test_iso_range_requests(lab: Lab, server: Server):
    iso = (lab.out / "cp-1.iso").read_bytes()
    size = len(iso)
    status, headers, body = server.get("/iso/cp-1.iso")
    assert (status, body) == (200, iso) and headers["accept-ranges"] == "bytes"
    for header, start, end in (("bytes=0-1023", 0, 1023), ("bytes=32768-34815", 32768, 34815),
                               (f"bytes={size - 10}-", size - 10, size - 1), ("bytes=-100", size - 100, size - 1),
                               (f"bytes=100-{size * 2}", 100, size - 1)):
        status, headers, body = server.get("/iso/cp-1.iso", headers={"Range": header})
        assert status == 206, header
        assert headers["content-range"] == f"bytes {start}-{end}/{size}", header
        assert body == iso[start:end + 1], header
    status, headers, _ = server.get("/iso/cp-1.iso", headers={"Range": f"bytes={size}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{size}"
    status, _, body = server.get("/iso/cp-1.iso", headers={"Range": "bytes=0-1,5-9"})
    assert (status, body) == (200, iso), "several ranges: the whole file (RFC 9110 lets a server ignore Range)"
    status, headers, body = server.request("HEAD", "/iso/cp-1.iso")
    assert (status, body, headers["content-length"]) == (200, b"", str(size))
    etag = headers["etag"]
    assert etag == f'"{hashlib.sha256(iso).hexdigest()}"'
    assert server.get("/iso/cp-1.iso", headers={"Range": "bytes=0-9", "If-Range": etag})[0] == 206
    status, _, body = server.get("/iso/cp-1.iso", headers={"Range": "bytes=0-9", "If-Range": '"0000"'})
    assert (status, body) == (200, iso), "If-Range of another build: the whole ISO"
    assert server.get("/iso/nope.iso")[0] == 404


def test_curl_resumes_an_iso_download(lab: Lab, server: Server, tmp_path: Path):
    """A real HTTP client continuing a partial download with a range request."""
    curl = require_tool("curl")
    iso = (lab.out / "worker-3.iso").read_bytes()
    partial = tmp_path / "w3.iso"
    partial.write_bytes(iso[:50000])
    subprocess.run([curl, "-fsS", "-C", "-", "-o", str(partial), f"{server.url}iso/worker-3.iso"], check=True,
                   timeout=60)
    assert partial.read_bytes() == iso
    assert "GET /iso/worker-3.iso 206" in server.log()


def test_ipxe_scripts(lab: Lab, server: Server):
    status, _, body = server.get("/ipxe/boot.ipxe")
    entry = body.decode()
    assert status == 200 and entry.startswith("#!ipxe\n")
    assert "chain --autofree http://127.0.0.1:" in entry and "ipxe/by-mac/${net0/mac}.ipxe" in entry
    mac = macs(lab.out)["cp-3"]
    status, _, body = server.get(f"/ipxe/by-mac/{mac}.ipxe")
    script = body.decode().splitlines()
    assert status == 200 and script[0] == "#!ipxe"
    kernel = next(line for line in script if line.startswith("kernel "))
    words = kernel.split()
    assert words[:5] == ["kernel", "http://10.20.0.5:8080/boot/vmlinuz", "initrd=initrd", "console=ttyS0,115200",
                         f"ds=nocloud-net;s={server.url}by-mac/{mac}/"]
    assert words[5].startswith("network-config=") and len(words) == 6
    network_config = base64.b64decode(words[5].split("=", 1)[1])
    assert network_config == (lab.out / "cp-3" / "network-config").read_bytes(), \
        "cloud-init 22.4 fetches no network-config over HTTP: it rides on the command line"
    assert "initrd --name initrd http://10.20.0.5:8080/boot/initrd.img" in script
    assert script[-1] == "boot"
    assert server.get("/ipxe/by-mac/52:54:00:99:99:99.ipxe")[0] == 404


def test_ipxe_chains_with_the_mac_percent_encoded_as_real_ipxe_sends_it(lab: Lab, server: Server):
    """iPXE expands ${net0/mac} into the URL's path and sends its colons as %3A (seen from Debian's ipxe-qemu
    in the VM test): the same machine script, not a 404 that loops the rack in the entry script."""
    mac = macs(lab.out)["cp-3"]
    status, _, body = server.get(f"/ipxe/by-mac/{mac.replace(':', '%3A')}.ipxe")
    assert status == 200 and body == server.get(f"/ipxe/by-mac/{mac}.ipxe")[2]


def test_pxe_config_passes_dnsmasq_test(lab: Lab, tmp_path: Path):
    dnsmasq = require_tool("dnsmasq")
    result = run_cli("pxe-config", str(lab.out), "--server", "http://10.20.0.5:8080", "--tftp-root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    config = tmp_path / "dnsmasq.conf"
    config.write_text(result.stdout)
    assert "dhcp-range=10.20.0.0,proxy,255.255.255.0" in result.stdout
    assert "pxe-service=tag:ipxe,x86PC,\"k8sseed\",http://10.20.0.5:8080/ipxe/boot.ipxe" in result.stdout
    checked = subprocess.run([dnsmasq, "--test", "-C", str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "syntax check OK" in checked.stderr + checked.stdout
    for bad in (["--server", "http://x/$(reboot)"], ["--server", "http://10.0.0.1/", "--tftp-root", "srv tftp"]):
        result = run_cli("pxe-config", str(lab.out), *bad)
        assert result.returncode == 2 and "Traceback" not in result.stderr, bad


def test_clients_outside_the_allowed_networks_are_refused(tmp_path: Path):
    lab = make_lab(tmp_path, seed_server={"allowedNetworks": ["10.99.0.0/24"]})
    with Server(lab) as server:
        for path in ("/cp-1/user-data", "/iso/cp-1.iso", "/", "/status.json"):
            status, _, body = server.get(path)
            assert status == 403 and b"PRIVATE" not in body, path
        assert "client=127.0.0.1 GET /cp-1/user-data 403" in server.log()
        assert "not in the allowed networks (10.99.0.0/24)" in server.log()


def test_control_plane_seed_is_handed_out_once_until_rearmed(tmp_path: Path):
    lab = make_lab(tmp_path, seed_server={"allowedNetworks": ["127.0.0.0/8"], "handOutOnce": True})
    with Server(lab) as server:
        first = server.get("/cp-1/user-data", source="127.0.0.2")
        assert first[0] == 200
        assert server.get("/cp-1/user-data", source="127.0.0.2")[0] == 200, "the same machine may fetch again"
        assert server.get("/iso/cp-1.iso", source="127.0.0.2", headers={"Range": "bytes=0-99"})[0] == 206
        status, _, body = server.get("/cp-1/user-data", source="127.0.0.3")
        assert status == 410 and b"already handed out to 127.0.0.2" in body
        assert server.get("/iso/cp-1.iso", source="127.0.0.3")[0] == 410
        assert server.get("/cp-1/meta-data", source="127.0.0.3")[0] == 200, "meta-data holds no secret"
        for _ in range(2):
            assert server.get("/worker-1/user-data", source=f"127.0.0.{4 + _}")[0] == 200, "workers: no limit"
        result = run_cli("rearm", str(lab.out), "cp-1", "--state-dir", str(server.state_dir))
        assert result.returncode == 0 and "re-armed" in result.stdout
        assert server.get("/cp-1/user-data", source="127.0.0.3")[0] == 200
        assert server.get("/cp-1/user-data", source="127.0.0.2")[0] == 410
        log = server.log()
        assert "client=127.0.0.3 GET /cp-1/user-data 410" in log and "handed out to 127.0.0.2" in log


def test_rebuild_while_clients_read(tmp_path: Path):
    """Builds swap OUT in while clients fetch: every answer is whole and from one build, no restart needed."""
    secret = make_secret(tmp_path)
    profiles = [lab_profile(tmp_path, timezone=tz, name=f"{tz.replace('/', '-')}.yaml")
                for tz in ("Etc/UTC", "Europe/Paris")]
    versions = []
    for i, profile in enumerate(profiles):
        reference = tmp_path / f"reference-{i}"
        build(profile, secret, reference)
        versions.append({name: (reference / name).read_bytes()
                         for name in ("cp-1/user-data", "cp-1/meta-data", "worker-2/user-data", "worker-2.iso")})
    assert versions[0]["cp-1/user-data"] != versions[1]["cp-1/user-data"]
    out = tmp_path / "out"
    build(profiles[0], secret, out)
    live = tmp_path / "profile.yaml"
    shutil.copy(profiles[0], live)
    lab = Lab(tmp_path, live, secret, out)
    with Server(lab) as server:
        stop = threading.Event()
        problems: list[str] = []
        seen: set[tuple[str, int]] = set()

        def reader(path: str, key: str) -> None:
            while not stop.is_set():
                status, _, body = server.get(path)
                if status != 200:
                    problems.append(f"{path}: {status}")
                    continue
                match = [i for i, v in enumerate(versions) if v[key] == body]
                if not match:
                    problems.append(f"{path}: {len(body)} bytes from no complete build")
                else:
                    seen.add((key, match[0]))

        readers = [threading.Thread(target=reader, args=args) for args in
                   (("/cp-1/user-data", "cp-1/user-data"), ("/cp-1/meta-data", "cp-1/meta-data"),
                    ("/worker-2/user-data", "worker-2/user-data"), ("/iso/worker-2.iso", "worker-2.iso"))]
        for thread in readers:
            thread.start()
        try:
            for i in range(6):
                build(profiles[(i + 1) % 2], secret, out)
                time.sleep(0.3)
        finally:
            stop.set()
            for thread in readers:
                thread.join(timeout=30)
        assert not problems, problems[:10]
        assert {(k, v) for k, v in seen if k == "cp-1/user-data"} == {("cp-1/user-data", 0), ("cp-1/user-data", 1)}
        assert server.get("/cp-1/user-data")[2] == versions[0]["cp-1/user-data"], "the last build is served"
        assert "OUT was rebuilt" in server.log()


def _report(lab: Lab, node: str, phase: str, state: str, *, key_of: str | None = None, at: float | None = None,
            lines: list[str] | None = None) -> tuple[bytes, str]:
    key = read_secret(lab.secret).status_key(key_of or node)
    return signed_body(key, node, phase, state, time.time() if at is None else at, pysecrets.token_hex(16), lines)


def post(server: Server, node: str, body: bytes, signature: str, source: str | None = None) -> tuple[int, bytes]:
    status, _, answer = server.request("POST", f"/status/{node}", body=body, source=source,
                                       headers={"Content-Type": "application/json", "X-K8sseed-Signature": signature})
    return status, answer


def test_status_reports_good_forged_and_replayed(tmp_path: Path):
    lab = make_lab(tmp_path)
    with Server(lab) as server:
        body, signature = _report(lab, "cp-1", "runtime", "started")
        assert post(server, "cp-1", body, signature)[0] == 204
        assert post(server, "cp-1", body, signature)[0] == 409, "the same report again: a replay"
        late = _report(lab, "cp-1", "prepare-os", "done", at=time.time() - 60)
        assert post(server, "cp-1", *late)[0] == 202, "overtaken on the way: taken, not shown"
        forged = _report(lab, "cp-2", "kubeadm", "done", key_of="cp-3")
        assert post(server, "cp-2", *forged, source="127.0.0.9")[0] == 403, "signed with another node's key"
        body, signature = _report(lab, "cp-2", "kubeadm", "done")
        assert post(server, "cp-3", body, signature)[0] == 403, "cp-2's report posted as cp-3"
        tampered = body.replace(b'"done"', b'"failed"')
        assert post(server, "cp-2", tampered, signature)[0] == 403
        assert post(server, "cp-2", body, "")[0] == 403
        old = _report(lab, "cp-2", "kubeadm", "done", at=time.time() - 3600)
        assert post(server, "cp-2", *old)[0] == 409, "an hour-old report"
        assert post(server, "nope", *_report(lab, "nope", "runtime", "done"))[0] == 404
        failed = _report(lab, "worker-1", "kubernetes-packages", "failed",
                         lines=["k8sseed[kubernetes-packages]: + apt-get install", "ERROR: no kubeadm 1.25.6"])
        assert post(server, "worker-1", *failed)[0] == 204
        log = server.log()
        assert "client=127.0.0.9 POST /status/cp-2 403" in log and "forged" in log
        assert "replayed" in log and "status cp-1: runtime started" in log
        _, _, data = server.get("/status.json")
        rows = {r["node"]: r for r in json.loads(data)["nodes"]}
        assert (rows["cp-1"]["phase"], rows["cp-1"]["state"]) == ("runtime", "started")
        assert rows["cp-2"]["phase"] is None, "no forged, tampered or stale report got through"
        assert rows["worker-1"]["lastError"][-1] == "ERROR: no kubeadm 1.25.6"
        time.sleep(1.0)  # the server saves the board within half a second
        table = run_cli("status", str(lab.out), "--state-dir", str(server.state_dir))
        assert table.returncode == 0, table.stderr
        lines = {line.split()[0]: line for line in table.stdout.splitlines()}
        assert lines["NODE"].split() == ["NODE", "ROLE", "PHASE", "SINCE", "LAST", "ERROR"]
        assert "control-plane" in lines["cp-1"] and "runtime started" in lines["cp-1"]
        assert "kubernetes-packages failed" in lines["worker-1"] and "ERROR: no kubeadm 1.25.6" in lines["worker-1"]
        assert "no report yet" in lines["cp-2"]
        live = run_cli("status", str(lab.out), "--server", server.url, "--json")
        assert live.returncode == 0 and json.loads(live.stdout)[0]["phase"] == "runtime"


def _node_file(out: Path, node: str, path: str) -> str:
    user_data = yaml.safe_load((out / node / "user-data").read_text())
    return next(f["content"] for f in user_data["write_files"] if f["path"] == path)


def _node_env(out: Path, node: str) -> dict[str, str]:
    import shlex

    values = {}
    for line in _node_file(out, node, "/etc/k8sseed/node.env").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.startswith("K8SSEED_STATUS"):
            values[name] = shlex.split(value)[0] if value else ""
    return values


def test_node_reporter_reaches_the_server_it_got_its_seed_from(tmp_path: Path):
    """The script the seed installs on the node (k8sseed-report), run with Debian's python3."""
    lab = make_lab(tmp_path)
    reporter = tmp_path / "k8sseed-report"
    reporter.write_text(_node_file(lab.out, "worker-2", "/usr/local/sbin/k8sseed-report"))
    env_values = _node_env(lab.out, "worker-2")
    assert env_values["K8SSEED_STATUS_KEY"] == read_secret(lab.secret).status_key("worker-2")
    log = tmp_path / "bootstrap.log"
    log.write_text("".join(f"line {i}\n" for i in range(40)) + "k8sseed[runtime]: ERROR: docker failed\n")
    with Server(lab) as server:
        instance_data = tmp_path / "instance-data.json"
        seed = f"{server.url}by-mac/{macs(lab.out)['worker-2']}/"
        instance_data.write_text(json.dumps({"v1": {"subplatform": f"seed-dir (cmdline,{seed})"}}))
        env = {**os.environ, **env_values, "K8SSEED_INSTANCE_DATA": str(instance_data)}
        event = time.time()
        for state, at in (("failed", event), ("started", event - 30)):  # the later event arrives first
            result = subprocess.run([SYSTEM_PYTHON, str(reporter), "worker-2", "runtime", state, str(log),
                                     f"{at:.6f}".replace(".", ",")], env=env, capture_output=True, text=True,
                                    timeout=30)
            assert (result.returncode, result.stderr) == (0, "")
        rows = {r["node"]: r for r in json.loads(server.get("/status.json")[2])["nodes"]}
        assert (rows["worker-2"]["phase"], rows["worker-2"]["state"]) == ("runtime", "failed")
        assert rows["worker-2"]["lastError"][-1] == "k8sseed[runtime]: ERROR: docker failed"
        assert len(rows["worker-2"]["lastError"]) == 20
        port = server.port
    # Server gone: the reporter still exits 0 at once; with no seed URL and no profile URL it does nothing.
    start = time.monotonic()
    result = subprocess.run([SYSTEM_PYTHON, str(reporter), "worker-2", "kubeadm", "started"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and f"127.0.0.1:{port}" in result.stderr
    assert time.monotonic() - start < 5
    quiet = {**env, "K8SSEED_INSTANCE_DATA": str(tmp_path / "none.json"), "K8SSEED_STATUS_URL": ""}
    result = subprocess.run([SYSTEM_PYTHON, str(reporter), "worker-2", "kubeadm", "started"], env=quiet,
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (0, "")


def test_iso_booted_nodes_report_to_the_profiles_server_url(tmp_path: Path):
    (tmp_path / "with-url").mkdir()
    (tmp_path / "without").mkdir()
    lab = make_lab(tmp_path / "with-url", seed_server={"url": "http://10.20.0.5:8080/"})
    assert _node_env(lab.out, "cp-1")["K8SSEED_STATUS_URL"] == "http://10.20.0.5:8080/"
    bare = make_lab(tmp_path / "without", seed_server={})
    assert _node_env(bare.out, "cp-1")["K8SSEED_STATUS_URL"] == ""


def test_status_keys_differ_per_node_and_cluster(tmp_path: Path):
    one, two = read_secret(make_secret(tmp_path, "a.secret")), read_secret(make_secret(tmp_path, "b.secret"))
    assert one.status_key("cp-1") != one.status_key("cp-2")
    assert one.status_key("cp-1") != two.status_key("cp-1")
    assert len(bytes.fromhex(one.status_key("cp-1"))) == 32


def test_serve_refuses_what_is_not_a_build(tmp_path: Path):
    lab = make_lab(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("serve", str(empty), "--profile", str(lab.profile), "--secret", str(lab.secret),
                     "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 1 and "not a k8sseed build output" in result.stderr
    assert "Traceback" not in result.stderr
    other = run_cli("serve", str(lab.out), "--profile", str(lab.profile), "--secret",
                    str(make_secret(tmp_path, "other.secret")), "--listen", "127.0.0.1:0",
                    "--state-dir", str(tmp_path / "state"))
    assert other.returncode == 1 and "made with different cluster secrets" in other.stderr
    bad_listen = run_cli("serve", str(lab.out), "--profile", str(lab.profile), "--secret", str(lab.secret),
                         "--listen", "localhost")
    assert bad_listen.returncode == 2 and "ADDRESS:PORT" in bad_listen.stderr


def _responses(raw: bytes) -> list[tuple[int, bytes]]:
    """Split a stream of HTTP/1.1 responses (Content-Length framed)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        out.append((status, rest[:length]))
        raw = rest[length:]
    return out


def test_http_keep_alive_pipelining_and_limits(lab: Lab):
    """On the standard asyncio loop, the default (uvloop only when asked for: it starved connections under load)."""
    with Server(lab, env={"K8SSEED_EVENT_LOOP": ""}) as server:
        _pipelining_and_limits(lab, server)
        assert "event loop asyncio" in server.log()


def test_an_unknown_or_missing_event_loop_is_refused_by_name(lab: Lab):
    try:
        import uvloop  # noqa: F401
        cases = [("tokio", "expected asyncio (the default) or uvloop")]
    except ImportError:
        cases = [("tokio", "expected asyncio (the default) or uvloop"), ("uvloop", "uvloop is not installed")]
    for loop, message in cases:
        result = subprocess.run([K8SSEED, "serve", str(lab.out), "--profile", str(lab.profile), "--secret",
                                 str(lab.secret), "--listen", "127.0.0.1:0", "--state-dir", str(lab.dir / "state")],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "K8SSEED_EVENT_LOOP": loop})
        assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


def test_an_http_1_0_client_gets_the_close_that_ends_its_answer(lab: Lab):
    """ab, wget -O- on old systems and some BMCs speak HTTP/1.0: without `Connection: keep-alive` the answer ends
    when the server closes (before, the connection stayed open until the 30 s idle timeout)."""
    meta = (lab.out / "cp-1" / "meta-data").read_bytes()
    with Server(lab) as server:
        for request, keeps in ((b"GET /cp-1/meta-data HTTP/1.0\r\n\r\n", False),
                               (b"GET /cp-1/meta-data HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
                               (b"GET /cp-1/meta-data HTTP/1.1\r\nConnection: TE, close\r\n\r\n", False)):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(request)
                answer = b""
                start = time.monotonic()
                while chunk := sock.recv(65536):
                    answer += chunk
                    if keeps and answer.endswith(meta):
                        break
                assert _responses(answer) == [(200, meta)] and time.monotonic() - start < 2
                assert (b"Connection: keep-alive" in answer) is keeps


def _pipelining_and_limits(lab: Lab, server: Server) -> None:
    iso = (lab.out / "cp-1.iso").read_bytes()
    meta = (lab.out / "cp-1" / "meta-data").read_bytes()
    pipelined = (b"GET /iso/cp-1.iso HTTP/1.1\r\nHost: x\r\n\r\n" * 20
                 + b"GET /cp-1/meta-data HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answers = _responses(server.raw(pipelined))
    assert [s for s, _ in answers] == [200] * 21
    assert all(body == iso for _, body in answers[:20]) and answers[20][1] == meta
    too_big = server.raw(b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n")
    assert too_big.startswith(b"HTTP/1.1 431 ")
    chunked = server.raw(b"POST /status/cp-1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 501 ")
    huge = server.raw(b"POST /status/cp-1 HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n")
    assert huge.startswith(b"HTTP/1.1 413 ")
    assert server.raw(b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert server.raw(b"DELETE /cp-1/user-data HTTP/1.1\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    log = server.log()
    assert "client=127.0.0.1 GARBAGE 400 refused" in log and "431 refused: request head too large" in log
