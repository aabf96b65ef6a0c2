"""The real API server's verdict on the add-on objects the init node's bootstrap applies (tests/realk8s_apiserver.py),
against CRDs made from the same upstream schemas the seeds are checked against (tests/realk8s/crds.py):

- kube-apiserver takes every CRD schema copy as a structural CRD, and the seed's CRDs become Established;
- every addon file of the init node's seed, applied in phase_addons' order with the bootstrap's own kubectl flags
  (server-side apply, so strict field validation), is accepted, and is stored as written plus its schema's defaults;
- Calico's projectcalico.org/v3 objects are accepted as the v3 CRDs (what calico_apply does when Calico serves
  projectcalico.org) and, moved to crd.projectcalico.org/v1 as calicoctl stores them, by the v1 CRDs;
- the same objects with one misspelled field, or one field of the wrong type, are refused, and the Installation's
  CEL rule (the name must be `default`) is kept;
- the schema copies as they are, and each of the conversion's steps left out, are refused, in the server's words.
"""

from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROFILES, make_secret, run_cli
from realk8s import crds
from realk8s_apiserver import ControlPlane, control_plane, written_files
from realk8s_support import KUBERNETES_RELEASES

pytestmark = pytest.mark.realk8s
RELEASE = KUBERNETES_RELEASES[0]
ADDONS = "/etc/k8sseed/addons"
BOOTSTRAP = "/usr/local/sbin/k8sseed-bootstrap"
STORAGE_GROUP = "crd.projectcalico.org"  # where calicoctl keeps projectcalico.org/v3 objects
CALICO_METADATA = "projectcalico.org/metadata"  # libcalico-go's annotation for the v3 metadata it does not map


@dataclass(frozen=True)
class Step:
    """One `kube apply` of phase_addons: the kubectl flags before `-f`, and the seed's file."""
    flags: tuple[str, ...]
    path: str


@dataclass(frozen=True)
class Lab:
    cp: ControlPlane
    files: dict[str, str]  # the init node's write_files
    steps: tuple[Step, ...]


def _phase_addons_steps(files: dict[str, str]) -> tuple[Step, ...]:
    """The applies of the seed's own addon files, in the order and with the flags of its bootstrap. calico_apply takes
    its projectcalico.org branch: kubectl, as on a cluster whose Calico serves projectcalico.org as CRDs."""
    script = files[BOOTSTRAP]
    body = re.search(r"^phase_addons\(\) \{\n(.*?)^\}", script, re.MULTILINE | re.DOTALL).group(1)
    calico = re.search(r"^calico_apply\(\) \{\n.*?kube apply (.*?) -f \"\$file\"", script, re.MULTILINE | re.DOTALL)
    steps = []
    for line in body.splitlines():
        direct = re.search(r"kube apply (.*?) ?-f \"\$CONF_DIR/addons/([\w.-]+)\"", line)
        through = re.search(r"calico_apply \"\$group\" \"\$CONF_DIR/addons/([\w.-]+)\"", line)
        if direct:
            steps.append(Step(tuple(direct.group(1).split()), f"{ADDONS}/{direct.group(2)}"))
        elif through:
            steps.append(Step(tuple(calico.group(1).split()), f"{ADDONS}/{through.group(1)}"))
    return tuple(s for s in steps if s.path in files)


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _custom_documents(lab: Lab) -> list[dict[str, Any]]:
    return [d for s in lab.steps for d in _documents(lab.files[s.path]) if "." in d["apiVersion"].split("/")[0]]


def _storage_form(doc: dict[str, Any]) -> dict[str, Any]:
    """A projectcalico.org/v3 object as libcalico-go's ConvertCalicoResourceToK8sResource writes it for calicoctl:
    group crd.projectcalico.org, the same spec (the v1 and v3 CRDs share the spec's schema), name kept, the rest of the
    metadata as JSON in one annotation (calicoctl's defaulting of the spec is not reproduced here)."""
    rest = {k: v for k, v in doc["metadata"].items() if k not in ("name", "namespace", "labels", "annotations")}
    return {"apiVersion": f"{STORAGE_GROUP}/v1", "kind": doc["kind"],
            "metadata": {"name": doc["metadata"]["name"],
                         "annotations": {CALICO_METADATA: json.dumps({"creationTimestamp": None, **rest})}},
            "spec": doc["spec"]}


def _crds_for(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    versions: dict[tuple[str, str], list[str]] = {}
    for doc in documents:
        group, version = doc["apiVersion"].split("/")
        found = versions.setdefault((group, doc["kind"]), [])
        if version not in found:
            found.append(version)
    return [crds.custom_resource_definition(group, kind, found) for (group, kind), found in sorted(versions.items())]


def _namespaces(documents: list[dict[str, Any]]) -> set[str]:
    """The namespaces the upstream manifests create before these objects (PureLB's purelb-system)."""
    return {d["metadata"]["namespace"] for d in documents if "namespace" in d["metadata"]} - {"kube-system", "default"}


def _wait_established(cp: ControlPlane, name: str, limit: float = 60) -> None:
    """Polled, as the bootstrap's wait_for_crd retries: `kubectl wait` fails at once on a CRD with no conditions."""
    deadline = time.monotonic() + limit
    while True:
        status = json.loads(cp.kubectl("get", "crd", name, "-o", "json").stdout).get("status", {})
        if any(c["type"] == "Established" and c["status"] == "True" for c in status.get("conditions") or []):
            return
        assert time.monotonic() < deadline, f"CRD {name} never became Established: {status}"
        time.sleep(0.2)


def _init_seed(out: Path) -> Path:
    manifest = json.loads((out / "manifest.json").read_text())
    return out / next(n["name"] for n in manifest["nodes"] if n["duty"] == "init")


@pytest.fixture(scope="module", params=["reference", "keepalived-haproxy", "current"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The profile at the newest built release, its init node's control plane running with the CRDs of every custom
    object its seed writes (and the crd.projectcalico.org/v1 ones calicoctl stores them as) Established."""
    work = tmp_path_factory.mktemp(f"addons-{request.param}")
    data = yaml.safe_load((PROFILES / f"{request.param}.yaml").read_text())
    data["cluster"]["kubernetesVersion"] = RELEASE
    profile = work / "profile.yaml"
    profile.write_text(yaml.safe_dump(data, sort_keys=False))
    out = work / "out"
    result = run_cli("build", str(profile), "-o", str(out), "--secret", str(make_secret(work)))
    assert result.returncode == 0, result.stderr
    seed = _init_seed(out)
    files = written_files(seed)
    steps = _phase_addons_steps(files)
    with control_plane(seed, RELEASE, work / "cp") as cp:
        lab = Lab(cp, files, steps)
        documents = _custom_documents(lab)
        storage = [_storage_form(d) for d in documents if d["apiVersion"] == "projectcalico.org/v3"]
        for crd in _crds_for(documents + storage):
            cp.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(crd))
            _wait_established(cp, crd["metadata"]["name"])
        for namespace in sorted(_namespaces(documents)):
            cp.kubectl("create", "namespace", namespace)
        yield lab


def _get(cp: ControlPlane, doc: dict[str, Any]) -> dict[str, Any]:
    names = crds.NAMES.get((doc["apiVersion"].split("/")[0], doc["kind"]))
    resource = f"{names.plural}.{doc['apiVersion'].split('/')[0]}" if names else doc["kind"].lower()
    namespace = ("--namespace", doc["metadata"]["namespace"]) if "namespace" in doc["metadata"] else ()
    return json.loads(cp.kubectl("get", resource, doc["metadata"]["name"], *namespace, "-o", "json").stdout)


def _round_trip_problems(written: Any, stored: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Where the stored object differs from what was written, other than by a field its schema defaults."""
    if isinstance(written, dict) and isinstance(stored, dict):
        def sub(key: str) -> dict[str, Any]:
            found = schema.get("properties", {}).get(key, schema.get("additionalProperties"))
            return found if isinstance(found, dict) else {}
        problems = [f"{path}.{k}: missing" for k in written if k not in stored]
        problems += [f"{path}.{k}: {v!r} added, not a schema default" for k, v in stored.items()
                     if k not in written and sub(k).get("default", object()) != v]
        return problems + [p for k in written if k in stored
                           for p in _round_trip_problems(written[k], stored[k], sub(k), f"{path}.{k}")]
    if isinstance(written, list) and isinstance(stored, list) and len(written) == len(stored):
        return [p for i, (w, v) in enumerate(zip(written, stored, strict=True))
                for p in _round_trip_problems(w, v, schema.get("items", {}), f"{path}[{i}]")]
    return [] if written == stored else [f"{path}: wrote {written!r}, stored {stored!r}"]


def _apply(cp: ControlPlane, flags: tuple[str, ...], docs: list[dict[str, Any]], check: bool = True):
    return cp.kubectl("apply", *flags, "-f", "-", stdin=yaml.safe_dump_all(docs, sort_keys=False), check=check)


def test_every_crd_schema_copy_becomes_a_crd_the_api_server_takes(lab: Lab) -> None:
    # Also the kinds and versions no seed writes today (PureLB's purelb.io/v1, Calico's BGPFilter), each group/kind as
    # one CRD serving all its copies' versions.
    index = json.loads((crds.SCHEMAS / "index.json").read_text())
    versions: dict[tuple[str, str], list[str]] = {}
    for entry in index["entries"]:
        group, _, version = entry["apiVersion"].rpartition("/")
        if entry["file"].startswith("crd-"):
            versions.setdefault((group, entry["kind"]), []).append(version)
    assert len(versions) == len(crds.NAMES), "a schema copy whose CRD names tests/realk8s/crds.py does not know"
    for (group, kind), found in sorted(versions.items()):
        crd = crds.custom_resource_definition(group, kind, sorted(found))
        result = lab.cp.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=json.dumps(crd),
                                check=False)
        assert result.returncode == 0, f"{group} {kind} {found}: {result.stdout}{result.stderr}"


def test_phase_addons_applies_every_addon_file_of_the_seed(lab: Lab) -> None:
    applied = {s.path for s in lab.steps}
    written = {p for p in lab.files if p.startswith(f"{ADDONS}/") and p.endswith(".yaml")}
    assert applied == written, "an addon file the bootstrap never applies, or one it applies that is not there"
    assert all("--server-side" in s.flags for s in lab.steps if s.path != f"{ADDONS}/ready.yaml"), lab.steps


def test_the_api_server_accepts_every_addon_object_as_the_bootstrap_applies_it(lab: Lab) -> None:
    for step in lab.steps:
        result = lab.cp.kubectl("apply", *step.flags, "-f", "-", stdin=lab.files[step.path], check=False)
        assert result.returncode == 0, f"{step.path}: {result.stdout}{result.stderr}"
        assert "Warning" not in result.stderr, f"{step.path}: {result.stderr}"
        for doc in _documents(lab.files[step.path]):
            stored = _get(lab.cp, doc)
            if "spec" in doc:
                schema = crds.version_schema(doc["apiVersion"], doc["kind"])["properties"]["spec"]
                problems = _round_trip_problems(doc["spec"], stored["spec"], schema, "spec")
            else:
                problems = [] if stored["data"] == doc["data"] else [f"data: {stored['data']}"]
            assert not problems, f"{step.path} {doc['kind']}: {problems}"
            assert stored["apiVersion"] == doc["apiVersion"]


def test_calicoctls_stored_form_is_accepted_by_the_crd_projectcalico_org_v1_crds(lab: Lab) -> None:
    calico = [d for d in _custom_documents(lab) if d["apiVersion"] == "projectcalico.org/v3"]
    if not calico:
        pytest.skip("this profile writes no projectcalico.org/v3 objects (no BGP with the host's BIRD)")
    stored_forms = [_storage_form(d) for d in calico]
    _apply(lab.cp, ("--server-side", "--force-conflicts"), stored_forms)
    for doc in stored_forms:
        stored = _get(lab.cp, doc)
        schema = crds.version_schema(doc["apiVersion"], doc["kind"])["properties"]["spec"]
        problems = _round_trip_problems(doc["spec"], stored["spec"], schema, "spec")
        assert not problems, f"{doc['kind']}: {problems}"
        assert stored["metadata"]["annotations"][CALICO_METADATA] == doc["metadata"]["annotations"][CALICO_METADATA]


def _misspelled(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The object with its first spec field misspelled (last two letters swapped)."""
    bad = copy.deepcopy(doc)
    key = next(iter(bad["spec"]))
    typo = key[:-2] + key[-1] + key[-2]
    bad["spec"] = {(typo if k == key else k): v for k, v in bad["spec"].items()}
    return bad, typo


def _mistyped(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The object with its first spec field of another JSON type: a number for anything but a number, else a map."""
    bad = copy.deepcopy(doc)
    key = next(iter(bad["spec"]))
    value = bad["spec"][key]
    bad["spec"][key] = {"wrong": "type"} if isinstance(value, int) and not isinstance(value, bool) else 7
    return bad, key


@pytest.mark.parametrize("mutation", [_misspelled, _mistyped], ids=["misspelled-field", "wrong-type"])
def test_a_wrong_field_is_refused(lab: Lab, mutation) -> None:
    steps = {s.path: s for s in lab.steps}
    checked = 0
    for step in lab.steps:
        for doc in _documents(lab.files[step.path]):
            if "spec" not in doc:
                continue
            bad, field = mutation(doc)
            result = _apply(lab.cp, steps[step.path].flags, [bad], check=False)
            message = result.stdout + result.stderr
            assert result.returncode != 0, f"{step.path} {doc['kind']} with spec.{field} changed was accepted"
            assert f"spec.{field}" in message, message
            assert ("field not declared in schema" in message if mutation is _misspelled
                    else "expected" in message or "must be of type" in message), message
            checked += 1
    assert checked, "the seed has no custom objects with a spec"


def test_client_side_apply_refuses_an_unknown_field_too(lab: Lab) -> None:
    # kubectl's default --validate=strict without --server-side: the server's strict decoding.
    doc = next(d for d in _custom_documents(lab) if d["kind"] == "Installation")
    bad, typo = _misspelled(doc)
    result = _apply(lab.cp, ("--dry-run=server",), [bad], check=False)
    assert result.returncode != 0 and f'unknown field "spec.{typo}"' in result.stderr, result.stdout + result.stderr


def test_the_installations_cel_rule_is_kept(lab: Lab) -> None:
    doc = next(d for d in _custom_documents(lab) if d["kind"] == "Installation")
    renamed = {**doc, "metadata": {"name": "second"}}
    result = _apply(lab.cp, ("--server-side", "--dry-run=server"), [renamed], check=False)
    assert result.returncode != 0 and "resource name must be 'default'" in result.stderr, result.stdout + result.stderr


# The BGPConfiguration copy with one step of crds.structural left out, and what the API server says to it.
def _schema(kind: str = "BGPConfiguration") -> dict[str, Any]:
    return crds.version_schema(f"{STORAGE_GROUP}/v1", kind)


def _raw(kind: str = "BGPConfiguration") -> dict[str, Any]:
    return json.loads(crds.schema_file(f"{STORAGE_GROUP}/v1", kind).read_text())


def _with(edit) -> dict[str, Any]:
    schema = _schema()
    edit(schema)
    return schema


UNCONVERTED = {
    # The first of $schema, $id, $comment, $defs the server meets: Go's map order.
    "the copy as it is": (lambda: _raw(), r"openAPIV3Schema\.\$(schema|id|comment|defs): field not declared in schema"),
    "$comment kept": (lambda: _with(lambda s: s.update({"$comment": "x"})),
                      re.escape("openAPIV3Schema.$comment: field not declared in schema")),
    "metadata as ObjectMeta": (
        lambda: _with(lambda s: s["properties"].update(
            metadata=crds.structural(_raw()["$defs"]["ObjectMeta"], {}))),
        re.escape("must not specify anything other than name and generateName")),
    "additionalProperties false beside properties": (
        lambda: _with(lambda s: s["properties"]["spec"].update(additionalProperties=False)),
        re.escape("additionalProperties and properties are mutual exclusive")),
    "const": (lambda: _with(lambda s: s["properties"].update(kind={"const": "BGPConfiguration"})),
              re.escape("properties.kind.const: field not declared in schema")),
    "nullable as a type list": (
        lambda: _with(lambda s: s["properties"]["spec"]["properties"]["asNumber"].update(type=["integer", "null"])),
        re.escape("asNumber.type: expected string")),
    "int-or-string as anyOf": (
        lambda: _with(lambda s: s["properties"]["spec"]["properties"].update(
            probe={"anyOf": [{"type": "integer"}, {"type": "string"}]})),
        re.escape("properties[probe].type: Required value: must not be empty for specified object fields")),
    "x-original-pattern kept": (
        lambda: _with(lambda s: s["properties"]["spec"]["properties"]["logSeverityScreen"].update(
            {"x-original-pattern": "^(?i)(Info)?$"})),
        re.escape("x-original-pattern: field not declared in schema")),
}


@pytest.mark.parametrize("case", UNCONVERTED)
def test_the_api_server_refuses_each_step_of_the_conversion_left_out(lab: Lab, case: str) -> None:
    make, expected = UNCONVERTED[case]
    crd = crds.custom_resource_definition(STORAGE_GROUP, "BGPConfiguration", ["v1"])
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = make()
    result = lab.cp.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=json.dumps(crd),
                            check=False)
    assert result.returncode != 0 and re.search(expected, result.stdout + result.stderr), result.stdout + result.stderr
