"""Workflows → the jobs that will run, and when each may start.

The compiled config says what a workflow contains; the plan says what runs for *this*
pipeline: branch and tag filters drop jobs (and, transitively, what requires them), and a
job is decided once every job it requires has ended — it runs when each ended with an
accepted status, otherwise it is ``not_run``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from helpers.errors import InputError
from helpers.localci.config import CompiledConfig, Workflow, WorkflowJob
from helpers.localci.observer import JobStatus, PipelineContext

TERMINAL: frozenset[str] = frozenset(
    {"success", "failed", "canceled", "not_run", "timedout", "infrastructure_fail", "unauthorized"}
)
Decision = Literal["wait", "run", "not_run"]


@dataclass(frozen=True)
class PlannedWorkflow:
    name: str
    jobs: tuple[WorkflowJob, ...]

    def dependants(self, names: Sequence[str]) -> set[str]:
        """`names` and every job that requires one of them, transitively."""
        out = set(names)
        changed = True
        while changed:
            changed = False
            for wj in self.jobs:
                if wj.name not in out and any(r.job in out for r in wj.requires):
                    out.add(wj.name)
                    changed = True
        return out


def plan(
    compiled: CompiledConfig,
    pipeline: PipelineContext,
    workflows: Sequence[str] | None = None,
) -> list[PlannedWorkflow]:
    """The workflows to run for this pipeline, each with the jobs its filters keep."""
    names = list(compiled.workflows) if workflows is None else list(workflows)
    unknown = [n for n in names if n not in compiled.workflows]
    if unknown:
        raise InputError(
            f"no workflow named {', '.join(unknown)} "
            f"(the config has: {', '.join(compiled.workflows) or 'none'})",
            field="workflow",
        )
    out: list[PlannedWorkflow] = []
    for name in names:
        planned = plan_workflow(compiled.workflows[name], pipeline)
        if planned.jobs:
            out.append(planned)
    return out


def plan_workflow(workflow: Workflow, pipeline: PipelineContext) -> PlannedWorkflow:
    kept = {wj.name for wj in workflow.jobs if _passes_filters(wj, pipeline)}
    changed = True
    while changed:  # a job whose requirement was filtered out does not run either
        changed = False
        for wj in workflow.jobs:
            if wj.name in kept and any(r.job not in kept for r in wj.requires):
                kept.discard(wj.name)
                changed = True
    return PlannedWorkflow(workflow.name, tuple(wj for wj in workflow.jobs if wj.name in kept))


def _passes_filters(wj: WorkflowJob, pipeline: PipelineContext) -> bool:
    if pipeline.tag:
        # CircleCI runs a job for a tag only when its tag filter says so.
        return wj.tags.is_set() and wj.tags.accepts(pipeline.tag)
    return wj.branches.accepts(pipeline.branch or "")


def decide(wj: WorkflowJob, statuses: Mapping[str, JobStatus]) -> Decision:
    """Whether a job may start given the statuses its requirements have reached so far."""
    for req in wj.requires:
        status = statuses.get(req.job)
        if status is None or status not in TERMINAL:
            return "wait"
    for req in wj.requires:
        status = statuses[req.job]
        if status == "timedout":
            status = "failed"
        if status not in req.statuses:
            return "not_run"
    return "run"
