"""The engine: run a compiled config's workflows, their jobs and steps, on the host.

Each workflow has a coordinator that starts a job as soon as everything it requires has
ended with an accepted status; jobs run in their own threads, at most ``max_concurrent_jobs``
at once across the engine (the rest report ``queued``). Every change goes to the
:class:`~helpers.localci.observer.RunObserver`. Nothing here sleeps to poll: coordinators wait
on a queue of finished jobs, jobs on a condition for a free slot, steps on their output.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from helpers.errors import InputError
from helpers.localci.config import CompiledConfig, Job, Step, WorkflowJob
from helpers.localci.environment import HostEnvironment, format_duration, kill_group
from helpers.localci.images import profile_for
from helpers.localci.masking import Masker
from helpers.localci.observer import (
    JobStatus,
    PipelineContext,
    ProjectContext,
    RunObserver,
    StepStatus,
    WorkflowStatus,
)
from helpers.localci.planner import PlannedWorkflow, decide, plan, plan_workflow
from helpers.localci.steps import KINDS, StepContext, StepOutcome

DEFAULT_JOB_TIMEOUT = 5 * 3600.0  # CircleCI's limit for a job on the free plan's docker
SPIN_UP_STEP = 0  # CircleCI numbers its preamble steps 0 and 99, the config's from 101
PREPARE_ENV_STEP = 99
FIRST_CONFIG_STEP = 101
_SECRET_HINTS = ("SECRET", "TOKEN", "PASSWORD", "KEY")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- results


@dataclass
class JobResult:
    id: str
    name: str
    status: JobStatus
    number: int | None = None
    carried_over: bool = False


@dataclass
class WorkflowResult:
    id: str
    name: str
    status: WorkflowStatus
    jobs: dict[str, JobResult] = field(default_factory=dict)


@dataclass
class PipelineResult:
    workflows: list[WorkflowResult] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return bool(self.workflows) and all(w.status == "success" for w in self.workflows)

    def workflow(self, name: str) -> WorkflowResult:
        for wf in self.workflows:
            if wf.name == name:
                return wf
        raise KeyError(name)


# --------------------------------------------------------------------------- run state


class _Slots:
    """A counting semaphore whose waiters also wake when their job is canceled."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._cond = threading.Condition()

    def try_acquire(self) -> bool:
        with self._cond:
            if self._free > 0:
                self._free -= 1
                return True
            return False

    def acquire(self, cancelled: threading.Event) -> bool:
        with self._cond:
            while self._free <= 0 and not cancelled.is_set():
                self._cond.wait()
            if cancelled.is_set():
                return False
            self._free -= 1
            return True

    def release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


@dataclass
class _JobRun:
    id: str
    workflow: WorkflowJob
    cancelled: threading.Event = field(default_factory=threading.Event)
    processes: set[subprocess.Popen[bytes]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def track(self, proc: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.processes.add(proc)

    def untrack(self, proc: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.processes.discard(proc)

    def kill(self) -> None:
        with self.lock:
            procs = list(self.processes)
        for proc in procs:
            kill_group(proc)


@dataclass
class _WorkflowRun:
    id: str
    name: str
    jobs: dict[str, _JobRun] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: queue.Queue[tuple[str, JobStatus]] = field(default_factory=queue.Queue)


@dataclass
class _RunInputs:
    compiled: CompiledConfig
    project: ProjectContext
    pipeline: PipelineContext
    observer: RunObserver
    extra_env: Mapping[str, str]


# --------------------------------------------------------------------------- the engine


class Engine:
    """Runs pipelines on this machine. Thread-safe; one engine can serve many pipelines."""

    def __init__(
        self,
        work_root: Path,
        *,
        max_concurrent_jobs: int = 4,
        job_timeout: float = DEFAULT_JOB_TIMEOUT,
        keep_job_dirs: bool = False,
        app_url: str = "http://127.0.0.1",
    ) -> None:
        self.work_root = Path(work_root)
        self.work_root.mkdir(parents=True, exist_ok=True)
        self.job_timeout = job_timeout
        self.keep_job_dirs = keep_job_dirs
        self.app_url = app_url.rstrip("/")
        self._slots = _Slots(max(1, max_concurrent_jobs))
        self._lock = threading.Lock()
        self._workflows: dict[str, _WorkflowRun] = {}
        self._jobs: dict[str, _JobRun] = {}

    # -- public API --------------------------------------------------------------------
    def run_pipeline(
        self,
        compiled: CompiledConfig,
        *,
        project: ProjectContext,
        pipeline: PipelineContext,
        observer: RunObserver,
        extra_env: Mapping[str, str] | None = None,
        workflows: Sequence[str] | None = None,
    ) -> PipelineResult:
        """Run the pipeline's workflows (concurrently) and return when all have ended."""
        inputs = _RunInputs(compiled, project, pipeline, observer, dict(extra_env or {}))
        planned = plan(compiled, pipeline, workflows)
        return self._run_all(inputs, [(wf, {}, None) for wf in planned])

    def rerun_workflow(
        self,
        compiled: CompiledConfig,
        *,
        workflow_name: str,
        previous_jobs: Mapping[str, JobStatus],
        jobs: Sequence[str] | None = None,
        project: ProjectContext,
        pipeline: PipelineContext,
        observer: RunObserver,
        extra_env: Mapping[str, str] | None = None,
        previous_workflow_id: str | None = None,
    ) -> PipelineResult:
        """A new workflow: from_failed when `jobs` is None, else the named jobs (and their
        dependants). Jobs not rerun are carried over with their previous status."""
        if workflow_name not in compiled.workflows:
            raise InputError(f"no workflow named {workflow_name}", field="workflow_name")
        planned = plan_workflow(compiled.workflows[workflow_name], pipeline)
        names = [wj.name for wj in planned.jobs]
        if jobs is None:
            seeds = [n for n in names if previous_jobs.get(n) != "success"]
        else:
            unknown = [j for j in jobs if j not in names]
            if unknown:
                raise InputError(f"no job named {', '.join(unknown)} in {workflow_name}")
            seeds = list(jobs)
        seeds += [n for n in names if n not in previous_jobs]
        to_run = planned.dependants(seeds)
        carried = {n: previous_jobs[n] for n in names if n not in to_run}
        inputs = _RunInputs(compiled, project, pipeline, observer, dict(extra_env or {}))
        return self._run_all(inputs, [(planned, carried, previous_workflow_id)])

    def cancel_workflow(self, workflow_id: str) -> bool:
        with self._lock:
            wf = self._workflows.get(workflow_id)
        if wf is None:
            return False
        wf.cancelled.set()
        for jr in list(wf.jobs.values()):
            self._cancel(jr)
        return True

    def cancel_job(self, job_id: str) -> bool:
        with self._lock:
            jr = self._jobs.get(job_id)
        if jr is None:
            return False
        self._cancel(jr)
        return True

    def cancel_all(self) -> None:
        """Cancel every workflow this engine is running (e.g. on Ctrl-C)."""
        with self._lock:
            ids = list(self._workflows)
        for workflow_id in ids:
            self.cancel_workflow(workflow_id)

    def close(self) -> None:
        """Stop: cancel what still runs (each workflow's coordinator then reports it)."""
        self.cancel_all()

    def artifacts_dir(self, job_id: str) -> Path:
        return self.work_root / "artifacts" / job_id

    def workspace_dir(self, workflow_id: str) -> Path:
        return self.work_root / "workflows" / workflow_id / "workspace"

    # -- workflows ---------------------------------------------------------------------
    def _cancel(self, jr: _JobRun) -> None:
        jr.cancelled.set()
        jr.kill()
        self._slots.wake()

    def _run_all(
        self,
        inputs: _RunInputs,
        work: list[tuple[PlannedWorkflow, Mapping[str, JobStatus], str | None]],
    ) -> PipelineResult:
        results: list[WorkflowResult | None] = [None] * len(work)

        def run(i: int, planned: PlannedWorkflow, carried: Mapping[str, JobStatus], prev) -> None:
            results[i] = self._run_workflow(inputs, planned, carried, prev)

        threads = [
            threading.Thread(target=run, args=(i, *item), name=f"workflow-{item[0].name}")
            for i, item in enumerate(work)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return PipelineResult([r for r in results if r is not None])

    def _run_workflow(
        self,
        inputs: _RunInputs,
        planned: PlannedWorkflow,
        carried: Mapping[str, JobStatus],
        previous_workflow_id: str | None,
    ) -> WorkflowResult:
        obs = inputs.observer
        wf = _WorkflowRun(id=str(uuid.uuid4()), name=planned.name)
        with self._lock:
            self._workflows[wf.id] = wf
        workspace = self.workspace_dir(wf.id)
        workspace.mkdir(parents=True, exist_ok=True)
        if previous_workflow_id and self.workspace_dir(previous_workflow_id).exists():
            shutil.copytree(self.workspace_dir(previous_workflow_id), workspace, dirs_exist_ok=True)
        obs.workflow_created(wf.id, wf.name, _now())
        result = WorkflowResult(wf.id, wf.name, "running")
        statuses: dict[str, JobStatus] = {}
        pending: dict[str, WorkflowJob] = {}
        for wj in planned.jobs:
            jr = _JobRun(id=str(uuid.uuid4()), workflow=wj)
            wf.jobs[wj.name] = jr
            with self._lock:
                self._jobs[jr.id] = jr
            requires = [r.job for r in wj.requires]
            if wj.name in carried:
                status = carried[wj.name]
                obs.job_created(wf.id, jr.id, wj.name, requires, status)
                statuses[wj.name] = status
                result.jobs[wj.name] = JobResult(jr.id, wj.name, status, carried_over=True)
            else:
                initial: JobStatus = "blocked" if wj.requires else "queued"
                obs.job_created(wf.id, jr.id, wj.name, requires, initial)
                result.jobs[wj.name] = JobResult(jr.id, wj.name, initial)
                pending[wj.name] = wj
        running: set[str] = set()
        while True:
            self._advance(inputs, wf, pending, running, statuses, result, workspace)
            if not running:
                break
            name, status = wf.finished.get()
            running.discard(name)
            statuses[name] = status
            result.jobs[name].status = status
        result.status = _workflow_status(statuses, wf.cancelled.is_set(), bool(pending))
        obs.workflow_finished(wf.id, result.status, _now())
        with self._lock:
            self._workflows.pop(wf.id, None)
            for jr in wf.jobs.values():
                self._jobs.pop(jr.id, None)
        return result

    def _advance(
        self,
        inputs: _RunInputs,
        wf: _WorkflowRun,
        pending: dict[str, WorkflowJob],
        running: set[str],
        statuses: dict[str, JobStatus],
        result: WorkflowResult,
        workspace: Path,
    ) -> None:
        """Start, skip or cancel every pending job whose requirements have all ended."""
        obs = inputs.observer
        progress = True
        while progress:
            progress = False
            for name, wj in list(pending.items()):
                jr = wf.jobs[name]
                if wf.cancelled.is_set() or jr.cancelled.is_set():
                    self._end_unstarted(obs, jr, "canceled", statuses, result, pending)
                    progress = True
                    continue
                if wj.approval:
                    if decide(wj, statuses) == "run":
                        obs.job_status(jr.id, "on_hold", _now())
                        result.jobs[name].status = "on_hold"
                    continue  # approvals need a person: they stay on hold locally
                decision = decide(wj, statuses)
                if decision == "not_run":
                    self._end_unstarted(obs, jr, "not_run", statuses, result, pending)
                    progress = True
                elif decision == "run":
                    del pending[name]
                    running.add(name)
                    threading.Thread(
                        target=self._job_thread,
                        args=(inputs, wf, jr, workspace, result.jobs[name]),
                        name=f"job-{name}",
                        daemon=True,
                    ).start()

    @staticmethod
    def _end_unstarted(
        obs: RunObserver,
        jr: _JobRun,
        status: JobStatus,
        statuses: dict[str, JobStatus],
        result: WorkflowResult,
        pending: dict[str, WorkflowJob],
    ) -> None:
        name = jr.workflow.name
        obs.job_status(jr.id, status, _now())
        statuses[name] = status
        result.jobs[name].status = status
        del pending[name]

    # -- jobs --------------------------------------------------------------------------
    def _job_thread(
        self,
        inputs: _RunInputs,
        wf: _WorkflowRun,
        jr: _JobRun,
        workspace: Path,
        record: JobResult,
    ) -> None:
        obs = inputs.observer
        status: JobStatus = "infrastructure_fail"
        acquired = False
        try:
            number = obs.job_number(jr.id)
            record.number = number
            if jr.workflow.requires:
                obs.job_status(jr.id, "queued", _now())  # it leaves `blocked`
            acquired = self._slots.try_acquire() or self._slots.acquire(jr.cancelled)
            if not acquired:
                status = "canceled"
                obs.job_status(jr.id, status, _now())
                return
            job = inputs.compiled.jobs[jr.workflow.job]
            status = _JobExecution(self, inputs, wf, jr, job, workspace, number).run()
        except Exception:  # the engine must never leave a job `running`
            status = "infrastructure_fail"
            obs.job_status(jr.id, status, _now())
            traceback.print_exc()
        finally:
            if acquired:
                self._slots.release()
            record.status = status
            wf.finished.put((jr.workflow.name, status))


def _workflow_status(
    statuses: Mapping[str, JobStatus], cancelled: bool, on_hold: bool
) -> WorkflowStatus:
    values = set(statuses.values())
    if cancelled or "canceled" in values:
        return "canceled"
    if values & {"failed", "timedout", "infrastructure_fail"}:
        return "failed"
    if on_hold:
        return "on_hold"
    return "success"


# --------------------------------------------------------------------------- one job


class _JobExecution:
    """One job from spin-up to its last step, reporting each step to the observer."""

    def __init__(
        self,
        engine: Engine,
        inputs: _RunInputs,
        wf: _WorkflowRun,
        jr: _JobRun,
        job: Job,
        workspace: Path,
        number: int,
    ) -> None:
        self.engine = engine
        self.inputs = inputs
        self.obs = inputs.observer
        self.wf = wf
        self.jr = jr
        self.job = job
        self.workspace = workspace
        self.number = number
        self.root = engine.work_root / "jobs" / jr.id
        profile = profile_for(job.image) if job.executor == "docker" and job.image else None
        self.env = HostEnvironment(self.root, job.image, profile)
        self.masker = Masker(inputs.project.env.values())
        self.background: list[threading.Thread] = []

    def run(self) -> JobStatus:
        self.obs.job_status(self.jr.id, "running", _now())
        deadline = time.monotonic() + self.engine.job_timeout
        failed = False
        outcome_status: JobStatus | None = None
        try:
            self.env.prepare()
            variables = self._variables()
            self._preamble(variables)
            ctx = self._context(variables, deadline)
            for offset, step in enumerate(self.job.steps):
                if self.jr.cancelled.is_set():
                    break
                if time.monotonic() >= deadline:
                    outcome_status = "timedout"
                    break
                if not _gate(step.when, failed):
                    continue
                outcome = self._step(FIRST_CONFIG_STEP + offset, step, ctx)
                if outcome.status == "canceled" or self.jr.cancelled.is_set():
                    break
                if outcome.status != "success":
                    failed = True
                    if time.monotonic() >= deadline:
                        outcome_status = "timedout"
                        break
        finally:
            self._stop_background()
            if not self.engine.keep_job_dirs:
                shutil.rmtree(self.root, ignore_errors=True)
        if self.jr.cancelled.is_set():
            status: JobStatus = "canceled"
        elif outcome_status is not None:
            status = outcome_status
        else:
            status = "failed" if failed else "success"
        self.obs.job_status(self.jr.id, status, _now())
        return status

    # -- steps ---------------------------------------------------------------------------
    def _emitter(self, index: int) -> Callable[[str], None]:
        def emit(text: str) -> None:
            if text:
                self.obs.step_output(self.jr.id, index, self.masker(text), _now())

        return emit

    def _step(self, index: int, step: Step, ctx: StepContext) -> StepOutcome:
        self.obs.step_started(self.jr.id, index, self.masker(step.name), _now())
        emit = self._emitter(index)
        step_ctx = StepContext(**{**ctx.__dict__, "emit": emit})
        background = {"on": False}

        def in_background(fn: Callable[[], StepOutcome]) -> None:
            background["on"] = True

            def body() -> None:
                outcome = fn()
                self._finish(index, outcome)

            t = threading.Thread(target=body, name=f"background-{index}", daemon=True)
            self.background.append(t)
            t.start()

        step_ctx.background = in_background  # type: ignore[assignment]
        kind = KINDS.get(step.kind)
        if kind is None:
            emit(f"Step kind {step.kind!r} is not supported locally\n")
            outcome = StepOutcome.failed(1)
        else:
            try:
                outcome = kind(step_ctx, step.args)
            except OSError as exc:
                emit(f"{exc}\n")
                outcome = StepOutcome.failed(1)
        if not background["on"]:
            self._finish(index, outcome)
        return outcome

    def _finish(self, index: int, outcome: StepOutcome) -> None:
        status: StepStatus = outcome.status
        if self.jr.cancelled.is_set() and status != "success":
            status = "canceled"
        self.obs.step_finished(self.jr.id, index, status, outcome.exit_code, _now())

    def _stop_background(self) -> None:
        if not self.background:
            return
        self.jr.kill()  # the job is over: what still runs in the background ends with it
        for t in self.background:
            t.join()

    # -- context -------------------------------------------------------------------------
    def _variables(self) -> dict[str, str]:
        project, pipeline = self.inputs.project, self.inputs.pipeline
        parts = project.slug.split("/")
        username, reponame = (parts[1], parts[2]) if len(parts) == 3 else ("", project.slug)
        host = {"gh": "github.com", "github": "github.com", "bb": "bitbucket.org"}.get(
            parts[0] if parts else "", "github.com"
        )
        bash_env = self.env.tmp / f".bash_env-{self.jr.id}"
        bash_env.touch()
        builtin = {
            "CI": "true",
            "CIRCLECI": "true",
            "BASH_ENV": str(bash_env),
            "CIRCLE_BUILD_NUM": str(self.number),
            "CIRCLE_BUILD_URL": f"{self.engine.app_url}/{project.slug}/{self.number}",
            "CIRCLE_JOB": self.jr.workflow.name,
            "CIRCLE_NODE_INDEX": "0",
            "CIRCLE_NODE_TOTAL": "1",
            "CIRCLE_PIPELINE_ID": pipeline.id,
            "CIRCLE_PROJECT_USERNAME": username,
            "CIRCLE_PROJECT_REPONAME": reponame,
            "CIRCLE_REPOSITORY_URL": f"git@{host}:{username}/{reponame}.git",
            "CIRCLE_SHA1": pipeline.revision,
            "CIRCLE_SHELL_ENV": str(bash_env),
            "CIRCLE_USERNAME": "rollback-lab",
            "CIRCLE_WORKFLOW_ID": self.wf.id,
            "CIRCLE_WORKFLOW_JOB_ID": self.jr.id,
            "CIRCLE_WORKFLOW_WORKSPACE_ID": self.wf.id,
            "CIRCLE_WORKING_DIRECTORY": self.job.working_directory,
        }
        if pipeline.branch:
            builtin["CIRCLE_BRANCH"] = pipeline.branch
        if pipeline.tag:
            builtin["CIRCLE_TAG"] = pipeline.tag
        self.builtin = builtin
        variables = self.env.base_env()
        variables.update(builtin)
        variables.update(self.inputs.extra_env)
        variables.update(self.inputs.project.env)
        variables.update(self.job.environment)
        return variables

    def _context(self, variables: dict[str, str], deadline: float) -> StepContext:
        wd_text = self.job.working_directory
        working_directory = self.env.expand(wd_text, self.env.home)
        working_directory.mkdir(parents=True, exist_ok=True)
        slug_dir = self.inputs.project.slug.replace("/", "_") or "project"
        return StepContext(
            env=self.env,
            variables=variables,
            working_directory=working_directory,
            working_directory_text=wd_text,
            emit=lambda text: None,
            project=self.inputs.project,
            pipeline=self.inputs.pipeline,
            job_name=self.jr.workflow.name,
            build_num=self.number,
            workspace=self.workspace,
            artifacts=self.engine.artifacts_dir(self.jr.id),
            test_results=self.engine.work_root / "test-results" / self.jr.id,
            cache_root=self.engine.work_root / "cache" / slug_dir,
            default_shell=self.job.shell or self.env.default_shell(),
            cancelled=self.jr.cancelled,
            deadline=deadline,
            track=self.jr.track,
            untrack=self.jr.untrack,
        )

    def _preamble(self, variables: Mapping[str, str]) -> None:
        spin = self._emitter(SPIN_UP_STEP)
        self.obs.step_started(self.jr.id, SPIN_UP_STEP, "Spin up environment", _now())
        spin(f"Build-agent version local (rollback-lab)\nJob time limit: "
             f"{format_duration(self.engine.job_timeout)}\n")  # fmt: skip
        job = self.job
        if job.executor != "docker":
            spin(
                f"Warning: the {job.executor} executor runs on this machine locally, with the "
                "host's programs.\n"
            )
        else:
            spin(f"Starting container {job.image}\n")
            profile = self.env.profile
            if profile is None:
                spin(
                    f"Warning: rollback-lab has no profile for the image {job.image}, so its "
                    "steps run with the host's tools (this machine's PATH), which may differ "
                    "from what the image contains.\n"
                )
            else:
                spin(
                    f"Running locally without a container: steps see only the programs "
                    f"{profile.name} provides: {', '.join(sorted(profile.tools))}\n"
                )
                if self.env.missing:
                    spin(
                        "Not installed on this machine, so missing here too: "
                        f"{', '.join(self.env.missing)}\n"
                    )
            for service in job.service_images:
                spin(f"Warning: service container {service} is not supported locally: ignored\n")
        spin(f"Default shell: {self.job.shell or self.env.default_shell()}\n")
        self.obs.step_finished(self.jr.id, SPIN_UP_STEP, "success", 0, _now())

        prep = self._emitter(PREPARE_ENV_STEP)
        self.obs.step_started(
            self.jr.id, PREPARE_ENV_STEP, "Preparing environment variables", _now()
        )
        lines = ["Using build environment variables:"]
        lines += [f"  {k}={v}" for k, v in sorted(self.builtin.items())]
        if self.inputs.extra_env:
            lines += ["", "Using environment variables of the local services:"]
            lines += [
                f"  {k}={'**REDACTED**' if any(h in k.upper() for h in _SECRET_HINTS) else v}"
                for k, v in sorted(self.inputs.extra_env.items())
            ]
        if self.inputs.project.env:
            lines += ["", "Using environment variables from project settings and/or contexts:"]
            lines += [f"  {k}=**REDACTED**" for k in sorted(self.inputs.project.env)]
            lines += ["", "The redacted variables listed above will be masked in run step output."]
        prep("\n".join(lines) + "\n")
        self.obs.step_finished(self.jr.id, PREPARE_ENV_STEP, "success", 0, _now())


def _gate(when: str, failed: bool) -> bool:
    """CircleCI's `when`: on_success runs while nothing failed, on_fail only after a failure."""
    if when == "always":
        return True
    if when == "on_fail":
        return failed
    return not failed
