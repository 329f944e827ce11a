"""Pipeline overhead: the corrected exercise through the local CircleCI's API, trigger to
every workflow terminal, against its ``aws`` commands run by a bash script.

Both sides reach the same local AWS (and so the same CloudFormation step delay). They take
turns (direct first on even runs, pipeline first on odd ones) so a machine that slows down or
speeds up during the run weighs on both; warm-up rounds, not counted, pay for the first
deploy on a fresh moto. Every sample is checked, outside its timer, to have ended as the
lesson says: the smoke test failed and the on_fail step deleted the stack.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.bench.project import BenchProject, aws_client, new_workflow_id, stack_name
from helpers.bench.stats import median, ratio, rounded
from helpers.circleci.client import CircleCIClient
from helpers.circleci.watch import watch_pipeline

TARGET_RATIO = 1.2
#: The lesson's ending: the deploy job succeeded, the smoke test failed (on purpose).
EXPECTED_JOBS = {"create_infrastructure": "success", "smoke_test": "failed"}


@dataclass
class Sample:
    seconds: float
    stack: str
    ok: bool
    detail: str = ""


@dataclass
class PipelineOverhead:
    direct: list[Sample] = field(default_factory=list)
    pipeline: list[Sample] = field(default_factory=list)

    @property
    def direct_median(self) -> float | None:
        return median([s.seconds for s in self.direct])

    @property
    def pipeline_median(self) -> float | None:
        return median([s.seconds for s in self.pipeline])

    @property
    def ratio(self) -> float | None:
        return ratio(self.pipeline_median, self.direct_median)

    @property
    def ok(self) -> bool:
        samples = self.direct + self.pipeline
        return bool(self.direct and self.pipeline) and all(s.ok for s in samples)

    def to_json(self) -> dict[str, Any]:
        value = self.ratio
        return {
            "runs": len(self.pipeline),
            "direct_s": [rounded(s.seconds) for s in self.direct],
            "pipeline_s": [rounded(s.seconds) for s in self.pipeline],
            "direct_median_s": rounded(self.direct_median),
            "pipeline_median_s": rounded(self.pipeline_median),
            "ratio": rounded(value),
            "target_ratio": TARGET_RATIO,
            "meets_target": value is not None and value <= TARGET_RATIO,
            "ok": self.ok,
            "problems": [s.detail for s in self.direct + self.pipeline if not s.ok],
        }


def measure_pipeline_overhead(
    project: BenchProject,
    client: CircleCIClient,
    *,
    runs: int,
    warmup: int = 1,
    home: Path,
    progress: Callable[[str], None] = lambda _text: None,
) -> PipelineOverhead:
    result = PipelineOverhead()
    for round_index in range(warmup):
        progress(f"pipeline: warm-up {round_index + 1}/{warmup}")
        run_direct(project, home)
        run_pipeline(project, client)
    for index in range(runs):
        order = ("direct", "pipeline") if index % 2 == 0 else ("pipeline", "direct")
        for side in order:
            if side == "direct":
                result.direct.append(run_direct(project, home))
            else:
                result.pipeline.append(run_pipeline(project, client))
        progress(
            f"pipeline: run {index + 1}/{runs}: direct {result.direct[-1].seconds:.2f} s, "
            f"pipeline {result.pipeline[-1].seconds:.2f} s"
        )
    return result


def run_direct(project: BenchProject, home: Path) -> Sample:
    """One run of the bash script; it should exit 1 (the smoke test) with the stack deleted."""
    workflow_id = new_workflow_id()
    home.mkdir(parents=True, exist_ok=True)
    env = project.direct_env(workflow_id, home)
    started = time.perf_counter()
    completed = subprocess.run(
        ["bash", str(project.script)],
        cwd=project.workspace,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    stack = stack_name(workflow_id)
    problems = []
    if completed.returncode != 1:
        tail = (completed.stdout + completed.stderr).strip().splitlines()[-3:]
        problems.append(f"exit {completed.returncode}, expected 1: {' | '.join(tail)}")
    if not stack_deleted(project, stack):
        problems.append(f"stack {stack} was not deleted")
    return Sample(seconds, stack, not problems, f"direct: {'; '.join(problems)}")


def run_pipeline(project: BenchProject, client: CircleCIClient) -> Sample:
    """Trigger, then watch with the watch's own defaults, as a notebook does."""
    started = time.perf_counter()
    created = client.trigger_pipeline(project.slug, branch="main")
    watched = watch_pipeline(client, created.id, view="none", timeout=600)
    seconds = time.perf_counter() - started
    problems = []
    jobs = {job.name: job.status for jobs in watched.jobs.values() for job in jobs}
    if jobs != EXPECTED_JOBS:
        problems.append(f"jobs ended {jobs}, expected {EXPECTED_JOBS}")
    stack = stack_name(watched.workflows[0].id) if watched.workflows else "?"
    if watched.workflows and not stack_deleted(project, stack):
        problems.append(f"stack {stack} was not deleted")
    detail = f"pipeline {created.number}: {'; '.join(problems)}"
    return Sample(seconds, stack, not problems, detail)


def stack_deleted(project: BenchProject, name: str) -> bool:
    """True when no live stack has this name (AWS answers "does not exist" for deleted ones)."""
    from botocore.exceptions import ClientError

    cfn = aws_client(project.endpoints, "cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        return "does not exist" in str(exc)
    return all(stack["StackStatus"] == "DELETE_COMPLETE" for stack in stacks)
