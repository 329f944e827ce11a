"""What every step kind receives (the job's context) and returns (its outcome)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from helpers.localci.environment import HostEnvironment
from helpers.localci.observer import PipelineContext, ProjectContext, StepStatus


@dataclass(frozen=True)
class StepOutcome:
    status: StepStatus
    exit_code: int | None = None

    @classmethod
    def ok(cls) -> StepOutcome:
        return cls("success", 0)

    @classmethod
    def failed(cls, exit_code: int | None = 1) -> StepOutcome:
        return cls("failed", exit_code)


@dataclass
class StepContext:
    """The job as a step sees it. `emit` masks secrets before anything leaves the engine."""

    env: HostEnvironment
    variables: dict[str, str]  # the job's environment (CIRCLE_*, project vars, job env)
    working_directory: Path
    working_directory_text: str  # as the config wrote it (``~/project``)
    emit: Callable[[str], None]
    project: ProjectContext
    pipeline: PipelineContext
    job_name: str
    build_num: int
    workspace: Path  # the workflow's workspace
    artifacts: Path  # this job's artifacts
    test_results: Path
    cache_root: Path
    default_shell: str
    cancelled: threading.Event
    deadline: float | None
    track: Callable[[subprocess.Popen[bytes]], None] = field(default=lambda p: None)
    untrack: Callable[[subprocess.Popen[bytes]], None] = field(default=lambda p: None)
    background: Callable[[Callable[[], StepOutcome]], None] = field(default=lambda f: None)

    def path(self, text: str, relative_to: Path | None = None) -> Path:
        return self.env.expand(text, relative_to or self.working_directory)


StepKind = Callable[[StepContext, Mapping[str, object]], StepOutcome]
