"""The tests run from a plain clone: the upstream schemas they use are in tests/data, with their source noted."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys

from conftest import REPO, SCHEMAS, TEST_DATA

COPY = TEST_DATA / "upstream-schemas"
USED_BY_NAME = ("cloud-init-schema-cloud-config-v1.json", "cloud-init-schema-network-config-v2.json",
                "kubeadm-v1beta3.schema.json", "kubeadm-v1beta4.schema.json", "kubelet-v1beta1.schema.json",
                "kubeproxy-v1alpha1.schema.json")


def _expand(pattern: str) -> list[str]:
    """'a-{x,y}.json' -> ['a-x.json', 'a-y.json']."""
    match = re.search(r"\{([^}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [e for alt in match.group(1).split(",") for e in _expand(head + alt + tail)]


def test_every_schema_the_tests_use_is_in_the_repository_and_its_source_is_noted():
    index = json.loads((COPY / "index.json").read_text())
    needed = {e["file"] for e in index["entries"]} | set(USED_BY_NAME)
    present = {p.name for p in COPY.glob("*.json")}
    assert needed <= present, f"missing from tests/data/upstream-schemas: {sorted(needed - present)}"
    readme = (COPY / "README.md").read_text()
    patterns = [p for quoted in re.findall(r"^\| `([^`]+)`", readme, re.M) for p in _expand(quoted)]
    for name in sorted(present):
        assert any(fnmatch.fnmatchcase(name, p) for p in patterns), f"{name}: no row in the README"
    for revision in ("04eacd06ee60de9dbb9e7be784be20dab7342c1a", "0ca9d1b93644778cafdf1812f3dda02ac0c361e8",
                     "003e1e153c71d8f0c83208b6cbe3c2df7d1451a3", "18a478f57b39d76eaa9a6bcae24338a473b142d1"):
        assert revision in readme


def test_the_schemas_come_from_the_repository_unless_k8sseed_shared_says_otherwise():
    if not os.environ.get("K8SSEED_SHARED"):
        assert SCHEMAS == COPY


def test_conftest_finds_its_schemas_with_no_shared_directory_anywhere_near(tmp_path):
    """A user's clone has no ../shared and no K8SSEED_SHARED: conftest must not abort the run."""
    clone = tmp_path / "k8sseed"
    shutil.copytree(REPO / "tests", clone / "tests", ignore=shutil.ignore_patterns("__pycache__", "vm"))
    env = {k: v for k, v in os.environ.items() if k != "K8SSEED_SHARED"}
    probe = "import conftest, json; print(conftest.SCHEMAS); json.loads((conftest.SCHEMAS / 'index.json').read_text())"
    result = subprocess.run([sys.executable, "-c", probe], cwd=clone / "tests", env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == str(clone / "tests" / "data" / "upstream-schemas")
