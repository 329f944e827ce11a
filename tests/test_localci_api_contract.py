"""Contract: every response of the local CircleCI validates against CircleCI's OpenAPI spec.

Two flows. The first calls every endpoint the kit uses (and its 401/404/400 answers) on an
in-process server. The second is the lab's own flow, end to end through the kit's services
daemon (``ensure_services``): the exercise's rollback config against the local AWS —
create_infrastructure succeeds, smoke_test fails, the on_fail destroy step runs and exits 0,
the stack ends DELETE_COMPLETE, and the step logs read back through API v1.1.

The spec is read from ``<repo>/../shared/reference/``; without it the schema checks skip (the
shared models in ``helpers.circleci.models`` still pin the shapes in the other tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import (
    SLUG,
    TRIVIAL_CONFIG,
    aws_client,
    commit_files,
    linked,
    local_circleci,
    local_services,
    make_repo,
    wait_for,
    wait_pipeline,
)

from helpers import exercise
from helpers import pipeline_config as pc
from helpers import template as cfn
from helpers.circleci import models
from helpers.circleci.spec import find_spec, validate_response

pytestmark = pytest.mark.timeout(240)

SPEC = find_spec()
needs_spec = pytest.mark.skipif(
    SPEC is None,
    reason="CircleCI's OpenAPI spec is not at <repo>/../shared/reference/circleci-openapi-v2.json",
)
UUID = "5034460f-c7c4-4c43-9457-de07e2029e7b"


class Recorder:
    """An httpx client that keeps (operationId, status, body) of every answer."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.token = token
        self.seen: list[tuple[str, int, Any]] = []

    def call(
        self, operation: str, method: str, path: str, *, token: str | None = "default", **kw: Any
    ) -> httpx.Response:
        headers = {"Circle-Token": self.token if token == "default" else token}
        if token is None:
            headers = {}
        response = self.http.request(method, f"/api/v2{path}", headers=headers, **kw)
        self.seen.append((operation, response.status_code, response.json()))
        return response

    def get(self, operation: str, path: str, **kw: Any) -> dict[str, Any]:
        response = self.call(operation, "GET", path, **kw)
        assert response.status_code == 200, (operation, response.text)
        return response.json()

    def close(self) -> None:
        self.http.close()


def validate_all(seen: list[tuple[str, int, Any]]) -> None:
    """Each body against its operation's schema for that status (else the spec's default)."""
    assert seen
    for operation, status, body in seen:
        try:
            validate_response(operation, body, status)
        except KeyError:
            validate_response(operation, body, "default")


def poll(recorder: Recorder, pipeline_id: str, timeout: float = 120) -> dict[str, Any]:
    """wait_pipeline, keeping every answer for the contract check."""

    class _Api:
        def get(self, path: str) -> httpx.Response:
            operation = (
                "listWorkflowsByPipelineId"
                if path.endswith("/workflow")
                else "listWorkflowJobs"
                if path.endswith("/job")
                else "getPipelineById"
            )
            return recorder.call(operation, "GET", path)

    return wait_pipeline(_Api(), pipeline_id, timeout=timeout)  # type: ignore[arg-type]


# --- every endpoint, on an in-process server --------------------------------------------------

TWO_JOBS = """\
version: 2.1
jobs:
  build:
    docker: [{image: cimg/base:stable}]
    steps:
      - checkout
      - run: echo built
  test:
    docker: [{image: cimg/base:stable}]
    steps:
      - run: exit 3
  slow:
    docker: [{image: cimg/base:stable}]
    steps:
      - run: sleep 60
workflows:
  ci:
    jobs:
      - build
      - test:
          requires: [build]
  long:
    jobs: [slow]
"""


@needs_spec
def test_every_endpoint_answers_as_the_spec_says(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    repo = make_repo(tmp_path / "repo", TWO_JOBS)
    linked(state_dir, repo)
    with local_circleci(state_dir) as served:
        api = Recorder(served.url, served.token)
        try:
            api.get("getCurrentUser", "/me")
            api.get("getProjectBySlug", f"/project/{SLUG}")
            created = api.call(
                "createEnvVar", "POST", f"/project/{SLUG}/envvar", json={"name": "K", "value": "v"}
            )
            assert created.status_code == 201
            api.get("listEnvVars", f"/project/{SLUG}/envvar")
            api.get("getEnvVar", f"/project/{SLUG}/envvar/K")

            trigger = api.call("triggerPipeline", "POST", f"/project/{SLUG}/pipeline", json={})
            assert trigger.status_code == 201
            pipeline_id = trigger.json()["id"]

            wfs = wait_for(lambda: _workflows_named(api, pipeline_id, {"ci", "long"}))
            ci = wait_for(lambda: _terminal(api, wfs["ci"]["id"]))
            api.get("getWorkflowById", f"/workflow/{ci['id']}")
            jobs = api.get("listWorkflowJobs", f"/workflow/{ci['id']}/job")["items"]
            for job in jobs:
                api.get("getJobDetails", f"/project/{SLUG}/job/{job['job_number']}")
            failed = next(j for j in jobs if j["status"] == "failed")

            rerun = api.call(
                "rerunWorkflow",
                "POST",
                f"/workflow/{ci['id']}/rerun",
                json={"jobs": [failed["id"]]},
            )
            assert rerun.status_code == 202
            wait_for(lambda: _terminal(api, rerun.json()["workflow_id"]))
            long_jobs = wait_for(lambda: _running_jobs(api, wfs["long"]["id"]))
            cancel_job = api.call(
                "cancelJobByJobNumber",
                "POST",
                f"/project/{SLUG}/job/{long_jobs[0]['job_number']}/cancel",
            )
            assert cancel_job.status_code == 200
            cancel = api.call("cancelWorkflow", "POST", f"/workflow/{wfs['long']['id']}/cancel")
            assert cancel.status_code == 202
            wait_for(lambda: _terminal(api, wfs["long"]["id"]))
            assert api.call(
                "cancelJobByJobID", "POST", f"/jobs/{long_jobs[0]['id']}/cancel"
            ).status_code in (200, 202)

            api.get("getPipelineById", f"/pipeline/{pipeline_id}")
            api.get("getPipelineConfigById", f"/pipeline/{pipeline_id}/config")
            api.get("listWorkflowsByPipelineId", f"/pipeline/{pipeline_id}/workflow")
            api.get("listPipelinesForProject", f"/project/{SLUG}/pipeline")
            api.get("getPipelineByNumber", f"/project/{SLUG}/pipeline/1")

            commit_files(repo, {".circleci/config.yml": TRIVIAL_CONFIG}, "One quick job")
            run = api.call(
                "triggerPipelineRun",
                "POST",
                f"/project/{SLUG}/pipeline/run",
                json={"config": {"branch": "main"}, "checkout": {"branch": "main"}},
            )
            assert run.status_code == 201
            commit_files(repo, {".circleci/config.yml": "version: 2.1\njobs: 3\n"}, "Break")
            broken = api.call("triggerPipeline", "POST", f"/project/{SLUG}/pipeline", json={})
            errored = poll(api, broken.json()["id"])["pipeline"]
            assert errored["state"] == "errored" and errored["errors"][0]["type"] == "config"
            poll(api, run.json()["id"])

            deleted = api.call("deleteEnvVar", "DELETE", f"/project/{SLUG}/envvar/K")
            assert deleted.status_code == 200

            # The errors, each against the operation's documented answer.
            errors = [
                api.call("getCurrentUser", "GET", "/me", token=None),
                api.call("getCurrentUser", "GET", "/me", token="wrong"),
                api.call("triggerPipelineRun", "POST", f"/project/{SLUG}/pipeline/run", token=None),
                api.call("getPipelineById", "GET", f"/pipeline/{UUID}"),
                api.call("getWorkflowById", "GET", f"/workflow/{UUID}"),
                api.call("listWorkflowJobs", "GET", f"/workflow/{UUID}/job"),
                api.call("getJobDetails", "GET", f"/project/{SLUG}/job/999"),
                api.call("cancelJobByJobID", "POST", f"/jobs/{UUID}/cancel"),
                api.call("listPipelinesForProject", "GET", "/project/gh/no/such/pipeline"),
                api.call("triggerPipelineRun", "POST", "/project/gh/no/such/pipeline/run"),
                api.call("getEnvVar", "GET", f"/project/{SLUG}/envvar/K"),
                api.call("triggerPipeline", "POST", f"/project/{SLUG}/pipeline", json={"tag": 1}),
                api.call(
                    "triggerPipelineRun",
                    "POST",
                    f"/project/{SLUG}/pipeline/run",
                    json={"config": {"branch": "main"}, "bogus": True},
                ),
                api.call("rerunWorkflow", "POST", f"/workflow/{ci['id']}/rerun", json={"jobs": 1}),
            ]
            assert [r.status_code for r in errors] == [401, 401, 401] + [404] * 8 + [400] * 3
            assert all(set(r.json()) == {"message"} for r in errors)
            validate_all(api.seen)
            operations = {operation for operation, _, _ in api.seen}
            assert len(operations) >= 20
        finally:
            api.close()


def _workflows_named(api: Recorder, pipeline_id: str, names: set[str]) -> dict[str, Any] | None:
    items = api.get("listWorkflowsByPipelineId", f"/pipeline/{pipeline_id}/workflow")["items"]
    by_name = {w["name"]: w for w in items}
    return by_name if set(by_name) >= names else None


def _terminal(api: Recorder, workflow_id: str) -> dict[str, Any] | None:
    workflow = api.get("getWorkflowById", f"/workflow/{workflow_id}")
    return workflow if workflow["status"] not in ("running", "on_hold", "failing") else None


def _running_jobs(api: Recorder, workflow_id: str) -> list[dict[str, Any]] | None:
    jobs = api.get("listWorkflowJobs", f"/workflow/{workflow_id}/job")["items"]
    return jobs if jobs and all(j["status"] == "running" for j in jobs) else None


# --- the lab's flow, through the services daemon and the local AWS ----------------------------


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from helpers.services.state import pid_alive

    state_dir = tmp_path_factory.mktemp("localci-services")
    with local_services(state_dir, cfn_step_seconds="0.02") as endpoints:
        yield endpoints
    wait_for(lambda: not pid_alive(endpoints.pid), timeout=20)


def test_the_lab_flow_end_to_end_against_the_local_aws(services, tmp_path: Path) -> None:
    assert services.circleci_url and services.circle_token, "the daemon hosts no CircleCI API"
    # The exercise's config with its two mistakes fixed (smoke_test runs in an image that has
    # `aws`, and waits for the stack), and the lab's template (its AMI from SSM).
    config = pc.config_to_yaml(exercise.lab_config())
    template = {"template.yml": cfn.template_to_yaml(exercise.lab_template())}
    repo = make_repo(tmp_path / "lab", config, template)
    linked(services.state_dir, repo)
    ec2 = aws_client("ec2", services.aws_endpoint_url, services.region)
    cloudformation = aws_client("cloudformation", services.aws_endpoint_url, services.region)
    ec2.create_key_pair(KeyName="udacity")

    api = Recorder(services.circleci_url, services.circle_token)
    try:
        api.get("getCurrentUser", "/me")
        trigger = api.call("triggerPipeline", "POST", f"/project/{SLUG}/pipeline", json={})
        assert trigger.status_code == 201
        done = poll(api, trigger.json()["id"], timeout=180)
        [workflow] = done["workflows"]
        jobs = {job["name"]: job for job in done["jobs"][workflow["id"]]}
        assert jobs["create_infrastructure"]["status"] == "success"
        assert jobs["smoke_test"]["status"] == "failed"
        assert workflow["status"] == "failed"
        details = {
            name: api.get("getJobDetails", f"/project/{SLUG}/job/{job['job_number']}")
            for name, job in jobs.items()
        }
        api.get("getPipelineConfigById", f"/pipeline/{done['pipeline']['id']}/config")
        api.get("listPipelinesForProject", f"/project/{SLUG}/pipeline")
        if SPEC is not None:
            validate_all(api.seen)
        assert details["smoke_test"]["status"] == "failed"

        # The stack was created, then deleted by the on_fail step.
        stack = f"myStack-{workflow['id'][:7]}"
        deleted = wait_for(lambda: _deleted_stack(cloudformation, stack), timeout=60)
        assert deleted["StackStatus"] == "DELETE_COMPLETE"

        # Step logs through API v1.1, as the notebooks read them.
        build = _v1_build(services, jobs["smoke_test"]["job_number"])
        steps = {step["name"]: step["actions"][0] for step in build["steps"]}
        assert steps["Test job"]["status"] == "failed" and steps["Test job"]["exit_code"] != 0
        destroy = steps["Destroy environment"]
        assert destroy["status"] == "success" and destroy["exit_code"] == 0
        create = _v1_build(services, jobs["create_infrastructure"]["job_number"])
        create_step = next(
            s["actions"][0] for s in create["steps"] if s["name"] == "Create Cloudformation Stack"
        )
        log = httpx.get(create_step["output_url"], timeout=30).json()
        assert [models.LogLine.model_validate(line) for line in log]
        text = "".join(line["message"] for line in log)
        assert f"Successfully created/updated stack - {stack}" in text
        assert services.circle_token not in text
    finally:
        api.close()


def _deleted_stack(cloudformation: Any, name: str) -> dict[str, Any] | None:
    summaries = cloudformation.list_stacks(StackStatusFilter=["DELETE_COMPLETE"])
    for summary in summaries["StackSummaries"]:
        if summary["StackName"] == name:
            return summary
    time.sleep(0.2)
    return None


def _v1_build(services: Any, number: int) -> dict[str, Any]:
    response = httpx.get(
        f"{services.circleci_url}/api/v1.1/project/github/udacity/rollback-lab/{number}",
        auth=(services.circle_token, ""),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    build = response.json()
    models.Build.model_validate(build)
    return build
