"""CustomResourceDefinitions for the real API server, made back from the CRD schemas the seeds are checked against
(tests/data/upstream-schemas): the same schema, judged by kube-apiserver instead of a JSON Schema library.

The copies are JSON Schema 2020-12; an apiextensions.k8s.io/v1 CRD needs a structural OpenAPI v3 schema, so
`structural` undoes the copies' conversion. Strictness is not lost with `additionalProperties: false`: kubectl's
default strict field validation refuses unknown fields of a structural schema, which the server would otherwise
prune.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from conftest import SCHEMAS  # the copies the JSON Schema tests read


class Scope(str, Enum):
    CLUSTER = "Cluster"
    NAMESPACED = "Namespaced"


@dataclass(frozen=True)
class Names:
    plural: str
    scope: str


# As the upstream CRDs name them: projectcalico/calico v3.32.1 (libcalico-go/config/crd, api/config/crd, the
# operator chart's operator.tigera.io_installations.yaml) and purelb/purelb deployments/crds/*_crd.yaml.
NAMES: dict[tuple[str, str], Names] = {
    ("operator.tigera.io", "Installation"): Names("installations", Scope.CLUSTER),
    ("purelb.io", "ServiceGroup"): Names("servicegroups", Scope.NAMESPACED),
    ("purelb.io", "LBNodeAgent"): Names("lbnodeagents", Scope.NAMESPACED),
    **{(group, kind): Names(kind.lower() + "s", Scope.CLUSTER)
       for group in ("crd.projectcalico.org", "projectcalico.org")
       for kind in ("BGPConfiguration", "BGPPeer", "IPPool", "BGPFilter")},
}

# JSON Schema keywords a CRD's schema does not have (the API server refuses them: "field not declared in schema"),
# and titles and descriptions, left out to keep the CRDs small (the Installation's copy is 1.2 MB with them).
_DROPPED = {"$schema", "$id", "$comment", "$defs", "title", "description"}
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def schema_file(api_version: str, kind: str) -> Path:
    index = json.loads((SCHEMAS / "index.json").read_text())
    found = [e["file"] for e in index["entries"] if (e["apiVersion"], e["kind"]) == (api_version, kind)]
    assert len(found) == 1, f"index.json names {len(found)} files for {api_version} {kind}"
    return SCHEMAS / found[0]


def structural(node: Any, defs: dict[str, Any]) -> Any:
    """One node of a schema copy as OpenAPI v3 the API server takes: $ref inlined, int-or-string and nullable in
    Kubernetes' own words, `additionalProperties: false` beside `properties` dropped (the two are exclusive in a
    CRD), const as a one-value enum, the Go (RE2) pattern restored where the copy moved flags for Python."""
    if isinstance(node, list):
        return [structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        return structural({**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key == "x-original-pattern":
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("enum", "default", "required", "x-kubernetes-validations", "x-kubernetes-list-map-keys"):
            out[key] = value  # data, not schemas
        elif key == "anyOf" and value == _INT_OR_STRING:
            out["x-kubernetes-int-or-string"] = True
        elif key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            assert len(kinds) == 1, f"type {value} has no OpenAPI v3 form"
            out["type"] = kinds[0]
            if "null" in value:
                out["nullable"] = True
        elif key == "const":
            out["enum"] = [value]
        elif key == "additionalProperties" and value is False and "properties" in node:
            continue
        else:
            out[key] = structural(value, defs)
    if "x-original-pattern" in node:
        out["pattern"] = node["x-original-pattern"]
    if "const" in node and "type" not in out:
        out["type"] = {str: "string", bool: "boolean", int: "integer"}[type(node["const"])]
    return out


def version_schema(api_version: str, kind: str) -> dict[str, Any]:
    copy = json.loads(schema_file(api_version, kind).read_text())
    schema = structural(copy, copy.get("$defs", {}))
    # Only metadata.name and metadata.generateName may be restricted in a CRD; the server checks the rest itself.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def _version(group: str, version: str, kind: str, storage: bool) -> dict[str, Any]:
    schema = version_schema(f"{group}/{version}", kind)
    status = {"subresources": {"status": {}}} if "status" in schema["properties"] else {}
    return {"name": version, "served": True, "storage": storage, "schema": {"openAPIV3Schema": schema}, **status}


def custom_resource_definition(group: str, kind: str, versions: list[str]) -> dict[str, Any]:
    """The CRD of group/kind serving versions (the last one stored), each with its schema copy made structural."""
    names = NAMES[(group, kind)]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names.plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": names.plural, "singular": kind.lower()},
            "scope": names.scope,
            "versions": [_version(group, v, kind, v == versions[-1]) for v in versions],
        },
    }
