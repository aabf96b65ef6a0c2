"""Validate profile data against schemas/profile.schema.json and explain each failure."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

import jsonschema

from k8sseed.errors import Finding
from k8sseed.profile.hosts import endpoint_problem, host_problem
from k8sseed.profile.source import Path, Source
from k8sseed.repository_keys import is_inline_key

# Values that may span lines: an ASCII-armored public key block pasted into the profile, a PEM CA certificate
# (the schema's patterns allow nothing but the block's own characters there).
MULTILINE_KEY_BLOCKS: frozenset[Path] = frozenset({("mirrors", "kubernetesKey"), ("mirrors", "dockerKey")})
MULTILINE_CERTIFICATES: frozenset[Path] = frozenset({("mirrors", "registryCA")})


@functools.cache
def profile_schema() -> dict[str, Any]:
    text = resources.files("k8sseed").joinpath("schemas/profile.schema.json").read_text("utf-8")
    return json.loads(text)


def _is_integer(checker: object, instance: object) -> bool:
    # JSON Schema counts 6443.0 as an integer; a port or MTU written that way must not reach a config.
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """The schema with each local '#/$defs/X' reference replaced by X itself (the $defs are not recursive):
    the validator then spends no time resolving references, once per node of a 1000-node profile. A $ref with
    sibling keywords becomes an allOf, so both still apply."""
    if isinstance(schema, list):
        return [_inline_refs(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    inlined = {key: _inline_refs(value, defs) for key, value in schema.items() if key != "$ref"}
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/$defs/") or ref[8:] not in defs:
        return inlined if ref is None else {**inlined, "$ref": ref}
    target = _inline_refs(defs[ref[8:]], defs)
    if not inlined:
        return target
    return {**inlined, "allOf": [*inlined.get("allOf", []), target]}


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = profile_schema()
    return _StrictValidator(_inline_refs(schema, schema.get("$defs", {})))


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "a whole number",
               "boolean": "true or false", "number": "a number"}


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else "'" + value + "'"
    if len(text) > 80:
        text = text[:77] + "..."
    return text.encode("unicode_escape").decode("ascii") if any(ord(c) < 32 for c in text) else text


# x-explain: a function that says precisely why a value misses its pattern (None: the x-error says it).
_EXPLAIN: dict[str, Callable[[str], str | None]] = {"endpoint": endpoint_problem, "host": host_problem}


def _explain(error: jsonschema.ValidationError) -> tuple[Path, str]:
    path: Path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    validator = error.validator
    if validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        key = extra[0]
        # Never suggest a key the mapping already has: renaming to it would only make a duplicate.
        free = [k for k in known if k not in error.instance]
        hint = difflib.get_close_matches(key, free, n=1)
        fix = f"did you mean '{hint[0]}'?" if hint else f"known keys: {', '.join(known)}"
        return (*path, key), f"unknown key '{key}': {fix}"
    if validator in ("oneOf", "anyOf") and error.context:
        # Explain the branch that fits the value's type (a sum as text, or a mapping of sums), deepest first.
        relevant = [e for e in error.context if e.validator != "type"]
        if relevant:
            return _explain(max(relevant, key=lambda e: len(e.absolute_path)))
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else str(error.validator_value)
        return path, f"missing required key '{missing}'"
    if validator == "pattern" and schema.get("x-explain") in _EXPLAIN and isinstance(error.instance, str):
        specific = _EXPLAIN[schema["x-explain"]](error.instance)
        if specific:
            return path, f"{_show(error.instance)} {specific}"
    if validator in ("pattern", "const", "format") and "x-error" in schema:
        return path, f"{_show(error.instance)} {schema['x-error']}"
    if validator == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return path, f"{_show(error.instance)} is not one of: {choices}"
    if validator == "type":
        wanted = error.validator_value
        names = " or ".join(_TYPE_NAMES.get(t, t) for t in (wanted if isinstance(wanted, list) else [wanted]))
        return path, f"{_show(error.instance)} must be {names}"
    if validator in ("minLength", "maxLength") and "x-error" in schema:
        return path, f"{_show(error.instance)} {schema['x-error']}"
    if validator == "maxLength":
        return path, f"is longer than {error.validator_value} characters"
    if validator == "minLength":
        return path, f"must be at least {error.validator_value} characters long"
    if validator in ("minimum", "maximum"):
        bound = "at least" if validator == "minimum" else "at most"
        return path, f"{_show(error.instance)} must be {bound} {error.validator_value}"
    if validator in ("minItems", "maxItems"):
        bound = "at least" if validator == "minItems" else "at most"
        count = error.validator_value
        return path, f"must have {bound} {count} {'entry' if count == 1 else 'entries'}"
    if validator == "propertyNames":
        return path, f"{error.message}"
    return path, error.message


def _control_character_findings(src: Source, data: Any, path: Path) -> list[Finding]:
    """No profile value but a key block is multi-line; a newline would also slip past the schema's ^...$ patterns."""
    found: list[Finding] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if not key.isprintable():
                found.append(src.finding((*path, key), "keys may not contain line breaks or control characters",
                                         at_key=True))
            found += _control_character_findings(src, value, (*path, key))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            found += _control_character_findings(src, item, (*path, i))
    elif (isinstance(data, str) and not data.isprintable() and path[-1:] != ("password",)
          and not (path in MULTILINE_KEY_BLOCKS and is_inline_key(data))
          and not (path in MULTILINE_CERTIFICATES and data.lstrip().startswith("-----BEGIN CERTIFICATE-----"))):
        found.append(src.finding(path, f"{_show(data)} contains a line break or control character: "
                                       "every profile value is a single line"))
    return found


def _unquoted_number(src: Source, error: jsonschema.ValidationError) -> str | None:
    """A version, MAC or name that YAML read as a number: show what the user wrote and say to quote it."""
    if error.validator != "type" or "string" not in str(error.validator_value):
        return None
    written = src.scalar_text.get(tuple(error.absolute_path))
    if written is None or not isinstance(error.instance, (int, float, bool)):
        return None
    return (f"'{written}' was read by YAML as {type(error.instance).__name__} {error.instance!r}, not as text: "
            f'quote it ("{written}")')


def check_schema(src: Source) -> tuple[list[Finding], Source]:
    """Validate once: the findings, and the profile with every value the schema rejected taken out."""
    errors = list(_validator().iter_errors(src.data))
    return _findings(src, errors), _valid_part(src, errors)


def _findings(src: Source, errors: list[jsonschema.ValidationError]) -> list[Finding]:
    findings: list[Finding] = _control_character_findings(src, src.data, ())
    for error in errors:
        if "propertyNames" in error.relative_schema_path or error.validator == "propertyNames":
            # jsonschema reports the key as the instance at the mapping's path: point at the key itself.
            bad, rule = error.instance, error.schema
            for sub in error.context or []:
                bad, rule = sub.instance, sub.schema
                break
            hint = (rule if isinstance(rule, dict) else {}).get("x-error") \
                or profile_schema()["$defs"]["labelKey"]["x-error"]
            findings.append(src.finding((*error.absolute_path, str(bad)), f"{_show(bad)} {hint}", at_key=True))
            continue
        quoted = _unquoted_number(src, error)
        if quoted:
            findings.append(src.finding(tuple(error.absolute_path), quoted))
            continue
        if error.validator == "additionalProperties":
            known = set((error.schema or {}).get("properties", {}))
            for key in sorted(set(error.instance) - known):
                present = {k: None for k in error.instance if k in known}
                sub = jsonschema.ValidationError("", validator="additionalProperties", schema=error.schema,
                                                 instance={key: None, **present}, path=error.absolute_path)
                path, message = _explain(sub)
                findings.append(src.finding(path, message, at_key=True))
            continue
        path, message = _explain(error)
        findings.append(src.finding(path, message))
    return findings


def _bad_paths(errors: list[jsonschema.ValidationError]) -> set[Path]:
    bad: set[Path] = set()
    for error in errors:
        path: Path = tuple(error.absolute_path)
        if error.validator == "required":  # nothing there to take out; semantic checks read with .get()
            continue
        if error.validator in ("additionalProperties", "propertyNames") and isinstance(error.instance, dict):
            if error.validator == "additionalProperties":
                keys = set(error.instance) - set((error.schema or {}).get("properties", {}))
            else:
                keys = {sub.instance for sub in error.context or []} & set(error.instance)
            if keys:
                bad.update((*path, key) for key in keys)
                continue
        bad.add(path)
    return bad


def _drop(data: Any, path: Path) -> None:
    *parent_path, last = path
    parent = data
    for step in parent_path:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
        parent[last] = None  # keep the other items' indexes (and so their positions) as they are


def _valid_part(src: Source, errors: list[jsonschema.ValidationError]) -> Source:
    """The profile with every value the schema rejected taken out.

    Semantic checks run on this, so they see only well-typed values (a mapping where a name belongs
    was already reported by the schema and must not crash a check), while the rest of the profile
    still gets its semantic findings in the same run.
    """
    bad = _bad_paths(errors)
    if not bad:
        return src
    if () in bad:
        return dataclasses.replace(src, data={})
    data = copy.deepcopy(src.data)
    for path in sorted(bad, key=len, reverse=True):
        _drop(data, path)
    return dataclasses.replace(src, data=data)
