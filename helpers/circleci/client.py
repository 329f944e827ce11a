"""A small CircleCI API client: the same code for circleci.com and the local CircleCI.

Methods return the shared models of :mod:`helpers.circleci.models`; errors are the hierarchy of
:mod:`helpers.circleci.errors`; retries and the token live in :mod:`helpers.circleci.transport`.

    with CircleCIClient.from_env() as ci:
        created = ci.trigger_pipeline("gh/ORG/REPO", branch="main")
        workflows = ci.list_workflows(created.id)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from helpers.circleci import models as m
from helpers.circleci.errors import (
    TOKEN_VARIABLES,
    AuthError,
    BadRequestError,
    CircleCIError,
    NotFoundError,
    RateLimited,
    ServerError,
    TransportError,
    UnexpectedResponse,
    redact,
    redact_logs,
    redact_url,
)
from helpers.circleci.transport import (
    NOT_SENT,
    RetryPolicy,
    RetryTransport,
    TokenTransport,
    parse_retry_after,
)
from helpers.errors import InputError

DEFAULT_HOST = "https://circleci.com"
HOST_VARIABLE = "CIRCLECI_CLI_HOST"
_MAX_PAGES = 1000
# v1.1 speaks the long VCS names
_V11_VCS = {"gh": "github", "github": "github", "bb": "bitbucket", "bitbucket": "bitbucket"}
_PROVIDERS = ("gh", "github", "bb", "bitbucket", "circleci")

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ProjectSlug:
    """``vcs/org/repo``, checked before it reaches a URL."""

    vcs: str
    org: str
    repo: str

    @classmethod
    def parse(cls, slug: str) -> ProjectSlug:
        parts = slug.replace("%2F", "/").replace("%2f", "/").strip("/").split("/")
        if len(parts) != 3 or not all(parts) or parts[0] not in _PROVIDERS:
            raise InputError(
                f"{slug!r} is not a project slug: expected VCS/ORG/REPO with VCS one of "
                f"{', '.join(_PROVIDERS)} (e.g. gh/my-org/my-repo)",
                field="project slug",
            )
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.vcs}/{self.org}/{self.repo}"

    @property
    def path(self) -> str:
        return "/".join(quote(part, safe="") for part in (self.vcs, self.org, self.repo))

    @property
    def v11_path(self) -> str:
        vcs = _V11_VCS.get(self.vcs, self.vcs)
        return "/".join(quote(part, safe="") for part in (vcs, self.org, self.repo))


@dataclass(frozen=True)
class StepLog:
    """One action of one step of a job, with its output (v1.1)."""

    step: str
    action: m.BuildAction
    lines: list[m.LogLine]

    @property
    def text(self) -> str:
        return "".join(line.message for line in self.lines)

    @property
    def failed(self) -> bool:
        action = self.action
        return action.status in ("failed", "timedout") or bool(action.exit_code)


def resolve_token(token: str | None = None) -> tuple[str, str]:
    """The token and its source: the argument, then CIRCLE_TOKEN, then CIRCLECI_CLI_TOKEN."""
    if token:
        return token, "the token argument"
    for name in TOKEN_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value, name
    raise AuthError(
        "No CircleCI token: set CIRCLE_TOKEN (or CIRCLECI_CLI_TOKEN) to a personal API token "
        "(circleci.com: User Settings → Personal API Tokens; local CircleCI: `rollback-lab up "
        "--json` prints circle_token)."
    )


class CircleCIClient:
    """CircleCI's API v2 (and the v1.1 step logs), with retries and a token kept out of sight."""

    def __init__(
        self,
        token: str | None = None,
        host: str | None = None,
        *,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._token, self.token_source = resolve_token(token)
        self._secrets_extra: set[str] = set()  # env var values set through this client
        redact_logs(self._token)
        host = host or os.environ.get(HOST_VARIABLE, "").strip() or DEFAULT_HOST
        self.host = host.rstrip("/")
        if not self.host.startswith(("http://", "https://")):
            raise InputError(f"{self.host!r} is not an http(s) URL", field="CircleCI host")
        inner = transport or httpx.HTTPTransport()
        self._retry = RetryTransport(TokenTransport(inner, self._token, self.host), policy)
        self._http = httpx.Client(
            transport=self._retry,
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": "rollback-lab"},
            follow_redirects=False,
        )

    @classmethod
    def from_env(cls, **kwargs: Any) -> CircleCIClient:
        """Token and host from the environment (the official CLI's variable names)."""
        return cls(**kwargs)

    def __repr__(self) -> str:
        return f"CircleCIClient(host={self.host!r}, token=***)"

    def __enter__(self) -> CircleCIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def policy(self) -> RetryPolicy:
        return self._retry.policy

    # --- pipelines ---------------------------------------------------------------------------

    def trigger_pipeline(
        self,
        slug: str,
        *,
        branch: str | None = None,
        tag: str | None = None,
        parameters: Mapping[str, bool | int | str] | None = None,
    ) -> m.TriggerPipelineResponse:
        """triggerPipeline, sent once: never repeated if it may have reached CircleCI."""
        project = ProjectSlug.parse(slug)
        if branch and tag:
            raise InputError("give a branch or a tag, not both", field="branch/tag")
        body = m.TriggerPipelineParameters(
            branch=branch, tag=tag, parameters=dict(parameters) if parameters else None
        )
        return self._call(
            "POST",
            f"/api/v2/project/{project.path}/pipeline",
            m.TriggerPipelineResponse,
            json=body.to_api(),
            what=f"project {project}",
        )

    def run_pipeline(
        self,
        slug: str,
        *,
        branch: str | None = None,
        tag: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        definition_id: str | None = None,
    ) -> m.TriggerPipelineResponse:
        """triggerPipelineRun (``pipeline/run``): config and checkout from the same branch/tag."""
        project = ProjectSlug.parse(slug)
        if branch and tag:
            raise InputError("give a branch or a tag, not both", field="branch/tag")
        ref = m.PipelineRunRef(branch=branch, tag=tag) if (branch or tag) else None
        body = m.PipelineRunRequest(
            definition_id=definition_id,
            config=ref,
            checkout=ref,
            parameters=dict(parameters) if parameters else None,
        )
        return self._call(
            "POST",
            f"/api/v2/project/{project.path}/pipeline/run",
            m.TriggerPipelineResponse,
            json=body.to_api(),
            what=f"project {project}",
        )

    def get_pipeline(self, pipeline_id: str) -> m.Pipeline:
        return self._call(
            "GET", f"/api/v2/pipeline/{_seg(pipeline_id)}", m.Pipeline, what="pipeline"
        )

    def get_pipeline_config(self, pipeline_id: str) -> m.PipelineConfig:
        return self._call(
            "GET",
            f"/api/v2/pipeline/{_seg(pipeline_id)}/config",
            m.PipelineConfig,
            what="pipeline",
        )

    def list_pipelines(self, slug: str, *, branch: str | None = None) -> list[m.Pipeline]:
        """listPipelinesForProject, newest first (every page)."""
        project = ProjectSlug.parse(slug)
        params = {"branch": branch} if branch else {}
        return list(
            self._pages(
                f"/api/v2/project/{project.path}/pipeline",
                m.Pipeline,
                params=params,
                what=f"project {project}",
            )
        )

    # --- workflows and jobs ------------------------------------------------------------------

    def list_workflows(self, pipeline_id: str) -> list[m.Workflow]:
        return list(
            self._pages(
                f"/api/v2/pipeline/{_seg(pipeline_id)}/workflow", m.Workflow, what="pipeline"
            )
        )

    def get_workflow(self, workflow_id: str) -> m.Workflow:
        return self._call(
            "GET", f"/api/v2/workflow/{_seg(workflow_id)}", m.Workflow, what="workflow"
        )

    def list_jobs(self, workflow_id: str) -> list[m.Job]:
        return list(
            self._pages(f"/api/v2/workflow/{_seg(workflow_id)}/job", m.Job, what="workflow")
        )

    def get_job(self, slug: str, job_number: int) -> m.JobDetails:
        project = ProjectSlug.parse(slug)
        return self._call(
            "GET",
            f"/api/v2/project/{project.path}/job/{int(job_number)}",
            m.JobDetails,
            what=f"job {job_number} of project {project}",
        )

    def cancel_workflow(self, workflow_id: str) -> m.MessageResponse:
        return self._call(
            "POST",
            f"/api/v2/workflow/{_seg(workflow_id)}/cancel",
            m.MessageResponse,
            what="workflow",
        )

    def cancel_job(self, slug: str, job_number: int) -> m.MessageResponse:
        project = ProjectSlug.parse(slug)
        return self._call(
            "POST",
            f"/api/v2/project/{project.path}/job/{int(job_number)}/cancel",
            m.MessageResponse,
            what=f"job {job_number} of project {project}",
        )

    def rerun_workflow(
        self, workflow_id: str, *, from_failed: bool = True, jobs: list[str] | None = None
    ) -> m.RerunWorkflowResponse:
        """rerunWorkflow: from the failed job (default) or the given job ids."""
        body = (
            m.RerunWorkflowParameters(jobs=jobs)
            if jobs
            else m.RerunWorkflowParameters(from_failed=from_failed)
        )
        return self._call(
            "POST",
            f"/api/v2/workflow/{_seg(workflow_id)}/rerun",
            m.RerunWorkflowResponse,
            json=body.to_api(),
            what="workflow",
        )

    # --- step logs (API v1.1) ----------------------------------------------------------------

    def get_build(self, slug: str, job_number: int) -> m.Build:
        """The v1.1 build of a job: its steps and actions, each with an ``output_url``."""
        project = ProjectSlug.parse(slug)
        return self._call(
            "GET",
            f"/api/v1.1/project/{project.v11_path}/{int(job_number)}",
            m.Build,
            what=f"job {job_number} of project {project}",
        )

    def get_output(self, output_url: str) -> list[m.LogLine]:
        """The log lines at an action's ``output_url`` (the token goes only to CircleCI's host)."""
        response = self._send("GET", output_url, what="step output")
        data = _json(response, self._secrets)
        if not isinstance(data, list):
            raise UnexpectedResponse(
                f"the step output at {redact_url(output_url, self._secrets)} is not a JSON array",
                method="GET",
                url=redact_url(output_url, self._secrets),
            )
        return [_parse(m.LogLine, item, response, self._secrets) for item in data]

    def step_logs(self, slug: str, job_number: int) -> list[StepLog]:
        """Every step of a job with its output, in order."""
        logs = []
        for step in self.get_build(slug, job_number).steps:
            for action in step.actions:
                lines = self.get_output(action.output_url) if action.output_url else []
                logs.append(StepLog(step=step.name, action=action, lines=lines))
        return logs

    # --- project environment variables, user -------------------------------------------------

    def set_env_var(self, slug: str, name: str, value: str) -> m.EnvironmentVariable:
        """createEnvVar (replaces an existing value). The answer shows the value masked."""
        project = ProjectSlug.parse(slug)
        self._secrets_extra.add(value)
        redact_logs(value)
        body = m.EnvironmentVariableCreate(name=name, value=value)
        return self._call(
            "POST",
            f"/api/v2/project/{project.path}/envvar",
            m.EnvironmentVariable,
            json=body.to_api(),
            what=f"project {project}",
        )

    def list_env_vars(self, slug: str) -> list[m.EnvironmentVariable]:
        project = ProjectSlug.parse(slug)
        return list(
            self._pages(
                f"/api/v2/project/{project.path}/envvar",
                m.EnvironmentVariable,
                what=f"project {project}",
            )
        )

    def get_env_var(self, slug: str, name: str) -> m.EnvironmentVariable:
        project = ProjectSlug.parse(slug)
        return self._call(
            "GET",
            f"/api/v2/project/{project.path}/envvar/{_seg(name)}",
            m.EnvironmentVariable,
            what=f"variable {name} of project {project}",
        )

    def delete_env_var(self, slug: str, name: str) -> m.MessageResponse:
        project = ProjectSlug.parse(slug)
        return self._call(
            "DELETE",
            f"/api/v2/project/{project.path}/envvar/{_seg(name)}",
            m.MessageResponse,
            what=f"variable {name} of project {project}",
        )

    def me(self) -> m.User:
        """getCurrentUser: a cheap way to check the token."""
        return self._call("GET", "/api/v2/me", m.User, what="current user")

    # --- plumbing ----------------------------------------------------------------------------

    @property
    def _secrets(self) -> list[str]:
        return [self._token, *self._secrets_extra]

    def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        what: str,
    ) -> M:
        response = self._send(method, self.host + path, json=json, params=params, what=what)
        return _parse(model, _json(response, self._secrets), response, self._secrets)

    def _pages(
        self,
        path: str,
        model: type[M],
        *,
        params: Mapping[str, str] | None = None,
        what: str,
    ) -> Iterator[M]:
        """Every item of a list, following ``next_page_token`` (absent or null at the end)."""
        seen: set[str] = set()
        query = dict(params or {})
        for _ in range(_MAX_PAGES):
            response = self._send("GET", self.host + path, params=query, what=what)
            page = _parse(m.Page[model], _json(response, self._secrets), response, self._secrets)
            yield from page.items
            token = page.next_page_token
            if not token or token in seen:
                return
            seen.add(token)
            query["page-token"] = token

    def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        what: str,
    ) -> httpx.Response:
        shown = redact_url(url, self._secrets)
        try:
            response = self._http.request(method, url, json=json, params=params)
        except NOT_SENT as exc:
            raise TransportError(
                f"could not reach CircleCI at {self.host} ({type(exc).__name__}: "
                f"{redact(str(exc), self._secrets)}); nothing was sent",
                method=method,
                url=shown,
            ) from None
        except httpx.HTTPError as exc:
            maybe_sent = method.upper() == "POST"
            advice = (
                "; it was not repeated because CircleCI may have acted on it — look at the "
                "project's pipelines before trying again"
                if maybe_sent
                else ""
            )
            raise TransportError(
                f"{method} {shown} failed: {type(exc).__name__}: "
                f"{redact(str(exc), self._secrets) or 'connection dropped'}{advice}",
                maybe_sent=maybe_sent,
                method=method,
                url=shown,
            ) from None
        if response.status_code >= 400:
            raise self._error(response, method, shown, what)
        return response

    def _error(self, response: httpx.Response, method: str, url: str, what: str) -> CircleCIError:
        status = response.status_code
        said = _message(response, self._secrets)
        where = {"status": status, "method": method, "url": url}
        if status == 401:
            return AuthError(
                f"CircleCI rejected the token (401: {said}). The token was read from "
                f"{self.token_source}; the client reads {' then '.join(TOKEN_VARIABLES)} "
                f"(host {self.host}, from {HOST_VARIABLE}).",
                **where,
            )
        if status == 403:
            return AuthError(
                f"CircleCI refused {method} {url} for this token (403: {said}).", **where
            )
        if status == 404:
            hint = (
                "the project is unknown or not followed (check the slug; for the local "
                "CircleCI run `rollback-lab link SLUG PATH`)"
                if what.startswith("project") or " of project " in what
                else f"no such {what}"
            )
            return NotFoundError(f"{method} {url}: 404 {said} — {hint}.", **where)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            later = f"; CircleCI asks to wait {retry_after:.0f}s" if retry_after else ""
            return RateLimited(
                f"CircleCI is throttling requests (429: {said}) after retrying{later}.",
                retry_after=retry_after,
                **where,
            )
        if status >= 500:
            repeated = (
                "after retrying"
                if method.upper() != "POST"
                else "(not repeated: CircleCI may have acted on it)"
            )
            return ServerError(
                f"CircleCI failed on {method} {url}: {status} {said} {repeated}.", **where
            )
        return BadRequestError(f"CircleCI refused {method} {url}: {status} {said}.", **where)


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _json(response: httpx.Response, secrets: list[str]) -> Any:
    try:
        return response.json()
    except ValueError:
        url = redact_url(str(response.request.url), secrets)
        raise UnexpectedResponse(
            f"CircleCI's answer to {response.request.method} {url} is not JSON: "
            f"{redact(response.text[:200], secrets)!r}",
            status=response.status_code,
            method=response.request.method,
            url=url,
        ) from None


def _parse(model: type[M], data: Any, response: httpx.Response, secrets: list[str]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        url = redact_url(str(response.request.url), secrets)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise UnexpectedResponse(
            f"CircleCI's answer to {response.request.method} {url} does not have the shape of "
            f"{model.__name__}: {redact(problems, secrets)}",
            status=response.status_code,
            method=response.request.method,
            url=url,
        ) from None


def _message(response: httpx.Response, secrets: list[str]) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        text = data["message"]
    else:
        text = response.text.strip()[:200] or response.reason_phrase
    return redact(text, secrets)


__all__ = ["CircleCIClient", "DEFAULT_HOST", "ProjectSlug", "StepLog", "resolve_token"]
