"""One build: profile + secret → plan → seeds → OUT, atomically."""

from __future__ import annotations

import calendar
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from k8sseed.errors import OutputError
from k8sseed.pki import derive_pki
from k8sseed.plan import ClusterPlan, make_plan
from k8sseed.profile import load_profile
from k8sseed.router_configs import router_configs
from k8sseed.secrets import read_secret
from k8sseed.seed import build_seed
from k8sseed.writers.manifest import manifest, manifest_bytes
from k8sseed.writers.output_dir import atomic_output_dir, check_replaceable
from k8sseed.writers.seed_files import write_router_files, write_seed

SIZE_WARNINGS = ((65536, "64 KiB"), (16384, "16 KiB"))


@dataclass(frozen=True)
class BuildResult:
    out: Path
    nodes: int
    bytes_written: int
    warnings: tuple[str, ...]


def default_secret_path(profile_path: Path) -> Path:
    return profile_path.with_suffix(".secret")


def load_plan(profile_path: Path, secret_path: Path) -> tuple[ClusterPlan, tuple[str, ...], str]:
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


def _size_warning(sizes: dict[str, int]) -> str | None:
    for limit, label in SIZE_WARNINGS:
        over = [name for name, size in sizes.items() if size > limit]
        if over:
            largest = max(over, key=sizes.__getitem__)
            return (f"{len(over)} seed(s) have user-data over {label} (largest: {largest}, {sizes[largest]} bytes): "
                    "some HTTP and config-drive seed paths cut such files; the ISOs are fine")
    return None


def build(profile_path: Path, secret_path: Path, out: Path) -> BuildResult:
    plan, warnings, profile_sha = load_plan(profile_path, secret_path)
    epoch = source_date_epoch(plan)
    check_replaceable(out.absolute())
    routers = router_configs(plan)
    written = 0
    user_data_sizes: dict[str, int] = {}
    with atomic_output_dir(out) as tmp:
        isos: dict[str, tuple[str, str]] = {}
        # One seed at a time: memory stays flat however many nodes the profile has.
        for node in plan.nodes:
            seed = build_seed(plan, node)
            user_data_sizes[seed.name] = len(seed.user_data)
            iso_name, iso_sha, size = write_seed(seed, tmp, epoch)
            isos[seed.name] = (iso_name, iso_sha)
            written += size
        written += write_router_files(routers, tmp, epoch)
        data = manifest_bytes(manifest(plan, profile_sha, isos))
        (tmp / "manifest.json").write_bytes(data)
        os.chmod(tmp / "manifest.json", 0o600)
        os.utime(tmp / "manifest.json", (epoch, epoch))
        written += len(data)
    size_note = _size_warning(user_data_sizes)
    notes = (*warnings, size_note) if size_note else warnings
    return BuildResult(out, len(plan.nodes), written, notes)
