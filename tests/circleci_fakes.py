"""Spec-shaped CircleCI resources for tests, built with the shared models.

Every builder returns a model; ``.to_api()`` gives the body circleci.com would send. The model
tests validate these bodies against the official spec, so the fake server's answers are checked.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from helpers.circleci import models as m
from helpers.circleci import spec
from helpers.circleci.transport import RetryPolicy

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
USER_ID = "8f5f8c1e-3c1a-4d7e-9a55-0d6a4c8d7e21"
SLUG = "gh/udacity/rollback-lab"


def new_id() -> str:
    return str(uuid.uuid4())


def pipeline(
    pid: str | None = None,
    *,
    state: m.PipelineState = "created",
    errors: list[m.PipelineError] | None = None,
    number: int = 1,
) -> m.Pipeline:
    return m.Pipeline(
        id=pid or new_id(),
        number=number,
        project_slug=SLUG,
        created_at=T0,
        updated_at=T0,
        state=state,
        errors=errors or [],
        trigger=m.PipelineTrigger(
            type="api", received_at=T0, actor=m.TriggerActor(login="student", avatar_url=None)
        ),
        trigger_parameters={"deploy": True},
        vcs=m.PipelineVcs(
            provider_name="GitHub",
            origin_repository_url="https://github.com/udacity/rollback-lab",
            target_repository_url="https://github.com/udacity/rollback-lab",
            revision="f454a02b5d10fcccfd7d9dd7608a76d6493a98b4",
            branch="main",
            commit=m.Commit(subject="add smoke test", body=None),
        ),
    )


def workflow(
    pipeline_id: str,
    name: str = "default",
    status: m.WorkflowStatus = "running",
    *,
    wid: str | None = None,
) -> m.Workflow:
    return m.Workflow(
        id=wid or new_id(),
        name=name,
        status=status,
        created_at=T0,
        stopped_at=None if status in ("running", "failing", "on_hold") else T0 + timedelta(60),
        pipeline_id=pipeline_id,
        pipeline_number=1,
        project_slug=SLUG,
        started_by=USER_ID,
    )


def job(
    name: str,
    status: m.JobStatus,
    *,
    number: int | None = 1,
    start: int | None = 0,
    seconds: int | None = 30,
    dependencies: list[str] | None = None,
) -> m.Job:
    started = None if start is None else T0 + timedelta(seconds=start)
    stopped = None
    if started is not None and seconds is not None:
        stopped = started + timedelta(seconds=seconds)
    return m.Job(
        id=new_id(),
        name=name,
        status=status,
        type="build",
        project_slug=SLUG,
        job_number=number,
        dependencies=dependencies or [],
        started_at=started,
        stopped_at=stopped,
    )


def job_details(number: int = 1, status: m.JobStatus = "failed") -> m.JobDetails:
    return m.JobDetails(
        number=number,
        name="smoke_test",
        status=status,
        created_at=T0,
        queued_at=T0,
        started_at=T0,
        stopped_at=T0 + timedelta(seconds=5),
        duration=5000,
        web_url=f"https://app.circleci.com/pipelines/{SLUG}/1/workflows/x/jobs/{number}",
        project=m.JobProject(
            id=new_id(),
            slug=SLUG,
            name="rollback-lab",
            external_url="https://github.com/udacity/rollback-lab",
        ),
        organization=m.NameOnly(name="udacity"),
        executor=m.JobExecutor(resource_class="medium", type="docker"),
        pipeline=m.PipelineRef(id=new_id()),
        latest_workflow=m.NamedRef(id=new_id(), name="default"),
        parallelism=1,
        parallel_runs=[m.ParallelRun(index=0, status=status)],
        contexts=[],
        messages=[],
    )


def build(number: int, base_url: str, *, failed_step: str = "smoke test") -> m.Build:
    """A failed v1.1 build whose failing action's log lives at ``{base_url}/output/{number}``."""
    ok = m.BuildAction(
        name="Spin up environment",
        status="success",
        index=0,
        step=0,
        exit_code=None,
        start_time=T0,
        end_time=T0 + timedelta(seconds=1),
        run_time_millis=1000,
        has_output=True,
        output_url=f"{base_url}/output/{number}/0",
    )
    bad = m.BuildAction(
        name=failed_step,
        status="failed",
        index=0,
        step=1,
        exit_code=1,
        start_time=T0 + timedelta(seconds=1),
        end_time=T0 + timedelta(seconds=2),
        run_time_millis=1000,
        has_output=True,
        failed=True,
        output_url=f"{base_url}/output/{number}/1",
    )
    return m.Build(
        build_num=number,
        status="failed",
        lifecycle="finished",
        outcome="failed",
        job_name="smoke_test",
        start_time=T0,
        stop_time=T0 + timedelta(seconds=2),
        build_time_millis=2000,
        steps=[
            m.BuildStep(name=ok.name, actions=[ok]),
            m.BuildStep(name=bad.name, actions=[bad]),
        ],
    )


def log_lines(*messages: str, kind: str = "out") -> list[m.LogLine]:
    return [m.LogLine(message=text, type=kind, time=T0) for text in messages]


# --- a fake circleci.com on 127.0.0.1 ------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Fault:
    method: str
    path: str  # prefix of the request path
    kind: str  # "429", "500", "503", "drop"
    times: int = 1
    retry_after: str | None = None


@dataclass
class Snapshot:
    """What the pipeline looks like at one poll: its state, workflows and their jobs."""

    state: m.PipelineState
    workflows: list[m.Workflow] = field(default_factory=list)
    jobs: dict[str, list[m.Job]] = field(default_factory=dict)
    errors: list[m.PipelineError] = field(default_factory=list)


class FakeCircleCI:
    """CircleCI's API v2 + v1.1 as the spec shapes it, with faults injected on demand.

    Every request and response body is checked against the official spec when it is present;
    mismatches are collected in ``contract_errors`` (the fixture asserts there are none).
    """

    def __init__(self, token: str = "fake-circle-token-6f1d2c", page_size: int = 100) -> None:
        self.token = token
        self.page_size = page_size
        self.omit_last_token = False
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.contract_errors: list[str] = []
        self.projects: set[str] = {SLUG}
        self.pipelines: dict[str, m.Pipeline] = {}
        self.timelines: dict[str, list[Snapshot]] = {}
        self.polls: dict[str, int] = {}
        self.workflows: dict[str, m.Workflow] = {}
        self.builds: dict[int, m.Build] = {}
        self.outputs: dict[str, list[m.LogLine]] = {}
        self.envvars: dict[str, str] = {}
        self.triggered: list[dict[str, Any]] = []
        self.error_message_override: str | None = None
        self.on_trigger: Any = None  # pid -> timeline of the triggered pipeline
        self.raw: dict[str, Any] = {}  # path -> body served verbatim (a wrong shape on purpose)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle
    def start(self) -> FakeCircleCI:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- scripting
    def fault(
        self, method: str, path: str, kind: str, *, times: int = 1, retry_after: str | None = None
    ) -> None:
        self.faults.append(Fault(method, path, kind, times, retry_after))

    def calls(self, method: str, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def add_pipeline(self, timeline: list[Snapshot], pid: str | None = None) -> m.Pipeline:
        p = pipeline(pid, state=timeline[0].state)
        self.pipelines[p.id] = p
        self.timelines[p.id] = timeline
        self.polls[p.id] = -1
        return p

    def add_failed_build(self, number: int, log: list[str], step: str = "smoke test") -> None:
        b = build(number, self.url, failed_step=step)
        self.builds[number] = b
        self.outputs[f"{number}/0"] = log_lines("Build-agent version 1.0\n")
        self.outputs[f"{number}/1"] = log_lines(*log)

    # --- request handling (called from the server's threads)
    def handle(self, req: Recorded) -> tuple[int, Any, dict[str, str]] | None:
        """``(status, body, headers)``, or ``None`` to drop the connection unanswered."""
        self.requests.append(req)
        for fault in self.faults:
            if fault.times > 0 and fault.method == req.method and req.path.startswith(fault.path):
                fault.times -= 1
                if fault.kind == "drop":
                    return None
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return int(fault.kind), {"message": f"injected {fault.kind}"}, headers
        if req.path.startswith("/output/"):
            key = req.path.removeprefix("/output/")
            if key not in self.outputs:
                return 404, {"message": "Not found"}, {}
            return 200, [line.to_api() for line in self.outputs[key]], {}
        if req.path in self.raw:
            return 200, self.raw[req.path], {}
        if req.headers.get("circle-token") != self.token:
            return 401, {"message": self.error_message_override or "Invalid token provided."}, {}
        for method, pattern, operation, handler in _ROUTES:
            match = pattern.fullmatch(req.path)
            if match and method == req.method:
                if operation and req.body is not None and _has_request_schema(operation):
                    self._check(spec.validate_request, operation, req.body)
                status, body = handler(self, req, *match.groups())
                if operation and status < 400:
                    self._check(spec.validate_response, operation, body, status)
                return status, body, {}
        return 404, {"message": "Not found"}, {}

    def _check(self, validate: Any, *args: Any) -> None:
        if spec.find_spec() is None:
            return
        try:
            validate(*args)
        except Exception as exc:  # collected, asserted by the fixture
            self.contract_errors.append(str(exc).splitlines()[0])

    def _page(self, req: Recorded, items: list[Any]) -> dict[str, Any]:
        start = int(req.query.get("page-token", ["0"])[0])
        chunk = items[start : start + self.page_size]
        more = start + self.page_size < len(items)
        body: dict[str, Any] = {"items": [item.to_api() for item in chunk]}
        if more:
            body["next_page_token"] = str(start + self.page_size)
        elif not self.omit_last_token:
            body["next_page_token"] = None
        return body

    def _current(self, pid: str) -> Snapshot:
        timeline = self.timelines[pid]
        return timeline[max(0, min(self.polls[pid], len(timeline) - 1))]

    def _project(self, slug: str) -> bool:
        return unquote(slug) in self.projects


# route handlers: (fake, request, *groups) -> (status, body)


def _trigger(fake: FakeCircleCI, req: Recorded, slug: str) -> tuple[int, Any]:
    if not fake._project(slug):
        return 404, {"message": "Project not found"}
    fake.triggered.append(req.body or {})
    pid = new_id()
    timeline = fake.on_trigger(pid) if fake.on_trigger else [Snapshot("created")]
    p = fake.add_pipeline(timeline, pid=pid)
    created = m.TriggerPipelineResponse(id=p.id, state="created", number=len(fake.triggered),
                                        created_at=T0)  # fmt: skip
    return 201, created.to_api()


def _get_pipeline(fake: FakeCircleCI, req: Recorded, pid: str) -> tuple[int, Any]:
    if pid not in fake.pipelines:
        return 404, {"message": "Pipeline not found"}
    fake.polls[pid] += 1
    now = fake._current(pid)
    p = fake.pipelines[pid].model_copy(update={"state": now.state, "errors": now.errors})
    return 200, p.to_api()


def _list_workflows(fake: FakeCircleCI, req: Recorded, pid: str) -> tuple[int, Any]:
    if pid not in fake.pipelines:
        return 404, {"message": "Pipeline not found"}
    workflows = fake._current(pid).workflows
    for wf in workflows:
        fake.workflows[wf.id] = wf
    return 200, fake._page(req, workflows)


def _list_jobs(fake: FakeCircleCI, req: Recorded, wid: str) -> tuple[int, Any]:
    for pid in fake.timelines:
        jobs = fake._current(pid).jobs.get(wid)
        if jobs is not None:
            return 200, fake._page(req, jobs)
    return 404, {"message": "Workflow not found"}


def _get_workflow(fake: FakeCircleCI, req: Recorded, wid: str) -> tuple[int, Any]:
    wf = fake.workflows.get(wid)
    return (200, wf.to_api()) if wf else (404, {"message": "Workflow not found"})


def _config(fake: FakeCircleCI, req: Recorded, pid: str) -> tuple[int, Any]:
    return 200, m.PipelineConfig(source="version: 2.1\n", compiled="version: 2\n").to_api()


def _cancel_workflow(fake: FakeCircleCI, req: Recorded, wid: str) -> tuple[int, Any]:
    return 202, {"message": "Accepted."}


def _rerun(fake: FakeCircleCI, req: Recorded, wid: str) -> tuple[int, Any]:
    return 202, {"workflow_id": new_id()}


def _job_details(fake: FakeCircleCI, req: Recorded, slug: str, number: str) -> tuple[int, Any]:
    if not fake._project(slug):
        return 404, {"message": "Project not found"}
    return 200, job_details(int(number)).to_api()


def _cancel_job(fake: FakeCircleCI, req: Recorded, slug: str, number: str) -> tuple[int, Any]:
    return 200, {"message": "Canceled"}


def _masked(value: str) -> str:
    return "xxxx" + value[-4:]


def _create_env(fake: FakeCircleCI, req: Recorded, slug: str) -> tuple[int, Any]:
    if not fake._project(slug):
        return 404, {"message": "Project not found"}
    fake.envvars[req.body["name"]] = req.body["value"]
    return 201, {"name": req.body["name"], "value": _masked(req.body["value"])}


def _list_env(fake: FakeCircleCI, req: Recorded, slug: str) -> tuple[int, Any]:
    if not fake._project(slug):
        return 404, {"message": "Project not found"}
    items = [m.EnvironmentVariable(name=k, value=_masked(v)) for k, v in fake.envvars.items()]
    return 200, fake._page(req, items)


def _get_env(fake: FakeCircleCI, req: Recorded, slug: str, name: str) -> tuple[int, Any]:
    if name not in fake.envvars:
        return 404, {"message": "Environment variable not found."}
    return 200, {"name": name, "value": _masked(fake.envvars[name])}


def _delete_env(fake: FakeCircleCI, req: Recorded, slug: str, name: str) -> tuple[int, Any]:
    if fake.envvars.pop(name, None) is None:
        return 404, {"message": "Environment variable not found."}
    return 200, {"message": "Environment variable deleted."}


def _me(fake: FakeCircleCI, req: Recorded) -> tuple[int, Any]:
    return 200, m.User(id=USER_ID, login="student", name="Student").to_api()


def _build(fake: FakeCircleCI, req: Recorded, vcs: str, org: str, repo: str, number: str):
    b = fake.builds.get(int(number))
    return (200, b.to_api()) if b else (404, {"message": "Build not found"})


_SLUG = r"((?:gh|github|bb|bitbucket|circleci)/[^/]+/[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str | None, Any]] = [
    ("POST", re.compile(rf"/api/v2/project/{_SLUG}/pipeline"), "triggerPipeline", _trigger),
    ("GET", re.compile(r"/api/v2/pipeline/([^/]+)"), "getPipelineById", _get_pipeline),
    ("GET", re.compile(r"/api/v2/pipeline/([^/]+)/config"), "getPipelineConfigById", _config),
    ("GET", re.compile(r"/api/v2/pipeline/([^/]+)/workflow"), "listWorkflowsByPipelineId",
     _list_workflows),
    ("GET", re.compile(r"/api/v2/workflow/([^/]+)"), "getWorkflowById", _get_workflow),
    ("GET", re.compile(r"/api/v2/workflow/([^/]+)/job"), "listWorkflowJobs", _list_jobs),
    ("POST", re.compile(r"/api/v2/workflow/([^/]+)/cancel"), "cancelWorkflow", _cancel_workflow),
    ("POST", re.compile(r"/api/v2/workflow/([^/]+)/rerun"), "rerunWorkflow", _rerun),
    ("GET", re.compile(rf"/api/v2/project/{_SLUG}/job/(\d+)"), "getJobDetails", _job_details),
    ("POST", re.compile(rf"/api/v2/project/{_SLUG}/job/(\d+)/cancel"), "cancelJobByJobNumber",
     _cancel_job),
    ("POST", re.compile(rf"/api/v2/project/{_SLUG}/envvar"), "createEnvVar", _create_env),
    ("GET", re.compile(rf"/api/v2/project/{_SLUG}/envvar"), "listEnvVars", _list_env),
    ("GET", re.compile(rf"/api/v2/project/{_SLUG}/envvar/([^/]+)"), "getEnvVar", _get_env),
    ("DELETE", re.compile(rf"/api/v2/project/{_SLUG}/envvar/([^/]+)"), "deleteEnvVar",
     _delete_env),
    ("GET", re.compile(r"/api/v2/me"), "getCurrentUser", _me),
    ("GET", re.compile(r"/api/v1\.1/project/([^/]+)/([^/]+)/([^/]+)/(\d+)"), None, _build),
]  # fmt: skip


def _has_request_schema(operation: str) -> bool:
    return operation in {"triggerPipeline", "rerunWorkflow", "createEnvVar"}


class _Handler(BaseHTTPRequestHandler):
    owner: FakeCircleCI
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        req = Recorded(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=json.loads(raw) if raw else None,
        )
        answer = self.owner.handle(req)
        if answer is None:  # drop: close without a response
            self.close_connection = True
            return
        status, body, headers = answer
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve


def exercise_run(pid: str, *, smoke: m.JobStatus = "failed") -> list[Snapshot]:
    """The lab's pipeline: create_infrastructure, then smoke_test (which fails by default)."""
    wid = new_id()
    create_running = job("create_infrastructure", "running", number=1, seconds=None)
    create_done = create_running.model_copy(
        update={"status": "success", "stopped_at": T0 + timedelta(seconds=40)}
    )
    smoke_blocked = job("smoke_test", "blocked", number=None, start=None, seconds=None,
                        dependencies=[create_running.id])  # fmt: skip
    smoke_running = smoke_blocked.model_copy(
        update={"status": "running", "job_number": 2, "started_at": T0 + timedelta(seconds=41)}
    )
    smoke_done = smoke_running.model_copy(
        update={"status": smoke, "stopped_at": T0 + timedelta(seconds=47)}
    )
    final = "success" if smoke == "success" else "failed"
    return [
        Snapshot("setup-pending"),
        Snapshot("created", [workflow(pid, status="running", wid=wid)],
                 {wid: [create_running, smoke_blocked]}),
        Snapshot("created", [workflow(pid, status="running", wid=wid)],
                 {wid: [create_done, smoke_running]}),
        Snapshot("created", [workflow(pid, status=final, wid=wid)],
                 {wid: [create_done, smoke_done]}),
    ]  # fmt: skip


class FakeClock:
    """A clock the client's retries and watch() sleep on without waiting: sleeps advance it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def policy(clock: FakeClock, **overrides: float) -> RetryPolicy:
    settings = {"attempts": 4, "backoff": 0.01, "max_backoff": 0.05, "total": 30.0}
    settings.update(overrides)
    return RetryPolicy(**settings, sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]
