"""Messages a newcomer reads: each says the real cause, in plain English, once."""

from __future__ import annotations

from pathlib import Path

from conftest import PROFILES, make_secret, run_cli

SOLO = PROFILES / "single-node.yaml"


def test_an_explicit_missing_secret_is_not_told_to_pass_secret(tmp_path):
    result = run_cli("build", str(SOLO), "-o", str(tmp_path / "out"), "--secret", str(tmp_path / "missing.secret"))
    assert result.returncode == 1
    assert (f"{tmp_path / 'missing.secret'}: cluster secret not found (no such file, given with --secret): check the "
            "path") in result.stderr
    assert "pass --secret FILE" not in result.stderr
    deeper = run_cli("build", str(SOLO), "-o", str(tmp_path / "out"), "--secret", "/path/missing.secret")
    assert "/path does not exist either" in deeper.stderr and "pass --secret" not in deeper.stderr


def test_an_out_on_a_kernel_file_system_names_that_file_system(tmp_path):
    result = run_cli("build", str(SOLO), "-o", "/proc/out", "--secret", str(make_secret(tmp_path)))
    assert result.returncode == 1
    assert "/proc is on a proc file system" in result.stderr, result.stderr
    assert "No such file or directory" not in result.stderr and "Traceback" not in result.stderr


def test_counts_read_as_english(tmp_path):
    built = run_cli("build", str(SOLO), "-o", str(tmp_path / "out"), "--secret", str(make_secret(tmp_path)))
    assert built.returncode == 0, built.stderr
    assert f"built 1 seed into {tmp_path / 'out'} (" in built.stdout
    validated = run_cli("validate", str(SOLO))
    assert "1 control-plane and no worker nodes" in validated.stdout
    started = run_cli("init", str(tmp_path / "one"), "--nodes", "1", "--ssh-key",
                      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE6K6GTdUHxlGkq8tdbuiXjpKqxxP2cX3Q7fUVJbE2Qk ops@example")
    assert started.returncode == 0, started.stderr
    assert ", 1 node)" in started.stdout


def test_the_build_summary_names_the_parent_directories_it_created(tmp_path):
    out = tmp_path / "nonexistent" / "deep" / "out"
    result = run_cli("build", str(SOLO), "-o", str(out), "--secret", str(make_secret(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert (f"note: created {tmp_path / 'nonexistent'}, {tmp_path / 'nonexistent' / 'deep'}, which did not exist, "
            f"to hold {out}") in result.stdout
    again = run_cli("build", str(SOLO), "-o", str(out), "--secret", str(tmp_path / "cluster.secret"))
    assert again.returncode == 0 and "note: created" not in again.stdout


def test_a_tab_is_called_a_tab_where_it_is(tmp_path: Path):
    profile = tmp_path / "tab.yaml"
    profile.write_text(SOLO.read_text().replace("\n  name: solo\n", "\n\tname: solo\n"))
    result = run_cli("validate", str(profile))
    assert result.returncode == 2
    line = next(i for i, text in enumerate(profile.read_text().splitlines(), 1) if text.startswith("\t"))
    assert result.stderr.startswith(f"{profile}:{line}:1: (top): a tab character here"), result.stderr
    assert "cannot start any token" not in result.stderr
