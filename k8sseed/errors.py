"""Error types, one per layer; the CLI turns them into messages and exit codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One problem in a profile, located by JSON path and source position."""

    path: str
    message: str
    line: int = 0
    column: int = 0

    def render(self, filename: str) -> str:
        where = f"{filename}:{self.line}:{self.column}" if self.line else filename
        line = f"{where}: {self.path or '(top)'}: {self.message}"
        # One finding, one line: no control character of a profile may break the output.
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)


# Every warning k8sseed can give, by its stable id. A profile silences one with `acknowledge: [id]`
# (the schema's enum for acknowledge items is this list: a test keeps the two equal).
WARNING_IDS: dict[str, str] = {
    "token-never-expires": "cluster.bootstrapTokenTTL is 0: the derived bootstrap token never expires",
    "cri-dockerd-unverified": "no runtime.criDockerd.sha256 and no sum for the cri-dockerd in use in k8sseed's "
                              "version table: nodes install it without a checksum check",
    "calicoctl-unverified": "no calico.calicoctlSha256 with BGP: calicoctl is installed without a checksum check",
    "ipvs-deprecated": "kube-proxy ipvs mode on Kubernetes 1.35 or newer (deprecated by KEP-5495)",
    "kubernetes-patch-unknown": "a Kubernetes patch release newer than the newest one k8sseed knows of",
    "no-login-user": "no os.users entry with an SSH key or a password: nobody can log in to the nodes",
    "single-etcd-member": "cluster.topology external-etcd with one etcd node: no fault tolerance",
    "etcd-unverified": "an etcd.version with no sha256 known: nodes can only use an etcd binary already installed at "
                       "that version",
}


@dataclass(frozen=True)
class ProfileWarning:
    """Something that builds but deserves a word; `id` is stable and can be acknowledged in the profile."""

    id: str
    message: str

    def __post_init__(self) -> None:
        if self.id not in WARNING_IDS:
            raise ValueError(f"unknown warning id {self.id!r}")

    def render(self) -> str:
        return f"warning[{self.id}]: {self.message}"


class ProfileError(Exception):
    """The profile is invalid; carries every finding of one validation run."""

    def __init__(self, filename: str, findings: list[Finding]):
        self.filename = filename
        self.findings = sorted(findings, key=lambda f: (f.line, f.column, f.path))
        super().__init__("\n".join(f.render(filename) for f in self.findings))


class SecretError(Exception):
    """The cluster secret file is missing, malformed or unsafe."""


class OutputError(Exception):
    """The output directory cannot be written."""


class UsageError(Exception):
    """A command-line choice that does not fit the profile (exit 2)."""
