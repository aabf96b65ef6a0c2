"""The one error type of the BMC layer: a message the CLI prints as one line."""

from __future__ import annotations


class BmcError(Exception):
    """Something on the way to or at the BMC failed; str() is one line that says what and what to do."""
