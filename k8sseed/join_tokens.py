"""Bootstrap tokens by time window: the token math shared by the build and the control planes' timer.

Time is cut into windows of `window` seconds from the Unix epoch; window k is [k*window, (k+1)*window). The token
of window k is HMAC-SHA256 under the token key (derived from the cluster secret, carried by control planes only)
of `k8sseed/v1/bootstrap-token/<window>/<k>/<block>` for blocks 0 and 1, read byte by byte: a byte below 252
(7 x 36) gives the character alphabet[byte % 36], others are skipped; the first 22 characters are the token
(6 id + 16 secret). A seed built in window k carries window k's token, valid until the end of window k+1.
`k8sseed-join-tokens` (templates/k8sseed-join-tokens.sh.j2) computes the same with openssl and bash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

TOKEN_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ACCEPT_BELOW = 252  # 7 * 36: bytes from 252 up would favour the first four characters
DAY = 86400


@dataclass(frozen=True)
class WindowToken:
    window: int  # window length in seconds
    index: int  # k: the window this token belongs to
    token: str

    @property
    def starts(self) -> int:
        return self.index * self.window

    @property
    def expires(self) -> int:
        """End of window k+1: a seed built at any moment of window k stays usable for at least one window."""
        return (self.index + 2) * self.window

    @property
    def expires_rfc3339(self) -> str:
        return rfc3339(self.expires)


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_index(now: int, window: int) -> int:
    return now // window


def window_token(token_key: bytes, window: int, index: int) -> WindowToken:
    chars: list[str] = []
    for block in (0, 1):
        message = f"k8sseed/v1/bootstrap-token/{window}/{index}/{block}".encode("ascii")
        for byte in hmac.new(token_key, message, hashlib.sha256).digest():
            if byte < _ACCEPT_BELOW and len(chars) < 22:
                chars.append(TOKEN_ALPHABET[byte % 36])
    if len(chars) < 22:  # needs 43 of 64 bytes to be skipped: never seen, but never a short token either
        raise ValueError(f"window {index}: too few usable bytes for a token")
    text = "".join(chars)
    return WindowToken(window, index, f"{text[:6]}.{text[6:]}")


def token_for_time(token_key: bytes, window: int, now: int) -> WindowToken:
    return window_token(token_key, window, window_index(now, window))


def tokens_kept_at(token_key: bytes, window: int, now: int) -> tuple[WindowToken, ...]:
    """What the control planes keep in the cluster at `now`: windows k-1 (seeds built then are valid until the end
    of window k), k and k+1 (so that a builder whose clock runs ahead, or a build just after the boundary, finds
    its token already there)."""
    k = window_index(now, window)
    return tuple(window_token(token_key, window, j) for j in (k - 1, k, k + 1))
