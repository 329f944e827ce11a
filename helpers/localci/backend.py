"""The local CircleCI's rules: what a trigger, a rerun or a cancel does.

The HTTP layer (:mod:`helpers.localci.api`) parses requests and serialises answers; this module
reads the project's config with real git, compiles it, runs it on the engine in a thread per
pipeline, and records everything in the :class:`~helpers.localci.store.Store`. As on
circleci.com, a trigger answers at once with a ``pending`` pipeline; fetching and compiling the
config happen after, and a config that does not compile leaves the pipeline ``errored`` with
``errors: [{type: "config", message}]`` and no workflows.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.localci.exceptions import (
    BadRequest,
    JobNotFound,
    PipelineNotFound,
    ProjectNotFound,
    WorkflowNotFound,
)
from helpers.localci.observer import PipelineContext, ProjectContext
from helpers.localci.store import (
    TERMINAL_JOB,
    TERMINAL_WORKFLOW,
    Job,
    Pipeline,
    PipelineRecorder,
    Project,
    Store,
    Workflow,
)

log = logging.getLogger(__name__)

CONFIG_PATH = ".circleci/config.yml"
WORK_DIR = "localci-work"
# How long close() waits, in all, for the engine's threads after cancelling their workflows
# (under the services daemon's own stop timeout).
CLOSE_GRACE_SECONDS = 8.0


class GitError(Exception):
    """A git command failed; the message is git's own."""


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise GitError(result.stderr.strip() or f"git {' '.join(args)} failed")
    return result.stdout


def default_branch(repo: Path) -> str | None:
    """The branch the linked repository has checked out (CircleCI's default branch)."""
    try:
        return git(repo, "symbolic-ref", "--quiet", "--short", "HEAD").strip() or None
    except GitError:
        return None


def resolve_revision(repo: Path, *, branch: str | None, tag: str | None) -> str:
    ref = f"refs/tags/{tag}" if tag is not None else f"refs/heads/{branch}"
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
    except GitError:
        what = f"tag {tag!r}" if tag is not None else f"branch {branch!r}"
        raise GitError(f"{what} not found in the project's repository {repo}") from None


@dataclass
class _Run:
    """A pipeline (or a rerun) the engine is executing in a thread."""

    thread: threading.Thread
    recorder: PipelineRecorder


class LocalCircleCI:
    """Projects, pipelines and the engine that runs them; thread-safe."""

    def __init__(
        self,
        state_dir: Path,
        *,
        aws_env: Mapping[str, str] | None = None,
        max_concurrent_jobs: int = 4,
        engine: Any = None,
    ) -> None:
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.store = Store.in_state_dir(self.state_dir)
        ended = self.store.fail_interrupted()
        if ended:
            log.warning("%d job(s) interrupted by the last stop marked infrastructure_fail", ended)
        self.aws_env = dict(aws_env or {})
        self.user_id = self.store.meta("user_id", str(uuid.uuid4()))
        if engine is None:
            from helpers.localci.runner import Engine

            engine = Engine(self.state_dir / WORK_DIR, max_concurrent_jobs=max_concurrent_jobs)
        self.engine = engine
        self._lock = threading.Lock()
        self._runs: list[_Run] = []
        self._closing = False

    # --- lookups that raise CircleCI's 404s -------------------------------------------------

    def project(self, slug: str) -> Project:
        project = self.store.get_project(slug)
        if project is None:
            raise ProjectNotFound()
        return project

    def pipeline(self, pipeline_id: str) -> Pipeline:
        pipeline = self.store.get_pipeline(pipeline_id)
        if pipeline is None:
            raise PipelineNotFound()
        return pipeline

    def workflow(self, workflow_id: str) -> Workflow:
        workflow = self.store.get_workflow(workflow_id)
        if workflow is None:
            raise WorkflowNotFound()
        return workflow

    def job_by_number(self, slug: str, number: int) -> Job:
        job = self.store.get_job_by_number(slug, number)
        if job is None:
            raise JobNotFound()
        return job

    # --- trigger ----------------------------------------------------------------------------

    def trigger(
        self,
        slug: str,
        *,
        branch: str | None = None,
        tag: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        checkout_branch: str | None = None,
        checkout_tag: str | None = None,
    ) -> Pipeline:
        """Create the pipeline (``pending``) and start fetching, compiling and running it."""
        project = self.project(slug)
        if branch is not None and tag is not None:
            raise BadRequest("Only one of branch or tag may be specified.")
        if tag is None and branch is None:
            branch = default_branch(project.repo_path) or "main"
        pipeline = self.store.create_pipeline(
            project.slug,
            actor=self.login,
            branch=branch,
            tag=tag,
            parameters=parameters,
            state="pending",
        )
        recorder = self.store.recorder(pipeline.id, project.slug)
        thread = threading.Thread(
            target=self._setup_and_run,
            args=(project, pipeline.id, recorder, checkout_branch, checkout_tag),
            name=f"localci-pipeline-{pipeline.number}",
            daemon=True,
        )
        self._start(_Run(thread, recorder))
        return pipeline

    def _start(self, run: _Run) -> None:
        with self._lock:
            if self._closing:
                raise BadRequest("The local CircleCI is stopping.")
            self._runs = [r for r in self._runs if r.thread.is_alive()]
            self._runs.append(run)
        run.thread.start()

    def _setup_and_run(
        self,
        project: Project,
        pipeline_id: str,
        recorder: PipelineRecorder,
        checkout_branch: str | None,
        checkout_tag: str | None,
    ) -> None:
        pipeline = self.store.get_pipeline(pipeline_id)
        assert pipeline is not None
        repo = project.repo_path
        try:
            revision = resolve_revision(repo, branch=pipeline.branch, tag=pipeline.tag)
            source = git(repo, "show", f"{revision}:{CONFIG_PATH}")
        except GitError as exc:
            self.store.set_pipeline_state(
                pipeline_id, "errored", [{"type": "config-fetch", "message": str(exc)}]
            )
            return
        subject, body = _commit_message(repo, revision)
        self.store.set_pipeline_vcs(pipeline_id, revision, subject, body)
        checkout_revision = revision
        if checkout_branch is not None or checkout_tag is not None:
            try:
                checkout_revision = resolve_revision(repo, branch=checkout_branch, tag=checkout_tag)
            except GitError as exc:
                self.store.set_pipeline_state(
                    pipeline_id, "errored", [{"type": "config-fetch", "message": str(exc)}]
                )
                return
        context = PipelineContext(
            id=pipeline.id,
            number=pipeline.number,
            revision=checkout_revision,
            branch=checkout_branch or pipeline.branch,
            tag=checkout_tag or pipeline.tag,
            parameters=dict(pipeline.parameters),
        )
        compiled = self._compile(pipeline_id, source, context, project.slug)
        if compiled is None:
            return
        self.store.set_pipeline_config(pipeline_id, source, compiled.to_yaml())
        recorder.expected_workflows = _planned_workflow_count(compiled, context)
        self._run_engine(
            recorder,
            lambda: self.engine.run_pipeline(
                compiled,
                project=self._project_context(project),
                pipeline=context,
                observer=recorder,
                extra_env=dict(self.aws_env),
            ),
        )

    def _compile(self, pipeline_id: str, source: str, context: PipelineContext, slug: str) -> Any:
        from helpers.localci.config import ConfigError, compile_config

        try:
            return compile_config(source, source=CONFIG_PATH, pipeline=context, project_slug=slug)
        except ConfigError as exc:
            self.store.set_pipeline_config(pipeline_id, source, "")
            self.store.set_pipeline_state(
                pipeline_id, "errored", [{"type": "config", "message": str(exc)}]
            )
            return None

    def _run_engine(self, recorder: PipelineRecorder, run: Any) -> None:
        with self._lock:
            if self._closing:
                return
        try:
            run()
        except Exception as exc:  # an engine fault must not leave jobs `running` forever
            log.exception("the engine failed while running pipeline %s", recorder.pipeline_id)
            if recorder.attached:
                self.store.fail_unfinished(
                    recorder.workflow_ids, f"Infrastructure fail: the local engine failed: {exc}"
                )
        if recorder.attached:
            # Also when nothing ran (every job filtered out): the pipeline is still `created`.
            self.store.mark_pipeline_created(recorder.pipeline_id)

    def _project_context(self, project: Project) -> ProjectContext:
        return ProjectContext(
            slug=project.slug, repo_path=project.repo_path, env=self.store.env_map(project.slug)
        )

    # --- rerun, cancel ----------------------------------------------------------------------

    def rerun(
        self, workflow_id: str, *, from_failed: bool = False, jobs: Sequence[str] = ()
    ) -> str:
        """Start a new workflow of the same name in the same pipeline; return its id."""
        workflow = self.workflow(workflow_id)
        if from_failed and jobs:
            raise BadRequest("Only one of from_failed or jobs may be specified.")
        if workflow.status not in TERMINAL_WORKFLOW:
            raise BadRequest("Workflow is still running; cancel it or wait for it to finish.")
        pipeline = self.pipeline(workflow.pipeline_id)
        project = self.project(pipeline.project_slug)
        previous = self.store.list_jobs(workflow.id)
        by_id = {job.id: job for job in previous}
        names: list[str] | None
        if jobs:
            unknown = [job_id for job_id in jobs if job_id not in by_id]
            if unknown:
                raise BadRequest(f"Job {unknown[0]} is not part of workflow {workflow.id}.")
            names = [by_id[job_id].name for job_id in jobs]
        elif from_failed:
            if all(job.status == "success" for job in previous):
                raise BadRequest("Workflow has no failed jobs to rerun.")
            names = None  # the engine's from_failed: what did not succeed, and its dependants
        else:
            names = [job.name for job in previous]  # rerun from the start
        context = PipelineContext(
            id=pipeline.id,
            number=pipeline.number,
            revision=pipeline.revision or "",
            branch=pipeline.branch,
            tag=pipeline.tag,
            parameters=dict(pipeline.parameters),
        )
        compiled = self._recompile(pipeline, context)
        recorder = self.store.recorder(pipeline.id, project.slug, rerun_of=workflow.id)
        created = threading.Event()
        recorder.on_workflow_created = lambda _id: created.set()
        previous_jobs = {job.name: job.status for job in previous}

        def run() -> None:
            self._run_engine(
                recorder,
                lambda: self.engine.rerun_workflow(
                    compiled,
                    workflow_name=workflow.name,
                    previous_jobs=previous_jobs,
                    jobs=names,
                    project=self._project_context(project),
                    pipeline=context,
                    observer=recorder,
                    extra_env=dict(self.aws_env),
                    previous_workflow_id=workflow.id,
                ),
            )
            created.set()

        thread = threading.Thread(target=run, name=f"localci-rerun-{workflow.name}", daemon=True)
        self._start(_Run(thread, recorder))
        created.wait(timeout=30)
        if not recorder.workflow_ids:
            raise BadRequest(f"Workflow {workflow.name} could not be rerun.")
        return recorder.workflow_ids[0]

    def _recompile(self, pipeline: Pipeline, context: PipelineContext) -> Any:
        from helpers.localci.config import ConfigError, compile_config

        try:
            return compile_config(
                pipeline.config_source,
                source=CONFIG_PATH,
                pipeline=context,
                project_slug=pipeline.project_slug,
            )
        except ConfigError as exc:
            raise BadRequest(f"The pipeline's config no longer compiles: {exc}") from None

    def cancel_workflow(self, workflow_id: str) -> None:
        workflow = self.workflow(workflow_id)
        if workflow.status in TERMINAL_WORKFLOW:
            return
        self.store.set_workflow_canceled_by(workflow.id, self.user_id)
        self.engine.cancel_workflow(workflow.id)

    def cancel_job(self, job: Job) -> None:
        if job.status in TERMINAL_JOB:
            return
        self.store.set_job_canceled_by(job.id, self.user_id)
        self.engine.cancel_job(job.id)

    # --- users ------------------------------------------------------------------------------

    @property
    def login(self) -> str:
        import getpass

        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "student"

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop: end what runs as ``infrastructure_fail``, stop the engine, close the store.

        The store is updated first and the recorders detached, so the ``canceled`` that the
        engine reports while it stops cannot overwrite the infrastructure failure.
        """
        with self._lock:
            self._closing = True
            runs = list(self._runs)
        for run in runs:
            run.recorder.detach()
        self.store.fail_interrupted()
        for run in runs:
            for workflow_id in run.recorder.workflow_ids:
                try:
                    self.engine.cancel_workflow(workflow_id)
                except Exception:  # already finished or unknown to the engine
                    log.debug("cancel of %s at close failed", workflow_id, exc_info=True)
        deadline = time.monotonic() + CLOSE_GRACE_SECONDS
        for run in runs:
            run.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        shutdown = getattr(self.engine, "close", None) or getattr(self.engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        self.store.close()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for every started pipeline thread (tests); True when all have finished."""
        with self._lock:
            threads = [run.thread for run in self._runs]
        for thread in threads:
            thread.join(timeout=timeout)
        return not any(thread.is_alive() for thread in threads)


def _commit_message(repo: Path, revision: str) -> tuple[str | None, str | None]:
    try:
        text = git(repo, "log", "-1", "--format=%s%x00%b", revision)
    except GitError:
        return None, None
    subject, _, body = text.rstrip("\n").partition("\x00")
    return subject or None, body.strip() or None


def _planned_workflow_count(compiled: Any, context: PipelineContext) -> int:
    """How many workflows the engine will create (filters may drop some)."""
    try:
        from helpers.localci.planner import plan

        return len(plan(compiled, context))
    except Exception:  # the planner is the engine's; fall back to the compiled count
        return len(compiled.workflows)
