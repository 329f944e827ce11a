"""CircleCI's HTTP API (v2, and v1.1 step logs) in front of the local CircleCI.

Thin on purpose, like moto's ``responses.py``: each handler checks the request, calls the
:class:`~helpers.localci.backend.LocalCircleCI`, and serialises what the store holds with the
models shared with the client (:mod:`helpers.circleci.models`), so both speak one schema.
:func:`serve` is what the services daemon calls after moto is up.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.exceptions import NotFound as WerkzeugNotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from helpers.circleci import models
from helpers.errors import InputError
from helpers.localci.backend import LocalCircleCI, default_branch
from helpers.localci.exceptions import (
    ApiError,
    EnvVarNotFound,
    InvalidBody,
    InvalidPageToken,
    InvalidToken,
    JobNotFound,
    MethodNotAllowed,
    NotLoggedIn,
    PipelineNotFound,
    ProjectNotFound,
    QueryTokenRefused,
    RouteNotFound,
)
from helpers.localci.projects import PROVIDER_NAMES, V1_VCS_NAMES, normalize_slug, vcs_url
from helpers.localci.store import Job, Pipeline, Project, Step, Workflow, mask_env_value, parse_iso

log = logging.getLogger(__name__)

TOKEN_FILE = "circleci-token"
PAGE_SIZE = 20
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_MASK = "********"


def _slug_rules(prefix: str, rules: list[tuple[str, str, str]]) -> list[Rule]:
    return [
        Rule(f"{prefix}/project/<vcs>/<org>/<repo>{path}", methods=[method], endpoint=endpoint)
        for path, method, endpoint in rules
    ]


URLS = Map(
    [
        Rule("/api/v2/me", methods=["GET"], endpoint="me"),
        *_slug_rules(
            "/api/v2",
            [
                ("", "GET", "get_project"),
                ("/pipeline", "POST", "trigger_pipeline"),
                ("/pipeline", "GET", "list_pipelines"),
                ("/pipeline/run", "POST", "trigger_pipeline_run"),
                ("/pipeline/<int:number>", "GET", "get_pipeline_by_number"),
                ("/job/<int:number>", "GET", "get_job_details"),
                ("/job/<int:number>/cancel", "POST", "cancel_job_by_number"),
                ("/envvar", "GET", "list_env_vars"),
                ("/envvar", "POST", "create_env_var"),
                ("/envvar/<name>", "GET", "get_env_var"),
                ("/envvar/<name>", "DELETE", "delete_env_var"),
            ],
        ),
        Rule("/api/v2/pipeline/<pipeline_id>", methods=["GET"], endpoint="get_pipeline"),
        Rule("/api/v2/pipeline/<pipeline_id>/config", methods=["GET"], endpoint="get_config"),
        Rule("/api/v2/pipeline/<pipeline_id>/workflow", methods=["GET"], endpoint="list_workflows"),
        Rule("/api/v2/workflow/<workflow_id>", methods=["GET"], endpoint="get_workflow"),
        Rule("/api/v2/workflow/<workflow_id>/job", methods=["GET"], endpoint="list_jobs"),
        Rule("/api/v2/workflow/<workflow_id>/cancel", methods=["POST"], endpoint="cancel_workflow"),
        Rule("/api/v2/workflow/<workflow_id>/rerun", methods=["POST"], endpoint="rerun_workflow"),
        Rule("/api/v2/jobs/<job_id>/cancel", methods=["POST"], endpoint="cancel_job_by_id"),
        *_slug_rules("/api/v1.1", [("/<int:build_num>", "GET", "v1_build")]),
        Rule("/api/v1.1/output/<job_id>/<int:index>", methods=["GET"], endpoint="v1_output"),
    ],
    merge_slashes=False,
)
# Routes that need no Circle-Token: the step-log URLs (like CircleCI's pre-signed ones) carry
# their own signature.
_OPEN_ENDPOINTS = frozenset({"v1_output"})


def load_or_create_token(state_dir: Path) -> str:
    """The API token of this state dir: made once, kept private (0600), reused after restarts."""
    path = Path(state_dir) / TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        token = path.read_text(encoding="utf-8").strip()
        if token:
            path.chmod(0o600)
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "CCIPAT_local_" + secrets.token_hex(20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    path.chmod(0o600)
    return token


class CircleCIApp:
    """The WSGI application: routing, authentication, errors as ``{"message": ...}``."""

    def __init__(self, backend: LocalCircleCI, token: str) -> None:
        self.backend = backend
        self.store = backend.store
        self.token = token
        self._signing_key = hashlib.sha256(b"output-url:" + token.encode()).digest()

    # --- WSGI plumbing ----------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = URLS.bind_to_environ(request.environ)
        try:
            try:
                endpoint, args = adapter.match()
            except WerkzeugNotFound:
                self._authenticate(request)
                raise RouteNotFound() from None
            except WerkzeugMethodNotAllowed:
                self._authenticate(request)
                raise MethodNotAllowed() from None
            if endpoint not in _OPEN_ENDPOINTS:
                self._authenticate(request)
            return getattr(self, f"on_{endpoint}")(request, **args)
        except ApiError as exc:
            return _json({"message": exc.message}, exc.status)
        except HTTPException as exc:
            return _json({"message": exc.description or exc.name}, exc.code or 500)
        except Exception:  # a bug must still answer as CircleCI does, and be logged
            log.exception("local CircleCI: %s %s failed", request.method, request.path)
            return _json({"message": "Internal server error."}, 500)

    def _authenticate(self, request: Request) -> None:
        given = request.headers.get("Circle-Token")
        auth = request.headers.get("Authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None and request.authorization is not None:
            if request.authorization.type == "basic":
                given = request.authorization.username or ""
        if given is None:
            if "circle-token" in request.args:
                raise QueryTokenRefused()
            raise NotLoggedIn()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise InvalidToken()

    def base_url(self, request: Request) -> str:
        return request.host_url.rstrip("/")

    def _project(self, vcs: str, org: str, repo: str) -> Project:
        try:
            slug = normalize_slug(f"{vcs}/{org}/{repo}")
        except InputError:
            raise ProjectNotFound() from None
        return self.backend.project(slug)

    # --- user, project ----------------------------------------------------------------------

    def on_me(self, request: Request) -> Response:
        login = self.backend.login
        return _ok(models.User(id=self.backend.user_id, login=login, name=login))

    def on_get_project(self, request: Request, vcs: str, org: str, repo: str) -> Response:
        project = self._project(vcs, org, repo)
        body = {
            "slug": project.slug,
            "name": project.repo,
            "id": project.id,
            "organization_name": project.org,
            "organization_slug": f"{project.vcs}/{project.org}",
            "organization_id": _org_id(project),
            "vcs_info": {
                "vcs_url": vcs_url(project.slug),
                "provider": PROVIDER_NAMES[project.vcs],
                "default_branch": _default_branch(project),
            },
        }
        return _json(body)

    # --- pipelines --------------------------------------------------------------------------

    def on_trigger_pipeline(self, request: Request, vcs: str, org: str, repo: str) -> Response:
        project = self._project(vcs, org, repo)
        body = _json_body(request)
        _check_fields(body, {"branch": str, "tag": str, "parameters": dict})
        parameters = body.get("parameters") or {}
        _check_parameters(parameters)
        pipeline = self.backend.trigger(
            project.slug, branch=body.get("branch"), tag=body.get("tag"), parameters=parameters
        )
        return _ok(_creation(pipeline), 201)

    def on_trigger_pipeline_run(self, request: Request, vcs: str, org: str, repo: str) -> Response:
        project = self._project(vcs, org, repo)
        body = _json_body(request)
        _check_fields(
            body, {"definition_id": str, "config": dict, "checkout": dict, "parameters": dict}
        )
        config = body.get("config") or {}
        checkout = body.get("checkout") or {}
        for name, ref in (("config", config), ("checkout", checkout)):
            _check_fields(ref, {"branch": str, "tag": str}, prefix=f"{name}.")
        parameters = body.get("parameters") or {}
        _check_parameters(parameters)
        pipeline = self.backend.trigger(
            project.slug,
            branch=config.get("branch"),
            tag=config.get("tag"),
            parameters=parameters,
            checkout_branch=checkout.get("branch"),
            checkout_tag=checkout.get("tag"),
        )
        return _ok(_creation(pipeline), 201)

    def on_get_pipeline(self, request: Request, pipeline_id: str) -> Response:
        return _ok(self._pipeline_model(self.backend.pipeline(pipeline_id)))

    def on_get_pipeline_by_number(
        self, request: Request, vcs: str, org: str, repo: str, number: int
    ) -> Response:
        project = self._project(vcs, org, repo)
        pipeline = self.store.get_pipeline_by_number(project.slug, number)
        if pipeline is None:
            raise PipelineNotFound()
        return _ok(self._pipeline_model(pipeline))

    def on_list_pipelines(self, request: Request, vcs: str, org: str, repo: str) -> Response:
        project = self._project(vcs, org, repo)
        offset = _page_offset(request)
        rows = self.store.list_pipelines(
            project.slug,
            branch=request.args.get("branch"),
            offset=offset,
            limit=PAGE_SIZE + 1,
        )
        return _page([self._pipeline_model(p) for p in rows], offset)

    def on_get_config(self, request: Request, pipeline_id: str) -> Response:
        pipeline = self.backend.pipeline(pipeline_id)
        return _ok(
            models.PipelineConfig(source=pipeline.config_source, compiled=pipeline.config_compiled)
        )

    def _pipeline_model(self, pipeline: Pipeline) -> models.Pipeline:
        url = vcs_url(pipeline.project_slug)
        vcs = None
        if pipeline.revision:
            vcs = models.PipelineVcs(
                provider_name=PROVIDER_NAMES[pipeline.project_slug.split("/")[0]],
                origin_repository_url=url,
                target_repository_url=url,
                revision=pipeline.revision,
                branch=pipeline.branch,
                tag=pipeline.tag,
                commit=models.Commit(subject=pipeline.commit_subject, body=pipeline.commit_body),
            )
        return models.Pipeline(
            id=pipeline.id,
            number=pipeline.number,
            project_slug=pipeline.project_slug,
            created_at=parse_iso(pipeline.created_at),
            updated_at=parse_iso(pipeline.updated_at),
            state=pipeline.state,
            errors=[models.PipelineError(**e) for e in pipeline.errors],
            trigger=models.PipelineTrigger(
                type=pipeline.trigger_type,
                received_at=parse_iso(pipeline.created_at),
                actor=models.TriggerActor(login=pipeline.actor, avatar_url=None),
            ),
            trigger_parameters=_trigger_parameters(pipeline),
            vcs=vcs,
        )

    # --- workflows --------------------------------------------------------------------------

    def on_list_workflows(self, request: Request, pipeline_id: str) -> Response:
        pipeline = self.backend.pipeline(pipeline_id)
        offset = _page_offset(request)
        rows = self.store.list_workflows(pipeline.id, offset=offset, limit=PAGE_SIZE + 1)
        return _page([self._workflow_model(w, pipeline) for w in rows], offset)

    def on_get_workflow(self, request: Request, workflow_id: str) -> Response:
        workflow = self.backend.workflow(workflow_id)
        return _ok(self._workflow_model(workflow))

    def _workflow_model(
        self, workflow: Workflow, pipeline: Pipeline | None = None
    ) -> models.Workflow:
        pipeline = pipeline or self.backend.pipeline(workflow.pipeline_id)
        return models.Workflow(
            id=workflow.id,
            name=workflow.name,
            status=workflow.status,
            created_at=parse_iso(workflow.created_at),
            stopped_at=parse_iso(workflow.stopped_at),
            pipeline_id=pipeline.id,
            pipeline_number=pipeline.number,
            project_slug=pipeline.project_slug,
            started_by=workflow.started_by,
            canceled_by=workflow.canceled_by,
        )

    def on_list_jobs(self, request: Request, workflow_id: str) -> Response:
        workflow = self.backend.workflow(workflow_id)
        offset = _page_offset(request)
        everything = self.store.list_jobs(workflow.id, limit=10_000)
        ids = {job.name: job.id for job in everything}
        rows = everything[offset : offset + PAGE_SIZE + 1]
        items = [
            models.Job(
                id=job.id,
                name=job.name,
                status=job.status,
                type="build",
                project_slug=job.project_slug,
                dependencies=[ids[name] for name in job.requires if name in ids],
                started_at=parse_iso(job.started_at),
                stopped_at=parse_iso(job.stopped_at),
                job_number=job.number,
                canceled_by=job.canceled_by,
            )
            for job in rows
        ]
        return _page(items, offset)

    def on_cancel_workflow(self, request: Request, workflow_id: str) -> Response:
        self.backend.cancel_workflow(workflow_id)
        return _ok(models.MessageResponse(message="Accepted."), 202)

    def on_rerun_workflow(self, request: Request, workflow_id: str) -> Response:
        self.backend.workflow(workflow_id)  # 404 before 400, as CircleCI checks
        body = _json_body(request)
        _check_fields(
            body, {"from_failed": bool, "jobs": list, "enable_ssh": bool, "sparse_tree": bool}
        )
        jobs = body.get("jobs") or []
        if not all(isinstance(j, str) for j in jobs):
            raise InvalidBody("jobs must be a list of job ids.")
        new_id = self.backend.rerun(
            workflow_id, from_failed=bool(body.get("from_failed")), jobs=jobs
        )
        return _ok(models.RerunWorkflowResponse(workflow_id=new_id), 202)

    # --- jobs -------------------------------------------------------------------------------

    def on_get_job_details(
        self, request: Request, vcs: str, org: str, repo: str, number: int
    ) -> Response:
        project = self._project(vcs, org, repo)
        job = self.backend.job_by_number(project.slug, number)
        workflow = self.backend.workflow(job.workflow_id)
        pipeline = self.backend.pipeline(workflow.pipeline_id)
        started, stopped = parse_iso(job.started_at), parse_iso(job.stopped_at)
        duration = int((stopped - started).total_seconds() * 1000) if started and stopped else None
        base = self.base_url(request)
        return _ok(
            models.JobDetails(
                number=number,
                name=job.name,
                status=job.status,
                created_at=parse_iso(job.created_at),
                queued_at=parse_iso(job.queued_at or job.created_at),
                started_at=started,
                stopped_at=stopped,
                duration=duration,
                web_url=(
                    f"{base}/pipelines/{project.slug}/{pipeline.number}"
                    f"/workflows/{workflow.id}/jobs/{number}"
                ),
                project=models.JobProject(
                    id=project.id,
                    slug=project.slug,
                    name=project.repo,
                    external_url=vcs_url(project.slug),
                ),
                organization=models.NameOnly(name=project.org),
                executor=models.JobExecutor(resource_class="medium", type="docker"),
                pipeline=models.PipelineRef(id=pipeline.id),
                latest_workflow=models.NamedRef(id=workflow.id, name=workflow.name),
                parallelism=1,
                parallel_runs=[models.ParallelRun(index=0, status=job.status)],
                contexts=[],
                messages=[models.JobMessage(**m) for m in job.messages],
            )
        )

    def on_cancel_job_by_number(
        self, request: Request, vcs: str, org: str, repo: str, number: int
    ) -> Response:
        project = self._project(vcs, org, repo)
        self.backend.cancel_job(self.backend.job_by_number(project.slug, number))
        return _ok(models.MessageResponse(message="Accepted."))

    def on_cancel_job_by_id(self, request: Request, job_id: str) -> Response:
        job = self.store.get_job(job_id)
        if job is None:
            raise JobNotFound()
        self.backend.cancel_job(job)
        return _ok(models.MessageResponse(message="Job cancelled successfully."))

    # --- project environment variables ------------------------------------------------------

    def on_list_env_vars(self, request: Request, vcs: str, org: str, repo: str) -> Response:
        project = self._project(vcs, org, repo)
        items = [_env_model(v) for v in self.store.list_env_vars(project.slug)]
        return _ok(models.Page[models.EnvironmentVariable](items=items, next_page_token=None))

    def on_create_env_var(self, request: Request, vcs: str, org: str, repo: str) -> Response:
        project = self._project(vcs, org, repo)
        body = _json_body(request)
        _check_fields(body, {"name": str, "value": str})
        name, value = body.get("name"), body.get("value")
        if name is None or value is None:
            raise InvalidBody("Both name and value are required.")
        if not _ENV_NAME.match(name):
            raise InvalidBody(
                f"Invalid environment variable name {name!r}: use letters, digits and _, "
                "not starting with a digit."
            )
        return _ok(_env_model(self.store.set_env_var(project.slug, name, value)), 201)

    def on_get_env_var(
        self, request: Request, vcs: str, org: str, repo: str, name: str
    ) -> Response:
        project = self._project(vcs, org, repo)
        env_var = self.store.get_env_var(project.slug, name)
        if env_var is None:
            raise EnvVarNotFound()
        return _ok(_env_model(env_var))

    def on_delete_env_var(
        self, request: Request, vcs: str, org: str, repo: str, name: str
    ) -> Response:
        project = self._project(vcs, org, repo)
        if not self.store.delete_env_var(project.slug, name):
            raise EnvVarNotFound()
        return _ok(models.MessageResponse(message="Environment variable deleted."))

    # --- v1.1: a job with its steps, and each step's output ---------------------------------

    def on_v1_build(
        self, request: Request, vcs: str, org: str, repo: str, build_num: int
    ) -> Response:
        project = self._project(vcs, org, repo)
        job = self.backend.job_by_number(project.slug, build_num)
        workflow = self.backend.workflow(job.workflow_id)
        pipeline = self.backend.pipeline(workflow.pipeline_id)
        steps = [
            models.BuildStep(name=step.name, actions=[self._action(request, job, step)])
            for step in self.store.list_steps(job.id)
        ]
        started, stopped = parse_iso(job.started_at), parse_iso(job.stopped_at)
        lifecycle, outcome = _v1_lifecycle(job.status)
        build = models.Build(
            build_num=build_num,
            status=_v1_status(job.status),
            lifecycle=lifecycle,
            outcome=outcome,
            steps=steps,
            vcs_url=vcs_url(project.slug),
            build_url=f"{self.base_url(request)}/{V1_VCS_NAMES[project.vcs]}/"
            f"{project.org}/{project.repo}/{build_num}",
            branch=pipeline.branch,
            vcs_tag=pipeline.tag,
            vcs_revision=pipeline.revision,
            username=project.org,
            reponame=project.repo,
            job_name=job.name,
            queued_at=parse_iso(job.queued_at or job.created_at),
            start_time=started,
            stop_time=stopped,
            build_time_millis=(
                int((stopped - started).total_seconds() * 1000) if started and stopped else None
            ),
            workflows={
                "job_name": job.name,
                "job_id": job.id,
                "workflow_id": workflow.id,
                "workflow_name": workflow.name,
                "pipeline_id": pipeline.id,
                "pipeline_number": pipeline.number,
                "upstream_job_ids": [],
            },
        )
        return _ok(build)

    def _action(self, request: Request, job: Job, step: Step) -> models.BuildAction:
        start, end = parse_iso(step.start_time), parse_iso(step.end_time)
        has_output = self.store.has_output(job.id, step.index)
        output_url = None
        if has_output:
            output_url = (
                f"{self.base_url(request)}/api/v1.1/output/{quote(job.id)}/{step.index}"
                f"?sig={self._sign(job.id, step.index)}"
            )
        return models.BuildAction(
            name=step.name,
            status=step.status,
            index=0,
            step=step.index,
            type="test",
            exit_code=step.exit_code,
            start_time=start,
            end_time=end,
            run_time_millis=int((end - start).total_seconds() * 1000) if start and end else None,
            output_url=output_url,
            has_output=has_output,
            bash_command=None,
            failed=step.status == "failed" or None,
            timedout=step.status == "timedout" or None,
            canceled=step.status == "canceled" or None,
            infrastructure_fail=(job.status == "infrastructure_fail" and step.status == "failed")
            or None,
            background=False,
            parallel=True,
        )

    def on_v1_output(self, request: Request, job_id: str, index: int) -> Response:
        signature = request.args.get("sig", "")
        if not hmac.compare_digest(signature, self._sign(job_id, index)):
            # What S3 says to a pre-signed URL that does not match, in CircleCI's JSON form.
            return _json({"message": "Request has expired or its signature does not match."}, 403)
        job = self.store.get_job(job_id)
        if job is None:
            raise JobNotFound()
        secrets_ = [v for v in self.store.env_map(job.project_slug).values() if len(v) >= 4]
        lines = [
            models.LogLine(
                message=_mask(line.message, secrets_), type=line.type, time=parse_iso(line.time)
            ).to_api()
            for line in self.store.step_output(job.id, index)
        ]
        return _json(lines)

    def _sign(self, job_id: str, index: int) -> str:
        digest = hmac.new(self._signing_key, f"{job_id}/{index}".encode(), hashlib.sha256)
        return digest.hexdigest()[:32]


# --- serving --------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    """Logs requests at debug level without their query string (it may hold a token)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        log.debug("%s %s -> %s", self.command, path, code)


@dataclass
class Served:
    """A running local CircleCI: its base URL (API under /api/v2, /api/v1.1) and token."""

    url: str
    token: str
    backend: LocalCircleCI
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        """Stop answering, end running jobs as infrastructure_fail, stop the engine."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self.backend.close()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never the token
        return f"Served(url={self.url!r})"


def serve(
    state_dir: Path,
    aws_env: Mapping[str, str],
    *,
    max_concurrent_jobs: int = 4,
    engine: Any = None,
) -> Served:
    """Start the local CircleCI for ``state_dir`` on a free loopback port, in a thread.

    ``aws_env`` (the local AWS's endpoint and dummy credentials) is given to every job.
    """
    state_dir = Path(state_dir).expanduser().resolve()
    token = load_or_create_token(state_dir)
    backend = LocalCircleCI(
        state_dir, aws_env=aws_env, max_concurrent_jobs=max_concurrent_jobs, engine=engine
    )
    try:
        server = make_server(
            "127.0.0.1",
            0,
            CircleCIApp(backend, token),
            threaded=True,
            request_handler=_QuietHandler,
        )
    except BaseException:
        backend.close()
        raise
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="localci-api", daemon=True
    )
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    if hasattr(backend.engine, "app_url"):  # CIRCLE_BUILD_URL points at this server
        backend.engine.app_url = url
    return Served(url=url, token=token, backend=backend, _server=server, _thread=thread)


# --- helpers --------------------------------------------------------------------------------


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _ok(model: models.ApiModel, status: int = 200) -> Response:
    return _json(model.to_api(), status)


def _json_body(request: Request) -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidBody("Request body is not valid JSON.") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidBody("Request body must be a JSON object.")
    return body


_TYPE_WORDS = {str: "a string", dict: "an object", bool: "a boolean", list: "an array"}


def _check_fields(body: Mapping[str, Any], fields: Mapping[str, type], prefix: str = "") -> None:
    for key, value in body.items():
        if key not in fields:
            raise InvalidBody(f"Unexpected field {prefix}{key!r} in request body.")
        wanted = fields[key]
        if value is not None and not (
            isinstance(value, wanted) and not (wanted is not bool and isinstance(value, bool))
        ):
            raise InvalidBody(f"Field {prefix}{key!r} must be {_TYPE_WORDS[wanted]}.")
    if body.get("branch") is not None and body.get("tag") is not None:
        raise InvalidBody("Only one of branch or tag may be specified.")


def _check_parameters(parameters: Mapping[str, Any]) -> None:
    if len(parameters) > 100:
        raise InvalidBody("Too many pipeline parameters (the limit is 100).")
    for key, value in parameters.items():
        if len(key) > 128:
            raise InvalidBody(f"Pipeline parameter name {key[:20]!r}… is longer than 128.")
        if not isinstance(value, (str, int, bool)) or isinstance(value, float):
            raise InvalidBody(f"Pipeline parameter {key!r} must be a string, integer or boolean.")
        if isinstance(value, str) and len(value) > 512:
            raise InvalidBody(f"Pipeline parameter {key!r} is longer than 512 characters.")


def _page_offset(request: Request) -> int:
    token = request.args.get("page-token")
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        offset = int(data["offset"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidPageToken() from None
    if offset < 0:
        raise InvalidPageToken()
    return offset


def _page(items: list[Any], offset: int) -> Response:
    """A list envelope of at most PAGE_SIZE items (callers fetch one more to know if it ends)."""
    token = None
    if len(items) > PAGE_SIZE:
        items = items[:PAGE_SIZE]
        raw = json.dumps({"offset": offset + PAGE_SIZE}).encode()
        token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return _json({"items": [item.to_api() for item in items], "next_page_token": token})


def _creation(pipeline: Pipeline) -> models.TriggerPipelineResponse:
    return models.TriggerPipelineResponse(
        id=pipeline.id,
        state=pipeline.state,
        number=pipeline.number,
        created_at=parse_iso(pipeline.created_at),
    )


def _trigger_parameters(pipeline: Pipeline) -> dict[str, Any]:
    git: dict[str, Any] = {"branch": pipeline.branch or "", "checkout_sha": pipeline.revision or ""}
    if pipeline.tag:
        git["tag"] = pipeline.tag
    return {"circleci": {"event_type": "api"}, "git": git, **pipeline.parameters}


def _env_model(env_var: Any) -> models.EnvironmentVariable:
    return models.EnvironmentVariable(
        name=env_var.name, value=mask_env_value(env_var.value), created_at=env_var.created_at
    )


def _mask(text: str, values: list[str]) -> str:
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, _SECRET_MASK)
    return text


def _org_id(project: Project) -> str:
    """A stable id for the project's organisation (CircleCI has one; git has none)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rollback-lab:{project.vcs}/{project.org}"))


def _default_branch(project: Project) -> str:
    return default_branch(project.repo_path) or "main"


# v2 job status -> v1.1 (status, lifecycle, outcome)
_V1_STATUS = {"blocked": "not_running", "on_hold": "not_running", "terminated-unknown": "failed"}


def _v1_status(status: str) -> str:
    return _V1_STATUS.get(status, status)


def _v1_lifecycle(status: str) -> tuple[str, str | None]:
    if status in ("queued",):
        return "queued", None
    if status in ("blocked", "on_hold", "not_running"):
        return "not_running", None
    if status == "running":
        return "running", None
    if status == "not_run":
        return "not_run", None
    return "finished", status
