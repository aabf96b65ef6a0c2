"""cri-dockerd downloads are checked: against the profile's sum, else the version table's (Kubespray's sums), and a
starter profile from `k8sseed init` is silent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, make_secret, run_cli

from k8sseed.versions import CRI_DOCKERD_SHA256, VERSION_TABLE, cri_dockerd_sum, newest_known

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE6K6GTdUHxlGkq8tdbuiXjpKqxxP2cX3Q7fUVJbE2Qk ops@example"
SUM = re.compile(r"K8SSEED_CRI_DOCKERD_SHA256=([0-9a-f]*)")


def _solo(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((PROFILES / "single-node.yaml").read_text())
    edit(data)
    path = tmp_path / "solo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    make_secret(tmp_path, "solo.secret")
    return path


def _node_sum(profile: Path) -> tuple[str, str]:
    """(the sum solo-1 checks its cri-dockerd tarball against, validate's stderr)."""
    rendered = run_cli("render", str(profile), "solo-1")
    assert rendered.returncode == 0, rendered.stderr
    return SUM.search(rendered.stdout).group(1), run_cli("validate", str(profile)).stderr


def test_the_tables_sums_agree_with_the_reference_profiles():
    reference = yaml.safe_load((PROFILES / "reference.yaml").read_text())["runtime"]["criDockerd"]
    assert reference["version"] == "0.3.16"
    assert CRI_DOCKERD_SHA256["0.3.16"] == reference["sha256"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", s) for sums in CRI_DOCKERD_SHA256.values() for s in sums.values())


def test_a_node_checks_cri_dockerd_against_the_table_when_the_profile_gives_no_sum(tmp_path):
    profile = _solo(tmp_path, lambda d: d["runtime"]["criDockerd"].pop("sha256"))
    node_sum, warnings = _node_sum(profile)
    assert node_sum == cri_dockerd_sum("0.3.16", "amd64") == CRI_DOCKERD_SHA256["0.3.16"]["amd64"]
    assert warnings == ""


def test_a_pinned_release_uses_that_releases_sum(tmp_path):
    def pin(data):
        data["runtime"]["criDockerd"] = {"version": "0.3.24"}
    node_sum, warnings = _node_sum(_solo(tmp_path, pin))
    assert node_sum == CRI_DOCKERD_SHA256["0.3.24"]["amd64"] and warnings == ""


def test_the_profiles_sum_wins_over_the_table(tmp_path):
    def own(data):
        data["runtime"]["criDockerd"]["sha256"] = {"amd64": "ab" * 32}
    assert _node_sum(_solo(tmp_path, own))[0] == "ab" * 32


def test_a_release_without_any_sum_is_named_in_the_warning(tmp_path):
    def pin(data):
        data["runtime"]["criDockerd"] = {"version": "0.4.2"}
    node_sum, warnings = _node_sum(_solo(tmp_path, pin))
    assert node_sum == ""
    assert warnings.startswith("warning[cri-dockerd-unverified]: ")
    assert "no sum for cri-dockerd 0.4.2 (amd64)" in warnings


NO_SUM_YET = "no public source for cri-dockerd 0.4.3's release sums was found (Kubespray lists no 0.4.x)"


@pytest.mark.parametrize("version", sorted({f.cri_dockerd for f in VERSION_TABLE.values()}))
def test_every_cri_dockerd_the_table_picks_has_sums_for_amd64_and_arm64(version, request):
    if version == "0.4.3":
        request.applymarker(pytest.mark.xfail(strict=True, reason=NO_SUM_YET))
    assert set(CRI_DOCKERD_SHA256.get(version, {})) >= {"amd64", "arm64"}


@pytest.mark.parametrize("version", ["1.30.14", newest_known()])
def test_a_starter_profile_validates_and_builds_without_a_word_on_stderr(tmp_path, version, request):
    if VERSION_TABLE[tuple(int(p) for p in version.split(".")[:2])].cri_dockerd == "0.4.3":
        request.applymarker(pytest.mark.xfail(strict=True, reason=NO_SUM_YET))
    started = run_cli("init", str(tmp_path / "lab"), "--kubernetes-version", version, "--ssh-key", KEY)
    assert started.returncode == 0 and started.stderr == "", started.stderr
    profile = tmp_path / "lab" / "profile.yaml"
    validated = run_cli("validate", str(profile))
    built = run_cli("build", str(profile), "-o", str(tmp_path / "out"))
    assert (validated.returncode, built.returncode) == (0, 0), validated.stderr + built.stderr
    assert validated.stderr == built.stderr == ""


def test_init_without_a_key_says_so_once_not_on_every_later_command(tmp_path):
    started = run_cli("init", str(tmp_path / "lab"), "--kubernetes-version", "1.30.14")
    assert started.returncode == 0
    assert started.stderr.count("warning[no-login-user]") == 1
    profile = tmp_path / "lab" / "profile.yaml"
    assert yaml.safe_load(profile.read_text())["acknowledge"] == ["no-login-user"]
    assert run_cli("validate", str(profile)).stderr == ""


def test_init_at_a_terminal_asks_once_for_a_key_and_offers_the_users_own(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import k8sseed.cli as cli

    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    (tmp_path / "home" / ".ssh" / "id_ed25519.pub").write_text(KEY + "\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(cli, "_interactive", lambda: True)
    result = CliRunner().invoke(cli.cli, ["init", str(tmp_path / "lab"), "--kubernetes-version", "1.30.14"],
                                input="\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("SSH public key for the 'ops' user") == 1
    assert str(tmp_path / "home" / ".ssh" / "id_ed25519.pub") in result.output
    data = yaml.safe_load((tmp_path / "lab" / "profile.yaml").read_text())
    assert data["os"]["users"][0]["sshAuthorizedKeys"] == [KEY] and "acknowledge" not in data
    declined = CliRunner().invoke(cli.cli, ["init", str(tmp_path / "none"), "--kubernetes-version", "1.30.14"],
                                  input="-\n")
    assert declined.exit_code == 0, declined.output
    assert yaml.safe_load((tmp_path / "none" / "profile.yaml").read_text())["acknowledge"] == ["no-login-user"]
