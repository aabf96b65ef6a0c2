"""Known Redfish virtual-media and boot-override quirks of real BMCs, and how `k8sseed attach` deals with each.

Data only: `redfish_attach` refers to these entries by id in its comments, and tests/test_attach.py
checks that every quirk handled by k8sseed or by sushy has a test against the emulator.
`handled_by` says who takes care of it: "k8sseed" (this code), "sushy" (the Redfish library does it
for us; k8sseed relies on it) or "operator" (k8sseed cannot fix it; the message or README says what to do).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quirk:
    id: str
    bmcs: str
    symptom: str
    handling: str
    handled_by: str
    sources: tuple[str, ...]


QUIRKS: tuple[Quirk, ...] = (
    Quirk("insert-while-inserted", "iDRAC (VRM0021 'already in use'), others",
          "InsertMedia is refused while the slot still holds an image (an older seed, an installer ISO)",
          "eject the slot first whenever it holds any image, the same URL included (so the BMC fetches a "
          "rebuilt seed), then insert and read the slot back: Inserted with our URL, else an error",
          "k8sseed",
          ("openstack/ironic ironic/drivers/modules/redfish/boot.py (_insert_vmedia_in_resource skips inserted slots)",
           "ansible-collections/community.general#6969 (eject before insert)", "microsoft/lisa#4168 (iDRAC VRM0021)")),
    Quirk("eject-in-progress", "Dell iDRAC",
          "InsertMedia right after an eject answers HTTP 5xx while the eject is still in progress",
          "retry InsertMedia on a 5xx answer, 3 s apart, while --timeout allows", "k8sseed",
          ("https://storyboard.openstack.org/#!/story/2008504 (as handled in ironic redfish/boot.py _test_retry)",)),
    Quirk("insert-fields", "Supermicro X11/X12 (refuse them), Lenovo SD530 via PATCH (require them)",
          "InsertMedia fails when Inserted/WriteProtected are sent, or media is not attached when they are missing",
          "sushy sends neither with the InsertMedia action and both with a PATCH", "sushy",
          ("sushy sushy/resources/manager/virtual_media.py insert_media",)),
    Quirk("transfer-protocol", "iDRAC, Cisco C845A M8, NVIDIA DGX",
          "InsertMedia fails without TransferProtocolType, TransferMethod or image credentials",
          "sushy retries with TransferProtocolType HTTP/HTTPS from the URL, then TransferMethod Stream; "
          "k8sseed accepts only http:// and https:// ISO URLs so that the protocol is known", "sushy",
          ("sushy sushy/resources/manager/virtual_media.py is_transfer_protocol_required",
           "fujitsu/terraform-provider-irmc-redfish examples (transfer_protocol_type)")),
    Quirk("ilo-eject-body", "HPE iLO 4/5",
          "EjectMedia without a JSON body is refused (400/415); iLO 4 takes only Image in InsertMedia",
          "sushy repeats EjectMedia with an empty JSON object", "sushy",
          ("sushy sushy/resources/manager/virtual_media.py eject_media",
           "ansible-collections/community.general#4596")),
    Quirk("dvd-only-slot", "Cisco UCS B/X blades",
          "the virtual optical slot lists MediaTypes [DVD] without CD",
          "a slot whose MediaTypes hold CD or DVD is a CD slot", "k8sseed",
          ("https://bugs.launchpad.net/ironic/+bug/2031595",)),
    Quirk("slot-without-insert", "Cisco C845A M8, OpenBMC KVM-only slots",
          "a CD slot has no InsertMedia action (local KVM media only), or answers 405",
          "skip such a slot and use the next CD slot; none left: 'no virtual media CD slot' error", "k8sseed",
          ("openstack/ironic ironic/drivers/modules/redfish/boot.py (MissingActionError, 405)",)),
    Quirk("system-vs-manager-media", "iDRAC 9 newer firmware and iDRAC 10, OpenBMC",
          "virtual media is listed under Systems/<id>/VirtualMedia, older BMCs under Managers/<id>/VirtualMedia; "
          "on newer iDRAC only the System's slot boots with a Cd override",
          "use the System's VirtualMedia when it has one, else its managers'", "k8sseed",
          ("dell/terraform-provider-redfish#331", "dell/iDRAC-Redfish-Scripting#324")),
    Quirk("override-mode-reset", "Supermicro",
          "setting BootSourceOverrideTarget without BootSourceOverrideMode resets the mode to Legacy, so a "
          "UEFI machine's one-time boot lands on the physical drive (or nowhere)",
          "send BootSourceOverrideMode with the target: the mode the BMC reports (or --boot-mode UEFI|Legacy)",
          "k8sseed",
          ("DMTF/Redfishtool#106", "https://storyboard.openstack.org/#!/story/2008712")),
    Quirk("no-boot-mode", "HPE Gen9",
          "the BMC neither reports nor accepts BootSourceOverrideMode",
          "when the BMC reports no mode and --boot-mode is not given, the mode is left out", "k8sseed",
          ("openstack/ironic ironic/drivers/modules/redfish/management.py set_boot_mode (HPE Gen9 note)",)),
    Quirk("enabled-unchanged", "various (refuse), Supermicro (require)",
          "some BMCs refuse a BootSourceOverrideEnabled equal to the current value, Supermicro needs it every time",
          "send target, enabled and mode together; on HTTP 400 send once more with only the fields that change",
          "k8sseed",
          ("https://storyboard.openstack.org/#!/story/2007355", "https://storyboard.openstack.org/#!/story/2008547")),
    Quirk("supermicro-usbcd", "Supermicro X11/X12",
          "virtual media is a 'UsbCd' boot device; a 'Cd' override boots the physical drive",
          "sushy turns Cd into UsbCd on a Supermicro that allows UsbCd", "sushy",
          ("sushy sushy/resources/system/system.py set_system_boot_options", "redhat-performance/jetlag#152")),
    Quirk("dell-cd-is-physical", "iDRAC 8, older iDRAC 9 firmware",
          "a one-time 'Cd' override boots the physical optical drive, not the virtual one",
          "k8sseed cannot reach the OEM setting (iDRAC attribute VirtualMedia.1.BootOnce); update the iDRAC "
          "firmware, or use --boot-override continuous with the virtual CD first in the boot order", "operator",
          ("dell/iDRAC-Redfish-Scripting#90", "ansible-collections/community.general#494")),
    Quirk("once-ignored", "Supermicro (some firmware), others",
          "BootSourceOverrideEnabled Once is accepted but the machine follows its boot order",
          "--boot-override continuous sets the CD until `k8sseed attach --eject`, which also clears the override",
          "k8sseed",
          ("redhat-performance/jetlag#18", "dell/terraform-provider-redfish#138 (Continuous not with UefiTarget)")),
    Quirk("power-is-asynchronous", "all (the sushy-tools fake driver applies it 1-11 s later)",
          "ComputerSystem.Reset returns before the power state changes",
          "poll PowerState until On, within --timeout; then print the final state", "k8sseed",
          ("sushy-tools sushy_tools/emulator/resources/systems/fakedriver.py set_power_state",)),
)

