"""Ignition for Flatcar: every OUT/<node>.ign is read by the real `ignition-validate`, the upstream spec schema
(closed against unknown keys) and Ignition's own runtime rules, and lands the same files as the node's NoCloud
seed would."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import urllib.parse
from pathlib import Path

import jsonschema
import pytest
from conftest import PROFILES, TEST_DATA, make_secret, require_tool, run_cli

from k8sseed.build import load_plan
from k8sseed.carriers import cloud_init
from k8sseed.carriers.ignition import SPEC_VERSION, host_files, networkd_files
from k8sseed.components.network import node_network
from k8sseed.plan import Duty
from k8sseed.seed import build_ignition, node_config
from k8sseed.templating import render

FLATCAR = PROFILES / "flatcar.yaml"
FLATCAR_BGP = PROFILES / "flatcar-bgp.yaml"  # BIRD from a systemd-sysext image that Ignition downloads
SCHEMA = TEST_DATA / "upstream-schemas" / "ignition-v3_4.schema.json"
# Flatcar mounts /usr read-only (dm-verity): Ignition fails the boot on any write there.
READ_ONLY = ("/usr/", "/boot/")
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(service|socket|target|timer|path|mount|automount|swap|slice|scope)$")


@pytest.fixture(scope="module", params=[FLATCAR, FLATCAR_BGP], ids=lambda p: p.stem)
def flatcar_out(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp(request.param.stem)
    out = work / "out"
    result = run_cli("build", str(request.param), "-o", str(out), "--secret", str(make_secret(work)))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return out


def _configs(out: Path) -> dict[str, dict]:
    configs = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.ign"))}
    assert len(configs) == 4
    return configs


def _flatten_all_of(schema: dict, root: dict) -> dict:
    """file/directory/link are allOf [node, {extra properties}]: one object with both, so that it can be closed."""
    merged: dict = {"type": "object", "properties": {}, "required": []}
    for part in schema["allOf"]:
        if "$ref" in part:
            for key in part["$ref"].lstrip("#/").split("/"):
                root = root[key] if key else root
            part, root = root, _ROOT
        merged["properties"] |= part.get("properties", {})
        merged["required"] += part.get("required", [])
    return merged


_ROOT: dict = json.loads(SCHEMA.read_text())


def _closed(schema: object) -> object:
    """The schema with every object that lists its properties closed: an unknown key is an error here."""
    if isinstance(schema, dict) and "allOf" in schema:
        schema = _flatten_all_of(schema, _ROOT)
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if "properties" in out and out.get("type") == "object":
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def decode_data_url(url: str) -> bytes:
    """RFC 2397 as Ignition reads it: `data:[<mediatype>][;base64],<data>`."""
    match = re.fullmatch(r"data:([^,]*),(.*)", url, re.S)
    assert match, f"not a data URL: {url[:40]}"
    if match.group(1).endswith(";base64"):
        return base64.b64decode(match.group(2), validate=True)
    assert re.fullmatch(r"[A-Za-z0-9\-_.~/:=@+,;!*'()%]*", match.group(2)), "unescaped character in a data URL"
    return urllib.parse.unquote_to_bytes(match.group(2))


def test_every_config_passes_ignition_validate_without_a_warning(flatcar_out: Path) -> None:
    validate = require_tool("ignition-validate")
    for path in sorted(flatcar_out.glob("*.ign")):
        result = subprocess.run([validate, str(path)], capture_output=True, text=True)
        # ignition-validate exits 0 on unknown keys and only warns: any output is a failure here.
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), f"{path.name}: {result}"


def test_ignition_validate_catches_what_this_test_relies_on(flatcar_out: Path, tmp_path: Path) -> None:
    validate = require_tool("ignition-validate")
    config = json.loads((flatcar_out / "fc-worker-1.ign").read_text())
    config["storage"]["files"].append(dict(config["storage"]["files"][0]))
    (tmp_path / "dup.ign").write_text(json.dumps(config))
    assert subprocess.run([validate, str(tmp_path / "dup.ign")], capture_output=True).returncode != 0
    config = json.loads((flatcar_out / "fc-worker-1.ign").read_text())
    config["storage"]["files"][0]["owner"] = "root"
    (tmp_path / "unknown.ign").write_text(json.dumps(config))
    result = subprocess.run([validate, str(tmp_path / "unknown.ign")], capture_output=True, text=True)
    assert "owner" in result.stdout + result.stderr


def test_every_config_passes_the_upstream_schema_with_unknown_keys_refused(flatcar_out: Path) -> None:
    validator = jsonschema.Draft4Validator(_closed(_ROOT))
    for name, config in _configs(flatcar_out).items():
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(config)]
        assert not errors, f"{name}: {errors}"
        assert config["ignition"]["version"] == SPEC_VERSION == "3.3.0"
    config["storage"]["files"][0]["owner"] = "root:root"  # cloud-init's key: unknown to Ignition
    assert any("owner" in e.message for e in validator.iter_errors(config))


def test_every_config_keeps_ignitions_runtime_rules(flatcar_out: Path) -> None:
    for name, config in _configs(flatcar_out).items():
        storage = config["storage"]
        units = config["systemd"]["units"]
        paths = [e["path"] for key in ("files", "directories", "links") for e in storage.get(key, [])]
        paths += [f"/etc/systemd/system/{u['name']}" for u in units if "contents" in u]
        assert len(paths) == len(set(paths)), f"{name}: a path twice"
        for path in paths:
            assert path.startswith("/") and path == str(Path(path)), path
            assert not path.startswith(READ_ONLY), f"{name}: {path} is on Flatcar's read-only /usr"
        for entry in storage["files"]:
            assert isinstance(entry["mode"], int) and 0 <= entry["mode"] <= 0o7777
            # The image may already have the file (/etc/hostname): without overwrite Ignition fails the boot.
            assert entry["overwrite"] is True
            source = entry["contents"]["source"]
            if source.startswith("data:"):
                decode_data_url(source).decode("utf-8")
            else:  # fetched at first boot: never without a checksum Ignition 3.3.0 accepts (sha256 since 3.1.0)
                assert re.fullmatch(r"https?://\S+", source), source
                assert re.fullmatch(r"sha256-[0-9a-f]{64}", entry["contents"]["verification"]["hash"]), entry
        for link in storage["links"]:
            assert link["overwrite"] is True and link["target"].startswith("/usr/share/zoneinfo/")
        assert len({u["name"] for u in units}) == len(units)
        for unit in units:
            assert UNIT_NAME.match(unit["name"]), unit["name"]
        # The bootstrap on every node; on control planes also the timers (certificate renewal, join tokens).
        enabled = [u["name"] for u in units if u.get("enabled")]
        assert enabled[0] == "k8sseed-bootstrap.service", name
        assert all(unit.endswith(".timer") for unit in enabled[1:]), name


def test_the_ignition_config_lands_the_same_files_as_the_cloud_init_seed(tmp_path: Path) -> None:
    plan, _, _ = load_plan(FLATCAR, make_secret(tmp_path))
    for node in plan.nodes:
        config = node_config(plan, node)
        written = {f["path"]: (f["content"].encode(), int(f["permissions"], 8))
                   for f in cloud_init.user_data_dict(config)["write_files"]}
        ignition = json.loads(build_ignition(plan, node))
        landed = {f["path"]: (decode_data_url(f["contents"]["source"]), f["mode"])
                  for f in ignition["storage"]["files"]}
        landed |= {f"/etc/systemd/system/{u['name']}": (u["contents"].encode(), 0o644)
                   for u in ignition["systemd"]["units"] if "contents" in u}
        extras = {f.path for f in (*host_files(config), *networkd_files(node_network(plan, node)))}
        assert {p: v for p, v in landed.items() if p not in extras} == written, node.name
        assert extras <= set(landed)


def test_workers_carry_no_private_key_and_one_node_initialises(flatcar_out: Path) -> None:
    inits = []
    for name, config in _configs(flatcar_out).items():
        contents = {f["path"]: decode_data_url(f["contents"]["source"]) for f in config["storage"]["files"]
                    if f["contents"]["source"].startswith("data:")}
        keys = [p for p, data in contents.items() if b"PRIVATE KEY" in data]
        if name.startswith("fc-worker"):
            assert keys == [], name
        else:
            assert sorted(keys) == sorted(f"/etc/k8sseed/pki/{k}" for k in
                                          ("ca.key", "front-proxy-ca.key", "etcd/ca.key", "sa.key"))
        if "/etc/k8sseed/kubeadm-init.yaml" in contents:
            inits.append(name)
        join = contents["/etc/k8sseed/kubeadm-join.yaml"].decode()
        assert "caCertHashes" in join and "unsafeSkipCAVerification: true" not in join
    assert inits == ["fc-cp-1"]


def test_flatcar_nodes_download_pinned_binaries_into_opt_bin(tmp_path: Path) -> None:
    plan, _, _ = load_plan(FLATCAR, make_secret(tmp_path))
    node = plan.nodes[0]
    files = {f.path: f for f in node_config(plan, node).files}
    env = files["/etc/k8sseed/node.env"].content
    for binary in ("kubeadm", "kubelet", "kubectl"):
        assert (f"K8SSEED_{binary.upper()}_URL=https://dl.k8s.io/release/v1.34.2/bin/linux/amd64/{binary}\n"
                in env)
        assert f"K8SSEED_{binary.upper()}_SHA256=" in env
    script = files["/opt/bin/k8sseed-bootstrap"].content
    assert "apt-get" not in script and "dpkg" not in script and "sha256sum --check" in script
    assert "ExecStart=/opt/bin/kubelet" in files["/etc/systemd/system/kubelet.service"].content
    assert "ExecStart=/opt/bin/cri-dockerd " in files["/etc/systemd/system/cri-docker.service"].content
    assert "ExecStart=/opt/bin/k8sseed-bootstrap" in files["/etc/systemd/system/k8sseed-bootstrap.service"].content
    assert "python3" not in files["/opt/bin/k8sseed-etcd"].content
    assert not any(p.startswith("/usr/") for p in files)
    assert node.duty is Duty.INIT


def test_flatcar_scripts_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    plan, _, _ = load_plan(FLATCAR, make_secret(tmp_path))
    files = {f.path: f for f in node_config(plan, plan.nodes[0]).files}
    for path in ("/opt/bin/k8sseed-bootstrap", "/opt/bin/k8sseed-etcd", "/etc/k8sseed/node.env"):
        target = tmp_path / Path(path).name
        target.write_text(files[path].content)
        result = subprocess.run([shellcheck, "-s", "bash", "-x", str(target)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}: {result.stdout}"


def test_networkd_files_carry_the_network_config_address(tmp_path: Path) -> None:
    plan, _, _ = load_plan(FLATCAR, make_secret(tmp_path))
    worker = plan.nodes[-1]
    files = {f.path: f.content for f in networkd_files(node_network(plan, worker))}
    assert files["/etc/systemd/network/00-k8sseed-lan0.link"].endswith("[Link]\nName=lan0\n")
    network = files["/etc/systemd/network/00-k8sseed-lan0.network"]
    for line in ("MACAddress=52:54:00:30:00:21", "Address=10.30.0.21/24", "Gateway=10.30.0.1", "DNS=10.30.0.1",
                 "Domains=flatcar.example.com", "DHCP=no"):
        assert f"\n{line}\n" in network


def test_a_flatcar_profile_refuses_a_cloud_init_only_build(tmp_path: Path) -> None:
    result = run_cli("build", str(FLATCAR), "-o", str(tmp_path / "out"), "--secret", str(make_secret(tmp_path)),
                     "--format", "cloud-init")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --format cloud-init: os.family flatcar nodes boot with ignition (use "
                                     "--format ignition, or all for both)")
    assert not (tmp_path / "out").exists()


def test_format_all_adds_the_nocloud_rendering_and_leaves_the_ignition_configs_as_they_were(tmp_path: Path) -> None:
    secret = make_secret(tmp_path)
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    assert run_cli("build", str(FLATCAR), "-o", str(tmp_path / "a"), "--secret", str(secret), env=env).returncode == 0
    result = run_cli("build", str(FLATCAR), "-o", str(tmp_path / "b"), "--secret", str(secret), "--format", "all",
                     env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a" / "fc-cp-1.ign").read_bytes() == (tmp_path / "b" / "fc-cp-1.ign").read_bytes()
    assert not (tmp_path / "a" / "fc-cp-1.iso").exists() and (tmp_path / "b" / "fc-cp-1.iso").is_file()
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["nodes"][0]["ignition"] == "fc-cp-1.ign" and manifest["nodes"][0]["iso"] == "fc-cp-1.iso"
    assert {"fc-cp-1.ign", "fc-cp-1.iso", "fc-cp-1/user-data"} <= set(manifest["files"])


def test_a_debian_profile_refuses_ignition(tmp_path: Path) -> None:
    for output_format in ("ignition", "all"):
        result = run_cli("build", str(PROFILES / "single-node.yaml"), "-o", str(tmp_path / "out"), "--secret",
                         str(make_secret(tmp_path)), "--format", output_format)
        assert result.returncode == 2 and "os.family debian nodes" in result.stderr, result.stderr
        assert not (tmp_path / "out").exists()


def test_the_flatcar_etcd_gate_reads_member_lists_with_jq_as_the_python_one_does(tmp_path: Path) -> None:
    """Flatcar has jq, not python3: both renderings of member_table print the same table from etcd's JSON (the
    real-etcd lab in test_etcd_membership runs the jq script too)."""
    require_tool("jq")
    body = json.dumps({"header": {"cluster_id": "1"}, "members": [
        {"ID": "12345678901234567890", "name": "cp-1", "peerURLs": ["https://10.0.0.11:2380"]},
        {"ID": "42", "peerURLs": ["https://10.0.0.13:2380", "https://x:2380"], "isLearner": True},
        {"ID": "7", "name": "cp-2"}]})
    tables = []
    for flatcar in (False, True):
        script = tmp_path / f"etcd-{flatcar}"
        script.write_text(render("k8sseed-etcd.sh.j2", flatcar=flatcar))
        # member_table alone, with etcd's answer stubbed in.
        probe = (f'source <(sed -n "/^member_table() {{/,/^}}/p" {script}); '
                 'etcd_call() { printf "%s" "$BODY"; }; member_table 127.0.0.1')
        result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env={**os.environ, "BODY": body})
        assert result.returncode == 0, result.stderr
        tables.append(result.stdout)
    assert tables[0] == tables[1] == ("12345678901234567890|cp-1|no|https://10.0.0.11:2380\n"
                                      "42||yes|https://10.0.0.13:2380,https://x:2380\n7|cp-2|no|\n")
