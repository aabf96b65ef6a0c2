"""Jinja2 for files that are text by nature, with explicit quoting filters."""

from __future__ import annotations

import functools
import shlex

import jinja2


def shell_quote(value: object) -> str:
    text = str(value)
    if "\x00" in text:
        raise ValueError("NUL cannot be passed to a shell")
    return shlex.quote(text)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("k8sseed", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # bash uses "{#" (${#array[@]}): move Jinja comments out of its way.
        comment_start_string="<#--",
        comment_end_string="--#>",
    )
    env.filters["shell_quote"] = shell_quote
    return env


@functools.cache
def render_static(name: str) -> str:
    """A template with no per-node values, rendered once per process."""
    return environment().get_template(name).render()


def render(template: str, **values: object) -> str:
    return environment().get_template(template).render(**values)


def shell_assignments(env: tuple[tuple[str, str | tuple[str, ...]], ...]) -> str:
    """KEY='value' and KEY=('a' 'b') lines that bash can source; every value quoted."""
    lines = []
    for key, value in env:
        if not key.replace("_", "").isalnum() or not key.isupper():
            raise ValueError(f"bad variable name {key!r}")
        if isinstance(value, tuple):
            lines.append(f"{key}=(" + " ".join(shell_quote(v) for v in value) + ")")
        else:
            lines.append(f"{key}={shell_quote(value)}")
    return "\n".join(lines) + "\n"
