"""The seam between the engine and whoever records a run.

The engine (runner) knows nothing about HTTP or SQLite; it reports what happens through a
:class:`RunObserver`. The API's store implements it to serve CircleCI's API v2 / v1.1, and
``rollback-lab ci run`` implements it to print labelled output. Ids are UUID strings that the
engine generates; job numbers come from the observer because a project's numbers are shared
by every pipeline it runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

# CircleCI's own status words (see the OpenAPI spec's Workflow and Job schemas).
WorkflowStatus = Literal[
    "success", "running", "not_run", "failed", "error", "failing", "on_hold", "canceled"
]
JobStatus = Literal[
    "success",
    "running",
    "not_run",
    "failed",
    "queued",
    "not_running",
    "infrastructure_fail",
    "timedout",
    "on_hold",
    "blocked",
    "canceled",
]
StepStatus = Literal["running", "success", "failed", "canceled", "timedout"]
OutputType = Literal["out", "err"]


@dataclass(frozen=True)
class ProjectContext:
    """The project a pipeline belongs to: its slug, its local repository, its env vars."""

    slug: str  # e.g. "gh/udacity/rollback-lab"
    repo_path: Path
    env: Mapping[str, str] = field(default_factory=dict)  # project variables: masked in output


@dataclass(frozen=True)
class PipelineContext:
    """What CircleCI calls pipeline values: the trigger's branch/tag, revision, parameters."""

    id: str
    number: int
    revision: str
    branch: str | None = None
    tag: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


class RunObserver(Protocol):
    """Receives what the engine does, in order, from the engine's threads (must be thread-safe)."""

    def workflow_created(self, workflow_id: str, name: str, created_at: datetime) -> None: ...

    def job_created(
        self,
        workflow_id: str,
        job_id: str,
        name: str,
        requires: Sequence[str],
        status: JobStatus,
    ) -> None: ...

    def job_number(self, job_id: str) -> int:
        """Allocate the job's number (CIRCLE_BUILD_NUM) when it leaves `blocked`."""
        ...

    def job_status(self, job_id: str, status: JobStatus, at: datetime) -> None:
        """Every change: blocked → queued → running → success/failed/canceled/…"""
        ...

    def step_started(self, job_id: str, index: int, name: str, at: datetime) -> None: ...

    def step_output(
        self, job_id: str, index: int, message: str, at: datetime, type: OutputType = "out"
    ) -> None:
        """A chunk of a step's output, already masked."""
        ...

    def step_finished(
        self, job_id: str, index: int, status: StepStatus, exit_code: int | None, at: datetime
    ) -> None: ...

    def workflow_finished(self, workflow_id: str, status: WorkflowStatus, at: datetime) -> None: ...
