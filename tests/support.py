"""Set-up the tests share: git repositories, the local CircleCI (engine and server), moto and
the kit's local services in a temporary state dir. Fakes of circleci.com live apart, in
``circleci_fakes``; stack event samples in ``stack_events_samples``."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx

from helpers.localci.api import Served, serve
from helpers.localci.config import CompiledConfig, compile_config
from helpers.localci.observer import PipelineContext, ProjectContext
from helpers.localci.projects import link_project
from helpers.localci.recorder import RecordingObserver
from helpers.localci.runner import Engine, PipelineResult

SLUG = "gh/udacity/rollback-lab"
REGION = "us-east-1"
#: moto accepts any credentials; these keep boto3 and the aws CLI from looking for real ones.
TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

TRIVIAL_CONFIG = """\
version: 2.1
jobs:
  hello:
    docker:
      - image: cimg/base:stable
    steps:
      - run:
          name: Say hello
          command: echo "hello from $CIRCLE_JOB"
workflows:
  main:
    jobs:
      - hello
"""

TERMINAL_WORKFLOW = {"success", "failed", "error", "canceled", "not_run", "unauthorized"}


# --- git repositories --------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path, config: str, files: Mapping[str, str] | None = None) -> Path:
    """A git repository at ``path`` on branch ``main`` with ``.circleci/config.yml`` (dedented,
    so a test may indent it) and ``files`` committed."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    git(path, "config", "user.email", "student@example.com")
    git(path, "config", "user.name", "Student")
    config_file = {".circleci/config.yml": textwrap.dedent(config)}
    commit_files(path, {**config_file, **(files or {})}, "Add CircleCI config")
    return path


def commit_files(repo: Path, files: Mapping[str, str], message: str) -> str:
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return head(repo)


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


# --- the local CircleCI engine, in process -----------------------------------------------------


@dataclass
class Run:
    result: PipelineResult
    observer: RecordingObserver
    engine: Engine
    compiled: CompiledConfig

    def job(self, name: str):  # noqa: ANN201 - a JobRecord
        return self.observer.job(name)


def pipeline_for(repo: Path, branch: str = "main", **kw) -> PipelineContext:  # noqa: ANN003
    return PipelineContext(id=str(uuid.uuid4()), number=1, revision=head(repo), branch=branch, **kw)


def run_config(
    tmp_path: Path,
    config: str,
    *,
    project_env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    files: Mapping[str, str] | None = None,
    branch: str = "main",
    workflows: Sequence[str] | None = None,
    max_concurrent_jobs: int = 4,
    observer: RecordingObserver | None = None,
    engine: Engine | None = None,
    **engine_kw,  # noqa: ANN003
) -> Run:
    """Commit ``config`` to ``tmp_path/repo`` and run its pipeline with a real engine."""
    repo = make_repo(tmp_path / "repo", config, files)
    pipeline = pipeline_for(repo, branch)
    compiled = compile_config(
        (repo / ".circleci" / "config.yml").read_text(), pipeline=pipeline, project_slug=SLUG
    )
    observer = observer or RecordingObserver()
    engine = engine or Engine(
        tmp_path / "work", max_concurrent_jobs=max_concurrent_jobs, **engine_kw
    )
    result = engine.run_pipeline(
        compiled,
        project=ProjectContext(SLUG, repo, dict(project_env or {})),
        pipeline=pipeline,
        observer=observer,
        extra_env=dict(extra_env or {}),
        workflows=workflows,
    )
    return Run(result, observer, engine, compiled)


# --- the local CircleCI server -----------------------------------------------------------------


@contextmanager
def local_circleci(
    state_dir: Path, aws_env: Mapping[str, str] | None = None, **kwargs: Any
) -> Iterator[Served]:
    served = serve(state_dir, dict(aws_env or {}), **kwargs)
    try:
        yield served
    finally:
        served.close()


def client(served: Served, *, version: str = "v2", token: str | None = None) -> httpx.Client:
    headers = {"Circle-Token": token if token is not None else served.token}
    return httpx.Client(base_url=f"{served.url}/api/{version}", headers=headers, timeout=30)


def linked(state_dir: Path, repo: Path, slug: str = SLUG) -> str:
    return link_project(slug, repo, state_dir=state_dir).slug


def wait_pipeline(
    api: httpx.Client, pipeline_id: str, *, timeout: float = 120, seen: list | None = None
) -> dict[str, Any]:
    """Poll until the pipeline is errored, or created with every workflow terminal.

    Returns ``{"pipeline", "workflows", "jobs": {workflow_id: [...]}}``; every response body
    read on the way is appended to ``seen`` as ``(operation_id, status_code, body)``.
    """
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/pipeline/{pipeline_id}")
        _record(seen, "getPipelineById", response)
        pipeline = response.json()
        if pipeline["state"] == "errored":
            return {"pipeline": pipeline, "workflows": [], "jobs": {}}
        if pipeline["state"] == "created":
            response = api.get(f"/pipeline/{pipeline_id}/workflow")
            _record(seen, "listWorkflowsByPipelineId", response)
            workflows = response.json()["items"]
            jobs = {}
            for workflow in workflows:
                response = api.get(f"/workflow/{workflow['id']}/job")
                _record(seen, "listWorkflowJobs", response)
                jobs[workflow["id"]] = response.json()["items"]
            if all(w["status"] in TERMINAL_WORKFLOW for w in workflows):
                return {"pipeline": pipeline, "workflows": workflows, "jobs": jobs}
        if time.monotonic() > deadline:
            raise AssertionError(f"pipeline {pipeline_id} did not finish: {pipeline}")
        time.sleep(0.1)


def wait_for(predicate: Any, *, timeout: float = 60, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def _record(seen: list | None, operation: str, response: httpx.Response) -> None:
    assert response.status_code == 200, (operation, response.status_code, response.text)
    if seen is not None:
        seen.append((operation, response.status_code, response.json()))


# --- AWS: boto3 clients, and the kit's local services --------------------------------------


def aws_client(service: str, endpoint: str, region: str = REGION) -> Any:
    """A boto3 client for ``service`` at ``endpoint`` (moto or the local AWS)."""
    return boto3.client(service, endpoint_url=endpoint, region_name=region, **TEST_CREDENTIALS)


@contextmanager
def local_services(
    state_dir: Path, *, cfn_step_seconds: str, export_env: bool = True
) -> Iterator[Any]:
    """The kit's services daemon in ``state_dir``, stopped on exit; yields its ``Endpoints``.

    ``ensure_services`` points this process's environment at the services: with
    ``export_env`` it stays so while the block runs, without it is put back at once. Either way
    ``os.environ`` is as it was once the block ends, so other tests do not see the services.
    ``cfn_step_seconds`` is the daemon's CloudFormation pace (``ROLLBACK_LAB_CFN_STEP_SECONDS``).
    """
    from helpers.services import ensure_services, stop_services

    saved = dict(os.environ)
    os.environ["ROLLBACK_LAB_CFN_STEP_SECONDS"] = cfn_step_seconds  # inherited by the daemon
    try:
        endpoints = ensure_services(state_dir)
        if not export_env:
            _restore_environ(saved)
        try:
            yield endpoints
        finally:
            stop_services(state_dir)
    finally:
        _restore_environ(saved)


def _restore_environ(saved: Mapping[str, str]) -> None:
    os.environ.clear()
    os.environ.update(saved)
