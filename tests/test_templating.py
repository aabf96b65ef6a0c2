"""Rendering: memoised renders are the same text as fresh ones, and values of other types never share a render."""

from __future__ import annotations

import jinja2
import pytest

from k8sseed import templating


@pytest.fixture
def scratch_template(monkeypatch):
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    template = env.from_string("value={{ value }} items={{ items | join(',') }}\n")
    monkeypatch.setattr(templating, "_template", lambda name: template)
    templating._render_plain.cache_clear()
    yield template
    templating._render_plain.cache_clear()


def test_a_memoised_render_is_the_fresh_render(scratch_template):
    for _ in range(3):
        assert templating.render("t", value="a", items=("x", "y")) == scratch_template.render(value="a",
                                                                                                 items=("x", "y"))
    assert templating._render_plain.cache_info().hits == 2


def test_true_and_one_are_different_values(scratch_template):
    assert templating.render("t", value=1, items=()) == "value=1 items=\n"
    assert templating.render("t", value=True, items=()) == "value=True items=\n"


def test_values_that_are_not_plain_are_rendered_every_time(scratch_template):
    templating.render("t", value=["a"], items=["b"])
    templating.render("t", value=["a"], items=["b"])
    assert templating._render_plain.cache_info().currsize == 0
