"""Seeds of an example profile with its download mirrors pointed at a test's local mirror (10.20.0.2:8080).

Mirrors are a product feature (sites behind firewalls use them), so the node bootstrap does not know it is
being tested. Shared by the single-VM and the cluster VM tests.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
K8SSEED = str(Path(sys.executable).parent / "k8sseed")
MIRROR = "http://10.20.0.2:8080"
MIRRORED = ("calico/v3.25.2/tigera-operator.yaml", "purelb/v0.16.6/crds.yaml", "purelb/v0.16.6/purelb.yaml")


def build_behind_mirror(work: Path, profile_name: str, mirrors: dict | None = None,
                        served: dict[str, str] | None = None, sections: dict | None = None) -> tuple[dict, Path, Path]:
    """Build profiles/<profile_name> with a fresh secret into work/out; returns (profile, out, mirror dir).

    `mirrors` adds to the profile's mirrors section; `served` replaces the content of some MIRRORED files;
    `sections` sets top-level profile sections (e.g. seedServer).
    """
    profile = yaml.safe_load((REPO / "profiles" / profile_name).read_text())
    profile.update(sections or {})
    profile["mirrors"].update({
        "calicoOperator": f"{MIRROR}/calico/v{{version}}/tigera-operator.yaml",
        "purelbCRDs": f"{MIRROR}/purelb/v{{version}}/crds.yaml",
        "purelb": f"{MIRROR}/purelb/v{{version}}/purelb.yaml",
        **(mirrors or {}),
    })
    if "bgp" in profile:
        # Guests under TCG (4 on 2 cores in the cluster test) can stall for a second and more: BFD timers that
        # tolerate 2.5 s instead of the default 1.5 s meant for real machines, still inside the 3 s withdraw goal.
        profile["bgp"]["bfd"] = {"intervalMilliseconds": 500, "multiplier": 5}
    (work / "profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    secret = work / "profile.secret"
    secret.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    secret.chmod(0o600)
    out = work / "out"
    subprocess.run([K8SSEED, "build", str(work / "profile.yaml"), "-o", str(out)], check=True, capture_output=True)
    mirror = work / "mirror"
    for rel in MIRRORED:
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_text((served or {}).get(rel)
                                  or f"# test mirror copy of {rel}\napiVersion: v1\nkind: List\nitems: []\n")
    return profile, out, mirror
