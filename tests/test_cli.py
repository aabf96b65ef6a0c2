"""The command line as users run it: init, validate, build, render, inspect."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, REPO, make_secret, require_tool, run_cli


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


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE6K6GTdUHxlGkq8tdbuiXjpKqxxP2cX3Q7fUVJbE2Qk ops@example"


def test_init_starts_on_the_newest_known_release_and_says_when_nobody_can_log_in(tmp_path):
    from k8sseed.versions import newest_known

    result = run_cli("init", str(tmp_path / "lab"))
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load((tmp_path / "lab" / "profile.yaml").read_text())
    assert data["cluster"]["kubernetesVersion"] == newest_known() != "1.25.6"
    assert data["kubeProxy"]["mode"] == "nftables"  # ipvs is deprecated from 1.35
    assert "warning[no-login-user]" in result.stderr
    assert "warning[ipvs-deprecated]" not in result.stderr and "warning[token-never-expires]" not in result.stderr


def test_init_takes_endpoint_version_ssh_key_and_nodes(tmp_path):
    key = tmp_path / "id_ed25519.pub"
    key.write_text(KEY + "\n")
    result = run_cli("init", str(tmp_path / "lab"), "--endpoint", "10.0.0.10:6443", "--kubernetes-version", "1.25.6",
                     "--ssh-key", str(key), "--nodes",
                     "cp-1=10.0.0.11/24@52:54:00:AA:00:11, worker:db-1=10.0.0.21/24@52:54:00:00:00:21")
    assert result.returncode == 0, result.stderr
    assert "warning[no-login-user]" not in result.stderr
    data = yaml.safe_load((tmp_path / "lab" / "profile.yaml").read_text())
    assert data["cluster"]["kubernetesVersion"] == "1.25.6" and data["kubeProxy"]["mode"] == "ipvs"
    assert data["cluster"]["controlPlaneEndpoint"] == "10.0.0.10:6443"
    assert data["network"]["gateway"] == "10.0.0.1"
    assert data["os"]["users"][0]["sshAuthorizedKeys"] == [KEY]
    assert [(n["name"], n["role"], n["ip"], n["mac"]) for n in data["nodes"]] == [
        ("cp-1", "control-plane", "10.0.0.11/24", "52:54:00:aa:00:11"),
        ("db-1", "worker", "10.0.0.21/24", "52:54:00:00:00:21")]
    counted = run_cli("init", str(tmp_path / "five"), "--nodes", "3+2", "--endpoint", "192.168.7.10", "--ssh-key", KEY)
    assert counted.returncode == 0, counted.stderr
    nodes = yaml.safe_load((tmp_path / "five" / "profile.yaml").read_text())["nodes"]
    assert [n["ip"] for n in nodes] == ["192.168.7.11/24", "192.168.7.12/24", "192.168.7.13/24", "192.168.7.21/24",
                                       "192.168.7.22/24"]
    assert run_cli("validate", str(tmp_path / "five" / "profile.yaml")).returncode == 0


def test_init_with_a_dns_name_endpoint_says_which_subnet_the_nodes_got_and_how_to_change_it(tmp_path):
    result = run_cli("init", str(tmp_path / "lab"), "--endpoint", "api.lab.example.com:6443", "--ssh-key", KEY)
    assert result.returncode == 0, result.stderr
    assert "placeholder addresses in 10.20.0.0/24" in result.stdout and "--nodes NAME=IP/PREFIX@MAC" in result.stdout
    nodes = yaml.safe_load((tmp_path / "lab" / "profile.yaml").read_text())["nodes"]
    assert all(n["ip"].startswith("10.20.0.") for n in nodes)
    derived = run_cli("init", str(tmp_path / "c4"), "--endpoint", "10.0.0.30", "--ssh-key", KEY)
    assert derived.returncode == 0, derived.stderr
    assert "placeholder" not in derived.stdout
    data = yaml.safe_load((tmp_path / "c4" / "profile.yaml").read_text())
    assert {n["ip"].rsplit(".", 1)[0] for n in data["nodes"]} == {"10.0.0"} and data["network"]["gateway"] == "10.0.0.1"


@pytest.mark.parametrize(("args", "words"), [
    (["--kubernetes-version", "1.25.99"], "its last release is 1.25.16"),
    (["--kubernetes-version", "1.30.04"], "did you mean 1.30.4"),
    (["--nodes", "cp-1=10.0.0.11/24@52:54:00:00:00:11"], "--endpoint is required"),
    (["--nodes", "cp-1=10.0.0.11@52:54:00:00:00:11", "--endpoint", "10.0.0.10"], "is not [cp:|worker:]NAME"),
    (["--nodes", "2"], "use an odd number"),
    (["--ssh-key", "ssh-ed25519 not-a-key"], "is not an OpenSSH public key line"),
    (["--endpoint", "10.0.0.10", "--nodes", "cp-1=10.0.0.11/24@52:54:00:00:00:11,w-1=10.1.0.21/24@52:54:00:00:00:21"],
     "nodes[1].ip"),
    (["--endpoint", "10.0.0.300"], "--endpoint '10.0.0.300' looks like an IPv4 address but is not one: 300"),
    (["--endpoint", "999.1.1.1:6443"], "999 is over 255"),
    (["--endpoint", "10.0.0"], "has 3 numbers, not 4"),
    (["--endpoint", "api.lab.7"], "its last label '7' is all digits"),
])
def test_init_refuses_options_that_make_no_valid_profile_and_writes_nothing(tmp_path, args, words):
    result = run_cli("init", str(tmp_path / "lab"), *args)
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "lab").exists()


def test_validate_names_the_os_images_that_read_the_seed():
    result = run_cli("validate", str(PROFILES / "reference.yaml"))
    assert "Debian 12 cloud image (genericcloud or generic)" in result.stdout
    assert "subiquity or debian-installer ignores the seed" in result.stdout


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


def test_build_warns_about_unverified_downloads_with_the_warning_id(tmp_path):
    secret = make_secret(tmp_path)
    profile = tmp_path / "p.yaml"
    text = (PROFILES / "single-node.yaml").read_text()
    # cri-dockerd 0.4.2: no sum in the profile, none in k8sseed's table (the table has 0.3.16's, 1.30's choice)
    profile.write_text(text[:text.index("runtime:")] + "runtime:\n  criDockerd: {version: 0.4.2}\n"
                       + text[text.index("network:"):])
    result = run_cli("build", str(profile), "-o", str(tmp_path / "o"), "--secret", str(secret))
    assert result.returncode == 0
    assert result.stderr.startswith("warning[cri-dockerd-unverified]: runtime.criDockerd.sha256 is not set")


def test_ipvs_on_1_35_builds_with_a_deprecation_warning(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text((PROFILES / "reference.yaml").read_text().replace("1.25.6", "1.35.0"))
    result = run_cli("validate", str(profile))
    assert result.returncode == 0
    assert "KEP-5495" in result.stderr


def _clean_checkout(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(src)], check=True)
    for name in ("k8sseed", "profiles", "setup.cfg", "pyproject.toml", "README.md", "schemas"):
        subprocess.run(["cp", "-a", str(REPO / name), str(src)], check=True)  # the working tree, committed or not
    return src


@pytest.mark.slow
def test_pip_install_from_a_clean_checkout_gives_a_working_tool(tmp_path):
    """Packaging: templates and the schema ship as package data; a fresh venv gets a working k8sseed."""
    src = _clean_checkout(tmp_path)
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


@pytest.mark.slow
def test_the_readme_install_command_works_with_debians_system_python(tmp_path):
    """Debian 12's pip refuses to install into the system Python (PEP 668): the README says pipx, and pipx works."""
    readme = (REPO / "README.md").read_text()
    assert not re.search(r"^\s*(sudo )?pip3? install \.", readme, re.M), "system pip refuses this on Debian 12"
    commands = re.findall(r"^(pipx install \.)\s", readme, re.M)
    assert commands, "README: recommend 'pipx install .' for the everyday install"
    pipx = require_tool("pipx")
    src = _clean_checkout(tmp_path)
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    env.pop("VIRTUAL_ENV", None)
    installed = subprocess.run([pipx, *commands[0].split()[1:]], cwd=src, env=env, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    tool = tmp_path / "bin" / "k8sseed"
    from k8sseed import __version__

    version = subprocess.run([str(tool), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert version.returncode == 0 and __version__ in version.stdout
    secret = make_secret(tmp_path)
    result = subprocess.run([str(tool), "build", str(PROFILES / "reference.yaml"), "-o", str(tmp_path / "out"),
                             "--secret", str(secret)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "cp-1.iso").is_file()
    assert str(tmp_path / "pipx") in os.path.realpath(tool)


def test_profile_reference_doc_is_generated_from_the_schema():
    from k8sseed.profile.reference_doc import render_reference

    assert (REPO / "docs" / "profile.md").read_text() == render_reference(), "run: make docs"


# What a newcomer sees: the node table, inspect, hints that keep the cluster's CA, exit codes, no Python internals

INTERNALS = ("Traceback", "object has no attribute", "NoneType", "[Errno", "Error:", "KeyError", "TypeError")


def _rows(stdout: str) -> dict[str, list[str]]:
    lines = [line.split() for line in stdout.splitlines() if line.startswith("  ")]
    return {cells[0]: cells for cells in lines[1:] if len(cells) == 6}


def test_build_prints_a_node_table_with_what_changed_since_the_last_build(tmp_path):
    secret = make_secret(tmp_path)
    out = tmp_path / "out"
    first = run_cli("build", str(PROFILES / "reference.yaml"), "-o", str(out), "--secret", str(secret))
    assert first.returncode == 0, first.stderr
    assert "NODE" in first.stdout and "SINCE LAST BUILD" in first.stdout
    rows = _rows(first.stdout)
    assert rows["cp-1"] == ["cp-1", "control-plane", "10.20.0.11/24", "52:54:00:20:00:11", "0", "new"]
    assert rows["worker-3"][1:] == ["worker", "10.20.0.23/24", "52:54:00:20:00:23", "5", "new"]
    again = _rows(run_cli("build", str(PROFILES / "reference.yaml"), "-o", str(out), "--secret", str(secret)).stdout)
    assert {row[5] for row in again.values()} == {"unchanged"}
    edited = tmp_path / "edited.yaml"
    text = (PROFILES / "reference.yaml").read_text().replace("52:54:00:20:00:22", "52:54:00:20:00:aa")
    edited.write_text(text.replace('  - {name: worker-3, role: worker, ip: 10.20.0.23/24, mac: "52:54:00:20:00:23"}\n',
                                   ""))
    third = run_cli("build", str(edited), "-o", str(out), "--secret", str(secret))
    assert third.returncode == 0, third.stderr
    rows = _rows(third.stdout)
    assert rows["worker-2"][5] == "changed" and rows["worker-1"][5] == "unchanged" and "worker-3" not in rows
    assert "not in this build" in third.stdout and "worker-3" in third.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["nodes"][0]["seedSha256"]) == {"user-data", "meta-data", "network-config"}
    assert "worker-2/network-config" in manifest["files"] and "manifest.json" in manifest["files"]


def test_inspect_shows_address_mac_cluster_endpoint_and_kubernetes_version(built):
    out = built["reference"]
    worker = json.loads(run_cli("inspect", "--json", str(out / "worker-1.iso")).stdout)
    assert worker["addresses"] == ["10.20.0.21/24"] and worker["macs"] == ["52:54:00:20:00:21"]
    assert worker["cluster"] == "reference" and worker["controlPlaneEndpoint"] == "10.20.100.10:6443"
    assert worker["kubernetesVersion"] == "1.25.6"
    text = run_cli("inspect", str(out / "cp-1.iso")).stdout
    assert "IP: 10.20.0.11/24  MAC: 52:54:00:20:00:11" in text
    assert "cluster: reference  endpoint: 10.20.100.10:6443  Kubernetes: 1.25.6" in text


def _iso_without_seed(tmp_path: Path, *options: str) -> Path:
    content = tmp_path / "content"
    content.mkdir(exist_ok=True)
    (content / "readme.txt").write_text("hello\n")
    iso = tmp_path / f"plain{''.join(options)}.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", *options, "-V", "cidata", "-o", str(iso), str(content)],
                   check=True, capture_output=True)
    return iso


@pytest.mark.parametrize("options", [(), ("-J",), ("-R",)], ids=["iso9660-only", "joliet", "rock-ridge"])
def test_inspect_of_an_iso_without_a_seed_says_so(tmp_path, options):
    result = run_cli("inspect", str(_iso_without_seed(tmp_path, *options)))
    assert result.returncode == 1
    assert "readme.txt: 6 bytes" in result.stdout
    assert "holds no user-data and no meta-data" in result.stderr
    assert not [word for word in INTERNALS if word in result.stdout + result.stderr]


def test_a_missing_secret_points_at_the_secret_beside_the_profile_not_at_init(tmp_path):
    profile = tmp_path / "lab.yaml"
    profile.write_text((PROFILES / "single-node.yaml").read_text())
    make_secret(tmp_path, "cluster.secret")
    result = run_cli("build", str(profile), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"pass --secret {tmp_path / 'cluster.secret'}" in result.stderr
    assert "a new secret means a new CA" in result.stderr
    assert "k8sseed init" not in result.stderr


def test_init_into_an_existing_cluster_directory_refuses_with_a_hint(tmp_path):
    assert run_cli("init", str(tmp_path / "lab")).returncode == 0
    again = run_cli("init", str(tmp_path / "lab"))
    assert again.returncode == 1
    assert f"k8sseed build {tmp_path / 'lab' / 'profile.yaml'} -o OUT" in again.stderr
    assert "new CA" in again.stderr


def _odd_inputs(tmp: Path) -> list[tuple[str, list[str], int, str]]:
    """(case, arguments, exit code the README promises, what the message says)."""
    secret = make_secret(tmp)
    make_secret(tmp, "other.secret")
    (tmp / "junk.bin").write_bytes(b"\0" * 5000)
    (tmp / "empty.iso").write_bytes(b"")
    (tmp / "a-file").write_text("x")
    (tmp / "bad.yaml").write_text("cluster: [1,\n")
    (tmp / "open.secret").write_text("x")
    (tmp / "open.secret").chmod(0o644)
    ref = str(PROFILES / "reference.yaml")
    return [
        ("inspect-junk", ["inspect", str(tmp / "junk.bin")], 1, "not a readable ISO 9660 image"),
        ("inspect-empty", ["inspect", str(tmp / "empty.iso")], 1, "not a readable ISO 9660 image"),
        ("render-unknown-node", ["render", ref, "nope", "--secret", str(secret)], 1, "no node named 'nope'"),
        ("build-into-a-file", ["build", ref, "-o", str(tmp / "a-file"), "--secret", str(secret)], 1,
         "is not a directory"),
        ("build-below-a-file", ["build", ref, "-o", str(tmp / "a-file" / "out"), "--secret", str(secret)], 1,
         "is not a directory"),
        ("build-missing-secret", ["build", ref, "-o", str(tmp / "o1"), "--secret", str(tmp / "nope.secret")], 1,
         "cluster secret not found (no such file, given with --secret)"),
        ("build-open-secret", ["build", ref, "-o", str(tmp / "o2"), "--secret", str(tmp / "open.secret")], 1,
         "chmod 600"),
        ("build-invalid-profile", ["build", str(tmp / "bad.yaml"), "-o", str(tmp / "o3"), "--secret", str(secret)],
         2, "YAML syntax error"),
        ("validate-missing-profile", ["validate", str(tmp / "nope.yaml")], 2, "cannot read the profile"),
        ("init-below-a-file", ["init", str(tmp / "a-file" / "lab")], 1, "cannot write the starter profile"),
    ]


def test_odd_inputs_give_the_readme_exit_codes_and_plain_messages(tmp_path):
    for case, args, code, message in _odd_inputs(tmp_path):
        result = run_cli(*args)
        assert result.returncode == code, (case, result.stderr)
        assert message in result.stderr, (case, result.stderr)
        assert not [word for word in INTERNALS if word in result.stderr], (case, result.stderr)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith((".", "o1", "o2", "o3"))], "nothing written"
