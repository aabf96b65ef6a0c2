"""OUT is replaced atomically, survives SIGKILL at any point, and bad disks give clean errors."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import K8SSEED, PROFILES, make_secret, run_cli


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_out_is_old_or_new_never_a_mix_when_the_build_is_killed(tmp_path):
    secret = make_secret(tmp_path)
    big = tmp_path / "big.yaml"
    lines = (PROFILES / "single-node.yaml").read_text().rstrip("\n").split("\n")
    extra = [f'  - {{name: w{i}, role: worker, ip: 192.168.50.{100 + i}/24, mac: "52:54:00:aa:00:{i:02x}"}}'
             for i in range(120)]
    big.write_text("\n".join(lines + extra) + "\n")
    reference_out, big_out = tmp_path / "ref-expected", tmp_path / "big-expected"
    assert run_cli("build", str(PROFILES / "single-node.yaml"), "-o", str(reference_out), "--secret", str(secret)
                   ).returncode == 0
    assert run_cli("build", str(big), "-o", str(big_out), "--secret", str(secret)).returncode == 0
    old, new = _snapshot(reference_out), _snapshot(big_out)
    out = tmp_path / "out"
    shutil.copytree(reference_out, out)
    rng = random.Random(1234)
    start = time.perf_counter()
    subprocess.run([K8SSEED, "build", str(big), "-o", str(tmp_path / "timing"), "--secret", str(secret)], check=True,
                   capture_output=True)
    full = time.perf_counter() - start
    outcomes = {"old": 0, "new": 0}
    for _ in range(12):
        proc = subprocess.Popen([K8SSEED, "build", str(big), "-o", str(out), "--secret", str(secret)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, full * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = _snapshot(out)
        assert now in (old, new), "OUT holds a mix of two builds"
        outcomes["old" if now == old else "new"] += 1
        if now == new:
            shutil.rmtree(out)
            shutil.copytree(reference_out, out)
    # Leftovers of killed builds are cleaned up by the next build.
    assert run_cli("build", str(big), "-o", str(out), "--secret", str(secret)).returncode == 0
    assert _snapshot(out) == new
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.k8sseed-")] == []
    print(f"killed builds: {outcomes}")


def _in_private_mount(tmp_path: Path, options: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a private tmpfs")
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = f'mount -t tmpfs -o {options} k8sseed-test "$1" && shift && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(mount),
                           *command], capture_output=True, text=True)


@pytest.mark.parametrize(("mount_options", "error"), [("size=48k", "No space left on device"),
                                                     ("ro", "on a read-only file system")], ids=["full", "read-only"])
def test_a_full_or_read_only_disk_gives_a_clean_error(tmp_path, mount_options, error):
    secret = make_secret(tmp_path)
    result = _in_private_mount(tmp_path, mount_options, [K8SSEED, "build", str(PROFILES / "single-node.yaml"), "-o",
                                                         str(tmp_path / "mnt" / "out"), "--secret", str(secret)])
    assert result.returncode == 1, result.stderr
    assert error in result.stderr
    assert "Traceback" not in result.stderr


def test_a_disk_that_fills_up_halfway_through_many_seeds_gives_a_clean_error_and_no_debris(tmp_path):
    """The disk fills up after some seeds are written: one clean error, and nothing left of the build."""
    secret = make_secret(tmp_path)
    big = tmp_path / "big.yaml"
    lines = (PROFILES / "single-node.yaml").read_text().rstrip("\n").split("\n")
    big.write_text("\n".join(lines + [f'  - {{name: w{i}, role: worker, ip: 192.168.50.{100 + i}/24, '
                                       f'mac: "52:54:00:aa:01:{i:02x}"}}' for i in range(60)]) + "\n")
    script = (f'{K8SSEED} build "$0" -o "$1/out" --secret "$2"; rc=$?; '
              'ls -A "$1"; exit $rc')
    result = _in_private_mount(tmp_path, "size=2m", ["sh", "-c", script, str(big), str(tmp_path / "mnt"),
                                                    str(secret)])
    assert result.returncode == 1, result.stderr
    assert "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == "", f"left behind: {result.stdout}"


# -o pointing at a symbolic link, or at a directory holding something else than this cluster's seeds


def _build(profile: str, out: Path, secret: Path, *extra: str):
    return run_cli("build", str(PROFILES / profile), "-o", str(out), "--secret", str(secret), *extra)


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".k8sseed-" in p.name)


def test_out_as_a_link_to_an_earlier_output_rebuilds_the_target_and_keeps_the_link(tmp_path):
    secret = make_secret(tmp_path)
    target = tmp_path / "builds" / "lab"
    assert _build("reference.yaml", target, secret).returncode == 0
    (tmp_path / "lab").symlink_to(target)
    grown = tmp_path / "grown.yaml"
    grown.write_text((PROFILES / "reference.yaml").read_text().replace("52:54:00:20:00:23", "52:54:00:20:00:99"))
    result = run_cli("build", str(grown), "-o", str(tmp_path / "lab"), "--secret", str(secret))
    assert result.returncode == 0, result.stderr
    assert f"a link to {target}" in result.stdout
    assert (tmp_path / "lab").is_symlink() and os.readlink(tmp_path / "lab") == str(target)
    assert "52:54:00:20:00:99" in (target / "worker-3" / "network-config").read_text()
    assert _debris(tmp_path) == [] and _debris(tmp_path / "builds") == []


def test_out_as_a_dangling_link_is_refused_and_nothing_is_created(tmp_path):
    secret = make_secret(tmp_path)
    (tmp_path / "lab").symlink_to(tmp_path / "gone")
    result = _build("single-node.yaml", tmp_path / "lab", secret)
    assert result.returncode == 1
    assert "symbolic link to" in result.stderr and "does not exist" in result.stderr
    assert (tmp_path / "lab").is_symlink() and not (tmp_path / "gone").exists()
    assert _debris(tmp_path) == []
    assert "Traceback" not in result.stderr


def test_out_as_a_link_to_a_directory_k8sseed_did_not_write_is_refused(tmp_path):
    secret = make_secret(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    (tmp_path / "lab").symlink_to(tmp_path / "photos")
    result = _build("single-node.yaml", tmp_path / "lab", secret)
    assert result.returncode == 1
    assert "holds no manifest.json" in result.stderr and str(tmp_path / "photos") in result.stderr
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["cat.jpg"]
    assert _debris(tmp_path) == []


def test_out_as_a_link_to_an_empty_directory_builds_there(tmp_path):
    secret = make_secret(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "lab").symlink_to("empty")
    assert _build("single-node.yaml", tmp_path / "lab", secret).returncode == 0
    assert (tmp_path / "lab").is_symlink() and (tmp_path / "empty" / "solo-1.iso").is_file()
    assert _debris(tmp_path) == []


def test_another_clusters_seeds_are_not_replaced_without_force(tmp_path):
    secret = make_secret(tmp_path)
    out = tmp_path / "out"
    assert _build("reference.yaml", out, secret).returncode == 0
    before = _snapshot(out)
    refused = _build("single-node.yaml", out, secret)
    assert refused.returncode == 1
    assert "another cluster, 'reference'" in refused.stderr and "cp-1, cp-2" in refused.stderr
    assert "--force" in refused.stderr
    assert _snapshot(out) == before
    forced = _build("single-node.yaml", out, secret, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "replaced the seeds of another cluster, 'reference'" in forced.stderr
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "solo-1", "solo-1.iso"]


def test_a_new_secret_is_a_new_ca_and_does_not_silently_replace_the_old_seeds(tmp_path):
    out = tmp_path / "out"
    assert _build("single-node.yaml", out, make_secret(tmp_path, "old.secret")).returncode == 0
    before = _snapshot(out)
    refused = _build("single-node.yaml", out, make_secret(tmp_path, "new.secret"))
    assert refused.returncode == 1
    assert "another cluster secret" in refused.stderr and "will not trust" in refused.stderr
    assert _snapshot(out) == before


def test_files_k8sseed_did_not_write_are_named_and_kept_unless_forced(tmp_path):
    secret = make_secret(tmp_path)
    out = tmp_path / "out"
    assert _build("reference.yaml", out, secret).returncode == 0
    (out / "NOTES.md").write_text("rack layout\n")
    (out / "photos").mkdir()
    (out / "cp-1" / "user-data.orig").write_text("#cloud-config\n")
    refused = _build("reference.yaml", out, secret)
    assert refused.returncode == 1
    assert "3 file(s) k8sseed did not write: NOTES.md, cp-1/user-data.orig, photos/" in refused.stderr
    assert (out / "NOTES.md").is_file()
    forced = _build("reference.yaml", out, secret, "--force")
    assert forced.returncode == 0 and not (out / "NOTES.md").exists()


def test_an_output_of_an_older_k8sseed_is_still_replaced(tmp_path):
    """Manifests written before the 'files' and 'seedSha256' fields: the fixed layout tells what k8sseed wrote."""
    secret = make_secret(tmp_path)
    out = tmp_path / "out"
    assert _build("reference.yaml", out, secret).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["files"]
    for node in manifest["nodes"]:
        del node["seedSha256"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = _build("reference.yaml", out, secret)
    assert result.returncode == 0, result.stderr
    assert "unchanged" in result.stdout


def test_a_manifest_that_is_not_json_is_not_taken_for_a_k8sseed_output(tmp_path):
    secret = make_secret(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{ not json")
    result = _build("single-node.yaml", out, secret)
    assert result.returncode == 1
    assert "not a readable k8sseed manifest" in result.stderr and "Traceback" not in result.stderr
