#!/usr/bin/python3
"""Point the container images of a fetched manifest at registry mirrors (runs on the init node).

Usage: k8sseed-rewrite-images MAPPING.json MANIFEST.yaml
MAPPING is {"quay.io": "harbor.example.com/quay.io", ...}. Only the `image` of entries in pod-spec
`containers` / `initContainers` / `ephemeralContainers` lists is changed (never a CRD schema that happens to
have an `image` property); an image whose registry is not in MAPPING is left alone. The manifest is parsed and
written back as YAML, and only when something changed. Each rewrite is printed. Needs python3 and PyYAML,
which every cloud image has (cloud-init depends on them). Kept to Python 3.6 syntax: old LTS images run it.
"""

import json
import os
import sys
import tempfile

import yaml

CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")


def split_reference(image):
    """(registry, path-with-tag-or-digest) the way container runtimes read a reference."""
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry = DOCKER_HUB if first in DOCKER_HUB_ALIASES else first
        return registry, rest
    if not sep:
        return DOCKER_HUB, "library/" + image
    return DOCKER_HUB, image


def mirrored(image, mapping):
    registry, path = split_reference(image)
    prefix = mapping.get(registry)
    return prefix.rstrip("/") + "/" + path if prefix else image


def rewrite(node, mapping, changes):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in CONTAINER_LISTS and isinstance(value, list):
                for container in value:
                    if isinstance(container, dict) and isinstance(container.get("image"), str):
                        new = mirrored(container["image"], mapping)
                        if new != container["image"]:
                            changes.append((container["image"], new))
                            container["image"] = new
            rewrite(value, mapping, changes)
    elif isinstance(node, list):
        for item in node:
            rewrite(item, mapping, changes)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: k8sseed-rewrite-images MAPPING.json MANIFEST.yaml\n")
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        mapping = json.load(handle)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with open(argv[2], encoding="utf-8") as handle:
        docs = list(yaml.load_all(handle, Loader=loader))
    changes = []
    rewrite(docs, mapping, changes)
    if not changes:
        print(f"no image of {argv[2]} is from a mirrored registry")
        return 0
    directory = os.path.dirname(os.path.abspath(argv[2]))
    options = {"Dumper": dumper, "default_flow_style": False, "sort_keys": False}
    if getattr(yaml, "__version__", "0").split(".")[0] in ("3", "4"):
        del options["sort_keys"]  # PyYAML < 5.1 has no sort_keys (keys come out sorted: same objects)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, delete=False) as out:
        yaml.dump_all([d for d in docs if d is not None], out, **options)
    os.replace(out.name, argv[2])
    for old, new in changes:
        print(f"image {old} -> {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
