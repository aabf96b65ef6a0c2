"""`k8sseed pxe-config`: a dnsmasq proxy-DHCP + TFTP configuration that chain-loads iPXE to the seed server."""

from __future__ import annotations

import ipaddress
import re

from k8sseed.templating import render

_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%!&()*+,;=:@/-]*)?")


class PxeConfigError(ValueError):
    pass


def server_base(url: str) -> str:
    """The seed server URL, checked and ending in '/'."""
    if not _URL.fullmatch(url):
        raise PxeConfigError(f"--server {url!r} is not an http(s) URL without spaces, quotes or '$' "
                             "(e.g. http://10.20.0.5:8080/)")
    return url if url.endswith("/") else url + "/"


def dnsmasq_config(cluster: str, server_url: str, networks: list[ipaddress.IPv4Network], tftp_root: str) -> str:
    if not tftp_root.startswith("/") or not re.fullmatch(r"(/[A-Za-z0-9._+-]+)+/?", tftp_root):
        raise PxeConfigError(f"--tftp-root {tftp_root!r} must be an absolute path of letters, digits and ._+-")
    base = server_base(server_url)
    return render("dnsmasq-pxe.conf.j2", cluster=cluster, server=base, networks=networks,
                  tftp_root_relative=tftp_root.strip("/"), entry_url=base + "ipxe/boot.ipxe")
