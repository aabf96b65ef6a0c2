"""`k8sseed diff OLD_OUT NEW_OUT`: which nodes and files two builds differ in, never what the files hold.

Seeds carry keys and tokens, router configs carry BGP passwords, so no file content is ever printed. A changed
user-data is described by the cloud-config parts that differ: the paths of the write_files entries (a path is not
a secret) and the names of other top-level keys (runcmd, users...).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from k8sseed.cluster_identity import mismatch, of_manifest
from k8sseed.errors import OutputError
from k8sseed.writers.manifest import read_manifest


@dataclass(frozen=True)
class FileChange:
    path: str  # relative to OUT
    change: str  # added | removed | changed
    parts: tuple[str, ...] = ()  # for a changed user-data: the write_files paths and other keys that differ


@dataclass(frozen=True)
class OutDiff:
    added_nodes: tuple[str, ...]
    removed_nodes: tuple[str, ...]
    changed_nodes: tuple[str, ...]
    unchanged_nodes: tuple[str, ...]
    files: tuple[FileChange, ...] = field(default=())

    @property
    def identical(self) -> bool:
        return not self.files

    def as_json(self) -> dict[str, Any]:
        return {"nodes": {"added": list(self.added_nodes), "removed": list(self.removed_nodes),
                          "changed": list(self.changed_nodes), "unchanged": list(self.unchanged_nodes)},
                "files": [{"path": f.path, "change": f.change, **({"parts": list(f.parts)} if f.parts else {})}
                          for f in self.files]}


def _manifest(out: Path) -> dict[str, Any]:
    if not out.is_dir():
        raise OutputError(f"{out}: no such directory")
    data = read_manifest(out)
    if data is None:
        raise OutputError(f"{out} holds no k8sseed build (no manifest.json)")
    return data


def _node_of(path: str, nodes: set[str]) -> str | None:
    head = path.split("/", 1)[0]
    name = head[:-4] if head.endswith(".iso") and "/" not in path else head
    return name if name in nodes else None


def _digest(path: Path) -> str | None:
    """sha256 of a regular file OUT lists; None when it is missing (a damaged OUT differs from any build)."""
    try:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as exc:
        raise OutputError(f"{path}: cannot read: {exc.strerror}") from exc


def _cloud_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_bytes())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def user_data_parts(old: Path, new: Path) -> tuple[str, ...]:
    """The write_files paths whose entry differs, then the other top-level keys that differ, in file order."""
    a, b = _cloud_config(old), _cloud_config(new)

    def entries(doc: dict[str, Any]) -> dict[str, Any]:
        files = doc.get("write_files") if isinstance(doc.get("write_files"), list) else []
        return {str(f.get("path")): f for f in files if isinstance(f, dict)}

    ea, eb = entries(a), entries(b)
    paths = [p for p in dict.fromkeys([*ea, *eb]) if ea.get(p) != eb.get(p)]
    keys = [k for k in dict.fromkeys([*a, *b]) if k != "write_files" and a.get(k) != b.get(k)]
    return tuple(paths + keys)


def diff_outputs(old: Path, new: Path) -> OutDiff:
    before, after = _manifest(old), _manifest(new)
    fix = "diff compares two builds of one cluster"
    problem = mismatch(of_manifest(old, before), of_manifest(new, after), (fix, fix))
    if problem:
        raise OutputError(problem)
    old_nodes = [n["name"] for n in before["nodes"] if isinstance(n, dict) and isinstance(n.get("name"), str)]
    new_nodes = [n["name"] for n in after["nodes"] if isinstance(n, dict) and isinstance(n.get("name"), str)]
    all_nodes = set(old_nodes) | set(new_nodes)
    old_files = {f for f in before.get("files", []) if isinstance(f, str)}
    new_files = {f for f in after.get("files", []) if isinstance(f, str)}
    changes: list[FileChange] = []
    touched: set[str] = set()
    for path in sorted(old_files | new_files):
        if path not in new_files:
            change = FileChange(path, "removed")
        elif path not in old_files:
            change = FileChange(path, "added")
        elif _digest(old / path) != _digest(new / path):
            parts = user_data_parts(old / path, new / path) if path.endswith("/user-data") else ()
            change = FileChange(path, "changed", parts)
        else:
            continue
        changes.append(change)
        node = _node_of(path, all_nodes)
        if node is not None:
            touched.add(node)
    common = [n for n in new_nodes if n in set(old_nodes)]
    return OutDiff(
        added_nodes=tuple(n for n in new_nodes if n not in set(old_nodes)),
        removed_nodes=tuple(n for n in old_nodes if n not in set(new_nodes)),
        changed_nodes=tuple(n for n in common if n in touched),
        unchanged_nodes=tuple(n for n in common if n not in touched),
        files=tuple(changes),
    )


def render_diff(diff: OutDiff) -> str:
    def names(items: tuple[str, ...]) -> str:
        return ", ".join(items) if items else "none"

    lines = [f"nodes added: {names(diff.added_nodes)}", f"nodes removed: {names(diff.removed_nodes)}",
             f"nodes changed: {names(diff.changed_nodes)}",
             f"nodes unchanged: {len(diff.unchanged_nodes)}"]
    mark = {"added": "+", "removed": "-", "changed": "~"}
    for f in diff.files:
        lines.append(f"{mark[f.change]} {f.path}")
        lines += [f"    {part}" for part in f.parts]
    return "\n".join(lines) + "\n"
