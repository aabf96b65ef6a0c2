"""iPXE scripts: one entry script for the whole rack, chaining to each machine's own by its MAC.

iPXE splits a command line at whitespace, treats a token that is exactly ';', '||' or '&&' as a command
separator and one starting with '#' as a comment, and expands ${...} in every token (src/core/exec.c). So
`ds=nocloud-net;s=URL` passes through as one kernel argument, and every value we write is checked to hold no
whitespace, '$' or leading '#' (the profile schema restricts kernel arguments and URLs the same way).
"""

from __future__ import annotations

import base64
import re

from k8sseed.profile.model import Autoinstall, Pxe

_SAFE = re.compile(r"[A-Za-z0-9._~%!&()*+,;=:@/-]+")


def _word(value: str) -> str:
    if not _SAFE.fullmatch(value) or value.startswith("#"):
        raise ValueError(f"{value!r} cannot be written into an iPXE script")
    return value


def entry_script(base_url: str) -> str:
    base = _word(base_url)
    return (
        "#!ipxe\n"
        "# k8sseed: every machine chains to its own script, found by its first NIC's MAC.\n"
        f"chain --autofree {base}ipxe/by-mac/${{net0/mac}}.ipxe || goto unknown\n"
        ":unknown\n"
        "echo k8sseed: no node with MAC ${net0/mac} in this build (see the server's log); retrying in 30 s\n"
        "sleep 30\n"
        f"chain --autofree {base}ipxe/boot.ipxe\n"
    )


# x86 kernels keep 2048 bytes of command line; leave room for the image's own arguments.
MAX_NETWORK_CONFIG_ARG = 1400


def seed_arguments(base_url: str, mac: str, network_config: bytes | None) -> list[str]:
    """Kernel arguments that make cloud-init read this machine's seed from the server.

    `ds=nocloud-net`: cloud-init before 24.x (Debian 12 has 22.4) reads an HTTP seedfrom only under that name;
    newer releases accept it as an alias of `ds=nocloud`. Those older releases also never fetch network-config
    from the seed URL (only meta-data, user-data, vendor-data), so the node's static network goes on the
    command line too, as cloud-init's `network-config=<base64>`."""
    args = [_word(f"ds=nocloud-net;s={_word(base_url)}by-mac/{mac}/")]
    if network_config:
        encoded = "network-config=" + base64.b64encode(network_config).decode("ascii")
        if len(encoded) <= MAX_NETWORK_CONFIG_ARG:
            args.append(_word(encoded))
    return args


def ignition_arguments(base_url: str, mac: str) -> list[str]:
    """Kernel arguments that make Flatcar's Ignition fetch this machine's config from the server.
    `flatcar.first_boot=1`: Ignition runs only on a first boot, which a PXE boot must say it is."""
    return ["flatcar.first_boot=1", _word(f"ignition.config.url={_word(base_url)}by-mac/{mac}/config.ign")]


def node_script(base_url: str, node: str, role: str, mac: str, pxe: Pxe, network_config: bytes | None,
                ignition: bool = False) -> str:
    """Boots the profile's kernel and initrd with the NoCloud seed URL (or the Ignition config URL) of this
    machine."""
    args = " ".join(_word(a) for a in pxe.kernel_args)
    seed = " ".join(ignition_arguments(base_url, mac) if ignition else seed_arguments(base_url, mac, network_config))
    kernel_line = " ".join(x for x in (f"kernel {_word(pxe.kernel)} initrd=initrd", args, seed) if x)
    return (
        "#!ipxe\n"
        f"# k8sseed: {_word(node)} ({_word(role)}), MAC {_word(mac)}\n"
        f"{kernel_line}\n"
        f"initrd --name initrd {_word(pxe.initrd)}\n"
        "boot\n"
    )


def installer_arguments(base_url: str, mac: str, installer: Autoinstall) -> list[str]:
    """Kernel arguments of the Ubuntu live-server installer for this machine's autoinstall seed.

    `autoinstall`: without it subiquity stops and asks before wiping the disk (canonical/subiquity#661).
    `ip=dhcp url=ISO`: the initrd brings the NIC up and loads the live ISO into RAM. `cloud-config-url=/dev/null`:
    cloud-init otherwise takes the legacy `url=` as a cloud-config URL and downloads the whole ISO a second
    time (canonical/cloud-init#3893). `ds=nocloud-net;s=...`: one iPXE token (see the module docstring); GRUB
    would need it quoted."""
    return ["ip=dhcp", _word(f"url={_word(installer.iso)}"), "cloud-config-url=/dev/null",
            *(_word(a) for a in installer.kernel_args), "autoinstall",
            _word(f"ds=nocloud-net;s={_word(base_url)}autoinstall/by-mac/{mac}/")]


def installer_script(base_url: str, node: str, role: str, mac: str, installer: Autoinstall) -> str:
    """Boots the Ubuntu installer onto this machine's blank disk (install: ubuntu-autoinstall)."""
    kernel_line = " ".join([f"kernel {_word(installer.kernel)} initrd=initrd",
                            *installer_arguments(base_url, mac, installer)])
    return (
        "#!ipxe\n"
        f"# k8sseed: {_word(node)} ({_word(role)}), MAC {_word(mac)}: Ubuntu autoinstall onto the local disk\n"
        f"{kernel_line}\n"
        f"initrd --name initrd {_word(installer.initrd)}\n"
        "boot\n"
    )


def local_disk_script(node: str, role: str, mac: str) -> str:
    """The installer reported this machine installed: leave iPXE, so the firmware boots its next device, the
    disk (the boot order must be network first, then the disk)."""
    return (
        "#!ipxe\n"
        f"# k8sseed: {_word(node)} ({_word(role)}), MAC {_word(mac)}: installed; booting the local disk\n"
        f"# (to install it again: k8sseed rearm --reinstall OUT {_word(node)})\n"
        "echo k8sseed: this machine is installed: booting from its disk\n"
        "exit\n"
    )
