"""Flatcar with BGP: BIRD comes from a systemd-sysext image (os.flatcar.sysext.bird) that Ignition downloads and
checks, systemd-sysext merges before BIRD starts, and the host BIRD runs the same config as on Debian nodes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, make_secret, require_tool, run_cli
from test_ignition import decode_data_url

from k8sseed.build import load_plan
from k8sseed.components.bird import SEED_BIRD_CONF
from k8sseed.components.sysext import sysext_path
from k8sseed.seed import build_ignition, node_config, user_data_dict

FLATCAR_BGP = PROFILES / "flatcar-bgp.yaml"
BIRD_IMAGE = "/etc/extensions/bird.raw"  # where systemd-sysext.service looks (also /run, /var/lib/extensions)


def _profile() -> dict:
    return yaml.safe_load(FLATCAR_BGP.read_text())


def _ignition(tmp_path: Path, secret: Path | None = None) -> dict[str, dict]:
    plan, _, _ = load_plan(FLATCAR_BGP, secret or make_secret(tmp_path))
    return {node.name: json.loads(build_ignition(plan, node)) for node in plan.nodes}


def _units(config: dict) -> dict[str, str]:
    return {u["name"]: u.get("contents", "") for u in config["systemd"]["units"]}


def _files(config: dict) -> dict[str, bytes]:
    return {f["path"]: decode_data_url(f["contents"]["source"]) for f in config["storage"]["files"]
            if f["contents"]["source"].startswith("data:")}


def _unit_values(unit: str, key: str) -> list[str]:
    return [word for line in unit.splitlines() if line.startswith(f"{key}=") for word in line.split("=", 1)[1].split()]


def test_the_example_builds_without_a_word_on_stderr(tmp_path: Path) -> None:
    result = run_cli("build", str(FLATCAR_BGP), "-o", str(tmp_path / "out"), "--secret", str(make_secret(tmp_path)))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.ign")) == [
        "fc-cp-1.ign", "fc-cp-2.ign", "fc-cp-3.ign", "fc-worker-1.ign"]


def test_the_bird_image_lands_at_the_merge_path_with_its_sha256(tmp_path: Path) -> None:
    image = _profile()["os"]["flatcar"]["sysext"]["bird"]
    assert sysext_path("bird") == BIRD_IMAGE
    for name, config in _ignition(tmp_path).items():
        remote = [f for f in config["storage"]["files"] if not f["contents"]["source"].startswith("data:")]
        assert remote == [{
            "path": BIRD_IMAGE, "overwrite": True, "user": {"name": "root"}, "group": {"name": "root"},
            "contents": {"source": image["url"].replace("{arch}", "amd64"),
                         "verification": {"hash": "sha256-" + image["sha256"]["amd64"]}},
            "mode": 0o644}], name


def test_a_profile_without_bgp_downloads_no_image(tmp_path: Path) -> None:
    plan, _, _ = load_plan(PROFILES / "flatcar.yaml", make_secret(tmp_path))
    for node in plan.nodes:
        config = node_config(plan, node)
        assert config.downloads == ()
        assert "/etc/systemd/system/bird.service" not in {f.path for f in config.files}


def test_ignition_validate_refuses_the_image_entry_with_a_wrong_hash(tmp_path: Path) -> None:
    """The check the node relies on is Ignition's own: a malformed sum is an invalid config, not a skipped check."""
    validate = require_tool("ignition-validate")
    config = _ignition(tmp_path)["fc-worker-1"]
    for entry in config["storage"]["files"]:
        if entry["path"] == BIRD_IMAGE:
            entry["contents"]["verification"]["hash"] = entry["contents"]["verification"]["hash"][:-2]
    (tmp_path / "short.ign").write_text(json.dumps(config))
    result = subprocess.run([validate, str(tmp_path / "short.ign")], capture_output=True, text=True)
    assert result.returncode != 0 and "incorrect size for hash sum" in result.stdout + result.stderr


def _debian_twin(tmp_path: Path) -> Path:
    """The same cluster on Debian nodes: the cloud-init path's BIRD config for the same plan."""
    data = _profile()
    data["os"]["family"] = "debian"
    del data["os"]["flatcar"]
    path = tmp_path / "debian-bgp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_flatcar_bird_config_is_the_cloud_init_paths_byte_for_byte_and_passes_bird_p(tmp_path: Path) -> None:
    bird = require_tool("bird")
    secret = make_secret(tmp_path)  # the same cluster: the same BGP passwords
    flatcar = _ignition(tmp_path, secret)
    plan, _, _ = load_plan(_debian_twin(tmp_path), secret)
    for node in plan.nodes:
        written = {f["path"]: f["content"] for f in user_data_dict(plan, node)["write_files"]}
        conf = _files(flatcar[node.name])[SEED_BIRD_CONF]
        assert conf.decode() == written[SEED_BIRD_CONF], node.name
        target = tmp_path / f"{node.name}-bird.conf"
        target.write_bytes(conf)
        result = subprocess.run([bird, "-p", "-c", str(target)], capture_output=True, text=True)
        assert result.returncode == 0, f"{node.name}: {result.stderr}"


def test_bird_and_the_vip_health_unit_start_only_after_systemd_sysext_merged(tmp_path: Path) -> None:
    for name, config in _ignition(tmp_path).items():
        units = _units(config)
        bird = units["bird.service"]
        assert "systemd-sysext.service" in _unit_values(bird, "After")
        assert "systemd-sysext.service" in _unit_values(bird, "Wants")
        # A bare name: systemd finds it in /usr/sbin or /usr/bin, wherever the image put it; the socket is the
        # one k8sseed-vip-health asks.
        assert re.search(r"^ExecStart=bird -f -c /etc/bird/bird.conf -s /run/bird/bird.ctl$", bird, re.M)
        if name.startswith("fc-cp"):
            vip = units["k8sseed-vip-health.service"]
            assert {"bird.service", "systemd-sysext.service"} <= set(_unit_values(vip, "After"))
            assert "ExecStart=/opt/bin/k8sseed-vip-health" in vip.splitlines()
        else:
            assert "k8sseed-vip-health.service" not in units


def test_the_flatcar_bird_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    require_tool("bird")
    unit = tmp_path / "bird.service"
    unit.write_text(_units(_ignition(tmp_path)["fc-cp-1"])["bird.service"])
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and "bird.service" not in result.stderr, result.stderr


def test_the_bgp_scripts_run_on_flatcar_paths_and_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    plan, _, _ = load_plan(FLATCAR_BGP, make_secret(tmp_path))
    files = {f.path: f.content for f in node_config(plan, plan.nodes[0]).files}
    assert not [p for p in files if p.startswith("/usr/")], "Flatcar's /usr is read-only"
    bootstrap = files["/opt/bin/k8sseed-bootstrap"]
    # No apt, no bird2 package, no bird group (Flatcar's /etc/passwd is the image's): bird from the extension.
    assert "bird2" not in bootstrap and "-g bird" not in bootstrap and "apt-get" not in bootstrap
    assert 'run install -D -o root -g root -m 0600 "$CONF_DIR/bird.conf" /etc/bird/bird.conf' in bootstrap
    vip_health = files["/opt/bin/k8sseed-vip-health"]
    assert "python3" not in vip_health + bootstrap
    assert re.search(r'birdc -s "\$BIRD_SOCKET"', vip_health) and "/usr/sbin/birdc" not in vip_health
    for path in ("/opt/bin/k8sseed-bootstrap", "/opt/bin/k8sseed-vip-health", "/etc/k8sseed/node.env"):
        target = tmp_path / Path(path).name
        target.write_text(files[path])
        result = subprocess.run([shellcheck, "-s", "bash", "-x", str(target)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}: {result.stdout}"


def test_the_nocloud_rendering_is_refused_since_it_cannot_check_the_image(tmp_path: Path) -> None:
    secret = make_secret(tmp_path)
    result = run_cli("build", str(FLATCAR_BGP), "-o", str(tmp_path / "out"), "--secret", str(secret),
                     "--format", "all")
    assert result.returncode == 2 and "os.flatcar.sysext" in result.stderr and "--format ignition" in result.stderr
    assert not (tmp_path / "out").exists()
    result = run_cli("render", str(FLATCAR_BGP), "fc-cp-1", "--secret", str(secret), "--file", "user-data")
    assert result.returncode == 1 and "--file ignition" in result.stderr and "Traceback" not in result.stderr


def _merge(root: Path) -> str:
    """systemd-sysext merge on ROOT in a private mount namespace; what it says about the extensions."""
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                             f"mount -t tmpfs tmpfs /run && systemd-sysext --root={root} merge"],
                            capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def _sysext_available() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("systemd-sysext")) and bool(shutil.which("unshare"))


@pytest.mark.skipif(not _sysext_available(), reason="needs root, unshare and systemd-sysext")
@pytest.mark.parametrize(("release_name", "release", "accepted"), [
    ("extension-release.bird", "ID=flatcar\nSYSEXT_LEVEL=1.0\n", True),
    ("extension-release.bird", "ID=_any\n", True),
    ("extension-release.bird", "ID=debian\n", False),
    ("extension-release.bird", "ID=flatcar\nSYSEXT_LEVEL=2.0\n", False),
    ("extension-release.bird2", "ID=flatcar\nSYSEXT_LEVEL=1.0\n", False),  # named for another extension
])
def test_the_documented_image_layout_is_what_systemd_sysext_merges(tmp_path: Path, release_name: str, release: str,
                                                                   accepted: bool) -> None:
    """The real systemd-sysext decides, on a root with Flatcar's os-release and the layout README documents (as a
    directory extension: the .raw is the same tree packed by mksquashfs)."""
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text('ID=flatcar\nVERSION_ID=4081.2.0\nSYSEXT_LEVEL=1.0\n')
    extension = root / "var/lib/extensions/bird"
    (extension / "usr/lib/extension-release.d").mkdir(parents=True)
    (extension / "usr/lib/extension-release.d" / release_name).write_text(release)
    (extension / "usr/sbin").mkdir()
    for tool in ("bird", "birdc"):
        (extension / "usr/sbin" / tool).write_text("#!/bin/sh\n")
    said = _merge(root)
    assert ("Using extensions 'bird'" in said) is accepted, said
    if not accepted:
        assert "incompatible" in said, said
