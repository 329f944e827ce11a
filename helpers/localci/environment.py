"""Where a job's steps run: a host shell shaped by the job's image.

nektos/act hides Docker and the host behind one interface; here there is only the host, so a
:class:`HostEnvironment` gives each job its own home (``~`` of ``~/project``), its own temp
folder, and a PATH holding only links to the host programs its image would have. A step is a
new process group that the engine can kill; its output is read as it comes, with the
no-output and job deadlines enforced by the same wait (no polling).
"""

from __future__ import annotations

import codecs
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from helpers.localci.images import ImageProfile

BUSYBOX = Path("/usr/bin/busybox")
_READ_SIZE = 65536
_PARTIAL_FLUSH_SECONDS = 0.2  # a line without its newline yet is shown after this quiet time

Ending = Literal["exited", "no_output", "deadline", "canceled", "not_found"]


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None
    ending: Ending


@cache
def busybox_applets() -> frozenset[str]:
    if not BUSYBOX.exists():
        return frozenset()
    try:
        out = subprocess.run(
            [str(BUSYBOX), "--list"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(out.split())


@cache
def _dash_lacks_pipefail(sh: str) -> bool:
    probe = subprocess.run(
        [sh, "-o", "pipefail", "-c", "true"], capture_output=True, timeout=10, check=False
    )
    return probe.returncode != 0


def host_path() -> str:
    """The host's PATH, with this Python's bin folder (the venv's ``aws``) at the end."""
    parts = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep)
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in parts:
        parts.append(venv_bin)
    return os.pathsep.join(parts)


def host_program(tool: str) -> str | None:
    """Where the host keeps `tool`; ``aws`` is the venv's own CLI first."""
    if tool == "aws":
        venv_aws = Path(sys.executable).parent / "aws"
        if venv_aws.exists():
            return str(venv_aws)
    return shutil.which(tool, path=host_path())


class HostEnvironment:
    """One job's slice of the host: home, temp, PATH of links, and how to run a shell."""

    def __init__(self, root: Path, image: str | None, profile: ImageProfile | None) -> None:
        self.root = root
        self.image = image
        self.profile = profile
        self.home = root / "home"
        self.tmp = root / "tmp"
        self.bin = root / "bin"
        self.missing: list[str] = []  # tools of the profile the host does not have

    # -- set-up ------------------------------------------------------------------------
    def prepare(self) -> None:
        for d in (self.home, self.tmp, self.bin):
            d.mkdir(parents=True, exist_ok=True)
        if self.profile is None:
            return
        applets = busybox_applets() if self.profile.shell == "sh" else frozenset()
        for tool in sorted(self.profile.tools | {"sh"}):
            target = str(BUSYBOX) if tool in applets else host_program(tool)
            if target is None:
                self.missing.append(tool)
                continue
            link = self.bin / tool
            if not link.exists():
                link.symlink_to(target)

    @property
    def path(self) -> str:
        return host_path() if self.profile is None else str(self.bin)

    def base_env(self) -> dict[str, str]:
        """What the image itself puts in the environment."""
        return {
            "HOME": str(self.home),
            "PATH": self.path,
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.tmp),
            "USER": "circleci",
        }

    def expand(self, path: str, cwd: Path | None = None) -> Path:
        """A config path (``~/project``, ``.``, ``/tmp/x``) as a path on the host."""
        if path == "~" or path.startswith("~/"):
            return self.home / path[2:] if len(path) > 1 else self.home
        p = Path(path)
        if p.is_absolute():
            return p
        return (cwd or self.home) / p

    # -- shells ------------------------------------------------------------------------
    @property
    def has_bash(self) -> bool:
        if self.profile is None:
            return host_program("bash") is not None
        return self.profile.shell == "bash" and (self.bin / "bash").exists()

    def default_shell(self) -> str:
        return "/bin/bash -eo pipefail" if self.has_bash else "/bin/sh -eo pipefail"

    def shell_argv(self, shell: str) -> tuple[str, list[str]] | None:
        """(executable, argv) for a `shell:` line, or None when the image lacks the program."""
        parts = shlex.split(shell)
        if not parts:
            return None
        program = parts[0]
        name = os.path.basename(program)
        if self.profile is None:
            found = program if os.path.isabs(program) and os.path.exists(program) else None
            executable = found or shutil.which(name, path=self.path)
        else:
            link = self.bin / name
            executable = str(link) if link.exists() else None
        if executable is None:
            return None
        args = parts[1:]
        if name == "sh" and "pipefail" in args and not self._sh_is_busybox(executable):
            if _dash_lacks_pipefail(os.path.realpath(executable)):
                args = _without_pipefail(args)
        return executable, [program, *args]

    @staticmethod
    def _sh_is_busybox(executable: str) -> bool:
        return os.path.realpath(executable) == str(BUSYBOX.resolve()) if BUSYBOX.exists() else False

    # -- running -----------------------------------------------------------------------
    def execute(
        self,
        executable: str,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        on_output: Callable[[str], None],
        no_output_timeout: float | None,
        deadline: float | None,
        on_start: Callable[[subprocess.Popen[bytes]], None] = lambda p: None,
        cancelled: threading.Event | None = None,
    ) -> ExecResult:
        """Run one process group, stream its output, end it at either deadline."""
        try:
            proc = subprocess.Popen(
                argv,
                executable=executable,
                env=dict(env),
                cwd=str(cwd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            return ExecResult(127, "not_found")
        on_start(proc)
        if cancelled is not None and cancelled.is_set():
            kill_group(proc)
        ending: Ending = "exited"
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        last_output = time.monotonic()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                limits = []
                if no_output_timeout is not None:
                    limits.append(("no_output", last_output + no_output_timeout))
                if deadline is not None:
                    limits.append(("deadline", deadline))
                first = min(limits, key=lambda x: x[1]) if limits else None
                if first is not None and first[1] <= now:
                    ending = first[0]  # type: ignore[assignment]
                    kill_group(proc)
                    break
                wait = first[1] - now if first is not None else None
                if pending:
                    wait = _PARTIAL_FLUSH_SECONDS if wait is None else min(wait, 0.2)
                if not sel.select(wait):
                    if pending and time.monotonic() - last_output >= _PARTIAL_FLUSH_SECONDS:
                        on_output(pending)
                        pending = ""
                    continue
                data = os.read(fd, _READ_SIZE)
                if not data:
                    break
                last_output = time.monotonic()
                text = pending + decoder.decode(data)
                cut = text.rfind("\n") + 1
                if cut:
                    on_output(text[:cut])
                pending = text[cut:]
        tail = pending + decoder.decode(b"", final=True)
        if tail:
            on_output(tail)
        proc.stdout.close()
        code = proc.wait()
        if cancelled is not None and cancelled.is_set():
            ending = "canceled"
        return ExecResult(code if code >= 0 else 128 - code, ending)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End a step: its whole process group, at once (as CircleCI does on cancel)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _without_pipefail(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "-o" and i + 1 < len(args) and args[i + 1] == "pipefail":
            skip = True
            continue
        if arg.startswith("-") and arg.endswith("o") and i + 1 < len(args):
            if args[i + 1] == "pipefail":
                out.append(arg[:-1])
                skip = True
                continue
        out.append(arg)
    return [a for a in out if a != "-"]


def format_duration(seconds: float) -> str:
    """Go's time.Duration text (``10m0s``, ``30s``, ``1h0m0s``), as CircleCI prints it."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def parse_duration(text: object, default: float) -> float:
    """CircleCI durations (``10m``, ``1h30m``, ``90s``, ``1.5h``); a bare number is seconds."""
    import re

    if text is None or text == "":
        return default
    if isinstance(text, int | float):
        return float(text)
    s = str(text).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        try:
            return float(s)
        except ValueError:
            return default
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * unit[u] for n, u in parts)
