"""Shared by the local CircleCI API tests: a git repository to link, a server, polling."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from helpers.localci.api import Served, serve
from helpers.localci.projects import link_project

SLUG = "gh/udacity/rollback-lab"

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


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path, config: str, files: Mapping[str, str] | None = None) -> Path:
    """A git repository on branch ``main`` with ``.circleci/config.yml`` committed."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    git(path, "config", "user.email", "student@example.com")
    git(path, "config", "user.name", "Student")
    commit_files(path, {".circleci/config.yml": config, **(files or {})}, "Add CircleCI config")
    return path


def commit_files(repo: Path, files: Mapping[str, str], message: str) -> str:
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


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
