"""The cluster secret from a command (--secret-cmd) or the environment (K8SSEED_SECRET), through the real CLI:
the same seeds as from the file, a documented precedence, and errors that never show the secret."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from pathlib import Path

import pytest
from conftest import REPO, make_secret, run_cli

PROFILE = REPO / "profiles" / "single-node.yaml"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("K8SSEED_SECRET", "K8SSEED_SECRET_CMD_TIMEOUT")}
    return {**env, **extra}


def _ca(out: Path) -> str:
    return json.loads((out / "manifest.json").read_text())["caCertHash"]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copy(PROFILE, tmp_path / "profile.yaml")
    return tmp_path


def _reference_ca(work: Path, secret: Path) -> str:
    out = work / f"from-{secret.stem}"
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(out), "--secret", str(secret), env=_env())
    assert result.returncode == 0, result.stderr
    return _ca(out)


def test_a_secret_command_builds_the_same_seeds_as_the_file(work):
    secret = make_secret(work, "vault.secret")
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(work / "out"),
                     "--secret-cmd", f"cat {shlex.quote(str(secret))}", env=_env())
    assert result.returncode == 0, result.stderr
    assert _ca(work / "out") == _reference_ca(work, secret)
    assert (work / "out" / "solo-1.iso").read_bytes() == (work / "from-vault" / "solo-1.iso").read_bytes()


def test_the_environment_variable_holds_the_secret_itself(work):
    secret = make_secret(work, "vault.secret")
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(work / "out"),
                     env=_env(K8SSEED_SECRET=secret.read_text().strip()))
    assert result.returncode == 0, result.stderr
    assert _ca(work / "out") == _reference_ca(work, secret)


def test_precedence_is_option_then_environment_then_the_file_beside_the_profile(work):
    beside = make_secret(work, "profile.secret")
    from_env, from_cmd = make_secret(work, "env.secret"), make_secret(work, "cmd.secret")
    env_value = from_env.read_text().strip()
    expected = {name: _reference_ca(work, path) for name, path in
                (("beside", beside), ("env", from_env), ("cmd", from_cmd))}
    assert len(set(expected.values())) == 3
    cases = [
        ((), _env(), "beside"),
        ((), _env(K8SSEED_SECRET=env_value), "env"),
        (("--secret-cmd", f"cat {from_cmd}"), _env(K8SSEED_SECRET=env_value), "cmd"),
        (("--secret", str(from_cmd)), _env(K8SSEED_SECRET=env_value), "cmd"),
    ]
    for index, (args, env, source) in enumerate(cases):
        out = work / f"out-{index}"
        result = run_cli("build", str(work / "profile.yaml"), "-o", str(out), *args, env=env)
        assert result.returncode == 0, result.stderr
        assert _ca(out) == expected[source], f"case {index}: expected the secret from {source}"


def test_both_options_at_once_is_a_usage_error(work):
    secret = make_secret(work, "profile.secret")
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(work / "out"), "--secret", str(secret),
                     "--secret-cmd", f"cat {secret}", env=_env())
    assert result.returncode == 2
    assert "give one of them" in result.stderr
    assert not (work / "out").exists()


def test_a_failing_command_reports_its_exit_code_and_last_stderr_line(work):
    tool = work / "fake-sops"
    tool.write_text("#!/bin/sh\necho 'gpg: decryption started' >&2\necho 'sops: failed to get the data key' >&2\n"
                    "exit 128\n")
    tool.chmod(0o755)
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(work / "out"), "--secret-cmd", f"{tool} -d x",
                     env=_env())
    assert result.returncode == 1
    assert "failed with exit code 128: sops: failed to get the data key" in result.stderr
    assert "decryption started" not in result.stderr
    assert "Traceback" not in result.stderr and not (work / "out").exists()


def test_a_command_that_hangs_is_stopped_after_the_timeout_with_one_clear_line(work):
    secret = make_secret(work, "vault.secret")
    started = time.monotonic()
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(work / "out"),
                     "--secret-cmd", f"cat {secret}; sleep 20 & sleep 20",
                     env=_env(K8SSEED_SECRET_CMD_TIMEOUT="1.5"))
    assert time.monotonic() - started < 30, "the build waited for the command's background child"
    assert result.returncode == 1
    assert "did not finish within 1.5 s" in result.stderr and "K8SSEED_SECRET_CMD_TIMEOUT" in result.stderr
    assert secret.read_text().strip() not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert not (work / "out").exists()


@pytest.mark.parametrize("value", ["0", "-3", "soon", "1e9"])
def test_a_bad_timeout_value_is_a_usage_error(work, value):
    secret = make_secret(work, "vault.secret")
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(work / "out"),
                     "--secret-cmd", f"cat {secret}", env=_env(K8SSEED_SECRET_CMD_TIMEOUT=value))
    assert result.returncode == 2
    assert "K8SSEED_SECRET_CMD_TIMEOUT" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_command_says_so(work):
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(work / "out"),
                     "--secret-cmd", "no-such-vault-tool -d x", env=_env())
    assert result.returncode == 1
    assert "exit code 127" in result.stderr and "not found" in result.stderr


@pytest.mark.parametrize(("output", "message"), [
    ("", "is empty"),
    ("\n  \n", "is empty"),
    ("c2VjcmV0LXRoYXQtaXMtbm90LTMyLWJ5dGVz\n", "holds 27 bytes once decoded"),
    ("hunter2-is-not-base64!\n", "is not a base64 cluster secret"),
])
def test_wrong_command_output_is_refused_without_showing_it(work, output, message):
    payload = work / "payload"
    payload.write_text(output)
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(work / "out"),
                     "--secret-cmd", f"cat {payload}", env=_env())
    assert result.returncode == 1
    assert message in result.stderr
    for word in output.split():
        assert word not in result.stderr and word not in result.stdout
    assert not (work / "out").exists()


def test_a_bad_environment_value_names_the_variable_and_hides_the_value(work):
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(work / "out"),
                     env=_env(K8SSEED_SECRET="correct-horse-battery"))
    assert result.returncode == 1
    assert "K8SSEED_SECRET" in result.stderr and "correct-horse-battery" not in result.stderr


def test_an_invalid_profile_never_runs_the_command(work):
    marker = work / "ran"
    (work / "profile.yaml").write_text((work / "profile.yaml").read_text().replace("apiVersion:", "apiVerion:", 1))
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(work / "out"),
                     "--secret-cmd", f"touch {marker}", env=_env())
    assert result.returncode == 2
    assert not marker.exists()


def test_render_takes_the_secret_from_a_command(work):
    secret = make_secret(work, "vault.secret")
    from_cmd = run_cli("render", str(work / "profile.yaml"), "solo-1", "--secret-cmd", f"cat {secret}", env=_env())
    from_file = run_cli("render", str(work / "profile.yaml"), "solo-1", "--secret", str(secret), env=_env())
    assert from_cmd.returncode == 0, from_cmd.stderr
    assert from_cmd.stdout == from_file.stdout
