"""CircleCI's API resources as pydantic models, shared by the client and the local CircleCI.

Field names, enums and required/nullable flags follow CircleCI's OpenAPI spec
(``circleci-openapi-v2.json``, response schemas inline under each operation); the v1.1 build and
log-line shapes, which the spec lacks, follow CircleCI's v1.1 API.

How to serialise (server side)::

    body = model.to_api()            # == model.model_dump(mode="json", by_alias=True)

Do NOT pass ``exclude_none``: every model already drops optional fields that are unset and keeps
the ones the spec marks ``x-nullable`` as ``null`` (``stopped_at``, ``next_page_token``,
``avatar_url``…), which is what the spec's schemas accept. Datetimes must be timezone-aware
(``datetime.now(timezone.utc)``); they dump as RFC 3339 (``2025-01-01T12:00:00Z``). Ids are UUID
strings. Construct with Python names (``PipelineConfig(setup_config=...)``) or the wire names
(``"setup-config"``); both work. ``Page[Workflow](items=[...])`` is a list envelope.

Parsing (client side): ``Pipeline.model_validate(response.json())``. Unknown fields are ignored
so newer CircleCI responses still parse; an unknown enum value is a validation error, on purpose,
so that the local server cannot drift from the spec unnoticed.

Where the spec and reality disagree the model follows reality and says so (see ``Job.started_at``);
:mod:`helpers.circleci.spec` validates with the same allowances.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)

# --- enums, word for word from the spec ------------------------------------------------------

PipelineState = Literal["created", "errored", "setup-pending", "setup", "pending"]
PipelineErrorType = Literal[
    "config", "config-fetch", "timeout", "permission", "other", "trigger-rule", "plan"
]
TriggerType = Literal["scheduled_pipeline", "explicit", "api", "webhook"]
WorkflowStatus = Literal[
    "success",
    "running",
    "not_run",
    "failed",
    "error",
    "failing",
    "on_hold",
    "canceled",
    "unauthorized",
]
JobStatus = Literal[
    "success",
    "running",
    "not_run",
    "failed",
    "retried",
    "queued",
    "not_running",
    "infrastructure_fail",
    "timedout",
    "on_hold",
    "terminated-unknown",
    "blocked",
    "canceled",
    "unauthorized",
]
JobType = Literal["build", "approval"]
RequiredStatus = Literal["success", "failed", "canceled"]

#: A workflow in one of these states will not change any more (``watch`` stops on them).
TERMINAL_WORKFLOW_STATUSES: frozenset[str] = frozenset(
    {"success", "not_run", "failed", "error", "canceled", "unauthorized"}
)
#: Workflow states that mean the run did not succeed.
FAILED_WORKFLOW_STATUSES: frozenset[str] = frozenset(
    {"failed", "error", "canceled", "unauthorized"}
)
TERMINAL_JOB_STATUSES: frozenset[str] = frozenset(
    {
        "success",
        "not_run",
        "failed",
        "retried",
        "infrastructure_fail",
        "timedout",
        "terminated-unknown",
        "canceled",
        "unauthorized",
    }
)
FAILED_JOB_STATUSES: frozenset[str] = frozenset(
    {"failed", "infrastructure_fail", "timedout", "terminated-unknown", "canceled", "unauthorized"}
)

T = TypeVar("T")


def _nullable(**kwargs: Any) -> Any:
    """A field the spec marks ``x-nullable``: absent is ``None``, and it dumps as ``null``."""
    return Field(default=None, json_schema_extra={"x-nullable": True}, **kwargs)


class ApiModel(BaseModel):
    """Base: wire names by alias, unknown fields ignored, unset optional fields not dumped."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    _keep_none: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        keep: set[str] = set()
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and extra.get("x-nullable"):
                keep.update({name, field.alias or name})
        cls._keep_none = frozenset(keep)

    @model_serializer(mode="wrap")
    def _drop_unset_optionals(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        keep = type(self)._keep_none
        return {k: v for k, v in data.items() if v is not None or k in keep}

    def to_api(self) -> dict[str, Any]:
        """The JSON body CircleCI would send for this resource."""
        return self.model_dump(mode="json", by_alias=True)


# --- messages and lists ----------------------------------------------------------------------


class MessageResponse(ApiModel):
    """``{"message": ...}``: errors, and the answer of cancel/delete calls."""

    message: str


ErrorResponse = MessageResponse


class Page(ApiModel, Generic[T]):
    """A list envelope. ``next_page_token`` is ``null`` (or, on circleci.com, absent) at the end."""

    items: list[T]
    next_page_token: str | None = _nullable()


# --- pipelines -------------------------------------------------------------------------------


class PipelineError(ApiModel):
    type: PipelineErrorType
    message: str


class TriggerActor(ApiModel):
    login: str
    avatar_url: str | None = _nullable()


class PipelineTrigger(ApiModel):
    type: TriggerType
    received_at: AwareDatetime
    actor: TriggerActor


class Commit(ApiModel):
    subject: str | None = _nullable()
    body: str | None = _nullable()


class PipelineVcs(ApiModel):
    provider_name: str
    origin_repository_url: str
    target_repository_url: str
    revision: str
    branch: str | None = None
    tag: str | None = None
    review_id: str | None = None
    review_url: str | None = None
    commit: Commit | None = None


class Pipeline(ApiModel):
    """getPipelineById. ``state`` never says whether the run passed: read the workflows."""

    id: str
    number: int
    project_slug: str
    created_at: AwareDatetime
    state: PipelineState
    trigger: PipelineTrigger
    errors: list[PipelineError] = Field(default_factory=list)
    updated_at: AwareDatetime | None = None
    trigger_parameters: dict[str, str | int | bool | dict[str, Any]] | None = None
    vcs: PipelineVcs | None = None


class PipelineConfig(ApiModel):
    """getPipelineConfigById: the config as written (``source``) and after compilation."""

    source: str
    compiled: str
    setup_config: str | None = Field(default=None, alias="setup-config")
    compiled_setup_config: str | None = Field(default=None, alias="compiled-setup-config")


class TriggerPipelineParameters(ApiModel):
    """Body of triggerPipeline (``POST /project/{slug}/pipeline``); branch and tag exclude
    each other."""

    branch: str | None = None
    tag: str | None = None
    parameters: dict[str, bool | int | str] | None = None


class PipelineRunRef(ApiModel):
    branch: str | None = None
    tag: str | None = None


class PipelineRunRequest(ApiModel):
    """Body of triggerPipelineRun (``POST /project/{provider}/{org}/{project}/pipeline/run``)."""

    definition_id: str | None = None
    config: PipelineRunRef | None = None
    checkout: PipelineRunRef | None = None
    parameters: dict[str, Any] | None = None


class TriggerPipelineResponse(ApiModel):
    """The 201 body of both trigger calls (the spec's ``PipelineCreation``)."""

    id: str
    state: PipelineState
    number: int
    created_at: AwareDatetime


PipelineCreation = TriggerPipelineResponse


# --- workflows and jobs ----------------------------------------------------------------------


class Workflow(ApiModel):
    id: str
    name: str
    status: WorkflowStatus
    created_at: AwareDatetime
    pipeline_id: str
    pipeline_number: int
    project_slug: str
    started_by: str
    stopped_at: AwareDatetime | None = _nullable()
    canceled_by: str | None = None
    errored_by: str | None = None
    tag: Literal["setup"] | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_WORKFLOW_STATUSES


class Job(ApiModel):
    """An item of listWorkflowJobs.

    ``started_at``: the spec requires a string, but a job that has not started (blocked, queued,
    approval) has no start time; CircleCI sends ``null`` and so do we.
    ``job_number`` is absent until the job leaves ``blocked`` (and for approval jobs).
    """

    id: str
    name: str
    status: JobStatus
    type: JobType
    project_slug: str
    dependencies: list[str] = Field(default_factory=list)
    started_at: AwareDatetime | None = _nullable()
    stopped_at: AwareDatetime | None = _nullable()
    job_number: int | None = None
    requires: dict[str, list[RequiredStatus]] | None = None
    canceled_by: str | None = None
    approved_by: str | None = None
    approval_request_id: str | None = None

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None or self.stopped_at is None:
            return None
        return self.stopped_at - self.started_at


class JobProject(ApiModel):
    id: str
    slug: str
    name: str
    external_url: str


class ParallelRun(ApiModel):
    index: int
    status: str


class NamedRef(ApiModel):
    id: str
    name: str


class JobExecutor(ApiModel):
    resource_class: str
    type: str | None = None


class PipelineRef(ApiModel):
    id: str


class JobMessage(ApiModel):
    type: str
    message: str
    reason: str | None = None


class NameOnly(ApiModel):
    name: str


class JobDetails(ApiModel):
    """getJobDetails (``/project/{slug}/job/{number}``). ``duration`` is in milliseconds.

    ``started_at`` is ``null`` while the job is queued (see :class:`Job`).
    """

    number: int
    name: str
    status: JobStatus
    created_at: AwareDatetime
    queued_at: AwareDatetime
    web_url: str
    project: JobProject
    organization: NameOnly
    executor: JobExecutor
    pipeline: PipelineRef
    latest_workflow: NamedRef
    parallelism: int = 1
    parallel_runs: list[ParallelRun] = Field(default_factory=list)
    contexts: list[NameOnly] = Field(default_factory=list)
    messages: list[JobMessage] = Field(default_factory=list)
    started_at: AwareDatetime | None = _nullable()
    stopped_at: AwareDatetime | None = _nullable()
    duration: int | None = _nullable()


class RerunWorkflowParameters(ApiModel):
    """Body of rerunWorkflow: ``from_failed`` or ``jobs`` (exclusive)."""

    from_failed: bool | None = None
    jobs: list[str] | None = None
    enable_ssh: bool | None = None
    sparse_tree: bool | None = None


class RerunWorkflowResponse(ApiModel):
    """The 202 body of rerunWorkflow: the id of the new workflow."""

    workflow_id: str


# --- project environment variables, user -----------------------------------------------------


class EnvironmentVariable(ApiModel):
    """listEnvVars item / getEnvVar / createEnvVar response. Reads return the value masked
    (CircleCI shows ``xxxx`` and the last four characters)."""

    name: str
    value: str
    created_at: str | None = _nullable(alias="created-at")


class EnvironmentVariableCreate(ApiModel):
    """Body of createEnvVar."""

    name: str
    value: str


class User(ApiModel):
    """getCurrentUser (``/me``)."""

    id: str
    login: str
    name: str


# --- API v1.1: the build with its steps, and log lines ---------------------------------------


class BuildAction(ApiModel):
    """One action of a step in ``GET /api/v1.1/project/{vcs}/{org}/{repo}/{build_num}``.

    ``output_url`` serves a JSON array of :class:`LogLine`; it is absent when there is no output.
    """

    name: str
    status: str
    index: int = 0
    step: int = 0
    type: str | None = None
    exit_code: int | None = _nullable()
    start_time: AwareDatetime | None = _nullable()
    end_time: AwareDatetime | None = _nullable()
    run_time_millis: int | None = _nullable()
    output_url: str | None = None
    has_output: bool | None = None
    bash_command: str | None = _nullable()
    failed: bool | None = _nullable()
    timedout: bool | None = _nullable()
    canceled: bool | None = _nullable()
    infrastructure_fail: bool | None = _nullable()
    background: bool | None = None
    parallel: bool | None = None
    insignificant: bool | None = None
    truncated: bool | None = None
    allocation_id: str | None = None


class BuildStep(ApiModel):
    name: str
    actions: list[BuildAction] = Field(default_factory=list)


class Build(ApiModel):
    """The v1.1 build (job) shape, reduced to what step logs need plus common identifiers."""

    build_num: int
    status: str
    steps: list[BuildStep] = Field(default_factory=list)
    lifecycle: str | None = None
    outcome: str | None = _nullable()
    vcs_url: str | None = None
    build_url: str | None = None
    branch: str | None = None
    vcs_tag: str | None = None
    vcs_revision: str | None = None
    username: str | None = None
    reponame: str | None = None
    job_name: str | None = None
    queued_at: AwareDatetime | None = None
    start_time: AwareDatetime | None = _nullable()
    stop_time: AwareDatetime | None = _nullable()
    build_time_millis: int | None = _nullable()
    workflows: dict[str, Any] | None = None


class LogLine(ApiModel):
    """One element of the JSON array served at an action's ``output_url``."""

    message: str
    type: Literal["out", "err"] = "out"
    time: AwareDatetime | None = None
    truncated: bool | None = None


__all__ = [
    "ApiModel",
    "Build",
    "BuildAction",
    "BuildStep",
    "Commit",
    "EnvironmentVariable",
    "EnvironmentVariableCreate",
    "ErrorResponse",
    "FAILED_JOB_STATUSES",
    "FAILED_WORKFLOW_STATUSES",
    "Job",
    "JobDetails",
    "JobExecutor",
    "JobMessage",
    "JobProject",
    "JobStatus",
    "JobType",
    "LogLine",
    "MessageResponse",
    "NameOnly",
    "NamedRef",
    "Page",
    "ParallelRun",
    "Pipeline",
    "PipelineConfig",
    "PipelineCreation",
    "PipelineError",
    "PipelineRef",
    "PipelineRunRef",
    "PipelineRunRequest",
    "PipelineState",
    "PipelineTrigger",
    "PipelineVcs",
    "RerunWorkflowParameters",
    "RerunWorkflowResponse",
    "TERMINAL_JOB_STATUSES",
    "TERMINAL_WORKFLOW_STATUSES",
    "TriggerActor",
    "TriggerPipelineParameters",
    "TriggerPipelineResponse",
    "TriggerType",
    "User",
    "Workflow",
    "WorkflowStatus",
]
