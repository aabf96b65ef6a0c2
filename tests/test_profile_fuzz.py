"""Property tests: no input makes the profile loader or the seed builder fail in an unplanned way.

For any text, k8sseed.profile.load_profile_text either returns or raises ProfileError; for every profile that
loads, every node's seed builds and its user-data is YAML that parses back to a mapping.

Inputs come from three places: the profile schema (hypothesis-jsonschema's from_schema for the leaves; see
_from_schema below for why objects are assembled here), mutations of profiles/reference.yaml as data (delete a
key, change a scalar's type, plant a hostile string), and mutations of its raw text.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from k8sseed.errors import ProfileError
from k8sseed.pki import derive_pki
from k8sseed.plan import make_plan
from k8sseed.profile import load_profile_text
from k8sseed.secrets import ClusterSecret
from k8sseed.seed import build_seed

ROOT = Path(__file__).resolve().parent.parent
SCHEMA: dict[str, Any] = json.loads((ROOT / "k8sseed" / "schemas" / "profile.schema.json").read_text("utf-8"))
DEFS: dict[str, Any] = SCHEMA["$defs"]
REFERENCE_TEXT = (ROOT / "profiles" / "reference.yaml").read_text("utf-8")
REFERENCE: dict[str, Any] = yaml.safe_load(REFERENCE_TEXT)
SECRET = ClusterSecret(b"k" * 32)

# Shrinking is off: it multiplies the runtime when a product bug is found, and the unshrunk example
# still shows the bug. FUZZ_EXAMPLES=2000 for a longer hunt.
FUZZ = settings(phases=[Phase.explicit, Phase.generate], max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
                deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

HOSTILE = [
    "'", '"', "\\", "\n", "\r\n", "line1\nline2", "$(reboot)", "`id`", "${IFS}", "; rm -rf / #", "\x00",
    "a\x00b", "\t", " ", "", "#", ": ", "- ", "{", "}", "{minor}", "{0}", "%s", "&anchor", "*alias", "!!python/none",
    "<<", "|", ">", "---", "...", "\u2028", "\u0085", "\ufeff", "\u200b",
    "cр-1",  # Cyrillic 'р'
    "１０.２０.０.１１/２４",  # fullwidth digits
    "10.20.0.11\u221524",  # division slash
    "52\uff1a54:00:20:00:11",  # fullwidth colon
    "ｒｅｆｅｒｅｎｃｅ", "ﬁle", "k8s\u0301", "a" * 300, "é" * 70, "😀",
    "https://evil.example.com/$(id)", "https://x.example.com/'\"", "http://[::1]/", "10.20.0.10:99999",
    "1.25", "v1.25.6\n", "ssh-ed25519 AAAA x\nssh-rsa AAAA y", "true", "null", "0x10", "1e3", "0o17", "~",
]
hostile = st.one_of(st.sampled_from(HOSTILE),
                    st.lists(st.sampled_from(HOSTILE), min_size=2, max_size=4).map("".join),
                    st.text(max_size=40))
other_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), hostile,
                         st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                              max_size=2))


# -- the property -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _pki(not_before: str, days: int):
    return derive_pki(SECRET, not_before, days)


def check_text(text: str) -> None:
    """The property: load_profile_text returns or raises ProfileError; what loads builds into YAML seeds."""
    try:
        loaded = load_profile_text(text, "fuzz.yaml")
    except ProfileError as exc:
        assert exc.findings, "a ProfileError without findings"
        assert all(f.message for f in exc.findings)
        return
    cluster = loaded.profile.cluster
    plan = make_plan(loaded.profile, SECRET, _pki(cluster.pki_not_before, cluster.ca_validity_days))
    for node in plan.nodes:
        seed = build_seed(plan, node)
        assert seed.user_data.startswith(b"#cloud-config\n")
        user_data = yaml.safe_load(seed.user_data.decode("utf-8"))
        assert isinstance(user_data, dict), f"{node.name}: user-data is not a mapping"
        for other in (seed.meta_data, seed.network_config):
            assert isinstance(yaml.safe_load(other.decode("utf-8")), dict)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def test_reference_profile_builds():
    check_text(REFERENCE_TEXT)
    load_profile_text(REFERENCE_TEXT)  # and it really loads


# -- profiles from the schema -----------------------------------------------------------------------

_LEAF_KEYS = {"type", "enum", "const", "pattern", "minimum", "maximum", "minLength", "maxLength"}


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**DEFS[schema["$ref"].rsplit("/", 1)[1]], **rest}
    return schema


def _from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """from_schema over the profile schema, object by object.

    hypothesis-jsonschema 0.23.1 cannot generate objects with the installed Hypothesis (its object strategy
    calls the removed internal `many.more()`), so objects and arrays are assembled here and every leaf
    (strings with patterns, enums, bounded integers, booleans) comes from from_schema.
    """
    schema = _resolve(schema)
    if "properties" in schema:
        props = schema["properties"]
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: _from_schema(v) for k, v in props.items() if k in required},
            optional={k: _from_schema(v) for k, v in props.items() if k not in required})
    if schema.get("type") == "object":  # labels: propertyNames + additionalProperties
        keys = _from_schema(schema.get("propertyNames", {"type": "string"}))
        return st.dictionaries(keys, _from_schema(schema.get("additionalProperties", {})), max_size=3)
    if schema.get("type") == "array":
        low = schema.get("minItems", 0)
        high = max(low, min(schema.get("maxItems", 4), 4))
        return st.lists(_from_schema(schema["items"]), min_size=low, max_size=high)
    return from_schema({k: v for k, v in schema.items() if k in _LEAF_KEYS})


SCHEMA_PROFILES = _from_schema(SCHEMA)


@FUZZ
@given(SCHEMA_PROFILES)
def test_schema_generated_profiles(data: dict[str, Any]):
    check_text(dump(data))


_SECTIONS = [k for k in SCHEMA["properties"] if k not in ("apiVersion", "nodes")]


@FUZZ
@given(st.data())
def test_reference_with_schema_generated_sections(data: st.DataObject):
    """Schema-valid sections swapped into the reference: most of these load, so the builder gets exercised."""
    profile = copy.deepcopy(REFERENCE)
    for key in data.draw(st.lists(st.sampled_from(_SECTIONS), min_size=1, max_size=3, unique=True)):
        section = data.draw(_from_schema(SCHEMA["properties"][key]), label=key)
        if key == "cluster":  # keep the cluster reachable: an endpoint no node owns, a supported version
            section["controlPlaneEndpoint"] = REFERENCE["cluster"]["controlPlaneEndpoint"]
            section["kubernetesVersion"] = data.draw(st.sampled_from(["1.24.17", "1.25.6", "1.31.2", "1.36.0"]))
        profile[key] = section
    check_text(dump(profile))


# -- mutations of the reference profile -------------------------------------------------------------

def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, (*prefix, i))
    return out


ALL_PATHS = _paths(REFERENCE)
KEY_PATHS = [p for p in ALL_PATHS if isinstance(p[-1], str)]
def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


SCALAR_PATHS = [p for p in ALL_PATHS if not isinstance(_get(REFERENCE, p), (dict, list))]


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    _get(data, path[:-1])[path[-1]] = value


def _other_type(current: Any) -> st.SearchStrategy[Any]:
    return other_values.filter(lambda v: type(v) is not type(current))


@st.composite
def mutated_reference(draw: st.DrawFn) -> dict[str, Any]:
    profile = copy.deepcopy(REFERENCE)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["delete", "retype", "hostile", "append", "new-key"]))
        if action == "delete":
            path = draw(st.sampled_from(KEY_PATHS))
            # an earlier mutation may have removed or replaced the parent already
            with contextlib.suppress(KeyError, TypeError, IndexError):
                del _get(profile, path[:-1])[path[-1]]
        elif action in ("retype", "hostile", "append"):
            path = draw(st.sampled_from(SCALAR_PATHS))
            try:
                current = _get(profile, path)
            except (KeyError, TypeError, IndexError):
                continue
            if action == "retype":
                value = draw(_other_type(current))
            elif action == "hostile":
                value = draw(hostile)
            else:  # keep the good value, add something after it
                value = f"{current}{draw(hostile)}"
            with contextlib.suppress(KeyError, TypeError, IndexError):
                _set(profile, path, value)
        else:
            parent = draw(st.sampled_from([()] + [p for p in ALL_PATHS if isinstance(_get(REFERENCE, p), dict)]))
            try:
                target = _get(profile, parent)
            except (KeyError, TypeError, IndexError):
                continue
            if isinstance(target, dict):
                target[draw(hostile)] = draw(other_values)
    return profile


@FUZZ
@given(mutated_reference())
def test_mutated_reference(profile: dict[str, Any]):
    check_text(dump(profile))


@st.composite
def mutated_reference_text(draw: st.DrawFn) -> str:
    """Hostile text planted raw into the YAML source: anywhere in a line, or as a whole value."""
    lines = REFERENCE_TEXT.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        if draw(st.booleans()) and ": " in line:
            key, _, _ = line.partition(": ")
            lines[i] = f"{key}: {draw(hostile)}\n"
        else:
            pos = draw(st.integers(0, len(line)))
            lines[i] = line[:pos] + draw(hostile) + line[pos:]
    return "".join(lines)


@FUZZ
@given(mutated_reference_text())
def test_mutated_reference_text(text: str):
    check_text(text)


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text: str):
    check_text(text)


@FUZZ
@given(st.one_of(mutated_reference_text(), mutated_reference().map(dump), st.text(max_size=100)))
def test_findings_render_as_one_line(text: str):
    """The CLI prints one line per problem: no finding may carry a line break (from a key, a value or YAML)."""
    try:
        load_profile_text(text, "fuzz.yaml")
    except ProfileError as exc:
        for finding in exc.findings:
            assert "\n" not in finding.render("fuzz.yaml") and "\r" not in finding.render("fuzz.yaml"), finding


# -- known crashers, pinned so they are checked on every run (found by the properties above) ---------

@pytest.mark.parametrize(("old", "new"), [
    ("controlPlaneEndpoint: 10.20.100.10:6443", "controlPlaneEndpoint: 'a:b'"),
    ("  dnsDomain: cluster.local\n", "  dnsDomain: cluster.local\n  apiServerPort: !!int abc\n"),
    ("sudo: true", "sudo: !!bool maybe"),
    ("nodes:\n", "nodes: &n\n  - *n\n"),
    ('notBefore: "2026-01-01"', 'notBefore: "2026-02-30"'),
    ('notBefore: "2026-01-01"', 'notBefore: "0000-01-01"'),
    ('notBefore: "2026-01-01"', 'notBefore: "1949-12-31"'),
    ('notBefore: "2026-01-01"', 'notBefore: "9999-06-01"'),
])
def test_pinned_examples(old: str, new: str):
    assert old in REFERENCE_TEXT
    text = REFERENCE_TEXT.replace(old, new, 1)
    check_text(text)
