"""An apt that reads and writes only below one folder: nothing of the host's apt configuration or state."""

from __future__ import annotations

import os
from pathlib import Path


def private_apt_env(top: Path, sources: str, status: str = "", locking: bool = False,
                    extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for apt-get/apt-cache with their configuration, lists, cache, dpkg status (`status`) and
    sources (`sources`) below top; proxies and GNUPGHOME of the caller are left out."""
    for sub in ("empty", "conf.d", "lists/partial", "cache/archives/partial", "state", "log"):
        (top / sub).mkdir(parents=True, exist_ok=True)
    (top / "status").write_text(status)
    (top / "sources.list").write_text(sources)
    conf: dict[str, object] = {
        "Dir::Etc::Main": "/dev/null", "Dir::Etc::Parts": top / "conf.d",
        "Dir::Etc::SourceList": top / "sources.list", "Dir::Etc::SourceParts": top / "empty",
        "Dir::Etc::Trusted": top / "no-trusted.gpg", "Dir::Etc::TrustedParts": top / "empty",
        "Dir::Etc::Preferences": "/dev/null", "Dir::Etc::PreferencesParts": top / "empty",
        "Dir::State": top / "state", "Dir::State::Lists": top / "lists", "Dir::State::status": top / "status",
        "Dir::Cache": top / "cache", "Dir::Log": top / "log",
        "APT::Sandbox::User": "root", "Acquire::Languages": "none", "Acquire::Retries": "0",
        "Debug::NoLocking": "0" if locking else "1", **(extra or {}),
    }
    (top / "apt.conf").write_text("".join(f'{key} "{value}";\n' for key, value in conf.items()))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "GNUPGHOME"}
    return {**env, "APT_CONFIG": str(top / "apt.conf"), "LC_ALL": "C"}
