"""One build: profile + secret → plan → seeds → OUT, atomically."""

from __future__ import annotations

import calendar
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from k8sseed.errors import OutputError, ProfileWarning
from k8sseed.pki import derive_pki
from k8sseed.plan import ClusterPlan, make_plan
from k8sseed.profile import load_profile
from k8sseed.router_configs import router_configs
from k8sseed.secrets import read_secret
from k8sseed.seed import build_seed
from k8sseed.writers.manifest import manifest, manifest_bytes
from k8sseed.writers.output_dir import atomic_output_dir, check_replaceable
from k8sseed.writers.seed_files import write_router_files, write_seed

# NoCloud reads the ISO and the seed directory whole; some other seed transports (HTTP datasources,
# cloud user-data fields) stop at 64 KiB.
USER_DATA_LIMIT = 65536


@dataclass(frozen=True)
class BuildResult:
    out: Path
    nodes: int
    bytes_written: int
    warnings: tuple[ProfileWarning, ...]


def default_secret_path(profile_path: Path) -> Path:
    return profile_path.with_suffix(".secret")


def load_plan(profile_path: Path, secret_path: Path) -> tuple[ClusterPlan, tuple[ProfileWarning, ...], str]:
    loaded = load_profile(profile_path)
    secret = read_secret(secret_path)
    c = loaded.profile.cluster
    pki = derive_pki(secret, c.pki_not_before, c.ca_validity_days)
    plan = make_plan(loaded.profile, secret, pki)
    return plan, loaded.warnings, hashlib.sha256(loaded.text.encode("utf-8")).hexdigest()


def source_date_epoch(plan: ClusterPlan) -> int:
    """SOURCE_DATE_EPOCH when set, else the start of the CAs' validity: never the clock."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        try:
            return int(env)
        except ValueError as exc:
            raise OutputError(f"SOURCE_DATE_EPOCH={env!r} is not a whole number of seconds") from exc
    return calendar.timegm(time.strptime(plan.profile.cluster.pki_not_before, "%Y-%m-%d"))


def build(profile_path: Path, secret_path: Path, out: Path) -> BuildResult:
    plan, warnings, profile_sha = load_plan(profile_path, secret_path)
    epoch = source_date_epoch(plan)
    check_replaceable(out.absolute())
    seeds = [build_seed(plan, node) for node in plan.nodes]
    routers = router_configs(plan)
    notes = list(warnings)
    over = [s for s in seeds if len(s.user_data) > USER_DATA_LIMIT]
    if over and "user-data-over-64k" not in plan.profile.acknowledged:
        largest = max(over, key=lambda s: len(s.user_data))
        notes.append(ProfileWarning("user-data-over-64k",
                                    f"{len(over)} seed(s) have user-data over 64 KiB (largest: {largest.name}, "
                                    f"{len(largest.user_data)} bytes): HTTP and cloud user-data seed paths may cut "
                                    "such files; the ISOs and seed directories are fine"))
    written = 0
    with atomic_output_dir(out) as tmp:
        isos: dict[str, tuple[str, str]] = {}
        for seed in seeds:
            iso_name, iso_sha, size = write_seed(seed, tmp, epoch)
            isos[seed.name] = (iso_name, iso_sha)
            written += size
        written += write_router_files(routers, tmp, epoch)
        data = manifest_bytes(manifest(plan, profile_sha, isos))
        (tmp / "manifest.json").write_bytes(data)
        os.chmod(tmp / "manifest.json", 0o600)
        os.utime(tmp / "manifest.json", (epoch, epoch))
        written += len(data)
    return BuildResult(out, len(seeds), written, tuple(notes))
