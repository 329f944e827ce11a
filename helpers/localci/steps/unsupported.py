"""Steps that need circleci.com's infrastructure: said clearly instead of faked."""

from __future__ import annotations

from collections.abc import Mapping

from helpers.localci.steps.base import StepContext, StepOutcome


def setup_remote_docker(ctx: StepContext, args: Mapping[str, object]) -> StepOutcome:
    ctx.emit(
        "setup_remote_docker is not supported locally: rollback-lab runs jobs on this machine "
        "without Docker. Run this job on circleci.com (LAB_BACKEND=real).\n"
    )
    return StepOutcome.failed(1)


def add_ssh_keys(ctx: StepContext, args: Mapping[str, object]) -> StepOutcome:
    ctx.emit("add_ssh_keys: no SSH keys are installed locally (nothing to add)\n")
    return StepOutcome.ok()
