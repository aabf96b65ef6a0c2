"""The bad-input contract of `k8sseed validate` and `k8sseed build`, checked through the real CLI.

Every file in tests/profiles/bad/ is a small valid profile with exactly one thing broken. Its header says
what the CLI must report:

    # expect: <json.path>: <substring of the message>
    # line: <text on the reported line>[ || <alternative text>]   (optional)

For every file, both commands must exit 2, print `FILE:LINE:COL: <json.path>: <message>` lines on stderr
(one per problem, nothing else), never a Python traceback, and never create the output directory.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BAD_DIR = ROOT / "tests" / "profiles" / "bad"
REFERENCE = ROOT / "profiles" / "reference.yaml"
K8SSEED = Path(sys.executable).parent / "k8sseed"
EXIT_PROFILE = 2
EXIT_OTHER = 1
HEADER = re.compile(r"^# (expect|line): ")


@dataclass(frozen=True)
class Case:
    file: Path
    path: str
    substring: str
    line_texts: tuple[str, ...]  # the reported line must contain one of these (empty: no marker)


def _parse_case(file: Path) -> Case:
    lines = file.read_text("utf-8").splitlines()
    head = re.fullmatch(r"# expect: (\S+): (.+)", lines[0]) if lines else None
    assert head, f"{file.name}: first line must be '# expect: <json.path>: <message substring>'"
    texts: tuple[str, ...] = ()
    if len(lines) > 1 and lines[1].startswith("# line: "):
        texts = tuple(t.strip() for t in lines[1][len("# line: "):].split(" || "))
    return Case(file, head.group(1), head.group(2), texts)


CASES = [_parse_case(f) for f in sorted(BAD_DIR.glob("*.yaml"))]


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 60,
        **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(K8SSEED), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, **kwargs)


def write_secret(path: Path, data: bytes | None = None, mode: int = 0o600) -> Path:
    text = base64.b64encode(os.urandom(32) if data is None else data).decode("ascii") + "\n"
    path.write_text(text, "ascii")
    os.chmod(path, mode)
    return path


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    return write_secret(tmp_path / "cluster.secret")


def parse_problems(stderr: str, file: Path) -> list[tuple[int, int, str, str]]:
    """Every stderr line as (line, column, path, message); fails on any line outside the contract."""
    problems = []
    pattern = re.compile(re.escape(str(file)) + r":(\d+):(\d+): (\S+): (.+)")
    for raw in stderr.splitlines():
        m = pattern.fullmatch(raw)
        assert m, f"stderr line is not 'FILE:LINE:COL: json.path: message': {raw!r}\n--- stderr:\n{stderr}"
        problems.append((int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)))
    return problems


def assert_reported(result: subprocess.CompletedProcess[str], file: Path, path: str, substring: str,
                    line_texts: tuple[str, ...] = (), lines: list[str] | None = None) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == EXIT_PROFILE, f"exit {result.returncode}\n{result.stderr}"
    problems = parse_problems(result.stderr, file)
    hits = [p for p in problems if p[2] == path and substring in p[3]]
    assert hits, f"no '{path}: ...{substring}...' problem reported; got:\n{result.stderr}"
    if lines is None:
        lines = file.read_text("utf-8", errors="replace").splitlines() or [""]
    for line, column, _, _ in hits:
        assert 1 <= line <= len(lines), f"line {line} is outside the file ({len(lines)} lines)"
        assert column >= 1
    if line_texts:
        def points_right(line: int) -> bool:
            text = lines[line - 1]
            return not HEADER.match(text) and any(t in text for t in line_texts)

        assert any(points_right(h[0]) for h in hits), (
            f"reported line(s) {[h[0] for h in hits]} do not hold any of {line_texts}: "
            f"{[lines[h[0] - 1] for h in hits]}")


def test_corpus_is_complete():
    assert len(CASES) >= 35
    names = [c.file.name for c in CASES]
    assert all(re.fullmatch(r"\d{2,3}-[A-Za-z0-9-]+\.yaml", n) for n in names), names
    assert len({n.split("-")[0] for n in names}) == len(names), "two corpus files share a number"


def test_reference_profile_is_valid(tmp_path: Path, secret: Path):
    """The harness itself works: a good profile validates and builds (so exit 2 below means 'bad input')."""
    assert run("validate", REFERENCE).returncode == 0
    result = run("build", REFERENCE, "-o", tmp_path / "out", "--secret", secret)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "manifest.json").is_file()


@pytest.mark.parametrize("case", CASES, ids=[c.file.stem for c in CASES])
def test_validate_reports_bad_profile(case: Case):
    result = run("validate", case.file)
    assert_reported(result, case.file, case.path, case.substring, case.line_texts)
    assert "valid:" not in result.stdout


@pytest.mark.parametrize("case", CASES, ids=[c.file.stem for c in CASES])
def test_build_refuses_bad_profile(case: Case, tmp_path: Path, secret: Path):
    out = tmp_path / "out"
    result = run("build", case.file, "-o", out, "--secret", secret)
    assert_reported(result, case.file, case.path, case.substring, case.line_texts)
    assert not out.exists(), "build created OUT for a bad profile"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.secret"], "build left files behind"


# -- files that are not text: generated here so the corpus stays plain UTF-8 -------------------------

def _reference_with(old: bytes, new: bytes) -> tuple[bytes, int]:
    data = REFERENCE.read_bytes()
    assert old in data
    data = data.replace(old, new, 1)
    line = data[: data.index(new)].count(b"\n") + 1
    return data, line


@pytest.mark.parametrize(("name", "old", "new", "substring"), [
    ("nul-byte", b"name: reference", b"name: refer\x00ence", "NUL"),
    ("latin-1", b"name: reference", b"name: r\xe9f\xe9rence", "not UTF-8"),
    ("utf-16", b"", b"", "not UTF-8"),
], ids=["nul-byte", "latin-1", "utf-16"])
@pytest.mark.parametrize("command", ["validate", "build"])
def test_binary_profile(tmp_path: Path, secret: Path, command: str, name: str, old: bytes, new: bytes,
                        substring: str):
    if name == "utf-16":
        data, line = REFERENCE.read_text("utf-8").encode("utf-16"), 1
    else:
        data, line = _reference_with(old, new)
    profile = tmp_path / f"{name}.yaml"
    profile.write_bytes(data)
    out = tmp_path / "out"
    args = ["validate", profile] if command == "validate" else ["build", profile, "-o", out, "--secret", secret]
    result = run(*args)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == EXIT_PROFILE, result.stderr
    problems = parse_problems(result.stderr, profile)  # FILE:LINE:COL even for a file that is not text
    assert any(substring in p[3] for p in problems), result.stderr
    assert any(p[0] == line for p in problems), f"expected line {line} (where the bad byte is): {result.stderr}"
    assert not out.exists()


# -- several problems, one run ---------------------------------------------------------------------

def test_all_problems_reported_in_one_run(tmp_path: Path, secret: Path):
    text = REFERENCE.read_text("utf-8")
    for old, new in (('mac: "52:54:00:20:00:12"', 'mac: "52:54:00:20:00:zz"'),
                     ("mode: ipvs", "mode: ipvsx"),
                     ("dnsDomain: cluster.local", "dnsDomian: cluster.local")):
        assert old in text
        text = text.replace(old, new, 1)
    profile = tmp_path / "three.yaml"
    profile.write_text(text, "utf-8")
    lines = text.splitlines()
    for args in (["validate", profile], ["build", profile, "-o", tmp_path / "out", "--secret", secret]):
        result = run(*args)
        assert_reported(result, profile, "nodes[1].mac", "is not a MAC address", ("52:54:00:20:00:zz",), lines)
        assert_reported(result, profile, "kubeProxy.mode", "is not one of", ("ipvsx",), lines)
        assert_reported(result, profile, "cluster.dnsDomian", "did you mean 'dnsDomain'?", ("dnsDomian",), lines)
        assert len(parse_problems(result.stderr, profile)) == 3, result.stderr
    assert not (tmp_path / "out").exists()


def test_billion_laughs_is_refused_quickly(tmp_path: Path):
    """A few hundred bytes of nested aliases must not expand into 10**9 values (or exhaust memory)."""
    levels = ["  x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"  x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = REFERENCE.read_text("utf-8").replace("mirrors:\n", "lol:\n" + "\n".join(levels) + "\nmirrors:\n", 1)
    profile = tmp_path / "lol.yaml"
    profile.write_text(text, "utf-8")

    def limit_memory() -> None:  # keep a failing product from taking the machine down with it
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    try:
        result = run("validate", profile, timeout=30, preexec_fn=limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail("validate did not finish within 30 s on a 1 KiB alias bomb")
    assert "Traceback" not in result.stderr
    assert result.returncode == EXIT_PROFILE, result.stderr
    parse_problems(result.stderr, profile)


# -- the cluster secret ----------------------------------------------------------------------------

def test_secret_missing(tmp_path: Path):
    out = tmp_path / "out"
    result = run("build", REFERENCE, "-o", out, "--secret", tmp_path / "nope.secret")
    assert result.returncode == EXIT_OTHER, result.stderr
    assert "Traceback" not in result.stderr
    assert "nope.secret" in result.stderr and "not found" in result.stderr
    assert "k8sseed init" in result.stderr or "--secret" in result.stderr
    assert not out.exists()


def test_secret_readable_by_others_is_refused(tmp_path: Path):
    secret = write_secret(tmp_path / "open.secret", mode=0o644)
    out = tmp_path / "out"
    result = run("build", REFERENCE, "-o", out, "--secret", secret)
    assert result.returncode == EXIT_OTHER, result.stderr
    assert "Traceback" not in result.stderr
    assert f"chmod 600 {secret}" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(("content", "substring"), [
    (base64.b64encode(b"k" * 16).decode() + "\n", "expected 32"),
    (base64.b64encode(b"k" * 64).decode() + "\n", "expected 32"),
    ("", "expected 32"),
    ("this is not base64 at all!\n", "base64"),
    ("\xe9\xe9\xe9\n", "base64"),
], ids=["16-bytes", "64-bytes", "empty", "not-base64", "not-ascii"])
def test_secret_malformed(tmp_path: Path, content: str, substring: str):
    secret = tmp_path / "bad.secret"
    secret.write_bytes(content.encode("latin-1"))
    os.chmod(secret, 0o600)
    out = tmp_path / "out"
    result = run("build", REFERENCE, "-o", out, "--secret", secret)
    assert result.returncode == EXIT_OTHER, result.stderr
    assert "Traceback" not in result.stderr
    assert str(secret) in result.stderr and substring in result.stderr, result.stderr
    assert not out.exists()


def test_build_refuses_foreign_directory(tmp_path: Path, secret: Path):
    out = tmp_path / "precious"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("do not lose me\n")
    (out / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = sorted((p.relative_to(out), p.read_bytes() if p.is_file() else None) for p in out.rglob("*"))
    result = run("build", REFERENCE, "-o", out, "--secret", secret)
    assert result.returncode == EXIT_OTHER, result.stderr
    assert "Traceback" not in result.stderr
    assert "not a k8sseed output" in result.stderr
    after = sorted((p.relative_to(out), p.read_bytes() if p.is_file() else None) for p in out.rglob("*"))
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.secret", "precious"], "leftovers beside OUT"


# -- errors point at the value that is wrong, once -------------------------------------------------------

@pytest.mark.parametrize(("name", "path"), [
    ("93-node-ip-mistyped", "nodes[1].ip"),  # not network.gateway: the other nodes agree with the gateway
    ("27-gateway-outside-subnet", "network.gateway"),  # outside every node's subnet: said once, not per node
    ("25-node-subnet-overlaps-pod", "cluster.podSubnet"),  # one pod range over the node network: said once
])
def test_one_wrong_value_is_one_finding_at_that_value(name: str, path: str):
    file = BAD_DIR / f"{name}.yaml"
    problems = parse_problems(run("validate", file).stderr, file)
    assert [p[2] for p in problems] == [path], problems


def test_a_vrrp_vip_outside_the_control_plane_subnet_is_blamed_on_the_endpoint_once(tmp_path: Path):
    text = (ROOT / "profiles" / "keepalived-haproxy.yaml").read_text("utf-8")
    profile = tmp_path / "vip.yaml"
    profile.write_text(text.replace("controlPlaneEndpoint: 10.20.0.10:8443", "controlPlaneEndpoint: 10.21.0.10:8443"))
    problems = parse_problems(run("validate", profile).stderr, profile)
    assert [p[2] for p in problems] == ["cluster.controlPlaneEndpoint"], problems
    assert "outside theirs (10.20.0.0/24)" in problems[0][3]


def test_a_did_you_mean_hint_never_leads_to_another_error():
    """Apply every 'did you mean' the corpus gets: the value it suggests is accepted at that path."""
    from k8sseed.errors import ProfileError
    from k8sseed.profile import load_profile_text

    applied = 0
    for case in CASES:
        lines = case.file.read_text("utf-8").splitlines()
        try:
            load_profile_text("\n".join(lines), case.file.name)
            continue
        except ProfileError as exc:
            findings = exc.findings
        for finding in findings:
            hint = re.search(r"'([^']*)'.*did you mean '([^']*)'\?", finding.message)
            if not hint or not finding.line:
                continue
            fixed = list(lines)
            assert hint.group(1) in fixed[finding.line - 1], (case.file.name, finding)
            fixed[finding.line - 1] = fixed[finding.line - 1].replace(hint.group(1), hint.group(2), 1)
            path = finding.path.rsplit(".", 1)[0] + "." + hint.group(2) if "unknown key" in finding.message \
                else finding.path
            try:
                load_profile_text("\n".join(fixed), case.file.name)
            except ProfileError as again:
                assert all(f.path != path for f in again.findings), (case.file.name, finding.message, again)
            applied += 1
    assert applied >= 3


def test_bgp_peers_on_no_node_subnet_are_one_finding_at_the_peers(tmp_path: Path):
    profile = tmp_path / "peers.yaml"
    profile.write_text(REFERENCE.read_text("utf-8").replace("address: 10.20.0.1,", "address: 10.21.0.1,"))
    problems = parse_problems(run("validate", profile).stderr, profile)
    assert [p[2] for p in problems] == ["bgp.peers"], problems
    assert "no node has a BGP peer" in problems[0][3]
