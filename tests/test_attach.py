"""`k8sseed attach` against the sushy-tools Redfish emulator (fake driver) on loopback, with the ISO served by a
real `k8sseed serve`: the emulator fetches the ISO the way a BMC does, and the test compares the bytes."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_secret, run_cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redfish_support import OTHER_UUID, SYSTEM_UUID, Emulator, fake_systems
from serve_support import Lab, Server, make_lab

from k8sseed.bmc.quirks import QUIRKS

pytestmark = pytest.mark.slow

USER, PASSWORD = "admin", "pw-Secr3t-not-printed"
CREDENTIALS = {"REDFISH_USERNAME": USER, "REDFISH_PASSWORD": PASSWORD}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Server]]:
    built = make_lab(tmp_path_factory.mktemp("attach-lab"))
    with Server(built) as server:
        yield built, server


def node_entry(lab: Lab, node: str) -> dict[str, Any]:
    manifest = json.loads((lab.out / "manifest.json").read_text())
    return next(n for n in manifest["nodes"] if n["name"] == node)


def iso_url(server: Server, node: str) -> str:
    return f"{server.url}iso/{node}.iso"


def attach(lab: Lab, emulator_url: str, *args: str, node: str = "cp-1", env: dict[str, str] | None = None,
           iso: str | None = None, server: Server | None = None) -> Any:
    extra = ["--iso-url", iso] if iso else []
    result = run_cli("attach", str(lab.out), "--node", node, "--redfish", emulator_url, *extra, *args,
                     env={**os.environ, **CREDENTIALS, **(env or {})})
    assert "Traceback" not in result.stderr, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    return result


def one_error_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def patches(emulator: Emulator) -> list[dict[str, Any]]:
    """The BootSourceOverride* fields of each boot PATCH (sushy may add HttpBootUri: null beside them)."""
    return [{k: v for k, v in r["body"]["Boot"].items() if k.startswith("BootSourceOverride")}
            for r in emulator.requests()
            if r["method"] == "PATCH" and isinstance(r["body"], dict) and "Boot" in r["body"]]


def actions(emulator: Emulator, name: str) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if r["path"].endswith(name)]


def test_attach_inserts_the_iso_sets_a_one_time_cd_boot_and_powers_on(lab: tuple[Lab, Server],
                                                                         tmp_path: Path) -> None:
    built, server = lab
    mac = node_entry(built, "cp-1")["mac"]
    with Emulator(tmp_path / "bmc", fake_systems(mac, power_state="Off")) as bmc:
        result = attach(built, bmc.url, iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert f"Redfish system {SYSTEM_UUID} (rack1-u07)" in result.stdout and mac in result.stdout
        slot = bmc.slot()
        assert slot["Inserted"] is True and slot["Image"] == iso_url(server, "cp-1")
        # The emulator fetched the ISO from k8sseed serve as a BMC does: the same bytes as OUT's.
        fetched = bmc.fetched_isos()
        assert [p.name for p in fetched] == ["cp-1.iso"]
        assert hashlib.sha256(fetched[0].read_bytes()).hexdigest() == node_entry(built, "cp-1")["sha256"]
        system = bmc.system()
        assert system["Boot"]["BootSourceOverrideTarget"] == "Cd"
        assert system["Boot"]["BootSourceOverrideEnabled"] == "Once"
        assert patches(bmc) == [{"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once",
                                 "BootSourceOverrideMode": "UEFI"}]
        # power-is-asynchronous: the fake driver turns the power on 1-11 s after the request.
        assert [r["body"] for r in actions(bmc, "/ComputerSystem.Reset")] == [{"ResetType": "On"}]
        assert system["PowerState"] == "On"
        assert "On (was Off), now On" in result.stdout
        # The other machine behind the same BMC was left alone.
        assert bmc.slot(uuid=OTHER_UUID)["Inserted"] is False


def test_attach_restarts_a_machine_that_is_on(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"], power_state="On")) as bmc:
        result = attach(built, bmc.url, iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert [r["body"] for r in actions(bmc, "/ComputerSystem.Reset")] == [{"ResetType": "ForceRestart"}]
        assert bmc.system()["PowerState"] == "On"


def test_continuous_override_until_eject_which_takes_the_iso_out(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    """once-ignored: --boot-override continuous keeps the CD first until --eject clears it."""
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"])) as bmc:
        result = attach(built, bmc.url, "--boot-override", "continuous", "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert bmc.system()["Boot"]["BootSourceOverrideEnabled"] == "Continuous"
        assert actions(bmc, "/ComputerSystem.Reset") == []
        assert "power left as it is (Off)" in result.stdout
        ejected = attach(built, bmc.url, "--eject")
        assert ejected.returncode == 0, ejected.stderr
        assert f"ejected {iso_url(server, 'cp-1')} from virtual media slot Cd" in ejected.stdout
        assert bmc.slot()["Inserted"] is False
        assert bmc.system()["Boot"]["BootSourceOverrideEnabled"] == "Disabled"
        again = attach(built, bmc.url, "--eject")
        assert again.returncode == 0 and "no virtual media to eject" in again.stdout


def test_system_option_picks_a_system_without_the_mac_lookup(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems("52:54:00:aa:bb:cc")) as bmc:
        missing = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        line = one_error_line(missing)
        assert f"no Redfish system at {bmc.url} has a NIC with MAC {node_entry(built, 'cp-1')['mac']}" in line
        assert "--system ID" in line
        wrong = one_error_line(attach(built, bmc.url, "--system", "nope", "--no-power", iso=iso_url(server, "cp-1")))
        assert "has no system 'nope'" in wrong and SYSTEM_UUID in wrong
        result = attach(built, bmc.url, "--system", OTHER_UUID, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert bmc.slot(uuid=OTHER_UUID)["Inserted"] is True and bmc.slot()["Inserted"] is False


def test_wrong_credentials_give_one_clear_line(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    import bcrypt

    built, server = lab
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]), auth_file=htpasswd) as bmc:
        bmc.basic_auth = (USER, PASSWORD)
        line = one_error_line(attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"),
                                     env={"REDFISH_PASSWORD": "wrong-password"}))
        assert f"the BMC at {bmc.url} refused the credentials of user '{USER}' (HTTP 401)" in line
        assert bmc.slot()["Inserted"] is False
        result = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert bmc.slot()["Inserted"] is True


def test_credentials_come_from_the_environment_or_a_private_file(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
    result = run_cli("attach", str(built.out), "--node", "cp-1", "--redfish", "http://127.0.0.1:9",
                     "--iso-url", iso_url(server, "cp-1"), env=env)
    assert "no BMC credentials: set REDFISH_USERNAME and REDFISH_PASSWORD" in one_error_line(result)
    creds = tmp_path / "bmc.credentials"
    creds.write_text(f"REDFISH_USERNAME={USER}\nREDFISH_PASSWORD='{PASSWORD}'\n")
    creds.chmod(0o644)
    result = run_cli("attach", str(built.out), "--node", "cp-1", "--redfish", "http://127.0.0.1:9",
                     "--iso-url", iso_url(server, "cp-1"), "--credentials", str(creds), env=env)
    assert "lets other users read the BMC password; run 'chmod 600" in one_error_line(result)
    creds.chmod(0o600)
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"])) as bmc:
        result = run_cli("attach", str(built.out), "--node", "cp-1", "--redfish", bmc.url, "--iso-url",
                         iso_url(server, "cp-1"), "--credentials", str(creds), "--no-power", env=env)
        assert result.returncode == 0, result.stderr
    assert "--password" not in run_cli("attach", "--help").stdout


def test_unreachable_bmc_gives_one_clear_line(lab: tuple[Lab, Server]) -> None:
    built, server = lab
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    line = one_error_line(attach(built, f"http://127.0.0.1:{port}", iso=iso_url(server, "cp-1")))
    assert line == (f"error: cp-1: cannot reach the BMC at http://127.0.0.1:{port}: connection refused "
                    "(nothing listens there: check the address and port)")
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        line = one_error_line(attach(built, f"http://127.0.0.1:{silent.getsockname()[1]}", "--timeout", "2",
                                     iso=iso_url(server, "cp-1")))
        assert "cannot reach the BMC" in line and "no answer within 2 s (--timeout)" in line
        assert time.monotonic() - started < 30


def test_power_that_never_comes_on_times_out_with_one_line(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]), quirks=("power-stuck",)) as bmc:
        line = one_error_line(attach(built, bmc.url, "--timeout", "3", iso=iso_url(server, "cp-1")))
        assert f"the Redfish system {SYSTEM_UUID} did not report power On within 3 s after On" in line
        assert bmc.slot()["Inserted"] is True


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test BMC CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bmc")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "bmc.pem", directory / "bmc.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_tls_is_verified_by_default_with_a_ca_bundle_option_and_an_insecure_flag(lab: tuple[Lab, Server],
                                                                                  tmp_path: Path) -> None:
    built, server = lab
    ca, cert, key = _tls_files(tmp_path)
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]), tls=(cert, key)) as bmc:
        assert bmc.url.startswith("https://")
        line = one_error_line(attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1")))
        assert "its TLS certificate is not trusted (certificate verify failed): pass --ca-bundle FILE" in line
        assert bmc.requests() == []
        trusted = attach(built, bmc.url, "--no-power", "--ca-bundle", str(ca), iso=iso_url(server, "cp-1"))
        assert trusted.returncode == 0, trusted.stderr
        assert trusted.stderr == ""
        insecure = attach(built, bmc.url, "--no-power", "--insecure", iso=iso_url(server, "cp-1"))
        assert insecure.returncode == 0, insecure.stderr
        assert insecure.stderr.splitlines() == [
            f"warning: --insecure: the TLS certificate of {bmc.url} is not verified; anyone on the way can read the "
            "BMC password"]
        plain = one_error_line(attach(built, bmc.url.replace("https:", "http:"), iso=iso_url(server, "cp-1")))
        assert "cannot reach the BMC" in plain


def test_no_virtual_media_cd_slot_gives_one_clear_line(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    usb_only = {"Usb": {"Name": "Virtual Removable Media", "MediaTypes": ["USBStick"]}}
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]), vmedia_devices=usb_only) as bmc:
        line = one_error_line(attach(built, bmc.url, iso=iso_url(server, "cp-1")))
        assert f"the Redfish system {SYSTEM_UUID} has no virtual media CD slot" in line
        assert actions(bmc, "/ComputerSystem.Reset") == []


def test_an_iso_url_that_serves_another_file_is_refused_before_the_bmc_is_asked(lab: tuple[Lab, Server],
                                                                                  tmp_path: Path) -> None:
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"])) as bmc:
        other = iso_url(server, "worker-1")
        line = one_error_line(attach(built, bmc.url, iso=other))
        assert f"--iso-url {other} serves" in line and "another build or another node's ISO?" in line
        missing = one_error_line(attach(built, bmc.url, iso=f"{server.url}iso/nope.iso"))
        assert "the server answers HTTP 404" in missing
        assert bmc.requests() == []
        usage = attach(built, bmc.url, iso="ftp://10.0.0.1/cp-1.iso")
        assert usage.returncode == 2 and "expected an http:// or https:// URL" in usage.stderr


# --- vendor quirks (k8sseed/bmc/quirks.py), each played by the emulator's quirk layer ---

def _pre_insert(bmc: Emulator, url: str, slot: str = "Cd") -> None:
    bmc.call("POST", f"/redfish/v1/Systems/{SYSTEM_UUID}/VirtualMedia/{slot}/Actions/VirtualMedia.InsertMedia",
             {"Image": url, "Inserted": True, "WriteProtected": True})


def test_quirk_insert_while_inserted_ejects_first(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]),
                  quirks=("refuse-insert-while-inserted",)) as bmc:
        _pre_insert(bmc, iso_url(server, "worker-2"))
        result = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert f"ejected {iso_url(server, 'worker-2')} from virtual media slot Cd first" in result.stdout
        assert bmc.slot()["Image"] == iso_url(server, "cp-1")
        assert [r["path"].rsplit(".", 1)[-1] for r in bmc.requests() if "VirtualMedia." in r["path"]] == [
            "InsertMedia", "EjectMedia", "InsertMedia"]


def test_quirk_eject_in_progress_retries_the_insert(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]),
                  quirks=("refuse-insert-while-inserted", "busy-after-eject")) as bmc:
        _pre_insert(bmc, iso_url(server, "cp-1"))
        result = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert [r["path"].rsplit(".", 1)[-1] for r in bmc.requests() if "VirtualMedia." in r["path"]] == [
            "InsertMedia", "EjectMedia", "InsertMedia", "InsertMedia"]
        assert bmc.slot()["Inserted"] is True


def test_quirk_dvd_only_slot_is_a_cd_slot(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    dvd = {"Dvd": {"Name": "Virtual DVD", "MediaTypes": ["DVD"]}}
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]), vmedia_devices=dvd) as bmc:
        result = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert bmc.slot("Dvd")["Inserted"] is True


def test_quirk_slot_without_insert_is_skipped(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    slots = {"Kvm": {"Name": "KVM media", "MediaTypes": ["CD", "DVD"]},
             "Cd": {"Name": "Virtual CD", "MediaTypes": ["CD", "DVD"]}}
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]), vmedia_devices=slots,
                  quirks=("kvm-only-slot",)) as bmc:
        result = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert bmc.slot("Cd")["Inserted"] is True and bmc.slot("Kvm")["Inserted"] is False


def test_quirk_system_vs_manager_media_uses_the_managers_slots(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]),
                  quirks=("media-under-manager",)) as bmc:
        assert "VirtualMedia" not in bmc.system()
        result = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert bmc.slot()["Inserted"] is True


def test_quirk_override_mode_reset_is_avoided_by_sending_the_mode(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    """A BMC that falls back to Legacy when the mode is missing keeps the machine in UEFI; --boot-mode chooses."""
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]),
                  quirks=("mode-reset-without-mode",)) as bmc:
        assert bmc.system()["Boot"]["BootSourceOverrideMode"] == "UEFI"
        result = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert bmc.system()["Boot"]["BootSourceOverrideMode"] == "UEFI"
        assert "one-time boot override to Cd in UEFI mode" in result.stdout
        legacy = attach(built, bmc.url, "--no-power", "--boot-mode", "Legacy", iso=iso_url(server, "cp-1"))
        assert legacy.returncode == 0, legacy.stderr
        assert bmc.system()["Boot"]["BootSourceOverrideMode"] == "Legacy"
        assert patches(bmc)[-1]["BootSourceOverrideMode"] == "Legacy"


def test_quirk_no_boot_mode_leaves_the_mode_out(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]), quirks=("no-boot-mode",)) as bmc:
        result = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert patches(bmc) == [{"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once"}]


def test_quirk_enabled_unchanged_is_sent_again_without_it(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]),
                  quirks=("refuse-unchanged-enabled",), initial_enabled="Once") as bmc:
        result = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert patches(bmc) == [
            {"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI"},
            {"BootSourceOverrideTarget": "Cd"}]
        assert bmc.system()["Boot"]["BootSourceOverrideTarget"] == "Cd"


def test_sushy_quirks_insert_fields_transfer_protocol_and_ilo_eject_body(lab: tuple[Lab, Server],
                                                                           tmp_path: Path) -> None:
    """What sushy handles for us, checked with the calls k8sseed makes (defaults Inserted/WriteProtected)."""
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]),
                  quirks=("require-transfer-protocol", "refuse-inserted-fields", "eject-needs-body",
                          "refuse-insert-while-inserted")) as bmc:
        result = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        inserts = [r["body"] for r in actions(bmc, "/VirtualMedia.InsertMedia")]
        assert inserts == [{"Image": iso_url(server, "cp-1")},
                           {"Image": iso_url(server, "cp-1"), "TransferProtocolType": "HTTP"}]
        ejected = attach(built, bmc.url, "--eject")
        assert ejected.returncode == 0, ejected.stderr
        assert [r["body"] for r in actions(bmc, "/VirtualMedia.EjectMedia")] == [None, {}]
        assert bmc.slot()["Inserted"] is False


def test_sushy_quirk_supermicro_usbcd(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems(node_entry(built, "cp-1")["mac"]), quirks=("supermicro",)) as bmc:
        result = attach(built, bmc.url, "--no-power", iso=iso_url(server, "cp-1"))
        assert result.returncode == 0, result.stderr
        assert patches(bmc)[0]["BootSourceOverrideTarget"] == "UsbCd"
        assert "one-time boot override to UsbCd in UEFI mode" in result.stdout


# Each quirk that k8sseed or sushy handles, and the test that plays it against the emulator.
QUIRK_TESTS = {
    "insert-while-inserted": test_quirk_insert_while_inserted_ejects_first,
    "eject-in-progress": test_quirk_eject_in_progress_retries_the_insert,
    "dvd-only-slot": test_quirk_dvd_only_slot_is_a_cd_slot,
    "slot-without-insert": test_quirk_slot_without_insert_is_skipped,
    "system-vs-manager-media": test_quirk_system_vs_manager_media_uses_the_managers_slots,
    "override-mode-reset": test_quirk_override_mode_reset_is_avoided_by_sending_the_mode,
    "no-boot-mode": test_quirk_no_boot_mode_leaves_the_mode_out,
    "enabled-unchanged": test_quirk_enabled_unchanged_is_sent_again_without_it,
    "once-ignored": test_continuous_override_until_eject_which_takes_the_iso_out,
    "power-is-asynchronous": test_attach_inserts_the_iso_sets_a_one_time_cd_boot_and_powers_on,
    "insert-fields": test_sushy_quirks_insert_fields_transfer_protocol_and_ilo_eject_body,
    "transfer-protocol": test_sushy_quirks_insert_fields_transfer_protocol_and_ilo_eject_body,
    "ilo-eject-body": test_sushy_quirks_insert_fields_transfer_protocol_and_ilo_eject_body,
    "supermicro-usbcd": test_sushy_quirk_supermicro_usbcd,
}


def test_every_quirk_k8sseed_or_sushy_handles_has_a_test_and_every_quirk_a_source() -> None:
    assert {q.id for q in QUIRKS if q.handled_by in ("k8sseed", "sushy")} == set(QUIRK_TESTS)
    assert len({q.id for q in QUIRKS}) == len(QUIRKS)
    for entry in QUIRKS:
        assert entry.handled_by in ("k8sseed", "sushy", "operator")
        assert entry.sources and all(s.strip() for s in entry.sources), entry.id
        assert entry.bmcs and entry.symptom and entry.handling, entry.id


def test_the_profile_names_the_bmc_and_the_system(lab: tuple[Lab, Server], tmp_path: Path) -> None:
    """nodes[].bmc (redfish, systemId) reaches OUT's manifest; attach needs no --redfish or --system then."""
    import yaml
    from serve_support import build

    built, server = lab
    with Emulator(tmp_path / "bmc", fake_systems("52:54:00:aa:bb:cc")) as bmc:
        data = yaml.safe_load(built.profile.read_text())
        data["nodes"][0]["bmc"] = {"redfish": bmc.url + "/", "systemId": OTHER_UUID}
        profile = tmp_path / "profile.yaml"
        profile.write_text(yaml.safe_dump(data, sort_keys=False))
        out = tmp_path / "out"
        build(profile, make_secret(tmp_path), out)
        manifest = json.loads((out / "manifest.json").read_text())
        assert [n.get("bmc") for n in manifest["nodes"] if "bmc" in n] == [{"redfish": bmc.url,
                                                                             "systemId": OTHER_UUID}]
        result = run_cli("attach", str(out), "--node", data["nodes"][0]["name"], "--iso-url",
                         iso_url(server, "cp-1"), "--no-check-iso", "--no-power", env={**os.environ, **CREDENTIALS})
        assert result.returncode == 0, result.stderr
        assert bmc.slot(uuid=OTHER_UUID)["Inserted"] is True
        missing = run_cli("attach", str(built.out), "--node", "cp-1", "--iso-url", iso_url(server, "cp-1"),
                          env={**os.environ, **CREDENTIALS})
        assert missing.returncode == 2 and "--redfish is required: cp-1 has no bmc.redfish" in missing.stderr
