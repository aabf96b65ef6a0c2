"""Apt repository keys: pinned fingerprints, expiry checks and apt's signature errors explained.

The node script k8sseed-apt runs here on the host against real gpg and a real `apt-get update` of a small
signed repository served on 127.0.0.1 by the test; apt reads only a test-made configuration (APT_CONFIG
with its own sources, lists, cache and trusted dirs), so the host's apt state is untouched.
"""

from __future__ import annotations

import contextlib
import email.utils
import fcntl
import functools
import hashlib
import http.server
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO, make_secret, require_tool, run_cli
from private_apt import private_apt_env

from k8sseed.repository_keys import (
    DOCKER_KEY_FINGERPRINT,
    KUBERNETES_KEY_FINGERPRINT,
    KUBERNETES_KEY_URL,
    armored_key_fingerprints,
)
from k8sseed.templating import render_static

APT_SCRIPT = "/usr/local/sbin/k8sseed-apt"
PAST = "20200101T000000"  # the expired key is made (and signs) here, valid for one year


@dataclass(frozen=True)
class Key:
    fingerprint: str
    armored: Path


@dataclass(frozen=True)
class Keys:
    home: Path
    fresh: Key
    expired: Key
    other: Key


def gpg(home: Path, *args: str, faked: str | None = None) -> subprocess.CompletedProcess[str]:
    time_args = ["--faked-system-time", f"{faked}!"] if faked else []
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty", "--pinentry-mode", "loopback",
                           "--passphrase", "", *time_args, *args], check=True, capture_output=True, text=True)


def _make_key(home: Path, name: str, expire: str, faked: str | None = None) -> Key:
    gpg(home, "--quick-gen-key", f"{name} <{name}@k8sseed.test>", "ed25519", "sign", expire, faked=faked)
    listing = gpg(home, "--with-colons", "--list-keys", f"{name}@k8sseed.test").stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    armored = home.parent / f"{name}.asc"
    armored.write_text(gpg(home, "--armor", "--export", fingerprint).stdout)
    return Key(fingerprint, armored)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    require_tool("gpg")
    base = tmp_path_factory.mktemp("keys")
    home = base / "gnupg"
    home.mkdir(mode=0o700)
    made = Keys(home, _make_key(home, "fresh", "2y"), _make_key(home, "expired", "1y", faked=PAST),
                _make_key(home, "other", "2y"))
    yield made
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)


@pytest.fixture(scope="module")
def apt_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("script") / "k8sseed-apt"
    path.write_text(render_static("k8sseed-apt.sh.j2"))
    path.chmod(0o755)
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 for this test: (base URL, directory it serves)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def make_flat_repo(keys: Keys, directory: Path, signer: Key, faked: str | None = None) -> None:
    """A flat apt repository (deb URL /, like pkgs.k8s.io): Packages, Release, InRelease, Release.gpg."""
    directory.mkdir(parents=True)
    packages = b""
    (directory / "Packages").write_bytes(packages)
    release = (f"Origin: k8sseed-test\nLabel: k8sseed-test\nDate: {email.utils.formatdate(usegmt=True)}\n"
               f"SHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")
    (directory / "Release").write_text(release)
    sign = ["--local-user", signer.fingerprint]
    gpg(keys.home, *sign, "--clearsign", "--output", str(directory / "InRelease"), str(directory / "Release"),
        faked=faked)
    gpg(keys.home, *sign, "--armor", "--detach-sign", "--output", str(directory / "Release.gpg"),
        str(directory / "Release"), faked=faked)


def apt_env(tmp_path: Path, sources: str, locking: bool = False) -> dict[str, str]:
    """Environment for apt-get with a private configuration: nothing of the host's apt is read or written."""
    return private_apt_env(tmp_path / "apt", sources, locking=locking)


def run_key(script: Path, source: str | Path, fingerprint: str, keyring: Path,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script), "key", str(source), fingerprint, str(keyring), "mirrors.kubernetesKey",
                           KUBERNETES_KEY_URL], capture_output=True, text=True, timeout=120, env=env)


def export_keyring(keys: Keys, key: Key, keyring: Path) -> None:
    keyring.write_bytes(subprocess.run(["gpg", "--homedir", str(keys.home), "--batch", "--export", key.fingerprint],
                                       capture_output=True, check=True).stdout)


def keyring_fingerprints(keyring: Path) -> list[str]:
    out = subprocess.run(["gpg", "--batch", "--with-colons", "--show-keys", str(keyring)],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    return [lines[i + 1].split(":")[9] for i, line in enumerate(lines) if line.startswith("pub:")]


# --- the node-side key step -------------------------------------------------------------------------------


def test_fresh_key_with_pinned_fingerprint_is_written_and_apt_update_succeeds(keys, apt_script, served, tmp_path):
    url, root = served
    make_flat_repo(keys, root / "repo", keys.fresh)
    (root / "Release.key").write_text(keys.fresh.armored.read_text())
    keyring = tmp_path / "keyrings" / "test.gpg"
    env = apt_env(tmp_path, f"deb [signed-by={keyring}] {url}/repo/ /\n")
    result = run_key(apt_script, f"{url}/Release.key", keys.fresh.fingerprint, keyring, env)
    assert result.returncode == 0, result.stderr
    assert keyring_fingerprints(keyring) == [keys.fresh.fingerprint]
    assert "valid until" in result.stderr
    update = subprocess.run([str(apt_script), "update", f"{url}/repo/", "mirrors.kubernetesKey"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert update.returncode == 0, update.stdout + update.stderr
    assert list((tmp_path / "apt" / "lists").glob("*InRelease"))


def test_expired_key_is_refused_with_its_expiry_date_and_the_fix(keys, apt_script, tmp_path):
    keyring = tmp_path / "test.gpg"
    result = run_key(apt_script, keys.expired.armored, keys.expired.fingerprint, keyring)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "expired on 2020-12-31" in last and "EXPKEYSIG" in last
    assert f"set mirrors.kubernetesKey to a source that serves the refreshed key (e.g. {KUBERNETES_KEY_URL})" in last
    assert not keyring.exists()


def test_wrong_fingerprint_is_refused_naming_the_override(keys, apt_script, tmp_path):
    keyring = tmp_path / "test.gpg"
    result = run_key(apt_script, keys.other.armored, keys.fresh.fingerprint, keyring)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"wrong key: {keys.other.armored} holds {keys.other.fingerprint}, not the pinned {keys.fresh.fingerprint}" \
        in last
    assert "set mirrors.kubernetesKeyFingerprint" in last
    assert not keyring.exists()


def test_only_the_pinned_key_of_a_bundle_reaches_the_keyring(keys, apt_script, tmp_path):
    bundle = tmp_path / "bundle.asc"
    bundle.write_text(keys.other.armored.read_text() + keys.fresh.armored.read_text())
    keyring = tmp_path / "test.gpg"
    result = run_key(apt_script, bundle, keys.fresh.fingerprint.lower(), keyring)
    assert result.returncode == 0, result.stderr
    assert "ignoring 1 other key(s)" in result.stderr
    assert keyring_fingerprints(keyring) == [keys.fresh.fingerprint]


def test_a_web_page_instead_of_a_key_is_refused(apt_script, served, tmp_path):
    url, root = served
    (root / "Release.key").write_text("<html><body>Moved</body></html>\n")
    result = run_key(apt_script, f"{url}/Release.key", KUBERNETES_KEY_FINGERPRINT, tmp_path / "k.gpg")
    assert result.returncode == 1
    assert "is not an OpenPGP public key (it starts with '<html>" in result.stderr


def test_an_unreachable_key_url_names_the_url_and_the_inline_alternative(apt_script, served, tmp_path):
    url, _ = served
    result = run_key(apt_script, f"{url}/missing.key", KUBERNETES_KEY_FINGERPRINT, tmp_path / "k.gpg")
    assert result.returncode == 1
    assert f"could not download the repository key from {url}/missing.key" in result.stderr
    assert "set mirrors.kubernetesKey to the key itself" in result.stderr


# --- apt-get update, explained ------------------------------------------------------------------------------


def test_repository_signed_by_an_expired_key_stops_update_with_cause_and_fix(keys, apt_script, served, tmp_path):
    """The pkgs.k8s.io v1.24..v1.27 failure: Release signed while the key was valid, verified after it expired."""
    url, root = served
    make_flat_repo(keys, root / "repo", keys.expired, faked="20200601T000000")
    keyring = tmp_path / "expired.gpg"
    export_keyring(keys, keys.expired, keyring)
    env = apt_env(tmp_path, f"deb [signed-by={keyring}] {url}/repo/ /\n")
    update = subprocess.run([str(apt_script), "update", f"{url}/repo/", "mirrors.kubernetesKey"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert update.returncode == 1
    assert "EXPKEYSIG" in update.stdout  # apt's own words, passed on
    last = update.stderr.strip().splitlines()[-1]
    assert last.startswith(f"k8sseed-apt: apt refuses {url}/repo/: its signing key has EXPIRED (EXPKEYSIG)")
    assert "set mirrors.kubernetesKey to a source of the refreshed key" in last


# What apt printed on 2024-11-04 for a pkgs.k8s.io repository (kubernetes/release#3818): the GPG error names
# the CDN the repository redirects to, only the final error names the URL in sources.list.
CDN_OUTPUT = """\
Err:6 https://prod-cdn.packages.k8s.io/repositories/isv:/kubernetes:/core:/stable:/v1.26/deb  InRelease
  The following signatures were invalid: EXPKEYSIG 234654DA9A296436 \
isv:kubernetes OBS Project <isv:kubernetes@build.opensuse.org>
Reading package lists...
W: GPG error: https://prod-cdn.packages.k8s.io/repositories/isv:/kubernetes:/core:/stable:/v1.26/deb  InRelease: \
The following signatures were invalid: EXPKEYSIG 234654DA9A296436 \
isv:kubernetes OBS Project <isv:kubernetes@build.opensuse.org>
E: The repository 'https://pkgs.k8s.io/core:/stable:/v1.26/deb  InRelease' is not signed.
"""


def test_expired_signature_behind_the_cdn_redirect_is_still_named_expired(apt_script, tmp_path):
    stub = tmp_path / "bin" / "apt-get"
    stub.parent.mkdir()
    (tmp_path / "said").write_text(CDN_OUTPUT)
    stub.write_text(f"#!/bin/bash\ncat {tmp_path / 'said'}\nexit 100\n")
    stub.chmod(0o755)
    env = {**apt_env(tmp_path, ""), "PATH": f"{stub.parent}:{os.environ['PATH']}"}
    repo = "https://pkgs.k8s.io/core:/stable:/v1.26/deb/"
    update = subprocess.run([str(apt_script), "update", repo, "mirrors.kubernetesKey"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert update.returncode == 1
    assert update.stderr.strip().splitlines()[-1].startswith(
        f"k8sseed-apt: apt refuses {repo}: its signing key has EXPIRED (EXPKEYSIG)")


def test_repository_signed_by_another_key_is_explained_as_no_pubkey(keys, apt_script, served, tmp_path):
    url, root = served
    make_flat_repo(keys, root / "repo", keys.other)
    keyring = tmp_path / "fresh.gpg"
    export_keyring(keys, keys.fresh, keyring)
    env = apt_env(tmp_path, f"deb [signed-by={keyring}] {url}/repo/ /\n")
    update = subprocess.run([str(apt_script), "update", f"{url}/repo/", "mirrors.dockerKey"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert update.returncode == 1
    assert "(NO_PUBKEY)" in update.stderr and "set mirrors.dockerKey and mirrors.dockerKeyFingerprint" in update.stderr


def test_unsigned_repository_is_explained(keys, apt_script, served, tmp_path):
    url, root = served
    make_flat_repo(keys, root / "repo", keys.fresh)
    (root / "repo" / "InRelease").unlink()
    (root / "repo" / "Release.gpg").unlink()
    keyring = tmp_path / "fresh.gpg"
    export_keyring(keys, keys.fresh, keyring)
    env = apt_env(tmp_path, f"deb [signed-by={keyring}] {url}/repo/ /\n")
    update = subprocess.run([str(apt_script), "update", f"{url}/repo/", "mirrors.kubernetesKey"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert update.returncode == 1
    assert "the repository is not signed" in update.stderr.strip().splitlines()[-1]


def test_apt_update_waits_for_the_package_lists_lock(keys, apt_script, served, tmp_path, built):
    url, root = served
    make_flat_repo(keys, root / "repo", keys.fresh)
    keyring = tmp_path / "fresh.gpg"
    export_keyring(keys, keys.fresh, keyring)
    env = apt_env(tmp_path, f"deb [signed-by={keyring}] {url}/repo/ /\n", locking=True)
    (tmp_path / "apt" / "conf.d" / "90k8sseed-dpkg-lock").write_text(seed_lock_conf(built))
    with held_lock(tmp_path / "apt" / "lists" / "lock", seconds=3):
        started = time.monotonic()
        update = subprocess.run([str(apt_script), "update", f"{url}/repo/", "mirrors.kubernetesKey"],
                                capture_output=True, text=True, env=env, timeout=120)
    assert update.returncode == 0, update.stdout + update.stderr
    assert time.monotonic() - started >= 2.5
    assert "the package lists are locked by another apt" in update.stderr


def test_the_seeds_lock_timeout_makes_apt_get_wait_for_dpkg(tmp_path, built):
    """Without the seed's apt.conf.d file apt-get fails at once on a held dpkg lock; with it, it waits."""
    env = apt_env(tmp_path, "", locking=True)
    install = ["apt-get", "install", "-y", "-q"]
    with held_lock(tmp_path / "apt" / "lock-frontend", seconds=3):
        assert subprocess.run(install, env=env, capture_output=True, timeout=60).returncode == 100
    (tmp_path / "apt" / "conf.d" / "90k8sseed-dpkg-lock").write_text(seed_lock_conf(built))
    with held_lock(tmp_path / "apt" / "lock-frontend", seconds=3):
        started = time.monotonic()
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 2.5


@contextlib.contextmanager
def held_lock(path: Path, seconds: float) -> Iterator[None]:
    """Hold apt's fcntl lock on path (as another apt would), released by a timer after a few seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    timer = threading.Timer(seconds, lambda: fcntl.lockf(fd, fcntl.LOCK_UN))
    timer.start()
    try:
        yield
    finally:
        timer.join()
        os.close(fd)


# --- what k8sseed builds ------------------------------------------------------------------------------------


def _seed_files(out: Path, node: str) -> dict[str, str]:
    data = yaml.safe_load((out / node / "user-data").read_text())
    return {f["path"]: f["content"] for f in data["write_files"]}


def _node_env(files: dict[str, str]) -> dict[str, str]:
    env = {}
    for line in files["/etc/k8sseed/node.env"].splitlines():
        if "=" in line and not line.startswith("#") and not line.split("=", 1)[1].startswith("("):
            key, value = line.split("=", 1)
            env[key] = shlex.split(value)[0] if value else ""
    return env


LOCK_CONF = 'DPkg::Lock::Timeout "900";\n'


def seed_lock_conf(built: dict[str, Path]) -> str:
    return _seed_files(built["reference"], "worker-1")["/etc/apt/apt.conf.d/90k8sseed-dpkg-lock"]


def test_reference_seeds_get_the_refreshed_key_not_the_expired_v1_25_copy(built):
    files = _seed_files(built["reference"], "cp-1")
    env = _node_env(files)
    assert env["K8SSEED_KUBERNETES_REPO"] == "https://pkgs.k8s.io/core:/stable:/v1.25/deb/"
    assert env["K8SSEED_KUBERNETES_KEY"] == KUBERNETES_KEY_URL
    assert "v1.25" not in env["K8SSEED_KUBERNETES_KEY"]
    assert env["K8SSEED_KUBERNETES_KEY_FINGERPRINT"] == KUBERNETES_KEY_FINGERPRINT == \
        "DE15B14486CD377B9E876E1A234654DA9A296436"
    assert env["K8SSEED_DOCKER_KEY"] == "https://download.docker.com/linux/debian/gpg"
    assert env["K8SSEED_DOCKER_KEY_FINGERPRINT"] == DOCKER_KEY_FINGERPRINT
    bootstrap = files["/usr/local/sbin/k8sseed-bootstrap"]
    assert "Release.key" not in bootstrap and "--dearmor" not in bootstrap
    assert files[APT_SCRIPT] == render_static("k8sseed-apt.sh.j2")
    assert files["/etc/apt/apt.conf.d/90k8sseed-dpkg-lock"].endswith(LOCK_CONF)


def _build(tmp_path: Path, mirrors: dict[str, str]) -> Path:
    profile = yaml.safe_load((REPO / "profiles" / "reference.yaml").read_text())
    profile["mirrors"].update(mirrors)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    result = run_cli("build", str(tmp_path / "p.yaml"), "-o", str(tmp_path / "out"),
                     "--secret", str(make_secret(tmp_path)))
    assert result.returncode == 0, result.stderr
    return tmp_path / "out"


def test_a_mirror_serves_its_own_copy_of_the_key_by_default(tmp_path):
    out = _build(tmp_path, {"kubernetesPackages": "http://mirror.example.com:8080/k8s/v{minor}/",
                            "dockerKey": "http://mirror.example.com:8080/docker/{family}.gpg"})
    env = _node_env(_seed_files(out, "worker-1"))
    assert env["K8SSEED_KUBERNETES_KEY"] == "http://mirror.example.com:8080/k8s/v1.25/Release.key"
    assert env["K8SSEED_KUBERNETES_KEY_FINGERPRINT"] == KUBERNETES_KEY_FINGERPRINT
    assert env["K8SSEED_DOCKER_KEY"] == "http://mirror.example.com:8080/docker/debian.gpg"


def test_an_inline_key_reaches_the_node_as_a_file_the_node_script_accepts(keys, apt_script, tmp_path):
    """Air-gapped site: the armored key in the profile, its mirror's fingerprint pinned instead of upstream's."""
    out = _build(tmp_path, {"kubernetesPackages": "http://10.20.0.2:8080/k8s/",
                            "kubernetesKey": keys.fresh.armored.read_text(),
                            "kubernetesKeyFingerprint": keys.fresh.fingerprint.lower()})
    files = _seed_files(out, "cp-2")
    env = _node_env(files)
    assert env["K8SSEED_KUBERNETES_KEY"] == "/etc/k8sseed/apt-keys/kubernetes.asc"
    assert env["K8SSEED_KUBERNETES_KEY_FINGERPRINT"] == keys.fresh.fingerprint
    on_node = tmp_path / "kubernetes.asc"
    on_node.write_text(files["/etc/k8sseed/apt-keys/kubernetes.asc"])
    result = run_key(apt_script, on_node, env["K8SSEED_KUBERNETES_KEY_FINGERPRINT"], tmp_path / "k.gpg")
    assert result.returncode == 0, result.stderr
    assert keyring_fingerprints(tmp_path / "k.gpg") == [keys.fresh.fingerprint]


def test_an_inline_key_without_the_pinned_fingerprint_is_a_profile_error(keys, tmp_path):
    profile = yaml.safe_load((REPO / "profiles" / "reference.yaml").read_text())
    profile["mirrors"]["kubernetesKey"] = keys.fresh.armored.read_text()
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    result = run_cli("validate", str(tmp_path / "p.yaml"))
    assert result.returncode == 2
    assert (f"mirrors.kubernetesKey: the key block holds {keys.fresh.fingerprint}, not the pinned "
            f"{KUBERNETES_KEY_FINGERPRINT}") in result.stderr
    assert "set mirrors.kubernetesKeyFingerprint" in result.stderr


def test_armored_blocks_are_read_like_gpg_reads_them(keys):
    for key in (keys.fresh, keys.expired, keys.other):
        assert armored_key_fingerprints(key.armored.read_text()) == (key.fingerprint,)
    both = keys.fresh.armored.read_text() + keys.other.armored.read_text()
    with pytest.raises(ValueError, match="does not end with"):
        armored_key_fingerprints(both.replace("-----END PGP PUBLIC KEY BLOCK-----\n", "", 1)[:-40])
    text = keys.fresh.armored.read_text()
    lines = text.splitlines()
    body = next(i for i, line in enumerate(lines) if len(line) > 40)
    lines[body] = lines[body][:10] + ("A" if lines[body][10] != "A" else "B") + lines[body][11:]
    with pytest.raises(ValueError, match=r"checksum does not match|cut short|not OpenPGP"):
        armored_key_fingerprints("\n".join(lines))
    secret = gpg(keys.home, "--armor", "--export-secret-keys", keys.fresh.fingerprint).stdout
    with pytest.raises(ValueError, match="does not start with"):
        armored_key_fingerprints(secret)
