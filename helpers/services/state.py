"""Where an instance of the local services lives, and how to tell a live one from a stale one.

A state dir holds ``state.json`` (written by the daemon once its servers answer, mode 0600
because it carries the local CircleCI token), ``services.log`` (the daemon's stdio) and a lock
file that keeps two ``up`` calls from starting two daemons. A state file is trusted only when
the process it names is alive *and* the health endpoint at its address answers with the same
instance id and pid: a dead pid, a port now owned by another program, or a pid reused by an
unrelated process all fail that check, so stale state is replaced instead of reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

STATE_DIR_ENV = "ROLLBACK_LAB_STATE_DIR"
STATE_FILE = "state.json"
LOG_FILE = "services.log"
LOCK_FILE = "lock"
HEALTH_PATH = "/__rollback_lab__/health"
# Bumped when the state file's shape changes: an older file is stale, not misread.
STATE_FORMAT = 1


def resolve_state_dir(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """Argument, then ``ROLLBACK_LAB_STATE_DIR``, then the user's cache dir."""
    if state_dir is not None and str(state_dir) != "":
        chosen = Path(state_dir)
    elif os.environ.get(STATE_DIR_ENV):
        chosen = Path(os.environ[STATE_DIR_ENV])
    else:
        chosen = Path(platformdirs.user_cache_dir("rollback-lab")) / "state"
    return chosen.expanduser().resolve()


@dataclass(frozen=True)
class ServiceState:
    """What the daemon recorded about itself once it was ready."""

    pid: int
    instance_id: str
    aws_endpoint_url: str
    region: str
    circleci_url: str | None
    circle_token: str | None
    circleci_error: str | None
    started_at: str

    def to_json(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, **self.__dict__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceState:
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"state format {data.get('format')!r}, expected {STATE_FORMAT}")
        return cls(
            pid=int(data["pid"]),
            instance_id=str(data["instance_id"]),
            aws_endpoint_url=str(data["aws_endpoint_url"]),
            region=str(data["region"]),
            circleci_url=data.get("circleci_url"),
            circle_token=data.get("circle_token"),
            circleci_error=data.get("circleci_error"),
            started_at=str(data.get("started_at", "")),
        )


def new_instance_id() -> str:
    return secrets.token_hex(8)


def prepare_state_dir(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        state_dir.chmod(0o700)


def read_state(state_dir: Path) -> ServiceState | None:
    """The recorded state, or None when there is none or it cannot be read."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
        return ServiceState.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(state_dir: Path, state: ServiceState) -> None:
    """Atomic and private from the first byte: the file carries a token."""
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".state-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state.to_json(), handle, indent=2)
        os.replace(tmp, state_dir / STATE_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_state(state_dir: Path, instance_id: str | None = None) -> None:
    """Remove the state file; with ``instance_id``, only if it is still that instance's."""
    if instance_id is not None:
        current = read_state(state_dir)
        if current is not None and current.instance_id != instance_id:
            return
    with contextlib.suppress(FileNotFoundError):
        (state_dir / STATE_FILE).unlink()


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """Serialises up/down on one state dir across processes."""
    prepare_state_dir(state_dir)
    with open(state_dir / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Field 3 (after the parenthesised command name) is the state letter.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def is_our_daemon(pid: int, state_dir: Path) -> bool:
    """Whether ``pid`` runs this kit's daemon for ``state_dir`` (Linux: read its cmdline)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in argv if a]
    return "helpers.services.daemon" in args and str(state_dir) in args


def health(state: ServiceState, timeout: float = 2.0) -> dict[str, Any] | None:
    """The health answer at the recorded address, or None when nothing (of ours) answers."""
    url = state.aws_endpoint_url.rstrip("/") + HEALTH_PATH
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError, urllib.error.URLError):
        return None


def is_live(state: ServiceState) -> bool:
    """The recorded process is alive and it is what answers at the recorded address."""
    if not pid_alive(state.pid):
        return False
    answer = health(state)
    return bool(
        answer and answer.get("instance_id") == state.instance_id and answer.get("pid") == state.pid
    )
