"""The `checkout` step: the project's repository at the pipeline's revision.

The engine clones with the host's git whatever the image holds; an image without git or ssh
gets CircleCI's own warning about its native git client, as on circleci.com.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from helpers.localci.steps.base import StepContext, StepOutcome

NO_GIT_WARNING = (
    "Either git or ssh (required by git to clone through SSH) is not installed in the image. "
    "Falling back to CircleCI's native git client but the behavior may be different from "
    "official git. If this is an issue, please use an image that has official git and ssh "
    "installed.\n"
)


def checkout_step(ctx: StepContext, args: Mapping[str, object]) -> StepOutcome:
    target = ctx.path(str(args["path"])) if args.get("path") else ctx.working_directory
    profile = ctx.env.profile
    if profile is not None and not (profile.has("git") and profile.has("ssh")):
        ctx.emit(NO_GIT_WARNING)
    repo = ctx.project.repo_path
    revision = ctx.pipeline.revision or "HEAD"
    branch = ctx.pipeline.branch
    if (target / ".git").exists():
        ctx.emit(f"Fetching into existing repository {target}\n")
        steps = [["git", "fetch", "--quiet", "--force", str(repo), revision]]
    elif target.exists() and any(target.iterdir()):
        ctx.emit(
            f"Directory ({target}) you are trying to checkout to is not empty and not a git "
            "repository\n"
        )
        return StepOutcome.failed(1)
    else:
        ctx.emit(f"Cloning git repository\nCloning into '{target}'...\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        steps = [["git", "clone", "--quiet", "--no-checkout", str(repo), str(target)]]
    steps.append(["git", "-C", str(target), "checkout", "--quiet", "--force", revision])
    if branch:
        steps.append(["git", "-C", str(target), "checkout", "--quiet", "-B", branch])
    for cmd in steps:
        code = _git(ctx, cmd, cwd=target if target.exists() else target.parent)
        if code:
            ctx.emit(f"\nExited with code exit status {code}\n")
            return StepOutcome.failed(code)
    head = subprocess.run(
        ["git", "-C", str(target), "log", "-1", "--format=%H %s"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    ctx.emit(f"HEAD is now at {head}\n")
    return StepOutcome.ok()


def _git(ctx: StepContext, cmd: list[str], cwd: Path) -> int:
    env = dict(os.environ)
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ADVICE": "0"})
    proc = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True, check=False)
    output = (proc.stdout or "") + (proc.stderr or "")
    if output:
        ctx.emit(output if output.endswith("\n") else output + "\n")
    return proc.returncode
