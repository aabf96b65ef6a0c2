"""The k8sseed command line: init, validate, images, build, render, inspect, serve, status, rearm, pxe-config,
attach."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from k8sseed import __version__
from k8sseed.errors import OutputError, ProfileError, ProfileWarning, SecretError, UsageError
from k8sseed.plural import plural
from k8sseed.profile.model import Role

if TYPE_CHECKING:
    from k8sseed.profile.load import LoadedProfile

EXIT_PROFILE = 2
EXIT_OTHER = 1
# The images that read a NoCloud seed out of the box, per os.family.
OS_IMAGES = {"debian": "a Debian 12 cloud image (genericcloud or generic)",
             "ubuntu": "an Ubuntu 22.04 or 24.04 server cloud image"}

NODES_HELP = """Nodes, as counts or one entry per node (comma-separated).
Counts: CONTROL_PLANES[+WORKERS], e.g. 3+2: cp-1..cp-3 and worker-1..worker-2 with
placeholder addresses and MACs in the endpoint's /24 (edit them before you build).
Entries: [cp:|worker:]NAME=IP/PREFIX@MAC, e.g. cp-1=10.0.0.11/24@52:54:00:12:34:56;
without 'cp:' or 'worker:', a name starting with 'cp' or 'control' is a control-plane
node, any other a worker. Entries need --endpoint. Default: 3+1."""


def _warn(message: str | ProfileWarning) -> None:
    text = message.render() if isinstance(message, ProfileWarning) else f"warning: {message}"
    click.echo(text, err=True)


def _fail(message: str, code: int = EXIT_OTHER) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _secret_source(profile: Path, secret: Path | None, secret_cmd: str | None) -> Any:
    """--secret-cmd / --secret, else $K8SSEED_SECRET, else PROFILE's .secret file (k8sseed.secret_source)."""
    import os

    from k8sseed.build import default_secret_path
    from k8sseed.secret_source import choose_secret_source

    try:
        return choose_secret_source(default_secret_path(profile), secret, secret_cmd, os.environ)
    except ValueError as exc:
        _fail(str(exc), EXIT_PROFILE)


SECRET_CMD_HELP = ("Command whose output is the cluster secret, run with /bin/sh (e.g. 'sops -d cluster.secret.enc'). "
                   "Precedence: --secret-cmd or --secret, then $K8SSEED_SECRET (the secret itself), then the file.")


def _now(text: str | None) -> int | None:
    """--now: seconds since the epoch, or an ISO 8601 date or date-time (UTC unless it names its zone)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--now {text!r}: expected seconds since the epoch or an ISO 8601 time such as 2027-03-01T12:00:00Z",
              EXIT_PROFILE)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="k8sseed")
def cli() -> None:
    """Turn one cluster profile into self-bootstrapping cloud-init seeds for a kubeadm cluster."""


def _interactive() -> bool:
    return sys.stdin.isatty()


def _ask_for_ssh_key() -> tuple[str, ...]:
    """init without --ssh-key at a terminal: ask once, offering the user's own public key when there is one."""
    home = Path.home() / ".ssh"
    offered = next((str(home / n) for n in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub") if (home / n).is_file()),
                   "")
    answer = click.prompt("SSH public key for the 'ops' user on the nodes (a .pub file or the key text; "
                          "'-' for none: nobody can log in)", default=offered or "-", show_default=True)
    return () if answer.strip() in ("", "-") else (answer.strip(),)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="Cluster name (default: the directory's name).")
@click.option("--endpoint", metavar="HOST[:PORT]",
              help="Control-plane endpoint: a VIP or load balancer address no node owns (default 10.20.0.10:6443).")
@click.option("--kubernetes-version", "version", metavar="1.MINOR.PATCH",
              help="Kubernetes release (default: the newest release k8sseed knows of).")
@click.option("--ssh-key", "ssh_keys", multiple=True, metavar="FILE|KEY",
              help="Public key (a file such as ~/.ssh/id_ed25519.pub, or the key text) for the 'ops' user; "
                   "repeatable. Without it, init asks at a terminal.")
@click.option("--nodes", metavar="SPEC", help=NODES_HELP)
def init(directory: Path, name: str | None, endpoint: str | None, version: str | None, ssh_keys: tuple[str, ...],
         nodes: str | None) -> None:
    """Write a starter profile and a new cluster secret (mode 0600) into DIRECTORY.

    \b
    Examples:
      k8sseed init lab --ssh-key ~/.ssh/id_ed25519.pub
      k8sseed init lab --nodes 3+2 --endpoint 192.168.1.10:6443
      k8sseed init lab --endpoint 10.0.0.10 --nodes cp-1=10.0.0.11/24@52:54:00:00:00:11
    """
    from k8sseed.profile import load_profile_text
    from k8sseed.secrets import write_new_secret
    from k8sseed.starter import StarterError, make_starter
    from k8sseed.templating import render

    cluster = name or re.sub(r"[^a-z0-9-]+", "-", directory.absolute().name.lower()).strip("-") or "cluster"
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", cluster):
        _fail(f"'{cluster}' is not a valid cluster name: use lower-case letters, digits and '-'")
    if not ssh_keys and _interactive():
        ssh_keys = _ask_for_ssh_key()
    try:
        starter = make_starter(endpoint, nodes, version, ssh_keys)
    except StarterError as exc:
        _fail(str(exc), EXIT_PROFILE)
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    text = render("starter-profile.yaml.j2", name=cluster, today=today, version=starter.version,
                  endpoint=starter.endpoint, gateway=starter.gateway, nodes=starter.nodes,
                  proxy_mode=starter.proxy_mode, ssh_keys=starter.ssh_keys, placeholders=starter.placeholders,
                  pod_subnet=starter.pod_subnet, service_subnet=starter.service_subnet)
    try:
        loaded = load_profile_text(text)
    except ProfileError as exc:  # e.g. two nodes in different subnets, an even control-plane count
        problems = "; ".join(f"{f.path}: {f.message}" for f in exc.findings)
        _fail(f"these options make an invalid profile (nothing written): {problems}", EXIT_PROFILE)
    profile = directory / "profile.yaml"
    secret = directory / "profile.secret"
    for path in (profile, secret):
        if path.exists():
            _fail(f"{path} already exists: k8sseed init never overwrites a profile or a secret "
                  f"(a new secret would mean a new CA). To build that cluster: k8sseed build {profile} -o OUT; "
                  "for a new cluster, run k8sseed init with a new directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_new_secret(secret)
        profile.write_text(text, "utf-8")
    except SecretError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the starter profile into {directory}: {exc.strerror or exc}")
    for warning in loaded.warnings:
        _warn(warning)
    if not starter.ssh_keys:  # acknowledged in the profile: said here once, not by every later command
        _warn(ProfileWarning("no-login-user", "no SSH key (--ssh-key), so nobody can log in to the nodes to debug a "
                                              f"failed bootstrap: add one under os.users[0].sshAuthorizedKeys in "
                                              f"{profile} (the profile acknowledges this warning until then)"))
    if starter.note:
        click.echo(f"note: {starter.note}")
    click.echo(f"wrote {profile} (Kubernetes {starter.version}, {plural(len(starter.nodes), 'node')}) and {secret} "
               "(keep the secret private: it derives every CA and token)")


def _load_profile_warned(profile: Path) -> LoadedProfile:
    """The loaded profile with its warnings printed, or its findings printed and exit 2."""
    from k8sseed.profile import load_profile

    try:
        loaded = load_profile(profile)
    except ProfileError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_PROFILE)
    for warning in loaded.warnings:
        _warn(warning)
    return loaded


@cli.command()
@click.argument("profile", type=click.Path(dir_okay=False, path_type=Path))
def validate(profile: Path) -> None:
    """Check PROFILE and report every problem with its line and column."""

    p = _load_profile_warned(profile).profile
    click.echo(f"{profile}: valid: cluster {p.cluster.name}, Kubernetes {p.cluster.kubernetes_version}, "
               f"{sum(n.is_control_plane for n in p.nodes)} control-plane and "
               f"{plural(sum(n.role is Role.WORKER for n in p.nodes), 'worker node')}"
               + (f", {plural(sum(n.is_etcd for n in p.nodes), 'etcd node')}" if p.external_etcd else ""))
    if p.os_family == "flatcar":
        click.echo("note: boot the nodes from Flatcar Container Linux 3185.0.0 or newer with OUT/<node>.ign as their "
                   "Ignition config (Ignition runs on the first boot only)")
    else:
        click.echo(f"note: boot the nodes from {OS_IMAGES[p.os_family]} with cloud-init and its NoCloud datasource; "
                   "a system installed with subiquity or debian-installer ignores the seed")
    installed = [n.name for n in p.nodes if n.install]
    if installed:  # k8sseed-autoinstall
        click.echo(f"note: {', '.join(installed)}: installed by the Ubuntu installer that `k8sseed serve` PXE-boots "
                   "(seedServer.autoinstall), which hands the installed system its seed")


@cli.command()
@click.argument("profile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--mirrored", is_flag=True, help="Print only the names the nodes pull (through the mirrors).")
@click.option("--upstream", is_flag=True, help="Print only the upstream names (what to copy into the mirrors).")
def images(profile: Path, mirrored: bool, upstream: bool) -> None:
    """Print every container image PROFILE's nodes pull: upstream name, a tab, the name the nodes pull.

    \b
    Feed a site's registry before an air-gapped install, e.g.:
      k8sseed images profile.yaml | while IFS=$'\\t' read -r from to; do
        skopeo copy "docker://$from" "docker://$to"; done
    """
    from k8sseed.images import node_images

    if mirrored and upstream:
        raise click.UsageError("--mirrored and --upstream each print one column: give one of them, or neither")
    listed = node_images(_load_profile_warned(profile).profile)
    for warning in listed.warnings:
        _warn(warning)
    for image in listed.images:
        click.echo(image.mirrored if mirrored else image.upstream if upstream else
                   f"{image.upstream}\t{image.mirrored}")
    if listed.unknown:
        _fail(f"the list above is incomplete: it lacks {'; '.join(listed.unknown)}")


@cli.command()
@click.argument("profile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@click.option("--secret", type=click.Path(dir_okay=False, path_type=Path),
              help="Cluster secret file (default: PROFILE with .secret).")
@click.option("--secret-cmd", metavar="COMMAND", help=SECRET_CMD_HELP)
@click.option("--force", is_flag=True,
              help="Replace OUT even if it holds another cluster's seeds or files k8sseed did not write.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Processes building seeds (default: one per CPU for large profiles). The output is the same.")
@click.option("--now", "now", metavar="TIME", default=None,
              help="The build's time for the join token's window: seconds since the epoch or an ISO 8601 date/time "
                   "(default: SOURCE_DATE_EPOCH, else the clock).")
@click.option("--format", "output_format", type=click.Choice(["auto", "cloud-init", "ignition", "all"]),
              default="auto", show_default=True,
              help="cloud-init: NoCloud ISO and seed directory per node; ignition: OUT/<node>.ign (Flatcar); all "
                   "(Flatcar): both, to compare; auto: what the profile's os.family boots with.")
def build(profile: Path, out: Path, secret: Path | None, secret_cmd: str | None, force: bool,
          jobs: int | None, now: str | None, output_format: str) -> None:
    """Build one seed per node into OUT: NoCloud seed ISO and directory, or Ignition config."""
    from k8sseed.build import build as run_build

    try:
        result = run_build(profile, _secret_source(profile, secret, secret_cmd), out, force=force, jobs=jobs,
                           now=_now(now), output_format=output_format)
    except ProfileError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_PROFILE)
    except UsageError as exc:
        _fail(str(exc), EXIT_PROFILE)
    except (SecretError, OutputError) as exc:
        _fail(str(exc))
    for warning in result.warnings:
        _warn(warning)
    where = result.out if result.target == result.out.absolute() else f"{result.out} (a link to {result.target})"
    click.echo(f"built {plural(result.nodes, 'seed')} into {where} ({result.bytes_written} bytes)")
    if result.created_parents:
        click.echo(f"note: created {', '.join(str(p) for p in result.created_parents)}, which did not exist, "
                   f"to hold {result.out}")
    header = ("NODE", "ROLE", "IP", "MAC", "ORDER", "SINCE LAST BUILD")
    table = [header] + [(r.name, r.role, r.ip, r.mac or "-", str(r.bootstrap_order), r.change) for r in result.rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if result.removed:
        click.echo(f"  not in this build (their seeds are gone from {result.out}): {', '.join(result.removed)}")
    click.echo(result.runbook, nl=False)


@cli.command()
@click.argument("profile", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("node")
@click.option("--secret", type=click.Path(dir_okay=False, path_type=Path),
              help="Cluster secret file (default: PROFILE with .secret).")
@click.option("--secret-cmd", metavar="COMMAND", help=SECRET_CMD_HELP)
@click.option("--file", "which", type=click.Choice(["user-data", "meta-data", "network-config", "ignition"]),
              default=None, help="[default: ignition for Flatcar, else user-data]")
@click.option("--write-file", "write_file", metavar="PATH",
              help="Print the content of the file the seed writes to PATH instead (e.g. /etc/haproxy/haproxy.cfg).")
def render(profile: Path, node: str, secret: Path | None, secret_cmd: str | None, which: str | None,
           write_file: str | None) -> None:
    """Print one file of NODE's seed (or its Ignition config, or a file the seed writes) on stdout."""
    from k8sseed.build import load_plan
    from k8sseed.components.sysext import ignition_only
    from k8sseed.seed import build_ignition, build_seed

    try:
        plan, _, _ = load_plan(profile, _secret_source(profile, secret, secret_cmd))
    except ProfileError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_PROFILE)
    except (SecretError, OutputError) as exc:
        _fail(str(exc))
    match = [n for n in plan.nodes if n.name == node]
    if not match:
        _fail(f"no node named '{node}' in {profile}; nodes: {', '.join(n.name for n in plan.nodes)}")
    if write_file is not None:  # a running node's config replaced from a rebuilt seed (k8sseed runbook)
        from k8sseed.seed import node_config

        entries = {f.path: f.content for f in node_config(plan, match[0]).files}
        if write_file not in entries:
            _fail(f"{node}'s seed writes no {write_file}; it writes: {', '.join(sorted(entries))}")
        click.echo(entries[write_file], nl=False)
        return
    if which is None:
        which = "ignition" if plan.flatcar else "user-data"
    if which != "ignition" and ignition_only(plan):  # sysext: Ignition only
        _fail(f"--file {which}: the NoCloud rendering cannot fetch and check the os.flatcar.sysext images; use "
              "--file ignition")
    data = build_ignition(plan, match[0]) if which == "ignition" else dict(build_seed(plan, match[0]).files())[which]
    click.echo(data.decode("utf-8"), nl=False)


def _yaml_mapping(data: bytes | None) -> dict[str, Any]:
    """A seed file as a mapping; {} when it is missing, not YAML or not a mapping."""
    import yaml

    if data is None:
        return {}
    try:
        loaded = yaml.safe_load(data)
    except (yaml.YAMLError, UnicodeDecodeError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _shell_values(text: str) -> dict[str, str]:
    """NAME=value lines of node.env (shell-quoted scalars; arrays are skipped)."""
    import shlex

    values = {}
    for match in re.finditer(r"^([A-Z0-9_]+)=(.*)$", text, re.M):
        try:
            words = shlex.split(match.group(2))
        except ValueError:
            continue
        if len(words) <= 1 and not match.group(2).startswith("("):
            values[match.group(1)] = words[0] if words else ""
    return values


def _written_files(files: dict[str, bytes]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """user-data's write_files entries, and their contents by path."""
    user = _yaml_mapping(files.get("user-data"))
    write_files = [f for f in user.get("write_files") or [] if isinstance(f, dict) and isinstance(f.get("path"), str)]
    return write_files, {f["path"]: f.get("content") if isinstance(f.get("content"), str) else "" for f in write_files}


def _seed_info(files: dict[str, bytes]) -> dict[str, Any]:
    """_seed_summary plus the certificates, private keys, CA pins and bootstrap token the seed carries."""
    from k8sseed.seed_credentials import seed_credentials

    return {**_seed_summary(files), **seed_credentials(_written_files(files)[1])}


def _echo_credentials(info: dict[str, Any], indent: str = "  ") -> None:
    from k8sseed.seed_credentials import days_left

    click.echo(f"{indent}certificates: {len(info['certificates'])}")
    for cert in info["certificates"]:
        if "error" in cert:
            click.echo(f"{indent}  {cert['location']}: {cert['error']}")
            continue
        kind = "CA" if cert["ca"] else "leaf"
        key = "private key on this seed" if cert["privateKeyPresent"] else "no private key"
        click.echo(f"{indent}  {cert['location']}: {cert['subject']} ({kind}, {key})")
        if cert["sans"]:
            click.echo(f"{indent}    SANs: {', '.join(cert['sans'])}")
        left = days_left(cert["notAfter"])
        when = f"{left} days left" if left >= 0 else f"EXPIRED {-left} days ago"
        click.echo(f"{indent}    valid {cert['notBefore']} to {cert['notAfter']} ({when})")
        click.echo(f"{indent}    SHA-256 {cert['sha256Fingerprint']}")
    lone = [k for k in info["privateKeys"] if not k["certificate"]]
    for key in lone:
        click.echo(f"{indent}private key without a certificate: {key['location']} ({key['type']})")
    for key in info["encryptionKeys"]:
        click.echo(f"{indent}encryption key at rest: {key['provider']} key '{key['name']}' for "
                   f"{', '.join(key['resources'])} ({key['location']})")
    token = info["bootstrapToken"]
    for created in token["created"]:
        click.echo(f"{indent}bootstrap token {created['id']}: {created['lifetime']} "
                   "(created by this node's kubeadm init)")
    if token["joinTokenId"] and not token["created"]:
        click.echo(f"{indent}joins with bootstrap token {token['joinTokenId']} (its lifetime is set in the init node's "
                   "seed)")
    for pin, matches in zip(token["caCertHashes"], token["caCertHashesMatch"], strict=True):
        click.echo(f"{indent}trusts CA {pin}" + (" (the CA on this seed)" if matches else ""))


def _read_seed_dir(directory: Path) -> dict[str, bytes]:
    files = {}
    for name in ("user-data", "meta-data", "network-config"):
        try:
            files[name] = (directory / name).read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            _fail(f"{directory / name}: cannot read: {exc.strerror}")
    return files


def _inspect_out(out: Path, manifest: dict[str, Any], as_json: bool) -> None:
    """Every node of a build: its seed summary and credentials; the token lifetime from the init node's seed."""
    nodes = []
    for entry in manifest["nodes"]:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
            continue
        files = _read_seed_dir(out / name)
        if "user-data" not in files:
            _fail(f"{out / name} holds no user-data: the build in {out} is incomplete; rebuild it")
        nodes.append({"name": name, "role": entry.get("role"), **_seed_info(files)})
    tokens = [t for n in nodes for t in n["bootstrapToken"]["created"]]
    if as_json:
        click.echo(json.dumps({"out": str(out), "clusterName": manifest.get("clusterName"),
                               "caCertHash": manifest.get("caCertHash"), "bootstrapTokens": tokens,
                               "nodes": nodes}, indent=2))
        return
    click.echo(f"{out}: cluster {manifest.get('clusterName')}, {plural(len(nodes), 'seed')}, "
               f"CA {manifest.get('caCertHash')}")
    for token in tokens:
        click.echo(f"  bootstrap token {token['id']}: {token['lifetime']}")
    for node in nodes:
        keys = "holds private keys" if node["holdsPrivateKey"] else "no private keys"
        click.echo(f"{node['name']} ({node['role']}, {keys}):")
        _echo_credentials(node, "  ")


@cli.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(target: Path, as_json: bool) -> None:
    """Show what is on a seed: an ISO, a seed directory, or every seed of a build (OUT).

    Node name, addresses, cluster, duty and files; every certificate (subject, SANs, validity, SHA-256
    fingerprint, CA or leaf, whether its private key is on the seed) and the bootstrap token's lifetime.
    """
    from k8sseed.writers.manifest import read_manifest

    if target.is_dir():
        if (target / "manifest.json").is_file():
            try:
                manifest = read_manifest(target)
            except OutputError as exc:
                _fail(str(exc))
            assert manifest is not None
            _inspect_out(target, manifest, as_json)
            return
        if not (target / "user-data").is_file():
            _fail(f"{target} is neither a seed directory (user-data, meta-data, network-config) nor a k8sseed "
                  "build (manifest.json)")
        files = _read_seed_dir(target)
        _show_seed(str(target), None, files, as_json)
        return
    _inspect_iso(target, as_json)


def _inspect_iso(iso: Path, as_json: bool) -> None:
    from pycdlib.pycdlibexception import PyCdlibException

    from k8sseed.writers.iso import read_iso

    try:
        data = iso.read_bytes()
    except OSError as exc:
        _fail(f"{iso}: cannot read: {exc.strerror}")
    try:
        label, files = read_iso(data)
    except PyCdlibException as exc:
        _fail(f"{iso}: not a readable ISO 9660 image ({exc})")
    except (ValueError, LookupError, AttributeError, TypeError):  # pycdlib on some damaged images
        _fail(f"{iso}: not a readable ISO 9660 image")
    _show_seed(str(iso), label, files, as_json)


def _show_seed(where: str, label: str | None, files: dict[str, bytes], as_json: bool) -> None:
    """One seed, from an ISO (with its volume label) or a seed directory (label None)."""
    head: dict[str, Any] = {"iso": where, "label": label, "labelOk": label == "cidata"} if label is not None \
        else {"seedDir": where}
    info = {**head, "files": {name: len(content) for name, content in sorted(files.items())}, **_seed_info(files)}
    missing = [name for name in ("user-data", "meta-data") if name not in files]
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        if label is not None:
            click.echo(f"{where}: volume label '{label}'" + ("" if info["labelOk"] else
                                                             " (NOT cidata: NoCloud will ignore it)"))
        else:
            click.echo(f"{where}: seed directory")
        for name, size in info["files"].items():
            click.echo(f"  {name}: {size} bytes")
        unknown = "-"
        click.echo(f"  hostname: {info['hostname'] or unknown}  instance-id: {info['instanceId'] or unknown}  "
                   f"duty: {info['duty'] or unknown}")
        by_name = "none (interface matched by name)" if info["addresses"] else unknown
        click.echo(f"  IP: {', '.join(info['addresses']) or unknown}  MAC: {', '.join(info['macs']) or by_name}")
        click.echo(f"  cluster: {info['cluster'] or unknown}  endpoint: {info['controlPlaneEndpoint'] or unknown}  "
                   f"Kubernetes: {info['kubernetesVersion'] or unknown}")
        click.echo(f"  private keys on this seed: {'yes' if info['holdsPrivateKey'] else 'no'}")
        for path in info["writeFiles"]:
            click.echo(f"  writes {path}")
        _echo_credentials(info)
    if missing:
        _fail(f"{where} holds no {' and no '.join(missing)}: it is not a NoCloud seed that cloud-init would use")


def _seed_summary(files: dict[str, bytes]) -> dict[str, Any]:
    """What a node will be, read from its seed: network-config, node.env and the kubeadm configuration."""
    import yaml

    meta, net = _yaml_mapping(files.get("meta-data")), _yaml_mapping(files.get("network-config"))
    write_files, contents = _written_files(files)
    env = _shell_values(contents.get("/etc/k8sseed/node.env", ""))
    kubeadm: dict[str, Any] = {}
    for path in ("/etc/k8sseed/kubeadm-init.yaml", "/etc/k8sseed/kubeadm-join.yaml"):
        try:
            for doc in yaml.safe_load_all(contents.get(path, "")):
                if isinstance(doc, dict):
                    kubeadm.setdefault(str(doc.get("kind")), doc)
        except yaml.YAMLError:
            continue
    cluster_config = kubeadm.get("ClusterConfiguration", {})
    discovery = (kubeadm.get("JoinConfiguration", {}).get("discovery") or {}).get("bootstrapToken") or {}
    net = net.get("network", net) if isinstance(net.get("network"), dict) else net
    addresses, macs = [], []
    for iface in (net.get("ethernets") or {}).values() if isinstance(net.get("ethernets"), dict) else []:
        if isinstance(iface, dict):
            addresses += [str(a) for a in iface.get("addresses") or []]
            mac = (iface.get("match") or {}).get("macaddress") if isinstance(iface.get("match"), dict) else None
            if mac:
                macs.append(str(mac))
    version = env.get("K8SSEED_KUBERNETES_VERSION") or str(cluster_config.get("kubernetesVersion") or "").lstrip("v")
    return {
        "instanceId": meta.get("instance-id"), "hostname": meta.get("local-hostname"),
        "duty": env.get("K8SSEED_DUTY"),
        "cluster": env.get("K8SSEED_CLUSTER_NAME") or cluster_config.get("clusterName"),
        "controlPlaneEndpoint": env.get("K8SSEED_API_ENDPOINT") or cluster_config.get("controlPlaneEndpoint")
        or discovery.get("apiServerEndpoint"),
        "kubernetesVersion": version or None,
        "addresses": addresses, "macs": macs,
        "writeFiles": [f["path"] for f in write_files],
        "holdsPrivateKey": any("PRIVATE KEY" in text for text in contents.values() if text),
    }


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or int(port) > 65535:
        _fail(f"--listen {text!r}: expected ADDRESS:PORT, e.g. 10.20.0.5:8080 or 0.0.0.0:8080", EXIT_PROFILE)
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        _fail(f"--listen {text!r}: {host!r} is not an IP address", EXIT_PROFILE)
    return host, int(port)


@cli.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--profile", "profile", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The profile OUT was built from (node serials and UUIDs, allowed networks, PXE settings).")
@click.option("--secret", type=click.Path(dir_okay=False, path_type=Path),
              help="Cluster secret file, to check the nodes' signed status reports (default: PROFILE with .secret).")
@click.option("--secret-cmd", metavar="COMMAND", help=SECRET_CMD_HELP)
@click.option("--listen", "listen", default="127.0.0.1:8080", show_default=True, metavar="ADDRESS:PORT",
              help="Address and port to listen on (port 0: any free port, printed at start).")
@click.option("--url", "url", metavar="URL", help="The URL nodes reach this server at, for iPXE scripts "
              "(default: seedServer.url, else from --listen).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Status and hand-out records (default: OUT.serve-state beside OUT).")
@click.option("--log", "log_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also append the request log to this file.")
def serve(out: Path, profile: Path, secret: Path | None, secret_cmd: str | None, listen: str, url: str | None,
          state_dir: Path | None, log_file: Path | None) -> None:
    """Serve OUT's seeds over HTTP for NoCloud and iPXE, and collect the nodes' bootstrap status.

    \b
    Seeds:   /<node>/{user-data,meta-data,network-config,vendor-data}, also under /by-mac/<mac>/,
             /by-serial/<serial>/, /by-uuid/<uuid>/ (kernel command line:
             ds=nocloud-net;s=http://SERVER/by-mac/<mac>/)
    ISOs:    /iso/<node>.iso (range requests, for BMC virtual media)
    iPXE:    /ipxe/boot.ipxe (chains to /ipxe/by-mac/<mac>.ipxe)
    Status:  / (live page), /status.json, POST /status/<node> (signed reports from the nodes)
    """
    import asyncio
    import logging
    import os

    from k8sseed.serve.app import SeedServer, ServeError, Settings, run, state_dir_for
    from k8sseed.serve.log_writer import LogWriter, WriterHandler
    from k8sseed.serve.pxe_config import PxeConfigError, server_base

    host, port = _listen_address(listen)
    try:
        base = server_base(url) if url else None
    except PxeConfigError as exc:
        _fail(str(exc).replace("--server", "--url"), EXIT_PROFILE)
    try:
        cluster_secret = _secret_source(profile, secret, secret_cmd).read()
    except SecretError as exc:
        _fail(str(exc))
    fds = [sys.stderr.fileno()]
    if log_file is not None:
        try:
            fds.append(os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            _fail(f"{log_file}: cannot open the log: {exc.strerror}")
    writer = LogWriter(fds)
    logger = logging.getLogger("k8sseed.serve")
    logger.setLevel(logging.INFO)
    logger.addHandler(WriterHandler(writer))
    settings = Settings(out, profile, host, port, state_dir or state_dir_for(out), base)
    try:
        server = SeedServer(settings, cluster_secret, writer)
    except ServeError as exc:
        _fail(str(exc))
    uvloop = None
    choice = os.environ.get("K8SSEED_EVENT_LOOP") or "asyncio"
    if choice == "uvloop":
        # Opt-in only: less CPU per request, but under a saturating load it left some connections waiting for
        # seconds (p99 1.7-1.9 s where asyncio's loop gives 24-27 ms, docs/serve-load.md).
        try:
            import uvloop
        except ImportError:
            _fail("K8SSEED_EVENT_LOOP=uvloop: uvloop is not installed (pip install uvloop), or unset it")
    elif choice != "asyncio":
        _fail(f"K8SSEED_EVENT_LOOP={choice}: expected asyncio (the default) or uvloop")
    try:
        if uvloop is not None:
            uvloop.run(run(server))
        else:
            asyncio.run(run(server))
    except KeyboardInterrupt:
        click.echo("k8sseed serve: stopped", err=True)  # Ctrl-C is how an operator stops it: not an error
    except OSError as exc:
        _fail(f"cannot listen on {listen}: {exc.strerror or exc}")


@cli.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.argument("nodes", nargs=-1, required=True)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The server's state directory (default: OUT.serve-state beside OUT).")
@click.option("--reinstall", is_flag=True, help="Also forget that these nodes (install: ubuntu-autoinstall) are "
              "installed: their next PXE boot runs the Ubuntu installer again, wiping the disk.")
def rearm(out: Path, nodes: tuple[str, ...], state_dir: Path | None, reinstall: bool) -> None:
    """Let the server hand out these control-plane seeds once more (seedServer.handOutOnce)."""
    from k8sseed.serve.app import rearm as rearm_node
    from k8sseed.serve.app import reinstall as reinstall_node
    from k8sseed.serve.app import state_dir_for

    directory = state_dir or state_dir_for(out)
    for node in nodes:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", node):
            _fail(f"'{node}' is not a node name", EXIT_PROFILE)
        if reinstall:  # k8sseed-autoinstall
            click.echo(f"{node}: " + ("its next PXE boot installs Ubuntu again" if reinstall_node(directory, node)
                                      else "was not reported installed; nothing to reinstall"))
        if rearm_node(directory, node):
            click.echo(f"{node}: re-armed; its seed will be handed out to the next client that asks")
        else:
            click.echo(f"{node}: was not handed out; nothing to re-arm")


@cli.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--server", "server", metavar="URL", help="Ask a running server (e.g. http://127.0.0.1:8080/) "
              "instead of reading its state directory.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The server's state directory (default: OUT.serve-state beside OUT).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(out: Path, server: str | None, state_dir: Path | None, as_json: bool) -> None:
    """Print each node's bootstrap phase as the nodes reported it to k8sseed serve."""
    from k8sseed.serve.app import state_dir_for
    from k8sseed.serve.status import StatusBoard, table

    if server:
        import urllib.error
        import urllib.request

        from k8sseed.serve.pxe_config import PxeConfigError, server_base

        try:
            with urllib.request.urlopen(server_base(server) + "status.json", timeout=10) as response:
                rows = json.loads(response.read().decode("utf-8"))["nodes"]
        except PxeConfigError as exc:
            _fail(str(exc), EXIT_PROFILE)
        except (OSError, ValueError, KeyError) as exc:
            _fail(f"cannot read the status from {server}: {exc}")
    else:
        manifest = _built_manifest(out)
        roles = {n["name"]: str(n.get("role", "?")) for n in manifest["nodes"]
                 if isinstance(n, dict) and isinstance(n.get("name"), str)}
        rows = StatusBoard(state_dir or state_dir_for(out)).rows(roles)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(table(rows), nl=False)


@cli.command("pxe-config")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--server", "server", required=True, metavar="URL",
              help="The seed server's URL as machines reach it, e.g. http://10.20.0.5:8080/.")
@click.option("--tftp-root", default="/srv/tftp", show_default=True,
              help="Directory dnsmasq serves over TFTP (put undionly.kpxe and ipxe.efi there).")
def pxe_config(out: Path, server: str, tftp_root: str) -> None:
    """Print a dnsmasq proxy-DHCP + TFTP configuration that chain-loads iPXE to k8sseed serve."""
    import ipaddress

    from k8sseed.serve.pxe_config import PxeConfigError, dnsmasq_config
    manifest = _built_manifest(out)
    networks = set()
    for node in manifest["nodes"]:
        try:
            networks.add(ipaddress.IPv4Interface(node["ip"]).network)
        except (KeyError, TypeError, ValueError):
            continue
    try:
        text = dnsmasq_config(str(manifest.get("clusterName", "cluster")), server, sorted(networks), tftp_root)
    except PxeConfigError as exc:
        _fail(str(exc), EXIT_PROFILE)
    except ValueError as exc:  # a manifest value that cannot be a config word
        _fail(f"{out}/manifest.json: {exc}")
    click.echo(text, nl=False)


# ---- growth (issue 8 section 3): diff, runbook ----
@cli.command()
@click.argument("old", type=click.Path(file_okay=False, path_type=Path))
@click.argument("new", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def diff(old: Path, new: Path, as_json: bool) -> None:
    """Show which nodes and files differ between two builds (never file contents: seeds hold keys and tokens).

    Exit status as diff(1): 0 the same, 1 different, 2 trouble."""
    from k8sseed.out_diff import diff_outputs, render_diff

    try:
        result = diff_outputs(old, new)
    except OutputError as exc:
        _fail(str(exc), EXIT_PROFILE)
    click.echo(json.dumps(result.as_json(), indent=2) if as_json else render_diff(result), nl=as_json)
    sys.exit(0 if result.identical else 1)


@cli.command()
@click.argument("profile", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("old", type=click.Path(file_okay=False, path_type=Path))
@click.option("--secret", type=click.Path(dir_okay=False, path_type=Path),
              help="The cluster secret (default: PROFILE's .secret file): OLD must have been built with it.")
@click.option("--secret-cmd", "secret_cmd", metavar="COMMAND", help=SECRET_CMD_HELP)
def runbook(profile: Path, old: Path, secret: Path | None, secret_cmd: str | None) -> None:
    """Print what to run on the cluster for the change from OLD (a build's OUT) to PROFILE: for nodes that left,
    drain, etcd member removal for control planes, node deletion; for nodes added, the files running nodes need
    first (VRRP peers, HAProxy backends, router configs). PROFILE and OLD must be the same cluster and CA."""
    from k8sseed.profile import load_profile
    from k8sseed.runbook import addition_steps, removal_steps, render_runbook

    try:
        loaded = load_profile(profile)
    except ProfileError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_PROFILE)
    previous = _built_manifest(old)
    _require_same_cluster(profile, loaded.profile, _secret_source(profile, secret, secret_cmd), old, previous)
    text = render_runbook(removal_steps(previous, loaded.profile), loaded.profile,
                          addition_steps(previous, loaded.profile, str(profile)))
    click.echo(text or f"{profile} and {old} have the same nodes: nothing to do on the cluster", nl=not text)
# ---- end growth: diff, runbook ----


def _require_same_cluster(profile_path: Path, profile: Any, secret: Any, out: Path, manifest: dict) -> None:
    """Exit when PROFILE (with its secret) and OUT are not one cluster with one CA (k8sseed.cluster_identity)."""
    from k8sseed.cluster_identity import mismatch, of_manifest, of_profile
    from k8sseed.pki import derive_pki

    built = of_manifest(out, manifest)
    problem = mismatch(of_profile(profile_path, profile.cluster.name, None), built)
    if problem is None:
        try:
            cluster_secret = secret.read()
        except SecretError as exc:
            _fail(str(exc))
        c = profile.cluster
        ca = derive_pki(cluster_secret, c.pki_not_before, c.ca_validity_days).ca_cert_hash
        problem = mismatch(of_profile(profile_path, c.name, ca), built)
    if problem:
        _fail(problem)


def _built_manifest(out: Path) -> dict:
    """OUT's manifest.json, or a clean exit saying why there is none."""
    from k8sseed.writers.manifest import read_manifest

    try:
        manifest = read_manifest(out)
    except OutputError as exc:
        _fail(str(exc))
    if manifest is None:
        _fail(f"{out} holds no k8sseed build (no manifest.json)")
    return manifest


# --- k8sseed attach (Redfish virtual media): the command lives in k8sseed.bmc ---
from k8sseed.bmc.attach_command import attach_command  # noqa: E402

cli.add_command(attach_command)
# --- end of k8sseed attach ---


def main() -> None:
    # click's standalone mode would turn Ctrl-C into "Aborted!" and exit 1: errors are handled here instead.
    try:
        code = cli.main(standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted; the previous output directory is untouched", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # last resort: a bug, never a traceback in the user's face
        click.echo(f"internal error: {type(exc).__name__}: {exc} (please report this with the profile)", err=True)
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)
