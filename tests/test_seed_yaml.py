"""user-data is the YAML of the seed's data, byte for byte, however it is sped up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import NOCLOUD_PROFILES, make_secret

from k8sseed import yamltext
from k8sseed.build import load_plan
from k8sseed.seed import user_data_dict, user_data_text


class _StockDumper(yaml.SafeDumper):
    """PyYAML's own pure-Python dumper with k8sseed's one style rule (literal blocks for multi-line strings)."""


_StockDumper.add_representer(str, yamltext._str)


def _stock_dump(data: object) -> str:
    return yaml.dump(data, **{**yamltext._OPTIONS, "Dumper": _StockDumper})


@pytest.mark.parametrize("profile", NOCLOUD_PROFILES, ids=lambda p: p.stem)
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


def _stock_dump_all(documents: list[object]) -> str:
    return yaml.dump_all(documents, explicit_start=True, **{**yamltext._OPTIONS, "Dumper": _StockDumper})


@pytest.mark.parametrize("profile", NOCLOUD_PROFILES, ids=lambda p: p.stem)
def test_every_yaml_file_a_seed_writes_is_what_stock_pyyaml_writes(profile: Path, tmp_path: Path) -> None:
    """The kubeadm configs and the other YAML files go through the memoised dumper: same bytes as stock PyYAML."""
    plan, _, _ = load_plan(profile, make_secret(tmp_path))
    checked = 0
    for node in plan.nodes:
        for entry in user_data_dict(plan, node)["write_files"]:
            if entry["path"].endswith(".yaml"):
                documents = list(yaml.safe_load_all(entry["content"]))
                assert entry["content"] == _stock_dump_all(documents), (node.name, entry["path"])
                checked += 1
    assert checked >= len(plan.nodes)


def test_memoised_dumps_keep_values_of_other_types_apart() -> None:
    """True and 1, 'a' and ['a'], 1 and '1' as keys: equal for a dict or JSON, different YAML."""
    values = [{"k": True}, {"k": 1}, {"k": "1"}, {"k": 1.0}, {"k": ["a"]}, {"k": "a"}, {1: "v"}, {"1": "v"},
              {"k": None}, {"k": "null"}]
    for _ in range(2):
        for value in values:
            assert yamltext.dump_memoised(value) == _stock_dump(value)
            assert yamltext.dump_mapping(value) == _stock_dump(value)
            assert yamltext.dump_documents([value, value]) == _stock_dump_all([value, value])
