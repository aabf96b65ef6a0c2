"""`k8sseed attach`: the command line of BMC virtual media (registered on the CLI group by k8sseed.cli)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from k8sseed.bmc.errors import BmcError

EXIT_FAILED = 1
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _node_entry(out: Path, node: str) -> dict[str, Any]:
    from k8sseed.errors import OutputError
    from k8sseed.writers.manifest import read_manifest

    try:
        manifest = read_manifest(out)
    except OutputError as exc:
        _fail(str(exc))
    if manifest is None:
        _fail(f"{out} holds no k8sseed build (no manifest.json)")
    entries = [n for n in manifest["nodes"] if isinstance(n, dict) and n.get("name") == node]
    if not entries:
        names = ", ".join(str(n.get("name")) for n in manifest["nodes"] if isinstance(n, dict))
        _fail(f"no node named '{node}' in {out}/manifest.json; nodes: {names}")
    return entries[0]


@click.command("attach")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--node", required=True, help="The node (its MAC in OUT's manifest finds the Redfish system).")
@click.option("--redfish", "redfish_url", metavar="URL",
              help="The BMC's Redfish service, e.g. https://10.20.0.101 (default: the node's bmc.redfish in the "
                   "profile; credentials: REDFISH_USERNAME and REDFISH_PASSWORD, or --credentials).")
@click.option("--iso-url", metavar="URL", help="Where the BMC fetches the node's ISO, e.g. "
              "http://10.20.0.5:8080/iso/cp-1.iso from 'k8sseed serve OUT' (not needed with --eject).")
@click.option("--system", "system_id", metavar="ID", help="The Redfish system's Id (or path), instead of "
              "looking the node's MAC up (default: the node's bmc.systemId in the profile).")
@click.option("--credentials", "credentials_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A 0600 file with REDFISH_USERNAME=... and REDFISH_PASSWORD=... lines.")
@click.option("--ca-bundle", type=click.Path(exists=True, path_type=Path),
              help="CA certificate(s) to verify the BMC's TLS certificate with (default: the system's CAs).")
@click.option("--insecure", is_flag=True, help="Do not verify the BMC's TLS certificate (a warning says so).")
@click.option("--eject", is_flag=True, help="Eject the virtual CD and clear a pending CD boot override instead.")
@click.option("--boot-override", type=click.Choice(["once", "continuous", "none"]), default="once",
              show_default=True, help="Boot override to the virtual CD: once (the next boot), continuous (until "
              "--eject) or none.")
@click.option("--boot-mode", type=click.Choice(["UEFI", "Legacy"]),
              help="Firmware mode of the override (default: the mode the BMC reports).")
@click.option("--no-power", is_flag=True, help="Attach and set the override, but do not power on or reset.")
@click.option("--no-check-iso", is_flag=True, help="Do not fetch the ISO URL's first byte to compare its size.")
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True, metavar="SECONDS",
              help="For each BMC request, and for the power state to become On.")
def attach_command(out: Path, node: str, redfish_url: str, iso_url: str | None, system_id: str | None,
                   credentials_file: Path | None, ca_bundle: Path | None, insecure: bool, eject: bool,
                   boot_override: str, boot_mode: str | None, no_power: bool, no_check_iso: bool,
                   timeout: float) -> None:
    """Attach NODE's seed ISO to its machine as Redfish virtual media, boot it from the CD once and power
    it on (or reset it); with --eject, take the ISO out again.

    \b
    Examples:
      k8sseed serve out/ --profile profile.yaml --listen 10.20.0.5:8080 &
      REDFISH_USERNAME=admin REDFISH_PASSWORD=... \\
        k8sseed attach out/ --node cp-1 --redfish https://10.20.0.101 --iso-url http://10.20.0.5:8080/iso/cp-1.iso
      k8sseed attach out/ --node cp-1 --redfish https://10.20.0.101 --eject
    """
    from k8sseed.bmc.credentials import find_credentials
    from k8sseed.bmc.iso_url import check_served_size, checked_url
    from k8sseed.bmc.redfish_attach import AttachPlan, Bmc, Target
    from k8sseed.bmc.redfish_attach import attach as run_attach
    from k8sseed.bmc.redfish_attach import eject as run_eject

    if insecure and ca_bundle is not None:
        _fail("--insecure and --ca-bundle contradict each other: choose one", EXIT_USAGE)
    if not eject and not iso_url:
        _fail("--iso-url is required (where the BMC fetches the ISO, e.g. http://SERVER:8080/iso/"
              f"{node}.iso from 'k8sseed serve')", EXIT_USAGE)
    entry = _node_entry(out, node)
    profile_bmc = entry.get("bmc") if isinstance(entry.get("bmc"), dict) else {}
    redfish_url = redfish_url or profile_bmc.get("redfish")
    system_id = system_id or profile_bmc.get("systemId")
    if not redfish_url:
        _fail(f"--redfish is required: {node} has no bmc.redfish in the profile OUT was built from", EXIT_USAGE)
    try:
        bmc_url = checked_url(redfish_url, "--redfish").rstrip("/")
        if iso_url:
            checked_url(iso_url, "--iso-url")
    except BmcError as exc:
        _fail(str(exc), EXIT_USAGE)
    try:
        credentials = find_credentials(credentials_file)
    except BmcError as exc:
        _fail(str(exc))
    if insecure:
        click.echo(f"warning: --insecure: the TLS certificate of {bmc_url} is not verified; anyone on the way "
                   "can read the BMC password", err=True)
    verify: bool | str = str(ca_bundle) if ca_bundle is not None else not insecure
    bmc = Bmc(bmc_url, credentials, verify, timeout)
    mac = entry.get("mac") if isinstance(entry.get("mac"), str) else None
    target = Target(node, mac, system_id)
    try:
        if eject:
            run_eject(bmc, target, click.echo)
            return
        assert iso_url is not None
        iso_name = entry.get("iso")
        if not no_check_iso and isinstance(iso_name, str):
            try:
                size = (out / iso_name).stat().st_size
            except OSError as exc:
                _fail(f"{out / iso_name}: cannot read the node's ISO: {exc.strerror}")
            warning = check_served_size(iso_url, size)
            if warning:
                click.echo(f"warning: {warning}", err=True)
        run_attach(bmc, target, AttachPlan(iso_url, boot_override, boot_mode, not no_power), click.echo)
    except BmcError as exc:
        _fail(f"{node}: {exc}")
