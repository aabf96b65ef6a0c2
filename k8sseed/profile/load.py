"""load_profile: the only place that reads a profile file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from k8sseed.errors import Finding, ProfileError, ProfileWarning
from k8sseed.profile.bmc_checks import bmc_findings
from k8sseed.profile.checks import semantic_findings, warnings_for
from k8sseed.profile.flatcar_checks import flatcar_findings
from k8sseed.profile.model import Profile, apply_defaults, build_model
from k8sseed.profile.schema_check import check_schema, profile_schema
from k8sseed.profile.seed_server_checks import seed_server_findings
from k8sseed.profile.source import line_col, parse_yaml


@dataclass(frozen=True)
class LoadedProfile:
    profile: Profile
    warnings: tuple[ProfileWarning, ...]  # without the ones the profile acknowledges
    text: str


def load_profile_text(text: str, filename: str = "profile.yaml") -> LoadedProfile:
    src = parse_yaml(text)
    if src.findings:
        raise ProfileError(filename, src.findings)
    if not isinstance(src.data, dict):
        message = "the profile must be a YAML mapping with 'cluster' and 'nodes'"
        raise ProfileError(filename, [Finding("", message, 1, 1)])
    findings, valid_part = check_schema(src)
    findings += semantic_findings(valid_part)
    findings += seed_server_findings(valid_part)
    findings += flatcar_findings(valid_part)
    findings += bmc_findings(valid_part)  # k8sseed attach
    if findings:
        raise ProfileError(filename, list(dict.fromkeys(findings)))
    schema = profile_schema()
    data = apply_defaults(schema, src.data, schema["$defs"])
    profile = build_model(data)
    warnings = tuple(w for w in warnings_for(src) if w.id not in profile.acknowledged)
    return LoadedProfile(profile, warnings, text)


def load_profile(path: str | Path) -> LoadedProfile:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(str(path), [Finding("", f"cannot read the profile: {exc.strerror}")]) from exc
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        message = "the profile is UTF-16 encoded (it starts with a byte-order mark), not UTF-8: save it as UTF-8"
        raise ProfileError(str(path), [Finding("", message, 1, 1)])
    if b"\x00" in raw:
        line, column = line_col(raw, raw.index(b"\x00"))
        message = "the profile contains a NUL byte: it is not a text file (UTF-16 or binary?); save it as UTF-8"
        raise ProfileError(str(path), [Finding("", message, line, column)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = line_col(raw, exc.start)
        message = f"byte 0x{raw[exc.start]:02x} is not UTF-8: save the profile as UTF-8"
        raise ProfileError(str(path), [Finding("", message, line, column)]) from exc
    return load_profile_text(text, str(path))
