"""The repository itself: the license it declares, no build debris, a README that lists every example."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_declared_apache_license_has_its_text() -> None:
    declared = configparser.ConfigParser()
    declared.read(REPO / "setup.cfg")
    assert declared["metadata"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def _tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


def test_no_log_files_are_committed_and_new_ones_are_ignored() -> None:
    assert [f for f in _tracked() if f.endswith(".log")] == []
    ignored = subprocess.run(["git", "check-ignore", "-q", "build2.log"], cwd=REPO)
    assert ignored.returncode == 0, ".gitignore: ignore build logs (*.log)"


def test_readme_example_table_lists_every_example_profile() -> None:
    readme = (REPO / "README.md").read_text()
    listed = set(re.findall(r"^\| `([a-z0-9-]+\.yaml)` \|", readme, re.MULTILINE))
    examples = {p.name for p in (REPO / "profiles").glob("*.yaml")}
    assert examples - listed == set(), "README: add these profiles to the example table"
