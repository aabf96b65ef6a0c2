"""Counted nouns in messages: '1 seed', '3 seeds', 'no worker nodes'."""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """count with noun, or nouns (default noun + 's') when count is not 1; 0 reads 'no ...'."""
    many = nouns or f"{noun}s"
    if count == 0:
        return f"no {many}"
    return f"1 {noun}" if count == 1 else f"{count} {many}"
