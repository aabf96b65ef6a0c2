"""`install: ubuntu-autoinstall`: `k8sseed serve` PXE-boots the Ubuntu installer onto a blank disk, hands it an
autoinstall seed that carries the node's own k8sseed seed, and boots the local disk once the installer has
reported the installation done. Checked against subiquity's autoinstall schema, cloud-init's schemas and
cloud-init's own seed reader, with the real server on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import SCHEMAS, TEST_DATA, require_tool, run_cli
from serve_support import REFERENCE, Lab, Server, lab_from_data

from k8sseed.serve import ipxe
from k8sseed.serve.autoinstall import REPORTER, NotACloudConfig, installer_user_data

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with the cloud-init package the tests install
SUBIQUITY_SCHEMA = TEST_DATA / "upstream-schemas" / "subiquity-autoinstall-schema.json"
INSTALLER = {
    "kernel": "http://10.20.0.5:8080/noble/vmlinuz",
    "initrd": "http://10.20.0.5:8080/noble/initrd",
    "iso": "http://10.20.0.5:8080/noble/ubuntu-24.04.1-live-server-amd64.iso",
    "kernelArgs": ["console=ttyS0,115200"],
    "storage": {"layout": "direct", "match": {"size": "largest", "ssd": True}},
}
INSTALLED_NODES = ("cp-1", "worker-1")


def autoinstall_lab(directory: Path, **seed_server: Any) -> Lab:
    """The reference cluster on Ubuntu; cp-1 and worker-1 are installed by the Ubuntu installer."""
    data = yaml.safe_load(REFERENCE.read_text())
    data["os"]["family"] = "ubuntu"
    for node in data["nodes"]:
        if node["name"] in INSTALLED_NODES:
            node["install"] = "ubuntu-autoinstall"
    data["seedServer"] = {
        "allowedNetworks": ["127.0.0.0/8"],
        "pxe": {"kernel": "http://10.20.0.5:8080/boot/vmlinuz", "initrd": "http://10.20.0.5:8080/boot/initrd.img"},
        "autoinstall": INSTALLER,
        **seed_server,
    }
    return lab_from_data(directory, data)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return autoinstall_lab(tmp_path_factory.mktemp("autoinstall-lab"))


@pytest.fixture(scope="module")
def server(lab: Lab):
    with Server(lab) as running:
        yield running


def macs(out: Path) -> dict[str, str]:
    return {n["name"]: n["mac"] for n in json.loads((out / "manifest.json").read_text())["nodes"]}


def installer_seed(server: Server, lab: Lab, node: str) -> tuple[bytes, dict[str, Any]]:
    status, headers, body = server.get(f"/autoinstall/by-mac/{macs(lab.out)[node]}/user-data")
    assert status == 200, body
    assert headers["content-type"].startswith("text/cloud-config")
    return body, yaml.safe_load(body)


def ipxe_script(server: Server, lab: Lab, node: str) -> list[str]:
    status, _, body = server.get(f"/ipxe/by-mac/{macs(lab.out)[node]}.ipxe")
    assert status == 200, body
    return body.decode().splitlines()


def assert_ipxe_tokens_are_plain(script: list[str]) -> None:
    """What iPXE's parser does to a line (src/core/exec.c): split at whitespace; a token that is exactly ';',
    '||' or '&&' separates commands, one starting with '#' starts a comment, ${...} is expanded. No token we
    write may be read as any of these, or the kernel gets a cut-short command line."""
    assert script[0] == "#!ipxe"
    for line in script[1:]:
        if line.startswith("#"):
            continue
        for token in line.split():
            assert token not in (";", "||", "&&") and not token.startswith("#") and "${" not in token, (line, token)


def test_installer_seed_passes_subiquitys_schema_and_carries_the_node_seed_as_data(lab: Lab, server: Server):
    body, data = installer_seed(server, lab, "worker-1")
    assert body.startswith(b"#cloud-config\n") and list(data) == ["autoinstall"], \
        "subiquity reads a cloud-config whose only key is autoinstall"
    section = data["autoinstall"]
    errors = list(jsonschema.Draft7Validator(json.loads(SUBIQUITY_SCHEMA.read_text())).iter_errors(section))
    assert not errors, [e.message for e in errors]
    assert section["version"] == 1
    assert section["user-data"] == yaml.safe_load((lab.out / "worker-1" / "user-data").read_text()), \
        "the installed system runs exactly the node's k8sseed cloud-config"
    assert "identity" not in section, "with user-data, subiquity creates the cloud-config's users, not its own"
    assert section["network"] == yaml.safe_load((lab.out / "worker-1" / "network-config").read_text()), \
        "the installed system gets the node's static network (subiquity turns cloud-init's network off)"
    assert section["storage"] == {"layout": {"name": "direct", "match": {"size": "largest", "ssd": True}}}
    assert section["ssh"] == {"install-server": True, "allow-pw": False}


def test_installer_seed_and_its_nested_user_data_pass_cloud_init(lab: Lab, server: Server, tmp_path: Path):
    body, data = installer_seed(server, lab, "cp-1")
    cloud_config = jsonschema.Draft4Validator(json.loads((SCHEMAS / "cloud-init-schema-cloud-config-v1.json")
                                                         .read_text()))
    nested = data["autoinstall"]["user-data"]
    assert not [e.message for e in cloud_config.iter_errors(nested)]
    network = jsonschema.Draft4Validator(json.loads((SCHEMAS / "cloud-init-schema-network-config-v2.json")
                                                    .read_text()))
    assert not [e.message for e in network.iter_errors({"network": data["autoinstall"]["network"]})]
    cloud_init = require_tool("cloud-init")
    outer = tmp_path / "installer-user-data"
    outer.write_bytes(body)
    inner = tmp_path / "nested-user-data"
    inner.write_text("#cloud-config\n" + yaml.safe_dump(nested))
    for path in (outer, inner):
        result = subprocess.run([cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True)
        assert result.returncode == 0 and "Valid cloud-config" in result.stdout, result.stdout + result.stderr


def test_cloud_init_reads_the_installer_seed_over_http(lab: Lab, server: Server):
    """cloud-init's own read_seeded, as the installer's nocloud-net calls it with the s= URL of the iPXE script."""
    if not Path(SYSTEM_PYTHON).exists() or subprocess.run([SYSTEM_PYTHON, "-c", "import cloudinit"]).returncode:
        pytest.fail("cloud-init is not installed: .ci/run installs it (apt-get install cloud-init)")
    seed_url = next(w for w in ipxe_script(server, lab, "worker-1")[2].split() if w.startswith("ds="))
    url = seed_url.split(";s=", 1)[1]
    script = ("import json,sys; from cloudinit import util\n"
              "md, ud, vd = util.read_seeded(sys.argv[1], timeout=5, retries=0)[:3]\n"
              "print(json.dumps({'md': md, 'ud': ud.decode(), 'vd': vd.decode() if vd is not None else None}))")
    result = subprocess.run([SYSTEM_PYTHON, "-c", script, url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["md"] == yaml.safe_load((lab.out / "worker-1" / "meta-data").read_text())
    assert "autoinstall" in yaml.safe_load(got["ud"]) and got["vd"] == ""


def test_ipxe_boots_the_installer_with_autoinstall_on_the_command_line(lab: Lab, server: Server):
    mac = macs(lab.out)["worker-1"]
    script = ipxe_script(server, lab, "worker-1")
    assert_ipxe_tokens_are_plain(script)
    kernel = next(line for line in script if line.startswith("kernel ")).split()
    assert kernel == ["kernel", INSTALLER["kernel"], "initrd=initrd", "ip=dhcp", f"url={INSTALLER['iso']}",
                      "cloud-config-url=/dev/null", "console=ttyS0,115200", "autoinstall",
                      f"ds=nocloud-net;s={server.url}autoinstall/by-mac/{mac}/"]
    assert f"initrd --name initrd {INSTALLER['initrd']}" in script and script[-1] == "boot"
    other = ipxe_script(server, lab, "cp-2")
    assert_ipxe_tokens_are_plain(other)
    assert "autoinstall" not in " ".join(other) and f"ds=nocloud-net;s={server.url}by-mac/" in " ".join(other), \
        "a node without install: boots its image with its NoCloud seed, as before"


def test_installer_seed_is_only_for_installer_nodes(lab: Lab, server: Server):
    for path in ("/autoinstall/cp-2/user-data", f"/autoinstall/by-mac/{macs(lab.out)['cp-2']}/user-data",
                 "/autoinstall/worker-1/network-config", "/autoinstall/worker-1/manifest.json",
                 "/autoinstall/nope/user-data", "/autoinstall/by-mac/52:54:00:99:99:99/user-data",
                 "/autoinstall/worker-1", "/autoinstall/by-mac/x/worker-1/user-data"):
        status, _, body = server.get(path)
        assert status == 404 and b"PRIVATE KEY" not in body, path
    status, _, body = server.get("/autoinstall/worker-1/meta-data")
    assert status == 200 and body == (lab.out / "worker-1" / "meta-data").read_bytes()
    assert server.get("/autoinstall/worker-1/vendor-data")[:3:2] == (200, b"")


def run_reporter(command: list[str]) -> subprocess.CompletedProcess[str]:
    assert command[:3] == ["python3", "-c", REPORTER]
    python = shutil.which("python3")
    assert python, "python3: the installer runs the report with the live system's python3"
    return subprocess.run([python, *command[1:]], capture_output=True, text=True, timeout=120)


def status_of(server: Server, node: str) -> tuple[str | None, str | None]:
    rows = {r["node"]: r for r in json.loads(server.get("/status.json")[2])["nodes"]}
    return rows[node]["phase"], rows[node]["state"]


def test_installer_reports_and_the_installed_node_boots_its_disk_until_reinstall(tmp_path: Path):
    lab = autoinstall_lab(tmp_path)
    with Server(lab) as server:
        _, data = installer_seed(server, lab, "worker-1")
        section = data["autoinstall"]
        early, late, error = section["early-commands"][0], section["late-commands"][0], section["error-commands"][0]
        assert [early[-1], late[-1], error[-1]] == ["started", "done", "failed"]
        assert early[3:-1] == late[3:-1] == error[3:-1] == [f"{server.url}status/worker-1", "worker-1",
                                                            early[5]]
        result = run_reporter(early)
        assert result.returncode == 0, result.stderr
        assert status_of(server, "worker-1") == ("install", "started")
        assert "ds=nocloud-net;s=" in " ".join(ipxe_script(server, lab, "worker-1")), "still installing"
        result = run_reporter(late)
        assert result.returncode == 0, result.stderr
        assert status_of(server, "worker-1") == ("install", "done")
        script = ipxe_script(server, lab, "worker-1")
        assert_ipxe_tokens_are_plain(script)
        assert script[-1] == "exit" and not any(line.startswith("kernel") for line in script), \
            "installed: iPXE exits, the firmware boots the disk"
        assert "worker-1 reported installed from 127.0.0.1" in server.log()
        assert ipxe_script(server, lab, "cp-1")[-1] == "boot", "only the node that reported is installed"
        result = run_cli("rearm", "--reinstall", str(lab.out), "worker-1", "--state-dir", str(server.state_dir))
        assert result.returncode == 0 and "installs Ubuntu again" in result.stdout, result.stderr
        assert ipxe_script(server, lab, "worker-1")[-1] == "boot"


def test_a_forged_install_report_does_not_mark_a_node_installed(lab: Lab, server: Server):
    _, data = installer_seed(server, lab, "worker-1")
    command = list(data["autoinstall"]["late-commands"][0])
    command[3] = f"{server.url}status/worker-1"
    command[5] = "00" * 32  # another key
    command[6] = "done"
    started = time.monotonic()
    result = run_reporter(command)
    assert result.returncode == 1 and "refused: 403" in result.stderr, "a refused 'done' fails the install"
    assert time.monotonic() - started < 10, "a refusal is final: no minute of retries"
    assert ipxe_script(server, lab, "worker-1")[-1] == "boot"
    assert "POST /status/worker-1 403" in server.log()


def test_installer_seed_is_handed_out_once_like_the_control_plane_seed(tmp_path: Path):
    lab = autoinstall_lab(tmp_path, handOutOnce=True, url="http://10.20.0.5:8080/")
    with Server(lab) as server:
        mac = macs(lab.out)["cp-1"]
        assert server.get(f"/autoinstall/by-mac/{mac}/user-data", source="127.0.0.2")[0] == 200
        assert server.get(f"/autoinstall/by-mac/{mac}/user-data", source="127.0.0.2")[0] == 200, \
            "the same client (cloud-init fetches in two stages) gets it again"
        status, _, body = server.get("/autoinstall/cp-1/user-data", source="127.0.0.3")
        assert status == 410 and b"PRIVATE KEY" not in body and b"already handed out to 127.0.0.2" in body
        assert server.get("/cp-1/user-data", source="127.0.0.3")[0] == 410, "one marker for both paths"
        assert server.get(f"/autoinstall/by-mac/{macs(lab.out)['worker-1']}/user-data",
                          source="127.0.0.3")[0] == 200, "workers carry no CA keys"
        result = run_cli("rearm", str(lab.out), "cp-1", "--state-dir", str(server.state_dir))
        assert result.returncode == 0, result.stderr
        assert server.get("/autoinstall/cp-1/user-data", source="127.0.0.3")[0] == 200


def test_installer_seed_and_script_go_only_to_the_allowed_networks(tmp_path: Path):
    lab = autoinstall_lab(tmp_path, allowedNetworks=["10.99.0.0/24"], url="http://10.20.0.5:8080/")
    with Server(lab) as server:
        mac = macs(lab.out)["cp-1"]
        for path in (f"/autoinstall/by-mac/{mac}/user-data", "/autoinstall/cp-1/user-data",
                     f"/ipxe/by-mac/{mac}.ipxe"):
            status, _, body = server.get(path)
            assert status == 403 and b"PRIVATE KEY" not in body, path
        assert f"client=127.0.0.1 GET /autoinstall/by-mac/{mac}/user-data 403" in server.log()


def test_installer_ipxe_refuses_what_it_cannot_quote():
    from k8sseed.profile.model import Autoinstall

    good = Autoinstall("http://10.0.0.5/vmlinuz", "http://10.0.0.5/initrd", "http://10.0.0.5/u.iso", (), "lvm",
                       (("size", "largest"),))
    assert "autoinstall ds=nocloud-net;s=http://10.0.0.5/autoinstall/by-mac/52:54:00:00:00:01/" in \
        ipxe.installer_script("http://10.0.0.5/", "w-1", "worker", "52:54:00:00:00:01", good)
    for bad in (good.__class__(good.kernel, good.initrd, "http://10.0.0.5/${x}.iso", (), "lvm", ()),
                good.__class__(good.kernel, good.initrd, good.iso, ("a b",), "lvm", ()),
                good.__class__(good.kernel, good.initrd, good.iso, ("#x",), "lvm", ())):
        with pytest.raises(ValueError):
            ipxe.installer_script("http://10.0.0.5/", "w-1", "worker", "52:54:00:00:00:01", bad)


def test_validate_names_the_nodes_the_installer_installs(lab: Lab):
    result = run_cli("validate", str(lab.profile))
    assert result.returncode == 0, result.stderr
    assert "note: cp-1, worker-1: installed by the Ubuntu installer that `k8sseed serve` PXE-boots" in result.stdout


def test_started_and_failed_reports_never_hold_up_the_installer():
    for state in ("started", "failed"):
        began = time.monotonic()
        result = run_reporter(["python3", "-c", REPORTER, "http://127.0.0.1:1/status/w-1", "w-1", "00" * 32, state])
        assert result.returncode == 0 and "failed" in result.stderr, result.stderr
        assert time.monotonic() - began < 10


def test_installer_seed_wraps_only_a_cloud_config():
    from k8sseed.profile.model import Autoinstall

    installer = Autoinstall("http://10.0.0.5/vmlinuz", "http://10.0.0.5/initrd", "http://10.0.0.5/u.iso", (), "lvm",
                            (("size", "largest"),))
    network = b"version: 2\nethernets: {}\n"
    for user_data in (b"#!/bin/sh\necho hi\n", b"#cloud-config\n- a list\n", b"#cloud-config\nx: [\n"):
        with pytest.raises(NotACloudConfig):
            installer_user_data(user_data, network, installer, "w-1", "http://10.0.0.5/status/w-1", "00" * 32)
    text = installer_user_data(b"#cloud-config\nruncmd: [[echo, '$(reboot)']]\n", network, installer, "w-1",
                               "http://10.0.0.5/status/w-1", "00" * 32)
    assert yaml.safe_load(text)["autoinstall"]["user-data"] == {"runcmd": [["echo", "$(reboot)"]]}, \
        "values travel as YAML data, whatever they hold"


def test_the_installer_installs_from_the_profiles_apt_mirror():
    from k8sseed.profile.model import Autoinstall

    installer = Autoinstall("http://10.0.0.5/vmlinuz", "http://10.0.0.5/initrd", "http://10.0.0.5/u.iso", (), "lvm",
                            (("size", "largest"),))
    text = installer_user_data(b"#cloud-config\nhostname: w-1\n", b"version: 2\nethernets: {}\n", installer, "w-1",
                               "http://10.0.0.5/status/w-1", "00" * 32, apt_mirror="http://mirror.lab/ubuntu")
    section = yaml.safe_load(text)["autoinstall"]
    assert section["apt"] == {"primary": [{"arches": ["default"], "uri": "http://mirror.lab/ubuntu"}]}
    schema = jsonschema.Draft7Validator(json.loads(SUBIQUITY_SCHEMA.read_text()))
    assert not [e.message for e in schema.iter_errors(section)]
