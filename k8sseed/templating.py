"""Jinja2 for files that are text by nature, with explicit quoting filters."""

from __future__ import annotations

import functools
import json
import re
import shlex

import jinja2


def shell_quote(value: object) -> str:
    text = str(value)
    if "\x00" in text:
        raise ValueError("NUL cannot be passed to a shell")
    return shlex.quote(text)


_CONFIG_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")


def config_word(value: object) -> str:
    """A bare token for keepalived/HAProxy configs: no space, quote, brace or comment character to escape."""
    text = str(value)
    if not _CONFIG_WORD.fullmatch(text):
        raise ValueError(f"{text!r} cannot be written as a bare word in a keepalived or HAProxy config")
    return text


@functools.lru_cache(maxsize=1024)
def bird_string(value: object) -> str:
    """A BIRD/FRR config string literal: BIRD's lexer has no escapes, so refuse what it cannot hold."""
    text = str(value)
    bad = sorted({c for c in text if c in '"\\' or not c.isprintable()})
    if bad:
        raise ValueError(f"{text!r} cannot be written as a BIRD string (contains {bad!r})")
    return f'"{text}"'


def yaml_string(value: object) -> str:
    """A double-quoted YAML scalar (JSON string syntax, which YAML reads as the same text)."""
    text = str(value)
    if not text.isprintable():
        raise ValueError(f"{text!r} is not one printable line")
    return json.dumps(text, ensure_ascii=False)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("k8sseed", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        auto_reload=False,  # the templates ship with the package: no stat() per render
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # bash uses "{#" (${#array[@]}): move Jinja comments out of its way.
        comment_start_string="<#--",
        comment_end_string="--#>",
    )
    env.filters["shell_quote"] = shell_quote
    env.filters["bird_string"] = bird_string
    env.filters["config_word"] = config_word
    env.filters["yaml_string"] = yaml_string
    return env


@functools.cache
def render_static(name: str) -> str:
    """A template with no per-node values, rendered once per process."""
    return _template(name).render()


@functools.cache
def _template(name: str) -> jinja2.Template:
    """Jinja's own template cache costs a lock and an LRU update per look-up: per node, per template."""
    return environment().get_template(name)


def _plain(value: object) -> bool:
    return type(value) in (str, int, bool) or value is None or (
        type(value) is tuple and all(type(item) is str for item in value))


@functools.lru_cache(maxsize=256)
def _render_plain(template: str, items: tuple[tuple[str, type, object], ...]) -> str:
    return _template(template).render(**{key: value for key, _, value in items})


def render(template: str, **values: object) -> str:
    """Templates are pure functions of their values: renders whose values are all plain (strings, numbers,
    tuples of strings) are memoised, so a unit file that is the same on every node is rendered once."""
    if all(_plain(value) for value in values.values()):
        # the type is part of the key: True == 1 for a dict, not for a template
        return _render_plain(template, tuple((key, type(value), value) for key, value in sorted(values.items())))
    return _template(template).render(**values)


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
