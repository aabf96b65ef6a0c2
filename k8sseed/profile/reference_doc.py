"""The profile reference (docs/profile.md), generated from schemas/profile.schema.json."""

from __future__ import annotations

import json
from typing import Any

from k8sseed.profile.schema_check import profile_schema


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        merged = dict(defs[schema["$ref"].rsplit("/", 1)[1]])
        merged.update({k: v for k, v in schema.items() if k != "$ref"})
        return merged
    return schema


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "oneOf" in schema:
        return " or ".join(_type(_resolve(branch, defs), defs) for branch in schema["oneOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "")
    if kind == "array":
        return "list"
    if kind == "object":
        return "mapping"
    return str(kind)


def _rows(schema: dict[str, Any], defs: dict[str, Any], prefix: str, required: set[str]) -> list[str]:
    rows = []
    for key, raw in schema.get("properties", {}).items():
        sub = _resolve(raw, defs)
        path = f"{prefix}{key}"
        default = f"`{json.dumps(sub['default'])}`" if "default" in sub and sub["default"] not in ({}, []) else ""
        must = "yes" if key in required else ""
        text = sub.get("description", "")
        if "x-error" in sub and not text:
            rule = sub["x-error"]
            text = f"Format: {rule.removeprefix('is not ')}" if rule.startswith("is not ") else rule.capitalize()
        rows.append(f"| `{path}` | {_type(sub, defs)} | {must} | {default} | {text} |")
        if sub.get("type") == "object" and "properties" in sub:
            rows += _rows(sub, defs, f"{path}.", set(sub.get("required", [])))
        items = _resolve(sub.get("items", {}), defs) if sub.get("type") == "array" else {}
        if items.get("type") == "object":
            rows += _rows(items, defs, f"{path}[].", set(items.get("required", [])))
    return rows


def render_reference() -> str:
    schema = profile_schema()
    lines = [
        "# Profile reference",
        "",
        "Generated from `schemas/profile.schema.json` by `make docs`; do not edit by hand.",
        "Unknown keys are errors. Every value is one line of text; addresses are IPv4.",
        "",
        "| key | type | required | default | meaning |",
        "|---|---|---|---|---|",
    ]
    lines += _rows(schema, schema["$defs"], "", set(schema.get("required", [])))
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


if __name__ == "__main__":
    print(render_reference(), end="")
