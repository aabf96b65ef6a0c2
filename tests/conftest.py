"""Shared fixtures: builds of the example profiles with a throwaway secret, and the upstream schemas."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "profiles"
EXAMPLE_PROFILES = sorted(PROFILES.glob("*.yaml"))


def _has_nocloud_rendering(profile: Path) -> bool:
    """os.flatcar.sysext images are fetched and checked by Ignition only: no NoCloud rendering of those nodes."""
    return "sysext" not in (yaml.safe_load(profile.read_text())["os"].get("flatcar") or {})


NOCLOUD_PROFILES = [p for p in EXAMPLE_PROFILES if _has_nocloud_rendering(p)]


TEST_DATA = REPO / "tests" / "data"


def _find_schemas() -> Path:
    """The repository's copy of the upstream schemas; K8SSEED_SHARED=<shared dir> reads that one instead."""
    override = os.environ.get("K8SSEED_SHARED")
    if override:
        schemas = Path(override) / "upstream-schemas"
        if not (schemas / "index.json").is_file():
            pytest.exit(f"K8SSEED_SHARED={override}: no upstream-schemas/index.json there; "
                        "unset it to use tests/data/upstream-schemas", returncode=4)
        return schemas
    return TEST_DATA / "upstream-schemas"


SCHEMAS = _find_schemas()
K8SSEED = str(Path(sys.executable).parent / "k8sseed")


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([K8SSEED, *args], capture_output=True, text=True, env=env, check=check)


def make_secret(directory: Path, name: str = "cluster.secret") -> Path:
    path = directory / name
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    path.chmod(0o600)
    return path


def require_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: .ci/run installs it (apt-get); install it to run this test")
    return found


@pytest.fixture(scope="session")
def upstream_index() -> dict[tuple[str, str], Path]:
    index = json.loads((SCHEMAS / "index.json").read_text())
    return {(e["apiVersion"], e["kind"]): SCHEMAS / e["file"] for e in index["entries"]}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every example profile with a NoCloud rendering built once with its own secret: {profile stem: OUT}
    (tests/test_flatcar_sysext.py covers the Ignition-only ones)."""
    outs = {}
    for profile in NOCLOUD_PROFILES:
        work = tmp_path_factory.mktemp(profile.stem)
        secret = make_secret(work)
        out = work / "out"
        # A Flatcar profile's nodes get Ignition; --format all adds their NoCloud rendering of the same files, so
        # that every test of the seeds' contents (scripts, kubeadm configs, keys) covers the Flatcar nodes too.
        flatcar = yaml.safe_load(profile.read_text())["os"].get("family") == "flatcar"
        extra = ["--format", "all"] if flatcar and profile in NOCLOUD_PROFILES else []
        result = run_cli("build", str(profile), "-o", str(out), "--secret", str(secret), *extra)
        assert result.returncode == 0, result.stderr
        outs[profile.stem] = out
    return outs


def node_dirs(out: Path) -> list[Path]:
    """The per-node seed directories of a build (OUT/router/ and files are not nodes)."""
    return sorted(d for d in out.iterdir() if (d / "user-data").is_file())
