"""Attach a seed ISO to a machine over Redfish (with the sushy library): find the system by MAC, insert the ISO
into its virtual CD, set a boot override, power it on or reset it; and eject again afterwards.

Every failure becomes one BmcError line. Vendor quirks are named by their id in `k8sseed.bmc.quirks`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from k8sseed.bmc.credentials import Credentials
from k8sseed.bmc.errors import BmcError

BOOT_OVERRIDES = ("once", "continuous", "none")
BOOT_MODES = ("UEFI", "Legacy")
INSERT_ATTEMPTS = 3
INSERT_RETRY_SECONDS = 3.0
POWER_POLL_SECONDS = 1.0

Say = Callable[[str], None]

# sushy logs warnings of its own (and Python's last-resort handler would print them): our lines say it all.
logging.getLogger("sushy").addHandler(logging.NullHandler())
logging.getLogger("sushy").propagate = False


@dataclass(frozen=True)
class Bmc:
    """Where the BMC is and how to talk to it."""

    url: str
    credentials: Credentials
    verify: bool | str = True  # True, False (--insecure) or a CA bundle path
    timeout: float = 60.0


@dataclass(frozen=True)
class Target:
    """Which system: the one whose NIC has `mac`, or the system `system_id` (takes precedence)."""

    node: str
    mac: str | None = None
    system_id: str | None = None


@dataclass(frozen=True)
class AttachPlan:
    iso_url: str
    boot_override: str = "once"  # once | continuous | none
    boot_mode: str | None = None  # UEFI | Legacy | None: the mode the BMC reports
    power: bool = True


class _NoInternet:
    """sushy's connector for public message registries: k8sseed talks to the BMC and nothing else."""

    def get(self, *args: Any, **kwargs: Any) -> Any:
        import requests

        raise requests.exceptions.ConnectionError("k8sseed does not fetch Redfish registries from the Internet")


def attach(bmc: Bmc, target: Target, plan: AttachPlan, say: Say) -> None:
    with _session(bmc) as root:
        system = _find_system(root, bmc, target, say)
        slot = _insert(system, bmc, target, plan.iso_url, say)
        if plan.boot_override != "none":
            _set_boot_override(system, target, plan, say)
        if plan.power:
            _power_on_or_reset(system, bmc, target, say)
        else:
            state = _value(system.power_state)
            say(f"{target.node}: power left as it is ({state}); the ISO is in slot {slot}")


def eject(bmc: Bmc, target: Target, say: Say) -> None:
    import sushy

    with _session(bmc) as root:
        system = _find_system(root, bmc, target, say)
        slots = _cd_slots(system)
        ejected = 0
        for slot in slots:
            if slot.inserted or slot.image:
                image = slot.image or "an image"
                slot.eject_media()
                ejected += 1
                say(f"{target.node}: ejected {image} from virtual media slot {slot.identity}")
        if not ejected:
            say(f"{target.node}: no virtual media to eject (slots: {', '.join(s.identity for s in slots) or 'none'})")
        boot = system.boot
        if boot is not None and boot.target in (sushy.BootSource.CD, sushy.BootSource.USB_CD) and boot.enabled in (
                sushy.BootSourceOverrideEnabled.ONCE, sushy.BootSourceOverrideEnabled.CONTINUOUS):
            _clear_boot_override(system)
            say(f"{target.node}: boot override to {boot.target.value} cleared (the machine follows its boot order)")


def _clear_boot_override(system: Any) -> None:
    """Enabled: Disabled; a BMC that wants a target with it gets None, else Hdd (ignored while Disabled)."""
    import sushy
    from sushy import exceptions

    disabled = sushy.BootSourceOverrideEnabled.DISABLED
    try:
        system.set_system_boot_options(enabled=disabled)
    except exceptions.BadRequestError as exc:
        allowed = system.get_allowed_system_boot_source_values()
        fallback = next((t for t in (sushy.BootSource.NONE, sushy.BootSource.HDD) if t in allowed), None)
        if fallback is None:
            raise BmcError(f"the media is ejected, but the BMC refused to clear the boot override to the CD "
                           f"(HTTP {exc.status_code}): {_detail(exc)}") from exc
        system.set_system_boot_options(target=fallback, enabled=disabled)


@contextmanager
def _session(bmc: Bmc) -> Iterator[Any]:
    """A sushy root for the BMC; every sushy or connection error inside becomes one BmcError line."""
    import sushy
    from sushy import exceptions

    with warnings.catch_warnings():
        if bmc.verify is False:
            import urllib3

            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        root = None
        try:
            root = sushy.Sushy(bmc.url, username=bmc.credentials.username, password=bmc.credentials.password,
                               verify=bmc.verify, read_timeout=bmc.timeout, connect_timeout=min(bmc.timeout, 10.0),
                               server_side_retries=2, server_side_retries_delay=1, public_connector=_NoInternet())
            yield root
        except BmcError:
            raise
        except exceptions.ConnectionError as exc:
            raise BmcError(f"cannot reach the BMC at {bmc.url}: {_connection_reason(exc, bmc)}") from exc
        except exceptions.AccessError as exc:
            raise BmcError(f"the BMC at {bmc.url} refused the credentials of user '{bmc.credentials.username}' "
                           f"(HTTP {exc.status_code}): check REDFISH_USERNAME/REDFISH_PASSWORD or the --credentials "
                           "file, and that the account may use virtual media and power control") from exc
        except exceptions.HTTPError as exc:
            raise BmcError(f"the BMC at {bmc.url} answered HTTP {exc.status_code}: {_detail(exc)}") from exc
        except exceptions.SushyError as exc:
            raise BmcError(f"the BMC at {bmc.url}: {_one_line(str(exc))}") from exc
        finally:
            if root is not None:
                _close(root)


def _close(root: Any) -> None:
    """Log out of the Redfish session now (not at garbage collection, when errors could only be printed)."""
    auth = getattr(root, "_auth", None)
    if auth is not None:
        with suppress(Exception):  # logging out is a courtesy; the work is done or already reported
            auth.close()
        root._auth = None


def _find_system(root: Any, bmc: Bmc, target: Target, say: Say) -> Any:
    from sushy import exceptions

    if target.system_id:
        path = target.system_id if target.system_id.startswith("/") else \
            f"{root.get_system_collection().path.rstrip('/')}/{target.system_id}"
        try:
            system = root.get_system(path)
        except exceptions.ResourceNotFoundError as exc:
            ids = ", ".join(m.rsplit("/", 1)[-1] for m in root.get_system_collection().members_identities)
            raise BmcError(f"the BMC at {bmc.url} has no system '{target.system_id}' (it has: {ids or 'none'})") \
                from exc
        say(f"{target.node}: Redfish system {system.identity} ({system.name or 'no name'}) at {bmc.url}")
        return system
    if not target.mac:
        raise BmcError(f"{target.node} has no MAC address in the manifest: pass --system ID")
    wanted = _mac(target.mac)
    found, without_nics = [], []
    for system in root.get_system_collection().get_members():
        try:
            interfaces = system.ethernet_interfaces.get_members()
        except exceptions.MissingAttributeError:
            without_nics.append(system.identity)
            continue
        macs = {_mac(m) for i in interfaces for m in (i.mac_address, i.permanent_mac_address) if m}
        if wanted in macs:
            found.append(system)
    if not found:
        hint = f" ({', '.join(without_nics)} list no NICs)" if without_nics else ""
        raise BmcError(f"no Redfish system at {bmc.url} has a NIC with MAC {target.mac} (the MAC of {target.node})"
                       f"{hint}: check the profile's MAC, or pass --system ID")
    if len(found) > 1:
        raise BmcError(f"{len(found)} Redfish systems at {bmc.url} have a NIC with MAC {target.mac}: "
                       f"{', '.join(s.identity for s in found)}; pass --system ID")
    system = found[0]
    say(f"{target.node}: Redfish system {system.identity} ({system.name or 'no name'}) at {bmc.url} "
        f"has NIC {target.mac}")
    return system


def _cd_slots(system: Any) -> list[Any]:
    """The system's virtual CD/DVD slots: its own VirtualMedia first, else its managers' (system-vs-manager-media)."""
    from sushy import exceptions

    def members(resource: Any) -> list[Any]:
        try:
            return list(resource.virtual_media.get_members())
        except (exceptions.MissingAttributeError, AttributeError):
            return []

    slots = members(system)
    if not slots:
        try:
            managers = system.managers
        except exceptions.MissingAttributeError:
            managers = []
        for manager in managers:
            slots += members(manager)
    # dvd-only-slot: a slot with DVD and no CD is an optical slot too.
    return [s for s in slots if {_value(t) for t in s.media_types} & {"CD", "DVD"}]


def _insert(system: Any, bmc: Bmc, target: Target, iso_url: str, say: Say) -> str:
    from sushy import exceptions

    slots = _cd_slots(system)
    if not slots:
        raise BmcError(f"the Redfish system {system.identity} has no virtual media CD slot (no VirtualMedia with "
                       "MediaTypes CD or DVD, under the system or its managers): this BMC cannot attach the ISO")
    skipped = []
    for slot in slots:
        if slot.inserted or slot.image:
            # insert-while-inserted: many BMCs refuse InsertMedia into a slot that holds an image.
            previous = slot.image or "an image"
            slot.eject_media()
            slot.refresh(force=True)
            say(f"{target.node}: ejected {previous} from virtual media slot {slot.identity} first")
        try:
            _insert_with_retries(slot, bmc, iso_url)
        except exceptions.MissingActionError:  # slot-without-insert
            skipped.append(f"{slot.identity} (no InsertMedia action)")
            continue
        except exceptions.HTTPError as exc:
            if exc.status_code != 405:
                raise BmcError(f"the BMC refused to insert {iso_url} into virtual media slot {slot.identity} "
                               f"(HTTP {exc.status_code}): {_detail(exc)}") from exc
            skipped.append(f"{slot.identity} (HTTP 405)")
            continue
        slot.refresh(force=True)
        if not slot.inserted:
            raise BmcError(f"the BMC accepted InsertMedia for {iso_url} but slot {slot.identity} reports no media "
                           "inserted: the BMC could not fetch the ISO? Check that it reaches the URL")
        say(f"{target.node}: inserted {iso_url} into virtual media slot {slot.identity}")
        return str(slot.identity)
    raise BmcError(f"the Redfish system {system.identity} has no usable virtual media CD slot: "
                   f"{', '.join(skipped)}")


def _insert_with_retries(slot: Any, bmc: Bmc, iso_url: str) -> None:
    """eject-in-progress: a 5xx right after an eject is retried, 3 s apart, within the timeout."""
    from sushy import exceptions

    deadline = time.monotonic() + bmc.timeout
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            slot.insert_media(iso_url, inserted=True, write_protected=True)
            return
        except exceptions.ServerSideError:
            if attempt == INSERT_ATTEMPTS or time.monotonic() + INSERT_RETRY_SECONDS > deadline:
                raise
            time.sleep(INSERT_RETRY_SECONDS)


def _set_boot_override(system: Any, target: Target, plan: AttachPlan, say: Say) -> None:
    import sushy
    from sushy import exceptions

    enabled = sushy.BootSourceOverrideEnabled.ONCE if plan.boot_override == "once" \
        else sushy.BootSourceOverrideEnabled.CONTINUOUS
    boot = system.boot
    current_mode = boot.mode if boot is not None else None
    # override-mode-reset: send the mode with the target; no-boot-mode: leave it out when the BMC has none.
    mode = sushy.BootSourceOverrideMode(plan.boot_mode) if plan.boot_mode else current_mode
    try:
        try:
            system.set_system_boot_options(target=sushy.BootSource.CD, enabled=enabled, mode=mode)
        except exceptions.BadRequestError:
            # enabled-unchanged: some BMCs refuse a field that equals its current value.
            system.refresh(force=True)
            boot = system.boot
            changed_enabled = None if boot is not None and boot.enabled == enabled else enabled
            changed_mode = None if boot is not None and boot.mode == mode else mode
            if (changed_enabled, changed_mode) == (enabled, mode):
                raise
            system.set_system_boot_options(target=sushy.BootSource.CD, enabled=changed_enabled, mode=changed_mode)
    except exceptions.InvalidParameterValueError as exc:
        offered = ", ".join(sorted(system.boot.allowed_values or [])) if system.boot is not None else ""
        raise BmcError(f"the Redfish system {system.identity} offers no 'Cd' boot override target "
                       f"(it offers: {offered or 'nothing'}); attach with --boot-override none and choose the "
                       "virtual CD in the firmware's boot menu") from exc
    except exceptions.HTTPError as exc:
        raise BmcError(f"the BMC refused the boot override to Cd (HTTP {exc.status_code}): {_detail(exc)}") from exc
    system.refresh(force=True)
    how = "one-time" if plan.boot_override == "once" else "continuous (until --eject)"
    say(f"{target.node}: {how} boot override to {_value(system.boot.target) if system.boot else 'Cd'}"
        f"{f' in {_value(mode)} mode' if mode is not None else ''}")


def _power_on_or_reset(system: Any, bmc: Bmc, target: Target, say: Say) -> None:
    import sushy

    before = system.power_state
    allowed = system.get_allowed_reset_system_values()
    if before == sushy.PowerState.ON:
        reset = next((r for r in (sushy.ResetType.FORCE_RESTART, sushy.ResetType.GRACEFUL_RESTART,
                                  sushy.ResetType.POWER_CYCLE) if r in allowed), None)
        if reset is None:
            raise BmcError(f"the Redfish system {system.identity} is on and offers no restart "
                           f"(it offers: {', '.join(sorted(_value(r) for r in allowed))}): restart it yourself")
    else:
        reset = sushy.ResetType.ON if sushy.ResetType.ON in allowed else sushy.ResetType.FORCE_ON
    system.reset_system(reset)
    # power-is-asynchronous: the BMC answers before the power state changes.
    deadline = time.monotonic() + bmc.timeout
    state = before
    while True:
        system.refresh(force=True)
        state = system.power_state
        if state == sushy.PowerState.ON:
            break
        if time.monotonic() >= deadline:
            raise BmcError(f"the Redfish system {system.identity} did not report power On within "
                           f"{bmc.timeout:g} s after {_value(reset)} (it reports {_value(state)}); "
                           "check the BMC's event log, or raise --timeout")
        time.sleep(POWER_POLL_SECONDS)
    say(f"{target.node}: {_value(reset)} (was {_value(before)}), now {_value(state)}")


def _connection_reason(exc: Exception, bmc: Bmc) -> str:
    """The root cause of a connection failure, in a few words."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(item) for item in chain)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return ("its TLS certificate is not trusted (certificate verify failed): pass --ca-bundle FILE with the CA "
                "that signed it, or --insecure to skip the check")
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "it does not speak TLS on that port: is the URL http:// rather than https://?"
    if "SSL" in text:
        return "TLS handshake failed"
    if "Connection refused" in text:
        return "connection refused (nothing listens there: check the address and port)"
    if "Read timed out" in text:
        return f"no answer within {bmc.timeout:g} s (--timeout): the BMC accepted the connection but did not reply"
    if "timed out" in text or "Timeout" in text:
        return f"no connection within {min(bmc.timeout, 10.0):g} s (check the address, and that this host reaches it)"
    if "Name or service not known" in text or "nodename nor servname" in text or "NameResolution" in text:
        return "its host name does not resolve"
    if "No route to host" in text or "Network is unreachable" in text:
        return "no route to it from this host"
    return _one_line(str(exc))


def _detail(exc: Any) -> str:
    return _one_line(getattr(exc, "detail", None) or getattr(exc, "code", None) or str(exc))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:400]


def _mac(text: str) -> str:
    return text.strip().lower().replace("-", ":")


def _value(item: Any) -> str:
    return str(getattr(item, "value", item))
