"""The command line as users run it: init, validate, build, render, inspect."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, REPO, make_secret, run_cli


def test_init_writes_a_valid_starter_profile_and_a_private_secret(tmp_path):
    result = run_cli("init", str(tmp_path / "lab"))
    assert result.returncode == 0, result.stderr
    secret = tmp_path / "lab" / "profile.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert run_cli("validate", str(tmp_path / "lab" / "profile.yaml")).returncode == 0
    out = tmp_path / "out"
    built = run_cli("build", str(tmp_path / "lab" / "profile.yaml"), "-o", str(out))
    assert built.returncode == 0, built.stderr
    assert (out / "cp-1.iso").is_file()
    assert yaml.safe_load((tmp_path / "lab" / "profile.yaml").read_text())["cluster"]["name"] == "lab"


def test_init_never_overwrites(tmp_path):
    assert run_cli("init", str(tmp_path / "lab")).returncode == 0
    before = (tmp_path / "lab" / "profile.secret").read_bytes()
    again = run_cli("init", str(tmp_path / "lab"))
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert (tmp_path / "lab" / "profile.secret").read_bytes() == before


@pytest.mark.parametrize("profile", sorted(PROFILES.glob("*.yaml")), ids=lambda p: p.stem)
def test_example_profiles_validate(profile):
    result = run_cli("validate", str(profile))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_render_prints_exactly_the_built_user_data(tmp_path):
    secret = make_secret(tmp_path)
    out = tmp_path / "out"
    assert run_cli("build", str(PROFILES / "reference.yaml"), "-o", str(out), "--secret", str(secret)).returncode == 0
    for which in ("user-data", "meta-data", "network-config"):
        shown = run_cli("render", str(PROFILES / "reference.yaml"), "worker-2", "--secret", str(secret),
                        "--file", which)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.encode() == (out / "worker-2" / which).read_bytes()
    missing = run_cli("render", str(PROFILES / "reference.yaml"), "nope", "--secret", str(secret))
    assert missing.returncode == 1 and "no node named 'nope'" in missing.stderr


def test_inspect_shows_label_duty_and_keys(built):
    out = built["reference"]
    worker = json.loads(run_cli("inspect", "--json", str(out / "worker-1.iso")).stdout)
    assert worker["label"] == "cidata" and worker["labelOk"]
    assert worker["duty"] == "worker-join" and worker["hostname"] == "worker-1"
    assert worker["holdsPrivateKey"] is False
    cp = json.loads(run_cli("inspect", "--json", str(out / "cp-1.iso")).stdout)
    assert cp["duty"] == "init" and cp["holdsPrivateKey"] is True
    text = run_cli("inspect", str(out / "cp-2.iso")).stdout
    assert "volume label 'cidata'" in text and "duty: control-plane-join" in text


def test_inspect_rejects_a_file_that_is_not_an_iso(tmp_path):
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"not an iso" * 100)
    result = run_cli("inspect", str(junk))
    assert result.returncode == 1
    assert "not a readable ISO 9660 image" in result.stderr
    assert "Traceback" not in result.stderr


def test_build_warns_about_unverified_downloads_and_large_user_data(tmp_path):
    secret = make_secret(tmp_path)
    result = run_cli("build", str(PROFILES / "reference.yaml"), "-o", str(tmp_path / "o"), "--secret", str(secret))
    assert "runtime.criDockerd.sha256 is not set" in result.stderr
    assert "over 16 KiB" in result.stderr


def test_ipvs_on_1_35_builds_with_a_deprecation_warning(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text((PROFILES / "reference.yaml").read_text().replace("1.25.6", "1.35.0"))
    result = run_cli("validate", str(profile))
    assert result.returncode == 0
    assert "KEP-5495" in result.stderr


@pytest.mark.slow
def test_pip_install_from_a_clean_checkout_gives_a_working_tool(tmp_path):
    """Packaging: templates and the schema ship as package data; a fresh venv gets a working k8sseed."""
    src = tmp_path / "src"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(src)], check=True)
    for name in ("k8sseed", "profiles", "setup.cfg", "pyproject.toml", "README.md", "schemas"):
        subprocess.run(["cp", "-a", str(REPO / name), str(src)], check=True)  # the working tree, committed or not
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(src)], check=True, cwd=tmp_path)
    tool = venv / "bin" / "k8sseed"
    secret = make_secret(tmp_path)
    out = tmp_path / "out"
    result = subprocess.run([str(tool), "build", str(PROFILES / "reference.yaml"), "-o", str(out), "--secret",
                             str(secret)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", "import k8sseed; print(k8sseed.__file__)"],
                               capture_output=True, text=True, cwd=tmp_path).stdout
    assert str(venv) in installed
    assert Path(out / "manifest.json").is_file()


def test_profile_reference_doc_is_generated_from_the_schema():
    from k8sseed.profile.reference_doc import render_reference

    assert (REPO / "docs" / "profile.md").read_text() == render_reference(), "run: make docs"
