"""`k8sseed serve` hands Flatcar nodes their Ignition config, by name and by MAC, and iPXE boots them with
`ignition.config.url=`; hand-out-once guards it like user-data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES
from serve_support import Lab, Server, lab_from_data

SEED_SERVER = {
    "allowedNetworks": ["127.0.0.0/8"],
    "handOutOnce": True,
    "pxe": {"kernel": "http://10.30.0.5:8080/flatcar_production_pxe.vmlinuz",
            "initrd": "http://10.30.0.5:8080/flatcar_production_pxe_image.cpio.gz",
            "kernelArgs": ["console=ttyS0,115200"]},
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    directory = tmp_path_factory.mktemp("serve-ignition")
    data = yaml.safe_load((PROFILES / "flatcar.yaml").read_text())
    data["seedServer"] = SEED_SERVER
    return lab_from_data(directory, data)


def _macs(out: Path) -> dict[str, str]:
    return {n["name"]: n["mac"] for n in json.loads((out / "manifest.json").read_text())["nodes"]}


def test_the_ignition_config_is_served_by_name_and_by_mac(lab: Lab) -> None:
    with Server(lab) as server:
        expected = (lab.out / "fc-worker-1.ign").read_bytes()
        status, headers, body = server.get("/fc-worker-1/config.ign")
        assert (status, body) == (200, expected)
        assert headers["content-type"] == "application/vnd.coreos.ignition+json"
        mac = _macs(lab.out)["fc-worker-1"]
        assert server.get(f"/by-mac/{mac}/config.ign")[2] == expected
        assert server.get(f"/by-mac/{mac.upper().replace(':', '-')}/config.ign")[2] == expected
        assert server.get("/fc-worker-1/user-data")[0] == 404, "an Ignition-only build has no NoCloud seed"
        assert server.get("/nobody/config.ign")[0] == 404


def test_a_control_plane_config_is_handed_out_once(lab: Lab) -> None:
    with Server(lab) as server:
        assert server.get("/fc-cp-2/config.ign", source="127.0.0.2")[0] == 200
        assert server.get("/fc-cp-2/config.ign", source="127.0.0.2")[0] == 200, "the same client may fetch again"
        status, _, _ = server.get("/fc-cp-2/config.ign", source="127.0.0.3")
        assert status in (403, 409, 410)


def test_ipxe_boots_flatcar_with_its_ignition_url(lab: Lab) -> None:
    with Server(lab, "--url", "http://10.30.0.5:8080/") as server:
        mac = _macs(lab.out)["fc-cp-1"]
        status, _, body = server.get(f"/ipxe/by-mac/{mac}.ipxe")
        assert status == 200
        kernel = next(line for line in body.decode().splitlines() if line.startswith("kernel "))
        assert kernel.split() == ["kernel", "http://10.30.0.5:8080/flatcar_production_pxe.vmlinuz", "initrd=initrd",
                                  "console=ttyS0,115200", "flatcar.first_boot=1",
                                  f"ignition.config.url=http://10.30.0.5:8080/by-mac/{mac}/config.ign"]
