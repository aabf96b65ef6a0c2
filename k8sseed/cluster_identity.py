"""Which cluster a profile (with its secret) or an OUT belongs to, and the one message when two do not match.

Every command that takes a profile and an OUT, or two OUTs, refuses a pair of different clusters or CAs with
this message: steps, seeds or status computed from the wrong pair would be about another cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ClusterIdentity:
    where: str  # what holds it, as the user named it: a profile file or an OUT directory
    name: str | None
    ca_cert_hash: str | None  # None: not known (no secret read, or a manifest without it)


def of_manifest(out: Path, manifest: dict[str, Any]) -> ClusterIdentity:
    name, ca = manifest.get("clusterName"), manifest.get("caCertHash")
    return ClusterIdentity(str(out), name if isinstance(name, str) else None, ca if isinstance(ca, str) else None)


def of_profile(profile: Path, name: str, ca_cert_hash: str | None) -> ClusterIdentity:
    return ClusterIdentity(str(profile), name, ca_cert_hash)


# What to do about a mismatch of a profile and an OUT: another cluster's files, or another secret.
PROFILE_AND_OUT = ("give the profile and the OUT of one cluster",
                   "give the secret OUT was built with (--secret FILE)")


def mismatch(a: ClusterIdentity, b: ClusterIdentity, fix: tuple[str, str] = PROFILE_AND_OUT) -> str | None:
    """Why a and b are not the same cluster with the same CA, or None when they are."""
    if a.name != b.name:
        return (f"{a.where} is cluster '{a.name}' and {b.where} is cluster '{b.name}': they belong to different "
                f"clusters; {fix[0]}")
    if a.ca_cert_hash and b.ca_cert_hash and a.ca_cert_hash != b.ca_cert_hash:
        return (f"{a.where} and {b.where} are both cluster '{a.name}' but with different CAs ({a.ca_cert_hash} and "
                f"{b.ca_cert_hash}): they were made with different cluster secrets; {fix[1]}")
    return None
