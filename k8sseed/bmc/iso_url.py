"""Check an ISO URL before a BMC is told to fetch it: the form, and whether it serves the ISO that OUT holds."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

from k8sseed.bmc.errors import BmcError

CHECK_TIMEOUT_SECONDS = 5.0


def checked_url(url: str, option: str) -> str:
    """An http(s) URL with a host and no space or control character (BMCs take only these; transfer-protocol)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or re.search(r"[\s\x00-\x1f\x7f]", url):
        raise BmcError(f"{option} {url!r}: expected an http:// or https:// URL with a host, e.g. "
                       "http://10.20.0.5:8080/iso/cp-1.iso")
    if parsed.username or parsed.password:
        raise BmcError(f"{option}: the URL carries a user name or password; credentials never go on the command line")
    return url


def check_served_size(url: str, expected_size: int) -> str | None:
    """Ask for the first byte (a range request, as BMCs do): an error when the server answers with another
    file size or an HTTP error; a warning text when this host cannot reach it (the BMC may still)."""
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0", "User-Agent": "k8sseed-attach"})
    try:
        with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT_SECONDS) as response:
            total = _total_size(response.status, response.headers)
    except urllib.error.HTTPError as exc:
        raise BmcError(f"--iso-url {url}: the server answers HTTP {exc.code} {exc.reason}: the BMC would fail "
                       "to fetch it; serve OUT with 'k8sseed serve' and use its /iso/<node>.iso") from exc
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return (f"cannot fetch --iso-url from this host ({reason}); attaching anyway: the BMC must reach it "
                "from its own network")
    if total is not None and total != expected_size:
        raise BmcError(f"--iso-url {url} serves {total} bytes but the node's ISO in OUT has {expected_size}: "
                       "another build or another node's ISO? (--no-check-iso skips this check)")
    return None


def _total_size(status: int, headers: object) -> int | None:
    content_range = headers.get("Content-Range") if hasattr(headers, "get") else None
    if status == 206 and content_range:
        match = re.fullmatch(r"bytes \d+-\d+/(\d+)", content_range.strip())
        return int(match.group(1)) if match else None
    length = headers.get("Content-Length") if hasattr(headers, "get") else None
    return int(length) if status == 200 and length and length.isdigit() else None
