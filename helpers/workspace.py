"""The lab workspace: the student's own git repository holding template.yml and config.yml.

CircleCI builds commits, not folders, so the lab keeps its two files in a real git repository
(by default ``<repo root>/lab-workspace``, which the kit's .gitignore leaves out) and later
notebooks trigger pipelines for its commits. ``ROLLBACK_LAB_WORKSPACE`` or an explicit path
picks another folder. Real git runs underneath (subprocess), so what the notebook shows is what
``git log`` shows.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import pipeline_config, template
from helpers.errors import LabError

ENV_VAR = "ROLLBACK_LAB_WORKSPACE"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BRANCH = "main"
TEMPLATE_FILE = "template.yml"
CONFIG_FILE = ".circleci/config.yml"
# Used only when neither the workspace nor the user's git config names an author.
_FALLBACK_AUTHOR = ("rollback-lab student", "student@rollback-lab.invalid")


_GIT_LOCATION_VARS = frozenset(
    {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CEILING_DIRECTORIES"}
)


class GitError(LabError):
    """A git command failed; the message carries git's own words."""


def default_path() -> Path:
    """``$ROLLBACK_LAB_WORKSPACE`` if set, else ``<repo root>/lab-workspace``."""
    configured = os.environ.get(ENV_VAR)
    return Path(configured).expanduser() if configured else REPO_ROOT / "lab-workspace"


@dataclass(frozen=True)
class Workspace:
    """A git repository the lab writes its files into and commits."""

    path: Path

    @classmethod
    def open_or_init(cls, path: str | Path | None = None) -> Workspace:
        """Open the repository at ``path`` (default :func:`default_path`), creating it with a
        ``main`` branch if it is not one yet."""
        folder = Path(path).expanduser() if path is not None else default_path()
        folder = folder.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        workspace = cls(folder)
        if not (folder / ".git").exists():
            workspace._git("init", "--quiet", f"--initial-branch={DEFAULT_BRANCH}")
        workspace._ensure_author()
        return workspace

    # --- files ---------------------------------------------------------------------------

    @property
    def template_path(self) -> Path:
        return self.path / TEMPLATE_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    def write_template(self, tpl: Mapping[str, Any]) -> Path:
        """Write ``template.yml`` at the workspace root, where the config's deploy step looks."""
        return template.write_template(tpl, self.template_path)

    def write_config(self, cfg: Mapping[str, Any]) -> Path:
        """Write ``.circleci/config.yml``, where CircleCI looks for it."""
        return pipeline_config.write_config(cfg, self.config_path)

    # --- git -----------------------------------------------------------------------------

    def commit(self, message: str, *, allow_empty: bool = False) -> str:
        """Stage everything and commit; returns the new commit's sha. With nothing changed
        (and ``allow_empty`` False) no commit is made and the current head is returned."""
        self._git("add", "--all")
        if not allow_empty and not self._has_staged_changes():
            current = self.head()
            if current is None:
                raise LabError(f"nothing to commit in {self.path}: write the lab's files first")
            return current
        args = ["commit", "--quiet", "--message", message]
        if allow_empty:
            args.append("--allow-empty")
        self._git(*args)
        sha = self.head()
        assert sha is not None
        return sha

    def head(self) -> str | None:
        """The sha of the current commit, or None before the first commit."""
        result = self._run("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
        return result.stdout.strip() if result.returncode == 0 else None

    @property
    def branch(self) -> str:
        """The current branch's name (``main`` for a workspace the lab made)."""
        return self._git("symbolic-ref", "--short", "HEAD").strip()

    def log(self, limit: int = 10) -> list[tuple[str, str]]:
        """``(sha, subject)`` of the latest commits, newest first."""
        if self.head() is None:
            return []
        out = self._git("log", f"--max-count={limit}", "--format=%H%x09%s")
        return [tuple(line.split("\t", 1)) for line in out.splitlines()]  # type: ignore[misc]

    def remote_url(self, remote: str = "origin") -> str | None:
        """The URL of ``remote``, or None when the workspace has no such remote. It may carry
        credentials (``https://user:token@…``): show it through :func:`redact_url` only."""
        result = self._run("remote", "get-url", remote)
        return result.stdout.strip() if result.returncode == 0 else None

    def push(self, remote: str = "origin") -> None:
        """Push the current branch to ``remote`` with the user's own git credentials (real
        CircleCI builds what GitHub has). git's messages are passed on with URLs redacted."""
        result = self._run("push", "--quiet", remote, f"HEAD:refs/heads/{self.branch}")
        if result.returncode != 0:
            raise GitError(
                f"git push {remote} {self.branch} failed in {self.path}: "
                f"{redact_url((result.stderr or result.stdout).strip())}"
            )

    def _has_staged_changes(self) -> bool:
        return self._run("diff", "--cached", "--quiet").returncode == 1

    def _ensure_author(self) -> None:
        # A fresh machine (a container, Binder) often has no git identity; commits would fail.
        # Set one in this repository only, and only where git has none.
        for key, fallback in zip(("user.name", "user.email"), _FALLBACK_AUTHOR, strict=True):
            if self._run("config", key).returncode != 0:
                self._git("config", "--local", key, fallback)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        # Variables a surrounding git (a hook, another repo's command) may have set would point
        # these commands at that repository instead of this one.
        env = {key: value for key, value in os.environ.items() if key not in _GIT_LOCATION_VARS}
        return subprocess.run(
            ["git", *args], cwd=self.path, env=env, capture_output=True, text=True, check=False
        )

    def _git(self, *args: str) -> str:
        result = self._run(*args)
        if result.returncode != 0:
            raise GitError(
                f"git {_quote(args)} failed in {self.path}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result.stdout


def _quote(args: Sequence[str]) -> str:
    return " ".join(args)


_URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")


def redact_url(text: str) -> str:
    """``https://user:token@github.com/…`` → ``https://***@github.com/…`` wherever it occurs."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)
