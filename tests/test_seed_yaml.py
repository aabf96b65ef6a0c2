"""user-data is the YAML of the seed's data, byte for byte, however it is sped up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLE_PROFILES, make_secret

from k8sseed import yamltext
from k8sseed.build import load_plan
from k8sseed.seed import user_data_dict, user_data_text


class _StockDumper(yaml.SafeDumper):
    """PyYAML's own pure-Python dumper with k8sseed's one style rule (literal blocks for multi-line strings)."""


_StockDumper.add_representer(str, yamltext._str)


def _stock_dump(data: object) -> str:
    return yaml.dump(data, **{**yamltext._OPTIONS, "Dumper": _StockDumper})


@pytest.mark.parametrize("profile", EXAMPLE_PROFILES, ids=lambda p: p.stem)
def test_user_data_is_byte_identical_to_a_stock_pyyaml_dump_of_its_data(profile: Path, tmp_path: Path) -> None:
    plan, _, _ = load_plan(profile, make_secret(tmp_path))
    for node in plan.nodes:
        data = user_data_dict(plan, node)
        assert user_data_text(plan, node) == "#cloud-config\n" + _stock_dump(data), node.name
        assert yaml.safe_load(user_data_text(plan, node)) == data


@pytest.mark.parametrize("value", [
    {"a": [1, True, False, None, "x"], "b": {"nested": ["multi\nline\n", "", "yes", "0755", "1.0", "~", "null"]}},
    ["- item", "key: value", "#comment", " leading space", "trailing space ", "tab\there", "üñí©ødé"],
    {"empty": {}, "list": [], "tuple-free": [[1, 2], {"k": "v"}]},
])
def test_the_fast_representer_writes_what_pyyaml_writes(value: object) -> None:
    assert yamltext.dump(value) == _stock_dump(value)
    assert yaml.safe_load(yamltext.dump(value)) == value
