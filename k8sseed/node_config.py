"""NodeConfig: every component's fragment for one node, merged; what each carrier renders."""

from __future__ import annotations

from dataclasses import dataclass

from k8sseed.components import HostSettings, NodeDownload, NodeFile, NodeFragment, NodeUser


@dataclass(frozen=True)
class NodeConfig:
    host: HostSettings
    users: tuple[NodeUser, ...]
    files: tuple[NodeFile, ...]  # in component order, each path once
    start_units: tuple[str, ...]  # enabled, then started (without waiting) once files and users are in place
    downloads: tuple[NodeDownload, ...] = ()  # fetched and checked by the carrier, each path once
    trusted_cas: tuple[str, ...] = ()  # PEM CAs the carrier's own fetches trust, each once


def merge_fragments(fragments: list[NodeFragment], env_file: NodeFile | None = None) -> NodeConfig:
    """`env_file` is built from the fragments' env and lands after their files."""
    hosts = [f.host for f in fragments if f.host is not None]
    if len(hosts) != 1:
        raise ValueError(f"{len(hosts)} components set the host settings; exactly one must")
    files: dict[str, NodeFile] = {}
    for f in [file for fragment in fragments for file in fragment.files] + ([env_file] if env_file else []):
        if f.path in files and files[f.path] != f:
            raise ValueError(f"two components write {f.path}")
        files[f.path] = f
    users = [user for fragment in fragments for user in fragment.users]
    if len({user.name for user in users}) != len(users):
        raise ValueError("two components define the same user")
    units = [unit for fragment in fragments for unit in fragment.start_units]
    downloads = [download for fragment in fragments for download in fragment.downloads]
    paths = [d.path for d in downloads]
    if len(set(paths)) != len(paths) or set(paths) & set(files):
        raise ValueError("two components write the same downloaded file")
    cas = dict.fromkeys(ca for fragment in fragments for ca in fragment.trusted_cas)
    return NodeConfig(hosts[0], tuple(users), tuple(files.values()), tuple(dict.fromkeys(units)), tuple(downloads),
                      tuple(cas))
