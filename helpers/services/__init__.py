"""The local services: AWS on moto (with CloudFormation fidelity) and the local CircleCI API.

One detached process per state dir hosts them (see ``daemon``). Notebooks and helpers call
:func:`ensure_services` — start or attach, then point this process's AWS/CircleCI settings at
them — or :func:`require_services` when starting them is not their business.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.errors import LabError, ServicesNotRunning
from helpers.services import state as state_mod
from helpers.services.aws import aws_env
from helpers.services.state import STATE_DIR_ENV, resolve_state_dir

__all__ = [
    "STATE_DIR_ENV",
    "Endpoints",
    "ensure_services",
    "require_services",
    "resolve_state_dir",
    "services_status",
    "stop_services",
]

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
HOW_TO_START = (
    "start them with `rollback-lab up` (or `make demo`), or call "
    "helpers.services.ensure_services() in the notebook"
)
# Daemons this process started: reaped after they stop so none lingers as a zombie.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Endpoints:
    """Where one instance of the local services answers. The token never shows in repr/str."""

    aws_endpoint_url: str
    region: str
    circleci_url: str | None
    circle_token: str | None = field(repr=False)
    state_dir: Path
    pid: int
    # Why the local CircleCI API is not hosted, when it failed to start (see services.log).
    circleci_error: str | None = None

    def aws_env(self) -> dict[str, str]:
        """Environment for subprocesses (``aws``, boto3, jobs) that must reach the local AWS."""
        return aws_env(self.aws_endpoint_url, self.region)

    def circleci_env(self) -> dict[str, str]:
        """CircleCI's CLI/API settings for the local CircleCI; empty when it is not hosted."""
        if not self.circleci_url:
            return {}
        env = {"CIRCLECI_CLI_HOST": self.circleci_url}
        if self.circle_token:
            env["CIRCLE_TOKEN"] = self.circle_token
        return env

    def as_json(self, include_secrets: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "aws_endpoint_url": self.aws_endpoint_url,
            "region": self.region,
            "circleci_url": self.circleci_url,
            "state_dir": str(self.state_dir),
            "pid": self.pid,
        }
        if self.circleci_error:
            data["circleci_error"] = self.circleci_error
        if include_secrets:
            data["circle_token"] = self.circle_token
        return data


def _endpoints(state: state_mod.ServiceState, state_dir: Path) -> Endpoints:
    return Endpoints(
        aws_endpoint_url=state.aws_endpoint_url,
        region=state.region,
        circleci_url=state.circleci_url,
        circle_token=state.circle_token,
        state_dir=state_dir,
        pid=state.pid,
        circleci_error=state.circleci_error,
    )


def services_status(state_dir: str | os.PathLike[str] | None = None) -> Endpoints | None:
    """The running instance's endpoints, or None (stale state counts as not running)."""
    directory = resolve_state_dir(state_dir)
    recorded = state_mod.read_state(directory)
    if recorded is None or not state_mod.is_live(recorded):
        return None
    return _endpoints(recorded, directory)


def require_services(state_dir: str | os.PathLike[str] | None = None) -> Endpoints:
    """The running instance's endpoints; :class:`ServicesNotRunning` says how to start them."""
    endpoints = services_status(state_dir)
    if endpoints is None:
        directory = resolve_state_dir(state_dir)
        raise ServicesNotRunning(
            f"The local services (AWS on moto, CircleCI) are not running for state dir "
            f"{directory}: {HOW_TO_START}."
        )
    return endpoints


def ensure_services(state_dir: str | os.PathLike[str] | None = None) -> Endpoints:
    """Start the local services unless they run, wait until they answer, and point this
    process's environment at them (AWS_* and, when hosted, CIRCLECI_CLI_HOST/CIRCLE_TOKEN)."""
    directory = resolve_state_dir(state_dir)
    with state_mod.state_lock(directory):
        endpoints = services_status(directory)
        if endpoints is None:
            _clear_stale(directory)
            endpoints = _start(directory)
    os.environ.update(endpoints.aws_env())
    os.environ.update(endpoints.circleci_env())
    return endpoints


def stop_services(state_dir: str | os.PathLike[str] | None = None) -> bool:
    """Stop the instance of ``state_dir``; False when none was running."""
    directory = resolve_state_dir(state_dir)
    with state_mod.state_lock(directory):
        recorded = state_mod.read_state(directory)
        if recorded is None:
            return False
        if not state_mod.is_live(recorded):
            _clear_stale(directory)
            return False
        _terminate(recorded.pid)
        state_mod.remove_state(directory, recorded.instance_id)
        return True


def _clear_stale(directory: Path) -> None:
    """Forget a state file that no live instance stands behind; end our own hung daemon."""
    recorded = state_mod.read_state(directory)
    if recorded is not None and state_mod.pid_alive(recorded.pid):
        if state_mod.is_our_daemon(recorded.pid, directory):
            _terminate(recorded.pid)
    state_mod.remove_state(directory)


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while state_mod.pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if state_mod.pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(pid, block=True)


def _reap(pid: int, block: bool = False) -> None:
    child = _children.get(pid)
    if child is None:
        return
    try:
        if block:
            child.wait(timeout=5)
        elif child.poll() is None:
            return
    except subprocess.TimeoutExpired:
        return
    _children.pop(pid, None)


def _start(directory: Path) -> Endpoints:
    log_path = directory / state_mod.LOG_FILE
    env = dict(os.environ)
    repo_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, env.get("PYTHONPATH")]))
    # The daemon's own AWS settings come from aws.py; the caller's must not leak into moto.
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(name, None)
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "helpers.services.daemon", "--state-dir", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=str(directory),
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    _children[child.pid] = child
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        recorded = state_mod.read_state(directory)
        if recorded is not None and recorded.pid == child.pid and state_mod.is_live(recorded):
            return _endpoints(recorded, directory)
        if child.poll() is not None:
            _children.pop(child.pid, None)
            raise LabError(
                f"The local services exited during start-up (exit {child.returncode}). "
                f"Last lines of {log_path}:\n{_tail(log_path)}"
            )
        time.sleep(0.05)
    _terminate(child.pid)
    raise LabError(
        f"The local services did not answer within {START_TIMEOUT_SECONDS:.0f} s. "
        f"Last lines of {log_path}:\n{_tail(log_path)}"
    )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
