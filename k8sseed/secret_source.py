"""Where the cluster secret comes from: a file (the default), a command (--secret-cmd, e.g. `sops -d`), or the
environment (K8SSEED_SECRET), so that a profile can live in a public repository and its secret in a vault.

Precedence: --secret-cmd or --secret (at most one of them), then K8SSEED_SECRET, then the file beside the profile.
No message ever shows the secret or the command's output."""

from __future__ import annotations

import base64
import binascii
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from k8sseed.errors import SecretError
from k8sseed.secrets import SECRET_BYTES, ClusterSecret, read_secret

SECRET_ENV = "K8SSEED_SECRET"


def parse_secret(text: str, origin: str) -> ClusterSecret:
    """The base64 secret from `origin`'s text (surrounding whitespace ignored); errors name the origin only."""
    value = text.strip()
    if not value:
        raise SecretError(f"{origin} is empty; expected the cluster secret ({SECRET_BYTES} bytes in base64, "
                          "as 'k8sseed init' writes it)")
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretError(f"{origin} is not a base64 cluster secret ({len(value)} characters, not shown); "
                          f"expected {SECRET_BYTES} bytes in base64, as 'k8sseed init' writes it") from exc
    if len(key) != SECRET_BYTES:
        raise SecretError(f"{origin} holds {len(key)} bytes once decoded; a cluster secret is {SECRET_BYTES} "
                          "bytes in base64")
    return ClusterSecret(key)


SECRET_CMD_TIMEOUT_ENV = "K8SSEED_SECRET_CMD_TIMEOUT"
DEFAULT_SECRET_CMD_TIMEOUT = 120  # seconds: long enough to type a passphrase, short enough for an unattended run


def secret_command_timeout(environ: Mapping[str, str]) -> float:
    """Seconds --secret-cmd may run: K8SSEED_SECRET_CMD_TIMEOUT (a positive number), else the default.
    A bad value is a usage error (ValueError)."""
    text = environ.get(SECRET_CMD_TIMEOUT_ENV)
    if text is None:
        return DEFAULT_SECRET_CMD_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 86400:
        raise ValueError(f"{SECRET_CMD_TIMEOUT_ENV}={text!r} is not a number of seconds between 0 and 86400; "
                          f"unset it for the default ({DEFAULT_SECRET_CMD_TIMEOUT} s)")
    return value


def run_secret_command(command: str, timeout: float = DEFAULT_SECRET_CMD_TIMEOUT) -> ClusterSecret:
    """Run `command` with /bin/sh (stdin stays the terminal, for a passphrase prompt); its stdout is the secret.

    A command still running after `timeout` seconds (a vault that does not answer, a prompt nobody sees in CI)
    is killed and reported; its output so far is never read further nor shown."""
    origin = f"the output of --secret-cmd {command!r}"
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise SecretError(f"--secret-cmd {command!r}: cannot run /bin/sh: {exc.strerror}") from exc
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):  # a child of the shell may still hold them: do not wait for it
            if pipe is not None:
                pipe.close()
        raise SecretError(f"--secret-cmd {command!r} did not finish within {timeout:g} s and was stopped (it may "
                          f"be waiting for input or for its vault); run it by hand to check, or set "
                          f"{SECRET_CMD_TIMEOUT_ENV} to allow it longer") from None
    if proc.returncode != 0:
        lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        last = f": {lines[-1].strip()}" if lines else " (and printed nothing on stderr)"
        raise SecretError(f"--secret-cmd {command!r} failed with exit code {proc.returncode}{last}")
    try:
        text = stdout.decode("ascii")
    except UnicodeDecodeError as exc:
        raise SecretError(f"{origin} is not text (not shown); expected the cluster secret in base64") from exc
    return parse_secret(text, origin)


@dataclass(frozen=True)
class SecretSource:
    """One of: a file, a command, or the environment variable's value."""

    path: Path | None = None
    command: str | None = None
    env_value: str | None = None
    command_timeout: float = DEFAULT_SECRET_CMD_TIMEOUT
    given: bool = False  # path came from --secret, not the default beside the profile

    def read(self) -> ClusterSecret:
        if self.command is not None:
            return run_secret_command(self.command, self.command_timeout)
        if self.env_value is not None:
            return parse_secret(self.env_value, f"the environment variable {SECRET_ENV}")
        assert self.path is not None
        return read_secret(self.path, self.given)


def choose_secret_source(default_file: Path, secret_file: Path | None, secret_cmd: str | None,
                         environ: Mapping[str, str]) -> SecretSource:
    """--secret-cmd or --secret, else K8SSEED_SECRET (when set, even empty: that is an error), else the default file.
    Both options at once is a usage error (ValueError)."""
    if secret_file is not None and secret_cmd is not None:
        raise ValueError("--secret and --secret-cmd both name the cluster secret: give one of them")
    if secret_cmd is not None:
        if not secret_cmd.strip():
            raise ValueError("--secret-cmd is empty: give the command that prints the secret, "
                             "e.g. 'sops -d cluster.secret.enc'")
        return SecretSource(command=secret_cmd, command_timeout=secret_command_timeout(environ))
    if secret_file is not None:
        return SecretSource(path=secret_file, given=True)
    if SECRET_ENV in environ:
        return SecretSource(env_value=environ[SECRET_ENV])
    return SecretSource(path=default_file)
