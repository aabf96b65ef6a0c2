"""Host names and addresses as the profile takes them: an IPv4 address, or an RFC 1123 DNS name whose last label
is not all digits (RFC 3696 section 2), so that a mistyped address is never taken for a name."""

from __future__ import annotations

import re

_DOTTED_NUMBERS = re.compile(r"[0-9]+(\.[0-9]+)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def host_problem(host: str) -> str | None:
    """Why host is neither an IPv4 address nor a usable DNS name, in words; None when it is one of them."""
    if _DOTTED_NUMBERS.fullmatch(host):
        numbers = host.split(".")
        if len(numbers) != 4:
            return (f"looks like an IPv4 address but has {len(numbers)} number{'s' if len(numbers) != 1 else ''}, "
                    "not 4 (and a DNS name's last label cannot be all digits, RFC 3696 section 2)")
        too_big = [n for n in numbers if int(n) > 255]
        if too_big:
            return f"looks like an IPv4 address but is not one: {too_big[0]} is over 255"
        if any(len(n) > 1 and n.startswith("0") for n in numbers):
            return "is an IPv4 address with a leading zero, which tools read as octal: write it without"
        return None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return ("is not a DNS name: labels of lower-case letters, digits and '-' (not first or last), at most 63 "
                "characters each, separated by single dots (RFC 1123)")
    if labels[-1].isdigit():
        return f"is not a DNS name: its last label '{labels[-1]}' is all digits (RFC 3696 section 2)"
    return None


def endpoint_problem(endpoint: str) -> str | None:
    """host_problem for the host of HOST[:PORT]; None for anything not of that shape (the schema's words say it)."""
    if not re.fullmatch(r"[^:/\s]+(:[0-9]{1,5})?", endpoint):
        return None
    return host_problem(endpoint.partition(":")[0])
