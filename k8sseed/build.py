"""One build: profile + secret → plan → seeds → OUT, atomically."""

from __future__ import annotations

import calendar
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from k8sseed.components.sysext import ignition_only
from k8sseed.errors import OutputError, ProfileWarning, UsageError
from k8sseed.pki import derive_pki
from k8sseed.plan import ClusterPlan, make_plan
from k8sseed.plural import plural
from k8sseed.profile import load_profile
from k8sseed.router_configs import router_configs
from k8sseed.runbook import addition_steps, removal_steps, render_runbook
from k8sseed.secret_source import SecretSource
from k8sseed.secrets import read_secret
from k8sseed.seed_workers import FORMATS, write_all_seeds
from k8sseed.writers.manifest import (
    manifest,
    manifest_bytes,
    node_changes,
    read_manifest,
    removed_nodes,
    written_paths,
)
from k8sseed.writers.output_dir import atomic_output_dir, check_replaceable, resolve_out, unexpected_entries
from k8sseed.writers.seed_files import write_router_files


@dataclass(frozen=True)
class NodeRow:
    """One line of the build's node table."""

    name: str
    role: str
    ip: str
    mac: str | None
    bootstrap_order: int
    change: str  # new | changed | unchanged (seed files compared with the previous build in OUT)


@dataclass(frozen=True)
class BuildResult:
    out: Path
    nodes: int
    bytes_written: int
    warnings: tuple[ProfileWarning | str, ...]
    target: Path  # where the seeds are: OUT, or the directory OUT links to
    rows: tuple[NodeRow, ...] = ()
    removed: tuple[str, ...] = ()  # nodes of the previous build that this one no longer has
    runbook: str = ""  # how to take those nodes out of the running cluster (k8sseed/runbook.py)
    created_parents: tuple[Path, ...] = ()  # directories above OUT that did not exist and the build made


def default_secret_path(profile_path: Path) -> Path:
    return profile_path.with_suffix(".secret")


def _source_date_env() -> int | None:
    """SOURCE_DATE_EPOCH as a number, None when unset."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if not env:
        return None
    try:
        return int(env)
    except ValueError as exc:
        raise OutputError(f"SOURCE_DATE_EPOCH={env!r} is not a whole number of seconds") from exc


def token_time(now: int | None = None) -> int:
    """The build's time for the join token's window: --now, else SOURCE_DATE_EPOCH (a reproducible build names its
    time), else the clock. Output depends on it only through the window index (days long)."""
    if now is not None:
        return now
    env = _source_date_env()
    return int(time.time()) if env is None else env


def expired_token_note(plan: ClusterPlan, clock: float | None = None) -> str | None:
    """A build for a time whose join token has already run out (an old --now or SOURCE_DATE_EPOCH): say so. The
    clock is read for this note only; the output never depends on it."""
    window = plan.window_token
    clock = time.time() if clock is None else clock
    if window is None or window.expires > clock:
        return None
    return (f"the join token of this build's time window expired at {window.expires_rfc3339} (the build's time "
            "comes from --now or SOURCE_DATE_EPOCH): nodes booted from these seeds cannot join; build with --now "
            "set to the present to give them a valid token")


def load_plan(profile_path: Path, secret_path: Path | SecretSource,
              now: int | None = None) -> tuple[ClusterPlan, tuple[ProfileWarning, ...], str]:
    """The secret is read (its command run) only once the profile is valid."""
    loaded = load_profile(profile_path)
    secret = read_secret(secret_path) if isinstance(secret_path, Path) else secret_path.read()
    c = loaded.profile.cluster
    pki = derive_pki(secret, c.pki_not_before, c.ca_validity_days)
    plan = make_plan(loaded.profile, secret, pki, now=token_time(now))
    return plan, loaded.warnings, hashlib.sha256(loaded.text.encode("utf-8")).hexdigest()


def carrier_format(plan: ClusterPlan, output_format: str) -> str:
    """auto: Ignition for Flatcar, NoCloud seeds otherwise. `all` (Flatcar only) adds the NoCloud rendering of the
    same nodes, to read and compare; a carrier the OS does not read is refused."""
    flatcar = plan.profile.os_family == "flatcar"
    native = "ignition" if flatcar else "cloud-init"
    if output_format == "all" and ignition_only(plan):
        raise UsageError("--format all: the NoCloud rendering cannot fetch and check the os.flatcar.sysext images "
                         "that Ignition downloads (use --format ignition)")
    if output_format in ("auto", native) or (output_format == "all" and flatcar):
        return native if output_format == "auto" else output_format
    if output_format == "all":
        raise UsageError(f"--format all: os.family {plan.profile.os_family} nodes do not run Ignition (use --format "
                         "cloud-init)")
    raise UsageError(f"--format {output_format}: os.family {plan.profile.os_family} nodes boot with {native} "
                     f"(use --format {native}{', or all for both' if flatcar else ''})")


def source_date_epoch(plan: ClusterPlan) -> int:
    """SOURCE_DATE_EPOCH when set, else the start of the CAs' validity: never the clock."""
    env = _source_date_env()
    if env is not None:
        return env
    return calendar.timegm(time.strptime(plan.profile.cluster.pki_not_before, "%Y-%m-%d"))


def _losses(target: Path, previous: dict | None, plan: ClusterPlan) -> list[str]:
    """What replacing OUT would delete that is not this cluster's earlier output."""
    if previous is None:
        return []
    losses = []
    old_name, old_ca = previous.get("clusterName"), previous.get("caCertHash")
    names = [n.get("name") for n in previous.get("nodes", []) if isinstance(n, dict)]
    listed = ", ".join(str(n) for n in names[:6]) + (", ..." if len(names) > 6 else "")
    if old_name != plan.profile.cluster.name:
        losses.append(f"the seeds of another cluster, '{old_name}' ({plural(len(names), 'node')}: {listed}); "
                      f"this profile is cluster '{plan.profile.cluster.name}'")
    elif old_ca and old_ca != plan.pki.ca_cert_hash:
        losses.append(f"the seeds of cluster '{old_name}' built with another cluster secret (CA {old_ca}; this "
                      f"secret's CA is {plan.pki.ca_cert_hash}): nodes running from those seeds will not trust "
                      "new ones; if that cluster is in use, build with its secret (--secret FILE)")
    unexpected = unexpected_entries(target, written_paths(previous))
    if unexpected:
        shown = ", ".join(unexpected[:8]) + (f" and {len(unexpected) - 8} more" if len(unexpected) > 8 else "")
        losses.append(f"{len(unexpected)} file(s) k8sseed did not write: {shown}")
    return losses


def build(profile_path: Path, secret_path: Path | SecretSource, out: Path, force: bool = False,
          jobs: int | None = None, now: int | None = None, output_format: str = "auto") -> BuildResult:
    """`jobs`: worker processes for the seeds (None: one per CPU once the profile has enough nodes); `now`: the
    build's time for the join token's window (None: SOURCE_DATE_EPOCH, else the clock); `output_format`: a key of
    seed_workers.FORMATS, or auto (what the profile's os.family boots with)."""
    plan, warnings, profile_sha = load_plan(profile_path, secret_path, now)
    carriers = FORMATS[carrier_format(plan, output_format)]
    epoch = source_date_epoch(plan)
    target = resolve_out(out)
    check_replaceable(target, out)
    previous = read_manifest(target) if target.is_dir() else None
    losses = _losses(target, previous, plan)
    shown = out if target == out.absolute() else f"{out} (a link to {target})"
    if losses and not force:
        raise OutputError(f"{shown} holds what this build would delete:\n  - " + "\n  - ".join(losses)
                          + "\nmove that away or choose another -o directory; --force replaces it")
    routers = router_configs(plan)
    notes: list[ProfileWarning | str] = [*warnings, *(f"--force: replaced {loss}" for loss in losses)]
    expired = expired_token_note(plan)
    if expired:
        notes.append(expired)
    written = 0
    created_parents = tuple(p for p in reversed(target.parents) if not p.exists() and not p.is_symlink())
    with atomic_output_dir(target) as tmp:
        isos: dict[str, tuple[str | None, str | None]] = {}
        ignition: dict[str, str] = {}
        seed_sha: dict[str, dict[str, str]] = {}
        files: list[str] = []
        # One seed at a time per process: memory stays flat however many nodes the profile has. (Writing from a
        # second thread was measured slower than this: the GIL hand-offs after each system call cost more.)
        for seed in write_all_seeds(plan, tmp, epoch, jobs, carriers):
            isos[seed.name] = (seed.iso_name, seed.iso_sha256)
            seed_sha[seed.name] = seed.file_sha256
            if seed.ignition_name:
                ignition[seed.name] = seed.ignition_name
            files += seed.paths
            written += seed.size
        written += write_router_files(routers, tmp, epoch)
        files += [f"router/{name}" for name in routers]
        summary = manifest(plan, profile_sha, isos, seed_sha, files, ignition)
        data = manifest_bytes(summary)
        (tmp / "manifest.json").write_bytes(data)
        os.chmod(tmp / "manifest.json", 0o600)
        os.utime(tmp / "manifest.json", (epoch, epoch))
        written += len(data)
    changes = node_changes(previous, summary)
    rows = tuple(NodeRow(n["name"], n["role"], n["ip"], n["mac"], n["bootstrapOrder"], changes[n["name"]])
                 for n in summary["nodes"])
    removed = tuple(removed_nodes(previous, summary))
    runbook = render_runbook(removal_steps(previous, plan.profile), plan.profile,
                             addition_steps(previous, plan.profile, str(profile_path))) if previous else ""
    return BuildResult(out, len(plan.nodes), written, tuple(notes), target, rows, removed, runbook, created_parents)
