"""An in-memory :class:`RunObserver`: what ``ci run --json`` prints and tests read.

It keeps every event in order, numbers jobs from 1, and answers the questions one asks of a
run afterwards: a job's statuses, a step's output, when a step started and ended.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from helpers.localci.observer import JobStatus, OutputType, StepStatus, WorkflowStatus


@dataclass
class StepRecord:
    index: int
    name: str
    started_at: datetime
    output: list[tuple[datetime, str, OutputType]] = field(default_factory=list)
    status: StepStatus = "running"
    exit_code: int | None = None
    finished_at: datetime | None = None

    @property
    def text(self) -> str:
        return "".join(chunk for _, chunk, _ in self.output)


@dataclass
class JobRecord:
    id: str
    workflow_id: str
    name: str
    requires: tuple[str, ...]
    statuses: list[tuple[JobStatus, datetime | None]]
    number: int | None = None
    steps: dict[int, StepRecord] = field(default_factory=dict)

    @property
    def status(self) -> JobStatus:
        return self.statuses[-1][0]

    def step(self, name: str) -> StepRecord:
        for step in self.steps.values():
            if step.name == name:
                return step
        raise KeyError(f"job {self.name} has no step named {name!r}: {self.step_names}")

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in sorted(self.steps.values(), key=lambda s: s.index)]

    @property
    def output(self) -> str:
        return "".join(s.text for s in sorted(self.steps.values(), key=lambda s: s.index))


@dataclass
class WorkflowRecord:
    id: str
    name: str
    created_at: datetime
    status: WorkflowStatus = "running"
    finished_at: datetime | None = None


class RecordingObserver:
    """Thread-safe; `on_event` (optional) sees each event as it arrives, for live printing."""

    def __init__(
        self, on_event: Callable[[str, dict[str, Any]], None] | None = None, first_number: int = 1
    ) -> None:
        self._lock = threading.Lock()
        self._numbers = itertools.count(first_number)
        self.on_event = on_event
        self.workflows: dict[str, WorkflowRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _event(self, kind: str, **data: Any) -> None:
        self.events.append((kind, data))
        if self.on_event is not None:
            self.on_event(kind, data)

    # -- RunObserver -------------------------------------------------------------------
    def workflow_created(self, workflow_id: str, name: str, created_at: datetime) -> None:
        with self._lock:
            self.workflows[workflow_id] = WorkflowRecord(workflow_id, name, created_at)
            self._event("workflow_created", workflow_id=workflow_id, name=name)

    def job_created(
        self,
        workflow_id: str,
        job_id: str,
        name: str,
        requires: Sequence[str],
        status: JobStatus,
    ) -> None:
        with self._lock:
            self.jobs[job_id] = JobRecord(
                job_id, workflow_id, name, tuple(requires), [(status, None)]
            )
            self._event("job_created", job_id=job_id, name=name, status=status)

    def job_number(self, job_id: str) -> int:
        with self._lock:
            number = next(self._numbers)
            self.jobs[job_id].number = number
            return number

    def job_status(self, job_id: str, status: JobStatus, at: datetime) -> None:
        with self._lock:
            self.jobs[job_id].statuses.append((status, at))
            self._event("job_status", job_id=job_id, name=self.jobs[job_id].name, status=status)

    def step_started(self, job_id: str, index: int, name: str, at: datetime) -> None:
        with self._lock:
            self.jobs[job_id].steps[index] = StepRecord(index, name, at)
            self._event("step_started", job_id=job_id, job=self.jobs[job_id].name, name=name)

    def step_output(
        self, job_id: str, index: int, message: str, at: datetime, type: OutputType = "out"
    ) -> None:
        with self._lock:
            step = self.jobs[job_id].steps[index]
            step.output.append((at, message, type))
            self._event(
                "step_output",
                job_id=job_id,
                job=self.jobs[job_id].name,
                step=step.name,
                message=message,
            )

    def step_finished(
        self, job_id: str, index: int, status: StepStatus, exit_code: int | None, at: datetime
    ) -> None:
        with self._lock:
            step = self.jobs[job_id].steps[index]
            step.status, step.exit_code, step.finished_at = status, exit_code, at
            self._event(
                "step_finished",
                job_id=job_id,
                job=self.jobs[job_id].name,
                step=step.name,
                status=status,
                exit_code=exit_code,
            )

    def workflow_finished(self, workflow_id: str, status: WorkflowStatus, at: datetime) -> None:
        with self._lock:
            wf = self.workflows[workflow_id]
            wf.status, wf.finished_at = status, at
            self._event("workflow_finished", workflow_id=workflow_id, name=wf.name, status=status)

    # -- questions ---------------------------------------------------------------------
    def job(self, name: str, workflow: str | None = None) -> JobRecord:
        found = [
            j
            for j in self.jobs.values()
            if j.name == name
            and (workflow is None or self.workflows[j.workflow_id].name == workflow)
        ]
        if len(found) != 1:
            raise KeyError(f"{len(found)} jobs named {name!r}")
        return found[0]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"workflows": []}
        for wf in self.workflows.values():
            jobs = [j for j in self.jobs.values() if j.workflow_id == wf.id]
            out["workflows"].append(
                {
                    "id": wf.id,
                    "name": wf.name,
                    "status": wf.status,
                    "jobs": [
                        {
                            "id": j.id,
                            "name": j.name,
                            "job_number": j.number,
                            "status": j.status,
                            "requires": list(j.requires),
                            "steps": [
                                {
                                    "index": s.index,
                                    "name": s.name,
                                    "status": s.status,
                                    "exit_code": s.exit_code,
                                    "output": s.text,
                                }
                                for s in sorted(j.steps.values(), key=lambda s: s.index)
                            ],
                        }
                        for j in jobs
                    ],
                }
            )
        return out
