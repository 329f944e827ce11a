"""The shared models dump what CircleCI's spec accepts and parse what it describes."""

from __future__ import annotations

from datetime import datetime, timedelta

import circleci_fakes as fake
import pytest
from pydantic import ValidationError

from helpers.circleci import models as m
from helpers.circleci import spec

needs_spec = pytest.mark.skipif(
    spec.find_spec() is None,
    reason="CircleCI's OpenAPI spec is not at <repo>/../shared/reference/circleci-openapi-v2.json",
)


def _samples() -> list[tuple[str, int, m.ApiModel]]:
    p = fake.pipeline()
    wf = fake.workflow(p.id)
    blocked = fake.job("smoke_test", "blocked", number=None, start=None, seconds=None)
    running = fake.job("create_infrastructure", "running", number=3, seconds=None)
    done = fake.job("build", "success", number=2)
    errored = fake.pipeline(
        state="errored",
        errors=[m.PipelineError(type="config", message="Cannot find a definition for job x")],
    )
    return [
        ("getPipelineById", 200, p),
        ("getPipelineById", 200, errored),
        ("listPipelinesForProject", 200, m.Page[m.Pipeline](items=[p, errored])),
        ("getPipelineConfigById", 200, m.PipelineConfig(source="version: 2.1", compiled="{}")),
        ("listWorkflowsByPipelineId", 200, m.Page[m.Workflow](items=[wf], next_page_token="t")),
        ("getWorkflowById", 200, fake.workflow(p.id, status="failed")),
        ("listWorkflowJobs", 200, m.Page[m.Job](items=[done, running, blocked])),
        ("getJobDetails", 200, fake.job_details()),
        ("triggerPipeline", 201, m.TriggerPipelineResponse(id=p.id, state="created", number=1,
                                                           created_at=fake.T0)),
        ("triggerPipelineRun", 201, m.TriggerPipelineResponse(id=p.id, state="created", number=2,
                                                              created_at=fake.T0)),
        ("cancelWorkflow", 202, m.MessageResponse(message="Accepted.")),
        ("rerunWorkflow", 202, m.RerunWorkflowResponse(workflow_id=fake.new_id())),
        ("cancelJobByJobNumber", 200, m.MessageResponse(message="Canceled")),
        ("listEnvVars", 200, m.Page[m.EnvironmentVariable](
            items=[m.EnvironmentVariable(name="AWS_REGION", value="xxxxst-1")])),
        ("createEnvVar", 201, m.EnvironmentVariable(name="AWS_REGION", value="xxxxst-1")),
        ("getEnvVar", 200, m.EnvironmentVariable(name="A", value="xxxx", created_at="2025-03-01")),
        ("deleteEnvVar", 200, m.MessageResponse(message="Environment variable deleted.")),
        ("getCurrentUser", 200, m.User(id=fake.USER_ID, login="student", name="Student")),
    ]  # fmt: skip


@needs_spec
@pytest.mark.parametrize(
    ("operation", "status", "model"),
    _samples(),
    ids=[f"{op}-{i}" for i, (op, _, _) in enumerate(_samples())],
)
def test_dump_validates_against_the_spec(operation: str, status: int, model: m.ApiModel) -> None:
    body = model.to_api()
    spec.validate_response(operation, body, status)
    # ... and the client parses it back to the same thing
    assert type(model).model_validate(body) == model


@needs_spec
@pytest.mark.parametrize(
    ("operation", "model"),
    [
        ("triggerPipeline", m.TriggerPipelineParameters(branch="main", parameters={"a": True})),
        ("triggerPipelineRun", m.PipelineRunRequest(config=m.PipelineRunRef(branch="main"),
                                                     checkout=m.PipelineRunRef(branch="main"))),
        ("rerunWorkflow", m.RerunWorkflowParameters(from_failed=True)),
        ("createEnvVar", m.EnvironmentVariableCreate(name="A", value="b")),
    ],
)  # fmt: skip
def test_request_bodies_validate_against_the_spec(operation: str, model: m.ApiModel) -> None:
    spec.validate_request(operation, model.to_api())


@needs_spec
def test_the_oracle_rejects_what_the_spec_rejects() -> None:
    """The validator is not a rubber stamp: a wrong enum, missing field or bad date fails."""
    import jsonschema

    good = fake.workflow(fake.new_id()).to_api()
    for broken in (
        {**good, "status": "passed"},
        {k: v for k, v in good.items() if k != "started_by"},
        {**good, "created_at": "yesterday"},
        {**good, "stopped_at": 5},
    ):
        with pytest.raises(jsonschema.ValidationError):
            spec.validate_response("getWorkflowById", broken)


def test_required_nullable_fields_dump_as_null_and_unset_optionals_are_omitted() -> None:
    body = fake.workflow(fake.new_id(), status="running").to_api()
    assert body["stopped_at"] is None
    assert "canceled_by" not in body and "tag" not in body
    page = m.Page[m.Workflow](items=[]).to_api()
    assert page == {"items": [], "next_page_token": None}
    actor = m.TriggerActor(login="x").to_api()
    assert actor == {"login": "x", "avatar_url": None}


def test_wire_names_with_dashes() -> None:
    config = m.PipelineConfig.model_validate(
        {"source": "a", "compiled": "b", "setup-config": "c", "compiled-setup-config": "d"}
    )
    assert config.setup_config == "c" and config.compiled_setup_config == "d"
    assert config.to_api()["setup-config"] == "c"
    assert m.EnvironmentVariable(name="A", value="x", created_at="t").to_api()["created-at"] == "t"


def test_list_without_next_page_token_parses() -> None:
    page = m.Page[m.Job].model_validate({"items": []})
    assert page.next_page_token is None


def test_unknown_fields_are_ignored_but_unknown_statuses_are_not() -> None:
    body = {**fake.workflow(fake.new_id()).to_api(), "brand_new_field": 1}
    assert m.Workflow.model_validate(body).name == "default"
    with pytest.raises(ValidationError, match="status"):
        m.Workflow.model_validate({**body, "status": "passed"})


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        m.Workflow.model_validate(
            {**fake.workflow("p").to_api(), "created_at": datetime(2025, 1, 1)}
        )


def test_job_duration() -> None:
    job = fake.job("build", "success", seconds=42)
    assert job.duration == timedelta(seconds=42)
    assert fake.job("build", "running", seconds=None).duration is None


def test_v11_build_and_log_lines_round_trip() -> None:
    build = fake.build(7, "http://127.0.0.1:1")
    body = build.to_api()
    failed = body["steps"][1]["actions"][0]
    assert failed["exit_code"] == 1 and failed["status"] == "failed"
    assert failed["output_url"].endswith("/output/7/1")
    assert m.Build.model_validate(body) == build
    line = fake.log_lines("boom", kind="err")[0].to_api()
    assert line["message"] == "boom" and line["type"] == "err" and line["time"].endswith("Z")
