"""Growing and shrinking a cluster by rebuilding: exactly which files change, `k8sseed diff`, the removal runbook."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, make_secret, run_cli

NOW = "1900000000"  # 2030, one time for every build here: the join token's window stays the same
SEED = ("user-data", "meta-data", "network-config")


def _grow(profile: Path, target: Path, workers: int = 0, control_planes: int = 0, drop: tuple[str, ...] = ()) -> Path:
    data = yaml.safe_load(profile.read_text())
    first = data["nodes"][0]
    prefix, length = first["ip"].rsplit(".", 1)[0], first["ip"].split("/")[1]
    mac = first["mac"].rsplit(":", 1)[0]
    data["nodes"] = [n for n in data["nodes"] if n["name"] not in drop]
    extra = {**({"interfaceName": first["interfaceName"]} if "interfaceName" in first else {})}
    data["nodes"] += [{"name": f"worker-new-{i}", "role": "worker", "ip": f"{prefix}.{40 + i}/{length}",
                       "mac": f"{mac}:{40 + i}", **extra} for i in range(1, workers + 1)]
    data["nodes"] += [{"name": f"cp-new-{i}", "role": "control-plane", "ip": f"{prefix}.{50 + i}/{length}",
                       "mac": f"{mac}:{50 + i}", **extra} for i in range(1, control_planes + 1)]
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def _build(profile: Path, out: Path, secret: Path) -> str:
    result = run_cli("build", str(profile), "-o", str(out), "--secret", str(secret), "--now", NOW,
                     env={**os.environ, "SOURCE_DATE_EPOCH": "1780000000"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "example profiles build without a word on stderr"
    return result.stdout


def _diff(old: Path, new: Path) -> dict:
    result = run_cli("diff", str(old), str(new), "--json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def _changed_parts(diff: dict) -> dict[str, tuple[str, ...]]:
    """Changed file -> the write_files entries that differ (for user-data), for files of nodes that existed."""
    return {f["path"]: tuple(f.get("parts", ())) for f in diff["files"] if f["change"] == "changed"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path, Path]:
    work = tmp_path_factory.mktemp("reference")
    secret = make_secret(work)
    out = work / "before"
    _build(PROFILES / "reference.yaml", out, secret)
    return work, secret, out


def test_adding_a_worker_changes_no_existing_seed_only_the_router_configs(reference):
    work, secret, before = reference
    after = work / "worker"
    _build(_grow(PROFILES / "reference.yaml", work / "worker.yaml", workers=1), after, secret)
    diff = _diff(before, after)
    assert diff["nodes"]["added"] == ["worker-new-1"] and diff["nodes"]["changed"] == []
    # The routers must know the new BGP neighbour; the manifest lists it. Nothing else moves.
    assert set(_changed_parts(diff)) == {"manifest.json", "router/README.md", "router/tor-a.bird.conf",
                                         "router/tor-a.frr.conf"}


def test_adding_control_planes_changes_exactly_the_control_plane_lists(reference):
    """Stacked etcd needs an odd count, so control planes come in twos (3 -> 5), with a worker beside them."""
    work, secret, before = reference
    after = work / "grown"
    _build(_grow(PROFILES / "reference.yaml", work / "grown.yaml", workers=1, control_planes=2), after, secret)
    diff = _diff(before, after)
    assert diff["nodes"]["added"] == ["cp-new-1", "cp-new-2", "worker-new-1"]
    assert diff["nodes"]["unchanged"] == ["worker-1", "worker-2", "worker-3"]
    user_data = "/etc/k8sseed/node.env"
    assert _changed_parts(diff) == {
        # The init node's split-brain probe list and certSANs (used at the first init only), every control plane's
        # list of etcd peers to ask for a member removal: a re-imaged control plane needs the new members.
        "cp-1.iso": (), "cp-1/meta-data": (), "cp-1/user-data": ("/etc/k8sseed/kubeadm-init.yaml", user_data),
        "cp-2.iso": (), "cp-2/meta-data": (), "cp-2/user-data": (user_data,),
        "cp-3.iso": (), "cp-3/meta-data": (), "cp-3/user-data": (user_data,),
        "manifest.json": (), "router/README.md": (), "router/tor-a.bird.conf": (), "router/tor-a.frr.conf": (),
    }


def test_adding_a_control_plane_to_node_local_changes_every_haproxy_cfg(tmp_path):
    """node-local: every node balances over all control planes, so its haproxy.cfg lists them (README)."""
    secret = make_secret(tmp_path)
    before, after = tmp_path / "before", tmp_path / "after"
    _build(PROFILES / "node-local.yaml", before, secret)
    _build(_grow(PROFILES / "node-local.yaml", tmp_path / "p.yaml", control_planes=2), after, secret)
    parts = _changed_parts(_diff(before, after))
    for worker in ("worker-1", "worker-2"):
        assert parts[f"{worker}/user-data"] == ("/etc/haproxy/haproxy.cfg",)
    assert parts["cp-2/user-data"] == ("/etc/haproxy/haproxy.cfg", "/etc/k8sseed/node.env")


def test_new_seeds_join_the_running_cluster(reference):
    work, secret, before = reference
    after = work / "grown"  # built by the test above when run in order; build it here otherwise
    if not after.is_dir():
        _build(_grow(PROFILES / "reference.yaml", work / "grown.yaml", workers=1, control_planes=2), after, secret)
    old_init = yaml.safe_load((before / "cp-1/user-data").read_text())
    new_cp = yaml.safe_load((after / "cp-new-1/user-data").read_text())

    def kubeadm(doc: dict, path: str) -> dict:
        text = next(f["content"] for f in doc["write_files"] if f["path"] == path)
        return {d["kind"]: d for d in yaml.safe_load_all(text)}

    token = kubeadm(old_init, "/etc/k8sseed/kubeadm-init.yaml")["InitConfiguration"]["bootstrapTokens"][0]["token"]
    join = kubeadm(new_cp, "/etc/k8sseed/kubeadm-join.yaml")["JoinConfiguration"]
    assert join["discovery"]["bootstrapToken"]["token"] == token
    assert "controlPlane" in join
    manifests = [json.loads((o / "manifest.json").read_text()) for o in (before, after)]
    assert manifests[0]["caCertHash"] == manifests[1]["caCertHash"]
    assert join["discovery"]["bootstrapToken"]["caCertHashes"] == [manifests[0]["caCertHash"]]


def test_diff_of_identical_builds_exits_0_and_of_different_ones_1(reference):
    work, secret, before = reference
    again = work / "again"
    _build(PROFILES / "reference.yaml", again, secret)
    same = run_cli("diff", str(before), str(again))
    assert same.returncode == 0 and "nodes unchanged: 6" in same.stdout
    other = _grow(PROFILES / "reference.yaml", work / "less.yaml", drop=("worker-3",))
    _build(other, work / "less", secret)
    different = run_cli("diff", str(before), str(work / "less"))
    assert different.returncode == 1
    assert "nodes removed: worker-3" in different.stdout and "- worker-3.iso" in different.stdout


def test_diff_never_prints_file_contents(reference):
    work, secret, before = reference
    after = work / "secret-check"
    _build(_grow(PROFILES / "reference.yaml", work / "sc.yaml", control_planes=2), after, secret)
    result = run_cli("diff", str(before), str(after))
    assert result.returncode == 1
    texts = [p.read_text(errors="replace") for o in (before, after) for p in o.rglob("*") if p.is_file()
             and not p.name.endswith(".iso") and p.name != "manifest.json"]
    words = {w for t in texts for w in t.split() if len(w) >= 16 and not w.startswith("/")}  # paths are shown
    leaked = [w for w in words if w in result.stdout]
    assert leaked == [], "no token, key or any other long word of a seed appears in the diff"


def test_diff_refuses_a_directory_without_a_build(tmp_path, reference):
    _, _, before = reference
    result = run_cli("diff", str(before), str(tmp_path))
    assert result.returncode == 2 and "holds no k8sseed build" in result.stderr


def test_removing_nodes_prints_the_runbook_from_the_build_and_the_runbook_command(reference):
    work, secret, before = reference
    shrunk = _grow(PROFILES / "reference.yaml", work / "shrunk.yaml", control_planes=0, drop=("worker-2",))
    data = yaml.safe_load(shrunk.read_text())
    data["nodes"] = [n for n in data["nodes"] if n["name"] != "cp-3"]
    data["nodes"].insert(2, {"name": "cp-4", "role": "control-plane", "ip": "10.20.0.14/24",
                             "mac": "52:54:00:20:00:14"})
    shrunk.write_text(yaml.safe_dump(data, sort_keys=False))
    command = run_cli("runbook", str(shrunk), str(before), "--secret", str(secret))
    assert command.returncode == 0, command.stderr
    text = command.stdout
    assert text.index("# worker-2 (worker, 10.20.0.22)") < text.index("# cp-3 (control-plane, 10.20.0.13)")
    for line in ("kubectl drain worker-2 --ignore-daemonsets --delete-emptydir-data", "kubectl delete node worker-2",
                 "kubectl drain cp-3 --ignore-daemonsets --delete-emptydir-data", "kubectl delete node cp-3",
                 # cp-4 is new: not an etcd member yet, so it is not asked to remove cp-3's member.
                 "sudo /usr/local/sbin/k8sseed-etcd remove-member cp-3 10.20.0.13 cp-1 10.20.0.11 cp-2 10.20.0.12\n",
                 "apply the new router/*.conf"):
        assert line in text
    assert text.index("remove-member cp-3") < text.index("kubectl delete node cp-3")
    # Last test of the module: the build replaces the fixture's OUT.
    result = run_cli("build", str(shrunk), "-o", str(before), "--secret", str(secret), "--now", NOW)
    assert result.returncode == 0, result.stderr
    assert "not in this build" in result.stdout and text in result.stdout
    again = run_cli("runbook", str(shrunk), str(before), "--secret", str(secret))
    assert again.stdout.startswith(f"{shrunk} and {before} have the same nodes")


def test_adding_control_planes_with_keepalived_prints_the_vrrp_peer_update_first(tmp_path):
    """Unicast VRRP: running control planes must list the new ones as peers before those boot, or a new one that
    hears no adverts holds the VIP as well. The runbook's render command gives exactly the new file."""
    profile = PROFILES / "keepalived-haproxy.yaml"
    grown = _grow(profile, tmp_path / "grown.yaml", control_planes=2)
    secret = make_secret(tmp_path, "grown.secret")  # beside the profile: the runbook's render command finds it
    out = tmp_path / "out"
    _build(profile, out, secret)
    stdout = _build(grown, out, secret)
    runbook = stdout[stdout.index("Runbook: before the new nodes boot:"):]
    assert "apply this build's router/*.conf" in runbook
    for cp in ("cp-1", "cp-2", "cp-3"):
        assert f"give {cp} this build's /etc/keepalived/keepalived.conf and reload keepalived" in runbook
        assert f"sudo cp {cp}.keepalived.conf /etc/keepalived/keepalived.conf && sudo systemctl reload keepalived" \
            in runbook
    command = next(line for line in runbook.splitlines() if "cp-2 --write-file /etc/keepalived" in line)
    words = command.strip().removeprefix("(umask 077 && ").split(" > ")[0].split()
    assert words[:2] == ["k8sseed", "render"]
    rendered = run_cli(*words[1:])
    assert rendered.returncode == 0, rendered.stderr
    seed = yaml.safe_load((out / "cp-2/user-data").read_text())
    assert rendered.stdout == next(f["content"] for f in seed["write_files"]
                                   if f["path"] == "/etc/keepalived/keepalived.conf")
    peers = rendered.stdout[rendered.stdout.index("unicast_peer {"):].split("}")[0]
    assert all(ip in peers for ip in ("10.20.0.51", "10.20.0.52")), peers


def test_adding_a_worker_asks_only_for_the_router_configs(reference):
    work, secret, _ = reference
    out = work / "runbook-worker"
    _build(PROFILES / "reference.yaml", out, secret)
    stdout = _build(_grow(PROFILES / "reference.yaml", work / "w.yaml", workers=1), out, secret)
    runbook = stdout[stdout.index("Runbook:"):]
    assert runbook.splitlines()[1:] == ["1. [the routers] apply this build's router/*.conf to the routers, so that "
                                        "the new nodes' BGP sessions come up"]


def test_render_write_file_names_the_files_a_seed_has(tmp_path):
    secret = make_secret(tmp_path)
    result = run_cli("render", str(PROFILES / "reference.yaml"), "worker-1", "--secret", str(secret),
                     "--write-file", "/etc/keepalived/keepalived.conf")
    assert result.returncode == 1 and "worker-1's seed writes no /etc/keepalived/keepalived.conf" in result.stderr


def _external_etcd(work: Path, secret: Path, name: str, edit) -> Path:
    data = yaml.safe_load((PROFILES / "external-etcd.yaml").read_text())
    edit(data)
    profile = work / f"{name}.yaml"
    profile.write_text(yaml.safe_dump(data, sort_keys=False))
    return profile


def test_adding_etcd_members_changes_exactly_the_member_lists(tmp_path):
    secret = make_secret(tmp_path)
    before, after = tmp_path / "before", tmp_path / "after"
    _build(PROFILES / "external-etcd.yaml", before, secret)

    def grow(data):
        data["nodes"] += [{"name": f"etcd-{i}", "role": "etcd", "ip": f"10.50.0.3{i}/24",
                           "mac": f"52:54:00:50:00:3{i}"} for i in (4, 5)]
    _build(_external_etcd(tmp_path, secret, "grown", grow), after, secret)
    diff = _diff(before, after)
    assert sorted(diff["nodes"]["added"]) == ["etcd-4", "etcd-5"]
    etcd_files = ("/etc/k8sseed/etcd/etcd-new.yaml", "/etc/k8sseed/etcd/etcd-existing.yaml",
                  "/etc/systemd/system/k8sseed-etcd.service")
    expected = {"manifest.json": ()}
    for node, parts in (("cp-1", ("/etc/k8sseed/kubeadm-init.yaml", "/etc/k8sseed/node.env")),
                        ("cp-2", ("/etc/k8sseed/node.env",)), ("cp-3", ("/etc/k8sseed/node.env",)),
                        ("etcd-1", etcd_files), ("etcd-2", etcd_files), ("etcd-3", etcd_files)):
        expected |= {f"{node}/user-data": parts, f"{node}/meta-data": (), f"{node}.iso": ()}
    assert _changed_parts(diff) == expected  # the workers' seeds stay byte for byte


def test_removing_an_etcd_node_runs_its_member_removal_through_the_remaining_members(tmp_path):
    secret = make_secret(tmp_path)
    before = tmp_path / "before"
    _build(PROFILES / "external-etcd.yaml", before, secret)

    def shrink(data):
        data["nodes"] = [n for n in data["nodes"] if n["name"] not in ("etcd-3", "cp-3")]
        # 2 etcd nodes are refused (no quorum gain over 1): the profile keeps 3 by adding one elsewhere.
        data["nodes"].append({"name": "etcd-4", "role": "etcd", "ip": "10.50.0.34/24", "mac": "52:54:00:50:00:34"})
    text = run_cli("runbook", str(_external_etcd(tmp_path, secret, "shrunk", shrink)), str(before),
                   "--secret", str(secret))
    assert text.returncode == 0, text.stderr
    out = text.stdout
    # etcd-4 is new (no member yet): only the running etcd nodes are asked.
    assert "sudo /usr/local/sbin/k8sseed-etcd-member remove etcd-3 10.50.0.31 10.50.0.32\n" in out
    assert "sudo /usr/local/sbin/k8sseed-etcd-member members 10.50.0.31\n" in out
    assert "--etcd-servers" in out and "kubectl delete node etcd-3" not in out
    # The control plane of an external-etcd cluster holds no member: no stacked removal for it.
    assert "kubectl delete node cp-3" in out and "remove-member cp-3" not in out
