"""The real-k8s apt repository (tests/realk8s/apt_repo.py), proven with the node's own tools and real apt.

Each test of the repository runs twice: on stand-in executables (a few seconds, in `make test`) and, marked
realk8s, on the real binaries of `make real-k8s` (skipped, saying so, until they are built; failed under
`make test-real`). The
repository is served on 127.0.0.1; apt reads only a test-made configuration (APT_CONFIG: its own sources,
lists, cache, dpkg status and trusted dirs), so the host's apt state is untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import apt_repo
import pytest
import yaml
from private_apt import private_apt_env
from realk8s_support import CACHE, KUBERNETES_RELEASES, folder_of

from k8sseed.profile.load import load_profile_text
from k8sseed.templating import render_static

REPO = Path(__file__).resolve().parents[2]

# The newest release tests/realk8s builds (1.36.5); the stand-ins take its number too.
REAL_VERSION = KUBERNETES_RELEASES[0]
TOOLS = ("apt-get", "apt-cache", "apt-ftparchive", "dpkg-deb", "gpg", "curl")

# What the node does with the repository (k8sseed/templates/bootstrap.sh.j2, phase_kubernetes_packages).
NODE_PICKS_THE_BUILD = """apt-cache madison kubeadm | awk -v v="$1" '$3 ~ "^" v "-" {print $3; exit}'"""


def _missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _finished(folder: Path) -> bool:
    """build.sh writes the stamp after the last binary; a rebuild empties bin/ first but leaves the old stamp."""
    stamp, bin_dir = folder / "stamp", folder / "bin"
    return stamp.is_file() and bin_dir.is_dir() and stamp.stat().st_mtime >= bin_dir.stat().st_mtime


def real_bin_dirs(version: str = REAL_VERSION) -> list[Path]:
    """The bin directories of build.sh's cache for one release, or a skip naming make real-k8s (a failure under
    make test-real)."""
    folders = [f"kubernetes-{version}", folder_of("cri-tools-"), folder_of("cni-plugins-")]
    missing = [folder for folder in folders if not _finished(CACHE / folder)]
    if missing:
        reason = (f"{', '.join(str(CACHE / folder) for folder in missing)} not built (no stamp newer than its bin/): "
                  f"run `make real-k8s` (tests/realk8s/build.sh {' '.join(missing)})")
        if os.environ.get("K8SSEED_REQUIRE_REAL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return [CACHE / folder / "bin" for folder in folders]


def _stand_in(path: Path, script: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def stand_in_bin_dirs(top: Path, version: str) -> list[Path]:
    """Tiny executables answering the version questions the node asks, in build.sh's folder layout."""
    k8s = top / f"kubernetes-{version}" / "bin"
    _stand_in(k8s / "kubeadm", f'[ "$*" = "version -o short" ] && echo v{version}')
    _stand_in(k8s / "kubelet", f'[ "$*" = --version ] && echo "Kubernetes v{version}"')
    _stand_in(k8s / "kubectl", f"echo '{{\"clientVersion\": {{\"gitVersion\": \"v{version}\"}}}}'")
    crictl = top / "cri-tools-1.34.0" / "bin"
    _stand_in(crictl / "crictl", "echo crictl version v1.34.0")
    cni = top / "cni-plugins-1.8.0" / "bin"
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        _stand_in(cni / plugin, f"echo {plugin}")
    (cni / "LICENSE").write_text("not a plugin: left out of the package\n")
    return [k8s, crictl, cni]


@dataclass(frozen=True)
class Served:
    repo: apt_repo.Repository
    version: str
    url: str  # the deb line's URL of the repository
    gnupghome: Path
    apt_script: Path


@pytest.fixture(scope="module", params=["stand-in", pytest.param("real", marks=pytest.mark.realk8s)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    missing = _missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: sudo make deps installs them (apt-utils, gnupg, curl)")
    top = tmp_path_factory.mktemp(f"apt-repo-{request.param}")
    bins = real_bin_dirs() if request.param == "real" else stand_in_bin_dirs(top / "cache", REAL_VERSION)
    gnupghome = top / "gnupg"
    script = top / "k8sseed-apt"
    script.write_text(render_static("k8sseed-apt.sh.j2"))
    script.chmod(0o755)
    try:
        fingerprint = apt_repo.make_signing_key(gnupghome)
        repo = apt_repo.build_repository(REAL_VERSION, bins, top / "www", gnupghome, fingerprint)
        with apt_repo.serve(repo.root) as server:
            yield Served(repo, REAL_VERSION, repo.url(server.url), gnupghome, script)
    finally:
        apt_repo.stop_gpg_agent(gnupghome)


@dataclass(frozen=True)
class Apt:
    top: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=timeout)

    @property
    def archives(self) -> Path:
        return self.top / "cache" / "archives"


# A minimal Debian's dpkg status: the base packages the kubelet package depends on are installed.
BASE_SYSTEM = ("mount", "util-linux")


def dpkg_status(installed: tuple[str, ...]) -> str:
    arch = apt_repo.host_architecture()
    return "".join(f"Package: {name}\nStatus: install ok installed\nPriority: required\nSection: admin\n"
                   f"Maintainer: test <test@k8sseed.test>\nArchitecture: {arch}\nVersion: 1.0-1\n"
                   "Description: stand-in\n\n" for name in installed)


def private_apt(top: Path, sources: str, installed: tuple[str, ...] = BASE_SYSTEM) -> Apt:
    """apt-get/apt-cache reading and writing only below top (nothing of the host's apt configuration or state)."""
    env = private_apt_env(top, sources, dpkg_status(installed),
                          extra={"APT::Architecture": apt_repo.host_architecture()})
    return Apt(top, env)


def pinned_keyring(served: Served, keyring: Path) -> None:
    """The node's key step: the served Release.key, accepted only with the pinned fingerprint."""
    key = subprocess.run([str(served.apt_script), "key", f"{served.url}Release.key", served.repo.fingerprint,
                          str(keyring), "mirrors.kubernetesKey"], capture_output=True, text=True, timeout=120)
    assert key.returncode == 0, key.stderr
    assert f"key {served.repo.fingerprint}" in key.stderr and "valid until" in key.stderr


@pytest.fixture(scope="module")
def updated(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Apt:
    """A private apt that trusts the repository through the node's key step and has run the node's update."""
    top = tmp_path_factory.mktemp("apt")
    keyring = top / "kubernetes-apt-keyring.gpg"
    pinned_keyring(served, keyring)
    apt = private_apt(top / "apt", f"deb [signed-by={keyring}] {served.url} /\n")
    update = apt.run(str(served.apt_script), "update", served.url, "mirrors.kubernetesKey")
    assert update.returncode == 0, update.stdout + update.stderr
    return apt


def deb_paths(deb: Path) -> set[str]:
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].removeprefix(".") for line in listing.splitlines() if not line.startswith("d")}


def deb_field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(deb), name], capture_output=True, text=True,
                          check=True).stdout.strip()


def _deb(served: Served, name: str) -> Path:
    return next(deb for deb in served.repo.debs if deb.name.startswith(f"{name}_"))


# --- the packages ---------------------------------------------------------------------------------------------


def test_packages_hold_upstreams_paths(served):
    assert deb_paths(_deb(served, "kubeadm")) == {
        "/usr/bin/kubeadm", "/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"}
    assert deb_paths(_deb(served, "kubelet")) == {
        "/usr/bin/kubelet", "/lib/systemd/system/kubelet.service", "/etc/default/kubelet",
        "/var/lib/kubelet/.kubelet-keep", "/etc/kubernetes/manifests/.kubelet-keep"}
    assert deb_paths(_deb(served, "kubectl")) == {"/usr/bin/kubectl"}
    assert deb_paths(_deb(served, "cri-tools")) == {"/usr/bin/crictl"}
    cni = deb_paths(_deb(served, "kubernetes-cni"))
    assert {"/opt/cni/bin/bridge", "/opt/cni/bin/host-local", "/opt/cni/bin/loopback", "/opt/cni/bin/portmap",
            "/etc/cni/net.d/.kubernetes-cni-keep"} <= cni
    assert {path for path in cni if not path.startswith("/opt/cni/bin/")} == {"/etc/cni/net.d/.kubernetes-cni-keep"}
    assert "/opt/cni/bin/LICENSE" not in cni


def test_versions_and_dependencies_are_upstreams(served):
    for name in ("kubeadm", "kubelet", "kubectl"):
        assert deb_field(_deb(served, name), "Version") == f"{served.version}-1.1"
    assert re.fullmatch(r"\d+\.\d+\.\d+-1\.1", deb_field(_deb(served, "cri-tools"), "Version"))
    assert re.fullmatch(r"\d+\.\d+\.\d+-1\.1", deb_field(_deb(served, "kubernetes-cni"), "Version"))
    assert deb_field(_deb(served, "kubeadm"), "Depends") == ""  # since 1.32 (kubernetes/release#3626)
    assert deb_field(_deb(served, "kubelet"), "Depends") == "kubernetes-cni (>= 1.2.0), mount, util-linux"
    assert deb_field(_deb(served, "kubelet"), "Recommends") == "iptables (>= 1.8.4)"
    assert (_deb(served, "kubelet").parent.name, _deb(served, "kubelet").name) == (
        apt_repo.host_architecture(), f"kubelet_{served.version}-1.1_{apt_repo.host_architecture()}.deb")


def test_kubelet_unit_with_kubeadms_drop_in_passes_systemd_analyze_verify(served, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    root = tmp_path / "root"
    for name in ("kubelet", "kubeadm"):
        subprocess.run(["dpkg-deb", "-x", str(_deb(served, name)), str(root)], check=True)
    units = root / "lib/systemd/system"
    # The targets the unit orders itself after, from this machine; the unit and its binary from the packages.
    for target in Path("/usr/lib/systemd/system").glob("*.target"):
        shutil.copy(target, units / target.name)
    verify = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "kubelet.service"],
                            capture_output=True, text=True, timeout=60)
    assert (verify.returncode, verify.stderr) == (0, "")
    shown = subprocess.run(["systemd-analyze", "cat-config", f"--root={root}", "systemd/system/kubelet.service"],
                           capture_output=True, text=True, check=True).stdout
    assert "ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS" in shown
    assert (root / "etc/default/kubelet").read_text() == "KUBELET_EXTRA_ARGS=\n"


def test_kubelet_maintainer_scripts_pass_shellcheck(served, tmp_path):
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed: sudo make deps installs it")
    control = tmp_path / "DEBIAN"
    subprocess.run(["dpkg-deb", "--control", str(_deb(served, "kubelet")), str(control)], check=True)
    scripts = sorted(control / name for name in ("postinst", "prerm", "postrm"))
    assert all(os.access(script, os.X_OK) for script in scripts)
    checked = subprocess.run(["shellcheck", "--shell=sh", *map(str, scripts)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    assert (control / "conffiles").read_text() == "/etc/default/kubelet\n"


def test_dpkg_installs_and_removes_them_in_a_scratch_root(served, tmp_path):
    """dpkg unpacks, configures (conffile registered) and removes the packages; their scripts honour DPKG_ROOT,
    so no systemctl of this machine is touched."""
    root, calls = tmp_path / "root", tmp_path / "systemctl-calls"
    admin = root / "var/lib/dpkg"
    for sub in ("info", "updates", "triggers"):
        (admin / sub).mkdir(parents=True)
    (admin / "status").write_text(dpkg_status(BASE_SYSTEM))
    (admin / "available").touch()
    for name in BASE_SYSTEM:
        (admin / "info" / f"{name}.list").touch()
    _stand_in(tmp_path / "bin" / "systemctl", f'echo "$*" >> {calls}')
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    dpkg = ["dpkg", f"--root={root}", "--force-script-chrootless", "--force-unsafe-io", "--log=/dev/null"]
    names = ("kubernetes-cni", "kubelet", "kubeadm", "kubectl")
    installed = subprocess.run([*dpkg, "-i", *(str(_deb(served, name)) for name in names)], env=env,
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = subprocess.run(["dpkg-query", f"--admindir={admin}", "-W", "-f", "${Package} ${db:Status-Abbrev}\n",
                             *names], capture_output=True, text=True, check=True).stdout
    assert dict(line.split() for line in listed.splitlines()) == dict.fromkeys(names, "ii")
    said = subprocess.run([str(root / "usr/bin/kubeadm"), "version", "-o", "short"], capture_output=True, text=True)
    assert said.stdout.strip() == f"v{served.version}"
    removed = subprocess.run([*dpkg, "--remove", "kubeadm", "kubelet"], env=env, capture_output=True, text=True)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (root / "usr/bin/kubelet").exists() and (root / "etc/default/kubelet").is_file()  # a conffile
    assert not calls.exists()


# --- the repository, through apt ------------------------------------------------------------------------------


def test_profile_mirrors_for_the_served_root_pass_k8sseeds_checks_and_name_this_repository(served):
    """The settings a VM test writes into its profile: accepted as they are, they resolve to this repository."""
    base = served.url.removesuffix(f"{apt_repo.repository_path(served.repo.minor)}/")
    settings = apt_repo.mirror_settings(base, served.repo.fingerprint)
    profile = yaml.safe_load((REPO / "profiles" / "reference.yaml").read_text())
    profile["cluster"]["kubernetesVersion"] = served.version
    profile["mirrors"].update(settings)
    mirrors = load_profile_text(yaml.safe_dump(profile)).profile.mirrors
    assert mirrors.kubernetes_packages.format(minor=served.repo.minor) == served.url
    assert mirrors.kubernetes_key.format(minor=served.repo.minor) == f"{served.url}Release.key"
    assert mirrors.kubernetes_key_fingerprint == served.repo.fingerprint


def test_repository_is_laid_out_like_pkgs_k8s_io(served):
    assert served.url.endswith(f"/core:/stable:/v{served.repo.minor}/deb/")
    for name in ("Packages", "Packages.gz", "Release", "Release.gpg", "InRelease", "Release.key"):
        assert (served.repo.directory / name).is_file(), name
    assert (served.repo.directory / "Release.key").read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


def test_node_update_checks_the_signature_and_picks_the_release(served, updated):
    """apt verified InRelease against the pinned key (no warnings), and the node's awk finds <version>-1.1."""
    assert list((updated.top / "lists").glob("*_InRelease"))
    madison = updated.run("apt-cache", "madison", "kubeadm")
    line = rf"^\s*kubeadm \| {re.escape(served.version)}-1\.1 \| {re.escape(served.url.rstrip('/'))}  Packages$"
    assert re.search(line, madison.stdout, re.M), madison.stdout
    picked = updated.run("bash", "-c", NODE_PICKS_THE_BUILD, "-", served.version)
    assert picked.stdout.strip() == f"{served.version}-1.1"


def test_install_of_the_pinned_release_resolves_and_downloads_with_dependencies(served, updated, tmp_path):
    pinned = [f"{tool}={served.version}-1.1" for tool in ("kubeadm", "kubelet", "kubectl")]
    simulated = updated.run("apt-get", "install", "--simulate", "-q", *pinned)
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    installs = set(re.findall(r"^Inst (\S+)", simulated.stdout, re.M))
    assert installs == {"kubeadm", "kubelet", "kubectl", "kubernetes-cni"}
    downloaded = updated.run("apt-get", "install", "--download-only", "-y", "-q", *pinned)
    assert downloaded.returncode == 0, downloaded.stdout + downloaded.stderr
    got = sorted(deb.name.split("_")[0] for deb in updated.archives.glob("*.deb"))
    assert got == ["kubeadm", "kubectl", "kubelet", "kubernetes-cni"]  # apt checked each against Packages' SHA256
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(next(updated.archives.glob("kubeadm_*.deb"))), str(unpacked)], check=True)
    said = subprocess.run([str(unpacked / "usr/bin/kubeadm"), "version", "-o", "short"], capture_output=True,
                          text=True, timeout=60)
    assert said.stdout.strip() == f"v{served.version}"


def test_kubelet_without_its_base_packages_is_not_installable(served, updated, tmp_path):
    """The dependencies are real: on a dpkg status without mount and util-linux apt refuses the kubelet."""
    bare = private_apt(tmp_path / "bare", (updated.top / "sources.list").read_text(), installed=())
    shutil.copytree(updated.top / "lists", bare.top / "lists", dirs_exist_ok=True)
    simulated = bare.run("apt-get", "install", "--simulate", "-q", f"kubelet={served.version}-1.1")
    assert simulated.returncode == 100
    assert "kubelet : Depends: mount but it is not installable" in simulated.stdout


def test_update_fails_when_the_repository_is_signed_by_another_key(served, tmp_path):
    other = apt_repo.make_signing_key(served.gnupghome, uid="another key <other@k8sseed.test>")
    keyring = tmp_path / "other.gpg"
    keyring.write_bytes(apt_repo.gpg(served.gnupghome, "--export", other, text=False).stdout)
    apt = private_apt(tmp_path / "apt", f"deb [signed-by={keyring}] {served.url} /\n")
    update = apt.run("apt-get", "update", "-q")
    assert update.returncode == 100
    assert f"NO_PUBKEY {served.repo.fingerprint[-16:]}" in update.stdout + update.stderr
    assert not list((tmp_path / "apt" / "lists").glob("*_Packages*"))


# --- minors side by side; what the repository builder refuses (stand-ins) ------------------------------------


# Stand-ins: two patches of 1.36 and one of 1.35; real: every release tests/realk8s builds (1.36.5, 1.35.4).
SIDE_BY_SIDE = {"stand-in": ("1.36.5", "1.35.4", "1.36.4"), "real": KUBERNETES_RELEASES}


@pytest.mark.parametrize("flavour", ["stand-in", pytest.param("real", marks=pytest.mark.realk8s)])
def test_minors_and_patches_live_side_by_side_in_one_root(flavour, tmp_path):
    if _missing_tools():
        pytest.fail(f"{', '.join(_missing_tools())} missing: sudo make deps installs them")
    versions = SIDE_BY_SIDE[flavour]
    bins = {v: real_bin_dirs(v) if flavour == "real" else stand_in_bin_dirs(tmp_path / v, v) for v in versions}
    gnupghome = tmp_path / "gnupg"
    fingerprint = apt_repo.make_signing_key(gnupghome)
    try:
        root = tmp_path / "www"
        for version in versions:
            apt_repo.build_repository(version, bins[version], root, gnupghome, fingerprint)
        keyring = tmp_path / "key.gpg"
        keyring.write_bytes(apt_repo.gpg(gnupghome, "--export", fingerprint, text=False).stdout)
        with apt_repo.serve(root) as server:
            for minor in sorted({apt_repo.minor_of(v) for v in versions}):
                newest_first = sorted(versions, key=lambda v: tuple(map(int, v.split("."))), reverse=True)
                carried = [f"{v}-1.1" for v in newest_first if apt_repo.minor_of(v) == minor]
                url = f"{server.url}/{apt_repo.repository_path(minor)}/"
                apt = private_apt(tmp_path / f"apt-{minor}", f"deb [signed-by={keyring}] {url} /\n")
                assert apt.run("apt-get", "update", "-q").returncode == 0
                madison = apt.run("apt-cache", "madison", "kubeadm").stdout
                assert [line.split("|")[1].strip() for line in madison.splitlines()] == carried
                # The node asks for its exact release, not the newest of the minor.
                for build in carried:
                    picked = apt.run("bash", "-c", NODE_PICKS_THE_BUILD, "-", build.removesuffix("-1.1"))
                    assert picked.stdout.strip() == build
    finally:
        apt_repo.stop_gpg_agent(gnupghome)


def test_binaries_of_another_release_are_refused(tmp_path):
    bins = stand_in_bin_dirs(tmp_path, "1.36.4")
    with pytest.raises(apt_repo.RepoError, match=r"not Kubernetes v1\.36\.5: kubeadm says v1\.36\.4, kubelet says "):
        apt_repo.build_repository("1.36.5", bins, tmp_path / "www", tmp_path / "gnupg", "0" * 40)


def test_crictl_of_another_version_than_its_folder_says_is_refused(tmp_path):
    bins = stand_in_bin_dirs(tmp_path, "1.36.5")
    with pytest.raises(apt_repo.RepoError, match=r"bin/crictl says 'crictl version v1\.34\.0', not crictl version "
                                                  r"v1\.35\.0: fix the folder name or give --cri-tools-version"):
        apt_repo.build_repository("1.36.5", bins, tmp_path / "www", tmp_path / "gnupg", "0" * 40,
                                  cri_tools_version="1.35.0")


def test_a_missing_bin_directory_is_named_with_the_make_target(tmp_path):
    bins = stand_in_bin_dirs(tmp_path, "1.36.5")
    with pytest.raises(apt_repo.RepoError, match=r"holds the CNI plugins \(loopback, host-local, bridge\): build it "
                                                  r"\(make real-k8s\)"):
        apt_repo.find_binaries(bins[:2])


def test_command_line_makes_its_key_builds_and_prints_the_profile_settings(tmp_path):
    """What `make real-k8s` runs: a GnuPG home without a key gets one; the output names the mirrors settings."""
    bins = stand_in_bin_dirs(tmp_path / "cache", "1.36.5")
    gnupghome, out = tmp_path / "gnupg", tmp_path / "www"
    command = [sys.executable, str(Path(apt_repo.__file__)), "--version", "1.36.5", "--out", str(out),
               "--gnupghome", str(gnupghome), *(arg for directory in bins for arg in ("--bin", str(directory)))]
    try:
        first = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        [fingerprint] = apt_repo.secret_key_fingerprints(gnupghome)
        assert f"made the signing key {fingerprint}" in first.stdout
        settings = json.loads(first.stdout.splitlines()[-1].split("mirrors: ", 1)[1])
        assert settings == apt_repo.mirror_settings("http://HOST:PORT", fingerprint)
        again = subprocess.run(command, capture_output=True, text=True, timeout=120)  # the same key signs again
        assert again.returncode == 0 and "made the signing key" not in again.stdout
        assert apt_repo.secret_key_fingerprints(gnupghome) == [fingerprint]
    finally:
        apt_repo.stop_gpg_agent(gnupghome)
    assert (out / "core:/stable:/v1.36/deb/InRelease").is_file()
