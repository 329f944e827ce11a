"""CircleCI project slugs, and linking a slug to the local git repository it stands for.

On circleci.com a project is a repository on GitHub or Bitbucket; locally it is a git repository
on disk, linked once (``rollback-lab link gh/ORG/REPO PATH``). Pipelines then read
``.circleci/config.yml`` from that repository with real git, at the branch or tag asked for.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import unquote

from helpers.errors import InputError
from helpers.localci.store import Project, Store

# CircleCI accepts the long and the short vcs names; it answers with the short one.
_VCS_ALIASES = {"gh": "gh", "github": "gh", "bb": "bb", "bitbucket": "bb", "circleci": "circleci"}
PROVIDER_NAMES = {"gh": "GitHub", "bb": "Bitbucket", "circleci": "CircleCI"}
_VCS_URLS = {"gh": "https://github.com", "bb": "https://bitbucket.org", "circleci": ""}
V1_VCS_NAMES = {"gh": "github", "bb": "bitbucket", "circleci": "circleci"}


def normalize_slug(slug: str) -> str:
    """``github/ORG/REPO`` or ``gh%2FORG%2FREPO`` → ``gh/ORG/REPO``; raises on anything else."""
    text = unquote(slug.strip())
    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        raise InputError(
            f"{slug!r} is not a project slug; write it as vcs/org/repo, e.g. gh/udacity/rollback",
            field="slug",
        )
    vcs = _VCS_ALIASES.get(parts[0].lower())
    if vcs is None:
        raise InputError(
            f"unknown vcs {parts[0]!r} in {slug!r}; use one of gh, github, bb, bitbucket, circleci",
            field="slug",
        )
    return f"{vcs}/{parts[1]}/{parts[2]}"


def vcs_url(slug: str) -> str:
    """The repository URL CircleCI would show for the project (its VCS host's address)."""
    vcs, org, repo = slug.split("/")
    base = _VCS_URLS[vcs]
    return f"{base}/{org}/{repo}" if base else f"https://app.circleci.com/projects/{slug}"


def git_toplevel(
    path: Path, *, hint: str = "run `git init` there and commit .circleci/config.yml"
) -> Path:
    """The root of the git work tree at ``path``; a clear error, ending with ``hint`` on what
    to do, when there is none."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise InputError("no such directory", file=path)
    result = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise InputError(f"not a git repository ({hint})", file=path)
    return Path(result.stdout.strip()).resolve()


def link_project(
    slug: str, path: str | os.PathLike[str], state_dir: str | os.PathLike[str] | None = None
) -> Project:
    """Link ``slug`` to the git repository at ``path`` in the local CircleCI of ``state_dir``.

    Works whether or not the services are running (the store is a file both can open); linking
    a slug again points it at the new path and keeps its history and variables.
    """
    from helpers.services.state import resolve_state_dir

    canonical = normalize_slug(slug)
    repo = git_toplevel(Path(path))
    store = Store.in_state_dir(resolve_state_dir(state_dir))
    try:
        return store.link_project(canonical, repo)
    finally:
        store.close()
