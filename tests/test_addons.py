"""Calico and PureLB resources: valid against the CRD schemas, and shaped as the design needs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import PROFILES, REPO, make_secret, node_dirs, run_cli

REWRITE_IMAGES = "/usr/local/sbin/k8sseed-rewrite-images"


def _files(seed_dir: Path) -> dict[str, str]:
    data = yaml.safe_load((seed_dir / "user-data").read_text())
    return {f["path"]: f["content"] for f in data["write_files"]}


def _addon_docs(out: Path) -> list[dict]:
    docs = []
    for seed in node_dirs(out):
        for path, content in _files(seed).items():
            if path.startswith("/etc/k8sseed/addons/") and path.endswith(".yaml"):
                docs += [d for d in yaml.safe_load_all(content) if d]
    return docs


def test_every_calico_and_purelb_resource_passes_its_crd_schema(built, upstream_index):
    checked = set()
    for out in built.values():
        for doc in _addon_docs(out):
            key = (doc["apiVersion"], doc["kind"])
            if key == ("v1", "ConfigMap"):
                continue
            assert key in upstream_index, f"no CRD schema for {key}"
            schema = json.loads(upstream_index[key].read_text())
            errors = [f"{list(e.absolute_path)}: {e.message}"
                      for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
            assert not errors, f"{key}: {errors}"
            checked.add(key)
    assert {("operator.tigera.io/v1", "Installation"), ("projectcalico.org/v3", "BGPConfiguration"),
            ("projectcalico.org/v3", "BGPPeer"), ("projectcalico.org/v3", "IPPool"),
            ("purelb.io/v2", "ServiceGroup"), ("purelb.io/v2", "LBNodeAgent")} <= checked


def test_calico_resources_use_calicos_user_api_never_its_storage_crds(built):
    # crd.projectcalico.org/v1 written directly skips Calico's validation and defaulting (unsupported).
    for out in built.values():
        for doc in _addon_docs(out):
            assert not doc["apiVersion"].startswith("crd.projectcalico.org"), doc


def test_only_the_init_node_installs_addons(built):
    out = built["reference"]
    holders = [d.name for d in node_dirs(out) if "/etc/k8sseed/addons/calico-installation.yaml"
               in _files(d)]
    assert holders == ["cp-1"]


def test_calico_listens_beside_the_host_bird_and_peers_with_it(built):
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _addon_docs(built["reference"])}
    bgp = docs[("BGPConfiguration", "default")]["spec"]
    assert bgp["listenPort"] == 1790 and bgp["asNumber"] == 64512
    assert bgp["nodeToNodeMeshEnabled"] is False
    assert bgp["serviceLoadBalancerIPs"] == [{"cidr": "10.30.0.0/24"}]
    peer = docs[("BGPPeer", "k8sseed-host-bird")]["spec"]
    assert peer == {"peerIP": "127.0.0.1:179", "asNumber": 64512, "sourceAddress": "UseNodeIP"}


def test_purelb_pool_is_exported_by_calico_through_a_disabled_ippool(built):
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _addon_docs(built["reference"])}
    pool = docs[("IPPool", "purelb-default")]["spec"]
    assert pool["cidr"] == "10.30.0.0/24" and pool["disabled"] is True
    group = docs[("ServiceGroup", "default")]
    assert group["metadata"]["namespace"] == "purelb-system"
    assert group["spec"] == {"remote": {"v4pools": [{"subnet": "10.30.0.0/24", "pool": "10.30.0.10-10.30.0.250",
                                                     "aggregation": "/32"}]}}


def test_calico_pod_pool_and_autodetection_follow_the_profile(built):
    installs = {stem: next(d for d in _addon_docs(out) if d["kind"] == "Installation")
                for stem, out in built.items()}
    ref = installs["reference"]["spec"]["calicoNetwork"]
    assert ref["bgp"] == "Enabled"
    assert ref["ipPools"][0]["cidr"] == "192.168.0.0/16" and ref["ipPools"][0]["encapsulation"] == "None"
    # The Node's InternalIP (kubelet --node-ip = the profile's address), never a VIP on the same NIC.
    assert ref["nodeAddressAutodetectionV4"] == {"kubernetes": "NodeInternalIP"}
    solo = installs["single-node"]["spec"]["calicoNetwork"]
    assert solo["bgp"] == "Disabled" and solo["ipPools"][0]["encapsulation"] == "VXLAN"


def test_calico_images_come_from_the_profiles_registry_mirror(built):
    def registry(stem: str) -> str | None:
        install = next(d for d in _addon_docs(built[stem]) if d["kind"] == "Installation")
        return install["spec"].get("registry")

    assert registry("current") == "harbor.lab.example.com:5000/"  # the operator's form: with the trailing slash
    assert registry("reference") is None  # no mirror: the operator's default registries


def test_calico_version_follows_the_kubernetes_minor(built):
    def env(out: Path) -> str:
        init = next(d for d in node_dirs(out) if "/etc/k8sseed/kubeadm-init.yaml" in _files(d))
        return _files(init)["/etc/k8sseed/node.env"]

    assert "K8SSEED_CALICO_VERSION=3.25.2" in env(built["reference"])
    assert ("K8SSEED_CALICO_OPERATOR_URL=https://raw.githubusercontent.com/projectcalico/calico/v3.25.2/manifests/"
            "tigera-operator.yaml") in env(built["reference"])
    assert "K8SSEED_CALICO_VERSION=3.32.1" in env(built["current"])


def test_example_profiles_cover_every_endpoint_mode():
    modes = {yaml.safe_load(p.read_text()).get("controlPlaneLB", {}).get("mode", "external")
             for p in PROFILES.glob("*.yaml")}
    schema = json.loads((REPO / "schemas" / "profile.schema.json").read_text())
    assert modes == set(schema["properties"]["controlPlaneLB"]["properties"]["mode"]["enum"])


def _init_files(out: Path) -> dict[str, str]:
    return _files(next(d for d in node_dirs(out) if "/etc/k8sseed/kubeadm-init.yaml" in _files(d)))


def _env(files: dict[str, str]) -> dict[str, str]:
    return dict(re.findall(r"^(K8SSEED_[A-Z0-9_]+)=(.*)$", files["/etc/k8sseed/node.env"], re.M))


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference profile for a site that reaches Docker Hub, quay.io and ghcr.io only through mirrors."""
    work = tmp_path_factory.mktemp("mirrored")
    profile = yaml.safe_load((PROFILES / "reference.yaml").read_text())
    profile.setdefault("mirrors", {}).update({
        "calicoctl": "https://files.lab.example.com/calico/v{version}/calicoctl-linux-{arch}",
        "imageRegistries": {"quay.io": "harbor.lab.example.com/quay.io", "docker.io": "harbor.lab.example.com/hub",
                            "ghcr.io": "harbor.lab.example.com:5000/ghcr"},
        "dockerHubMirrors": ["https://hub-mirror.lab.example.com", "http://10.0.0.5:5000/"],
    })
    profile["calico"]["calicoctlSha256"] = "ab" * 32
    (work / "profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    out = work / "out"
    result = run_cli("build", str(work / "profile.yaml"), "-o", str(out), "--secret", str(make_secret(work)))
    assert result.returncode == 0, result.stderr
    return out


def _phase_addons(files: dict[str, str]) -> str:
    script = files["/usr/local/sbin/k8sseed-bootstrap"]
    return script[script.index("\nphase_addons() {"):script.index("\nphase() {")]


def test_calico_bgp_resources_are_written_before_the_installation_and_export_pools_after_calico_is_up(built):
    files = _init_files(built["reference"])
    steps = [line.strip() for line in _phase_addons(files).splitlines()]

    def at(fragment: str) -> int:
        return next(i for i, line in enumerate(steps) if fragment in line)

    # listenPort must be in the datastore before calico-node's first BIRD starts, or it takes TCP 179.
    assert at("kube apply --server-side --force-conflicts -f \"$dir/tigera-operator.yaml\"") \
        < at("group=\"$(calico_crd_group)\"") < at("install_calicoctl") \
        < at('calico_apply "$group" "$CONF_DIR/addons/calico-bgp.yaml"') \
        < at('-f "$CONF_DIR/addons/calico-installation.yaml"') < at("wait_for_calico") \
        < at('calico_apply "$group" "$CONF_DIR/addons/calico-ippools.yaml"') < at('"$dir/purelb.yaml"')
    bgp = [d for d in yaml.safe_load_all(files["/etc/k8sseed/addons/calico-bgp.yaml"]) if d]
    assert [d["kind"] for d in bgp] == ["BGPConfiguration", "BGPPeer"]
    pools = [d for d in yaml.safe_load_all(files["/etc/k8sseed/addons/calico-ippools.yaml"]) if d]
    assert [(d["kind"], d["spec"]["disabled"]) for d in pools] == [("IPPool", True)]


def test_calicoctl_talks_to_the_kubernetes_datastore_and_is_pinned_to_the_calico_release(built, mirrored):
    files = _init_files(built["reference"])
    config = yaml.safe_load(files["/etc/k8sseed/addons/calicoctl.cfg"])
    assert config == {"apiVersion": "projectcalico.org/v3", "kind": "CalicoAPIConfig", "metadata": {},
                      "spec": {"datastoreType": "kubernetes", "kubeconfig": "/etc/kubernetes/admin.conf"}}
    env = _env(files)
    assert env["K8SSEED_CALICOCTL_URL"] == ("https://github.com/projectcalico/calico/releases/download/v3.25.2/"
                                            "calicoctl-linux-amd64")
    assert env["K8SSEED_CALICOCTL_SHA256"] == "''"
    env = _env(_init_files(mirrored))
    assert env["K8SSEED_CALICOCTL_URL"] == "https://files.lab.example.com/calico/v3.25.2/calicoctl-linux-amd64"
    assert env["K8SSEED_CALICOCTL_SHA256"] == "ab" * 32


def _bash_functions(files: dict[str, str], *names: str) -> str:
    script = files["/usr/local/sbin/k8sseed-bootstrap"]
    return "\n".join(re.search(rf"^{name}\(\) {{\n.*?^}}\n", script, re.M | re.S).group(0) for name in names)


@pytest.mark.parametrize(("installed", "ok", "message"), [
    ("v3.25.2", True, "calicoctl v3.25.2 already present at"),
    ("v3.26.0", False, "reporting 'v3.26.0' but the profile pins Calico 3.25.2: remove it or set calico.version"),
])
def test_an_installed_calicoctl_is_kept_at_the_pinned_version_and_refused_at_another(built, tmp_path, installed, ok,
                                                                                     message):
    files = _init_files(built["reference"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "calicoctl"
    # calicoctl version prints the client lines, then fails while no ClusterInformation exists yet.
    fake.write_text(f"#!/bin/bash\necho 'Client Version:    {installed}'\necho 'Git commit:        abc'\n"
                    "echo 'Unable to retrieve Cluster Version or Type: not found' >&2\nexit 1\n")
    fake.chmod(0o755)
    harness = tmp_path / "harness.sh"
    harness.write_text(
        "set -euo pipefail\nshopt -s inherit_errexit\n"
        f"CONF_DIR={tmp_path}\nLOG_FILE={tmp_path}/log\nK8SSEED_CALICO_VERSION=3.25.2\n"
        "K8SSEED_CALICOCTL_URL=http://127.0.0.1:9/never-fetched\nK8SSEED_CALICOCTL_SHA256=\n"
        'log() { printf "%s\\n" "$*" >>"$LOG_FILE"; }\ndie() { log "ERROR: $*"; exit 1; }\n'
        'fetch() { log "FETCH $*"; exit 3; }\n'
        + _bash_functions(files, "calicoctl_version", "install_calicoctl") + "\ninstall_calicoctl\n")
    done = subprocess.run(["bash", str(harness)], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    log = (tmp_path / "log").read_text()
    assert (done.returncode == 0) is ok, (done.stderr, log)
    assert message in log and "FETCH" not in log


def test_docker_hub_pulls_go_through_the_profiles_registry_mirrors(built, mirrored):
    for seed in node_dirs(mirrored):
        daemon = json.loads(_files(seed)["/etc/docker/daemon.json"])
        assert daemon["registry-mirrors"] == ["https://hub-mirror.lab.example.com", "http://10.0.0.5:5000/"]
        assert daemon["exec-opts"] == ["native.cgroupdriver=systemd"]
    for seed in node_dirs(built["reference"]):
        assert "registry-mirrors" not in json.loads(_files(seed)["/etc/docker/daemon.json"])


SAMPLE_MANIFEST = """\
# a fetched operator manifest, abridged
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: installations.operator.tigera.io}
spec:
  versions:
  - name: v1
    schema:
      openAPIV3Schema:
        properties:
          image: {type: string}
          containers: {type: array, items: {type: object}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: tigera-operator, namespace: tigera-operator}
spec:
  template:
    spec:
      initContainers:
      - name: init
        image: busybox:1.36
      containers:
      - name: tigera-operator
        image: quay.io/tigera/operator:v1.29.0
        env:
        - {name: KEEP, value: "quay.io/tigera/operator:v1.29.0"}
      - name: agent
        image: ghcr.io/purelb/purelb/lbnodeagent@sha256:0123
      - name: other
        image: registry.k8s.io/pause:3.9
      - name: hub
        image: calico/node:v3.25.2
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: p}
  spec:
    containers:
    - {name: c, image: "docker.io/library/nginx:1.25"}
"""


def _run_rewrite(files: dict[str, str], tmp_path: Path, manifest: str) -> tuple[subprocess.CompletedProcess, Path]:
    tool = tmp_path / "k8sseed-rewrite-images"
    tool.write_text(files[REWRITE_IMAGES])
    mapping = tmp_path / "image-registries.json"
    mapping.write_text(files["/etc/k8sseed/addons/image-registries.json"])
    target = tmp_path / "manifest.yaml"
    target.write_text(manifest)
    # The node runs it with its own python3 (shebang); PyYAML comes with cloud-init.
    python = shutil.which("python3") or sys.executable
    done = subprocess.run([python, str(tool), str(mapping), str(target)], capture_output=True, text=True)
    return done, target


def test_image_rewrite_step_points_manifest_images_at_the_registry_mirrors(mirrored, tmp_path):
    files = _init_files(mirrored)
    assert files[REWRITE_IMAGES].startswith("#!/usr/bin/python3\n")
    done, target = _run_rewrite(files, tmp_path, SAMPLE_MANIFEST)
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(target.read_text()))
    assert len(docs) == 3
    assert docs[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["image"] == {"type": "string"}
    pod = docs[1]["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["initContainers"]] == ["harbor.lab.example.com/hub/library/busybox:1.36"]
    assert [c["image"] for c in pod["containers"]] == [
        "harbor.lab.example.com/quay.io/tigera/operator:v1.29.0",
        "harbor.lab.example.com:5000/ghcr/purelb/purelb/lbnodeagent@sha256:0123",
        "registry.k8s.io/pause:3.9",  # not a mirrored registry: left alone
        "harbor.lab.example.com/hub/calico/node:v3.25.2",
    ]
    assert pod["containers"][0]["env"] == [{"name": "KEEP", "value": "quay.io/tigera/operator:v1.29.0"}]
    assert docs[2]["items"][0]["spec"]["containers"][0]["image"] == "harbor.lab.example.com/hub/library/nginx:1.25"
    assert "image quay.io/tigera/operator:v1.29.0 -> harbor.lab.example.com/quay.io/tigera/operator:v1.29.0" \
        in done.stdout
    # Nothing to rewrite: the manifest stays byte for byte as fetched.
    untouched = "apiVersion: v1\nkind: List\nitems: []  # as fetched\n"
    done, target = _run_rewrite(files, tmp_path, untouched)
    assert done.returncode == 0 and target.read_text() == untouched


def test_image_rewrite_runs_on_the_fetched_operator_and_purelb_manifests_only_with_a_mapping(built, mirrored):
    files = _init_files(mirrored)
    body = _phase_addons(files)
    assert 'mirror_images "$dir/tigera-operator.yaml"' in body and 'mirror_images "$dir/purelb.yaml"' in body
    assert body.index('mirror_images "$dir/tigera-operator.yaml"') \
        < body.index('-f "$dir/tigera-operator.yaml"')
    assert json.loads(files["/etc/k8sseed/addons/image-registries.json"]) == {
        "docker.io": "harbor.lab.example.com/hub", "ghcr.io": "harbor.lab.example.com:5000/ghcr",
        "quay.io": "harbor.lab.example.com/quay.io"}
    plain = _init_files(built["reference"])
    assert REWRITE_IMAGES not in plain and "/etc/k8sseed/addons/image-registries.json" not in plain


def test_an_unverified_calicoctl_download_is_warned_about_only_where_calicoctl_is_needed(tmp_path):
    profile = yaml.safe_load((PROFILES / "reference.yaml").read_text())
    profile["acknowledge"] = [w for w in profile["acknowledge"] if w != "calicoctl-unverified"]
    (tmp_path / "bgp.yaml").write_text(yaml.safe_dump(profile))
    warned = run_cli("validate", str(tmp_path / "bgp.yaml"))
    assert warned.returncode == 0
    assert "warning[calicoctl-unverified]: calico.calicoctlSha256 is not set" in warned.stderr
    profile["calico"]["calicoctlSha256"] = "0" * 64
    (tmp_path / "pinned.yaml").write_text(yaml.safe_dump(profile))
    assert "calicoctlSha256" not in run_cli("validate", str(tmp_path / "pinned.yaml")).stderr
    no_bgp = run_cli("validate", str(PROFILES / "single-node.yaml"))
    assert no_bgp.returncode == 0 and "calicoctlSha256" not in no_bgp.stderr


FAKE_TOOL = """#!/bin/bash
# Stand-in: logs "<tool> <argv>" and the -f file's apiVersion/kind lines; answers what the bootstrap reads.
tool=$(basename "$0")
printf '%s %s\\n' "$tool" "$*" >>"$CALLS"
prev=""
for a in "$@"; do
  if [[ $prev == -f && -f $a ]]; then
    grep -E '^(apiVersion|kind):|listenPort:|image:' "$a" | sed -E 's/^ *(- )?/  /' >>"$CALLS"
  fi
  prev=$a
done
case "$tool $1" in
  "calicoctl version") echo "Client Version:    v3.25.2"; exit 1 ;;
  "curl "*) out=""; prev=""
    for a in "$@"; do [[ $prev == --output ]] && out=$a; prev=$a; done
    printf 'apiVersion: apps/v1\\nkind: Deployment\\nspec:\\n  template:\\n    spec:\\n      containers:\\n'\\
'      - {name: x, image: "quay.io/tigera/operator:v1.29.0"}\\n' >"$out" ;;
esac
exit 0
"""


def test_phase_addons_on_a_host_with_stand_ins_writes_v3_bgp_resources_before_the_installation(mirrored, tmp_path):
    files = _init_files(mirrored)
    conf, bin_dir, state = tmp_path / "conf", tmp_path / "bin", tmp_path / "state"
    for path, content in files.items():
        if path.startswith("/etc/k8sseed/addons/"):
            (conf / "addons").mkdir(parents=True, exist_ok=True)
            (conf / "addons" / Path(path).name).write_text(content)
    bin_dir.mkdir()
    for tool in ("kubectl", "calicoctl", "curl"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    rewrite = tmp_path / "k8sseed-rewrite-images"
    rewrite.write_text(files[REWRITE_IMAGES])
    rewrite.chmod(0o755)
    script = files["/usr/local/sbin/k8sseed-bootstrap"]
    body = script[script.index("log() {"):script.index("\nphase() {")].replace(REWRITE_IMAGES, str(rewrite))
    env_lines = "\n".join(f"{k}={v}" for k, v in _env(files).items())
    harness = tmp_path / "harness.sh"
    harness.write_text(f"set -euo pipefail\nshopt -s inherit_errexit\nCONF_DIR={conf}\nSTATE_DIR={state}\n"
                       f"LOG_FILE={tmp_path}/log\nPHASE=addons\n{env_lines}\n{body}\nphase_addons\n")
    done = subprocess.run(["bash", str(harness)], capture_output=True, text=True, timeout=120,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls")})
    assert done.returncode == 0, (done.stderr[-3000:], (tmp_path / "log").read_text()[-3000:])
    calls = (tmp_path / "calls").read_text()
    applies = [line for line in calls.splitlines() if " apply " in line]
    assert [line.rsplit("/", 1)[1] for line in applies] == [
        "tigera-operator.yaml", "calico-bgp.yaml", "calico-installation.yaml", "calico-ippools.yaml",
        "purelb-crds.yaml", "purelb.yaml", "purelb.yaml", "ready.yaml"]
    assert applies[1].startswith(f"calicoctl apply --config {conf}/addons/calicoctl.cfg -f ")
    assert applies[3].startswith("calicoctl apply ")
    bgp_block = calls.split(applies[1], 1)[1].split("\n", 1)[1]
    assert bgp_block.startswith("  apiVersion: projectcalico.org/v3\n  kind: BGPConfiguration\n  listenPort: 1790\n")
    operator_block = calls.split(applies[0], 1)[1]
    assert operator_block.split("\n")[1:4] == ["  apiVersion: apps/v1", "  kind: Deployment",
                                               "  image: harbor.lab.example.com/quay.io/tigera/operator:v1.29.0"]
    log = (tmp_path / "log").read_text()
    assert "calicoctl v3.25.2 already present" in log and "Calico resources are stored as crd.projectcalico.org" in log
