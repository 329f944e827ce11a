"""A classroom: K pipelines triggered at the same moment on one local CircleCI.

Every pipeline must be accounted for: listed by the API, run to its end, and ended as the
lesson says (deploy succeeded, smoke test failed, stack deleted). Latency is from the moment a
pipeline's trigger was sent to the end of its last workflow as the server recorded it, so one
poller for the whole class (not K watchers competing with the jobs for the CPU) does not blur
it; the total wall time is what the poller saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from helpers.bench.pipeline import EXPECTED_JOBS, stack_deleted
from helpers.bench.project import BenchProject, stack_name
from helpers.bench.stats import percentile, rounded
from helpers.circleci import models as m
from helpers.circleci.client import CircleCIClient

POLL_SECONDS = 0.2


@dataclass
class Tracked:
    """One student's pipeline."""

    id: str
    number: int
    sent_at: float  # time.time() just before its trigger was sent
    state: str = "pending"  # pending → finished | errored
    latency: float | None = None
    jobs: dict[str, str] = field(default_factory=dict)
    stack: str | None = None
    problem: str | None = None


@dataclass
class Classroom:
    requested: int
    pipelines: list[Tracked]
    listed: int  # how many of them listPipelinesForProject returns
    wall_seconds: float
    timed_out: bool

    @property
    def finished(self) -> list[Tracked]:
        return [p for p in self.pipelines if p.state == "finished"]

    @property
    def as_expected(self) -> list[Tracked]:
        return [p for p in self.finished if p.problem is None]

    @property
    def lost(self) -> int:
        return self.requested - len(self.finished)

    @property
    def ok(self) -> bool:
        return len(self.as_expected) == self.requested and self.listed == self.requested

    def to_json(self) -> dict[str, Any]:
        latencies = [p.latency for p in self.finished if p.latency is not None]
        return {
            "pipelines": self.requested,
            "triggered": len(self.pipelines),
            "listed": self.listed,
            "finished": len(self.finished),
            "as_expected": len(self.as_expected),
            "lost": self.lost,
            "timed_out": self.timed_out,
            "wall_s": rounded(self.wall_seconds),
            "latency_s": {
                "p50": rounded(percentile(latencies, 0.5)),
                "p90": rounded(percentile(latencies, 0.9)),
                "max": rounded(max(latencies, default=None)),
            },
            "latencies_s": [rounded(value) for value in latencies],
            "meets_target": self.ok,
            "ok": self.ok,
            "problems": [f"pipeline {p.number}: {p.problem}" for p in self.pipelines if p.problem],
        }


def measure_classroom(
    project: BenchProject,
    make_client: Callable[[], CircleCIClient],
    *,
    pipelines: int,
    timeout: float = 600.0,
    progress: Callable[[str], None] = lambda _text: None,
) -> Classroom:
    progress(f"classroom: triggering {pipelines} pipelines at once")
    started = time.perf_counter()
    tracked = trigger_together(project.slug, make_client, pipelines)
    with make_client() as client:
        timed_out = _wait_all(client, tracked, started + timeout, progress)
        wall = time.perf_counter() - started
        ours = {p.id for p in tracked}
        listed = sum(1 for p in client.list_pipelines(project.slug) if p.id in ours)
    for pipeline in tracked:
        _check(project, pipeline)
    return Classroom(pipelines, tracked, listed, wall, timed_out)


def trigger_together(
    slug: str, make_client: Callable[[], CircleCIClient], count: int
) -> list[Tracked]:
    """``count`` triggers released by one barrier, each from its own client (a student)."""
    barrier = threading.Barrier(count)

    def student(_index: int) -> Tracked:
        with make_client() as client:
            barrier.wait(timeout=60)
            sent_at = time.time()
            created = client.trigger_pipeline(slug, branch="main")
        return Tracked(created.id, created.number, sent_at)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(student, range(count)))


def _wait_all(
    client: CircleCIClient,
    tracked: list[Tracked],
    deadline: float,
    progress: Callable[[str], None],
) -> bool:
    """Poll every unfinished pipeline until all are terminal; True when time ran out."""
    while True:
        for pipeline in tracked:
            if pipeline.state == "pending":
                _poll(client, pipeline)
        left = sum(1 for p in tracked if p.state == "pending")
        if not left:
            return False
        if time.perf_counter() >= deadline:
            for pipeline in tracked:
                if pipeline.state == "pending":
                    pipeline.problem = "still running when the classroom timed out"
            return True
        time.sleep(POLL_SECONDS)


def _poll(client: CircleCIClient, pipeline: Tracked) -> None:
    state = client.get_pipeline(pipeline.id)
    if state.state == "errored":
        pipeline.state = "errored"
        pipeline.problem = "errored: " + "; ".join(e.message for e in state.errors)
        return
    workflows = client.list_workflows(pipeline.id) if state.state == "created" else []
    if not workflows or not all(wf.is_terminal for wf in workflows):
        return
    pipeline.state = "finished"
    ends = [wf.stopped_at for wf in workflows if wf.stopped_at is not None]
    if ends:
        pipeline.latency = max(ends).timestamp() - pipeline.sent_at
    jobs: list[m.Job] = [job for wf in workflows for job in client.list_jobs(wf.id)]
    pipeline.jobs = {job.name: job.status for job in jobs}
    pipeline.stack = stack_name(workflows[0].id)


def _check(project: BenchProject, pipeline: Tracked) -> None:
    if pipeline.problem is not None or pipeline.state != "finished":
        return
    if pipeline.jobs != EXPECTED_JOBS:
        pipeline.problem = f"jobs ended {pipeline.jobs}, expected {EXPECTED_JOBS}"
    elif pipeline.stack and not stack_deleted(project, pipeline.stack):
        pipeline.problem = f"stack {pipeline.stack} was not deleted"
