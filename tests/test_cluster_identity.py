"""Commands that take a profile and an OUT (runbook, serve) or two OUTs (diff) refuse another cluster's, or another
CA's, with one message that names both clusters."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import K8SSEED, PROFILES, make_secret, run_cli


def _profile(tmp_path: Path, name: str) -> Path:
    data = yaml.safe_load((PROFILES / "single-node.yaml").read_text())
    data["cluster"]["name"] = name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A build of cluster 'reference': (its profile, its secret, OUT)."""
    work = tmp_path_factory.mktemp("identity")
    secret = make_secret(work)
    profile = _profile(work, "reference")
    out = work / "out-reference"
    built = run_cli("build", str(profile), "-o", str(out), "--secret", str(secret))
    assert built.returncode == 0, built.stderr
    return profile, secret, out


def _serve(profile: Path, secret: Path, out: Path) -> tuple[int | None, str]:
    """serve's exit code and stderr; a server that starts instead of refusing is stopped after 20 s (code None)."""
    try:
        result = subprocess.run([K8SSEED, "serve", str(out), "--profile", str(profile), "--secret", str(secret),
                                 "--listen", "127.0.0.1:0", "--state-dir", str(out.parent / "state")],
                                capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as exc:
        return None, (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    return result.returncode, result.stderr


def test_runbook_of_another_clusters_out_is_refused(reference, tmp_path):
    _, secret, out = reference
    mine = _profile(tmp_path, "mycluster")
    result = run_cli("runbook", str(mine), str(out), "--secret", str(secret))
    assert result.returncode == 1 and result.stdout == ""
    assert (f"{mine} is cluster 'mycluster' and {out} is cluster 'reference': they belong to different clusters"
            in result.stderr)
    assert "Traceback" not in result.stderr


def test_runbook_of_an_out_built_with_another_secret_is_refused(reference, tmp_path):
    profile, _, out = reference
    result = run_cli("runbook", str(profile), str(out), "--secret", str(make_secret(tmp_path, "other.secret")))
    assert result.returncode == 1 and result.stdout == ""
    assert "both cluster 'reference' but with different CAs" in result.stderr and "--secret FILE" in result.stderr


def test_runbook_of_the_same_cluster_still_works(reference):
    profile, secret, out = reference
    result = run_cli("runbook", str(profile), str(out), "--secret", str(secret))
    assert result.returncode == 0, result.stderr
    assert "have the same nodes" in result.stdout


def test_serve_with_another_clusters_profile_gives_one_message_naming_both(reference, tmp_path):
    out = reference[2]
    mine = _profile(tmp_path, "mycluster")
    code, stderr = _serve(mine, make_secret(tmp_path, "mycluster.secret"), out)
    assert code == 1
    assert "changed since" not in stderr, "one message, not a note and then a refusal"
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"error: {mine} is cluster 'mycluster' and {out} is cluster 'reference': they belong to different clusters; "
        "give the profile and the OUT of one cluster"]


def test_runbook_and_serve_refuse_with_the_same_message(reference, tmp_path):
    _, secret, out = reference
    mine = _profile(tmp_path, "mycluster")
    runbook = run_cli("runbook", str(mine), str(out), "--secret", str(secret))
    _, served = _serve(mine, secret, out)
    assert runbook.stderr == served


def test_diff_of_two_clusters_builds_is_refused(reference, tmp_path):
    _, secret, out = reference
    other = tmp_path / "out-mycluster"
    assert run_cli("build", str(_profile(tmp_path, "mycluster")), "-o", str(other), "--secret",
                   str(secret)).returncode == 0
    result = run_cli("diff", str(out), str(other))
    assert result.returncode == 2 and result.stdout == ""
    assert "is cluster 'reference'" in result.stderr and "is cluster 'mycluster'" in result.stderr
