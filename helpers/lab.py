"""The notebooks' one entry point: a :class:`Lab` session that knows where everything is.

Each notebook cell calls one thing here and shows one result. The work itself lives in the
modules this one composes — the local services, the workspace, the CircleCI client and its
watch, the stack-events chart, the checks — so a notebook reads like the exercise's steps:

    session = setup(BACKEND, project_slug=PROJECT_SLUG, workspace=WORKSPACE)
    run = session.run_pipeline(exercise.lab_config(), template=exercise.lab_template())
    session.chart(session.stack_events(run.stack_name), run, name="04_rollback")

``setup`` is idempotent and cheap, so every notebook starts with it and runs on its own once the
prerequisites exist. Locally it creates them (the EC2 key pair, the linked CircleCI project, the
AWS credentials as project variables — as a student does in CircleCI's project settings); on
the real services it checks them and stops with one message naming everything that is missing.
Secret values are never shown: only their names, and where they came from.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from helpers import exercise
from helpers.checks import (
    Findings,
    LabStack,
    Rubric,
    RubricItem,
    delete_lab_stacks,
    list_lab_stacks,
)
from helpers.checks import check as check_workspace
from helpers.checks import rubric as mark_rubric
from helpers.checks.aws import AwsTarget
from helpers.checks.aws import client as aws_client
from helpers.circleci.errors import TOKEN_VARIABLES
from helpers.errors import InputError, LabError
from helpers.workspace import Workspace, redact_url

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from helpers.circleci.client import CircleCIClient, StepLog
    from helpers.services import Endpoints

Backend = Literal["local", "real"]
BACKENDS = ("local", "real")
DEFAULT_SLUG = "gh/student/rollback-lab"
OUTPUT_DIR_ENV = "LAB_OUTPUT_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT_DIR = REPO_ROOT / "build" / "lab-output"
#: What the exercise stores in CircleCI's project settings so jobs can call AWS.
AWS_PROJECT_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
STEP_COLUMNS = ("step", "status", "exit_code", "started_at", "stopped_at", "output")
# Statuses that will not change by themselves (REVIEW_IN_PROGRESS: a change set never executed).
_SETTLED_STACK = re.compile(r"(_COMPLETE|_FAILED)$|^REVIEW_IN_PROGRESS$")


class SetupIncomplete(LabError):
    """The real services cannot be used yet; the message lists every missing piece."""


# --- set-up ----------------------------------------------------------------------------------


def setup(
    backend: str = "local",
    *,
    project_slug: str = DEFAULT_SLUG,
    workspace: str | os.PathLike[str] | None = None,
    region: str = "us-east-1",
    stack_prefix: str = "myStack-",
    key_name: str = "udacity",
    output_dir: str | os.PathLike[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> Lab:
    """Make the exercise's prerequisites exist (local) or prove they do (real); return the
    session later cells use. Running it again changes nothing that is already in place."""
    from helpers.circleci.client import ProjectSlug

    if backend not in BACKENDS:
        raise InputError(f"{backend!r} is not a backend; use 'local' or 'real'", field="BACKEND")
    slug = str(ProjectSlug.parse(project_slug))
    out = Path(output_dir or os.environ.get(OUTPUT_DIR_ENV) or DEFAULT_OUTPUT_DIR).expanduser()
    ws = Workspace.open_or_init(workspace)
    settings = dict(
        project_slug=slug,
        workspace=ws,
        region=region,
        stack_prefix=stack_prefix,
        key_name=key_name,
        output_dir=out.resolve(),
    )
    if backend == "local":
        return _setup_local(state_dir=state_dir, **settings)
    return _setup_real(**settings)


def _setup_local(*, state_dir: str | os.PathLike[str] | None, **settings: Any) -> Lab:
    from helpers.localci.projects import link_project
    from helpers.services import ensure_services
    from helpers.services.aws import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY

    endpoints = ensure_services(state_dir)
    os.environ.update(AWS_DEFAULT_REGION=settings["region"], AWS_REGION=settings["region"])
    if not endpoints.circleci_url:
        raise LabError(
            "the local CircleCI API is not running: "
            f"{endpoints.circleci_error or 'see services.log'} (state dir {endpoints.state_dir})"
        )
    link_project(settings["project_slug"], settings["workspace"].path, endpoints.state_dir)
    target = AwsTarget(
        endpoints.aws_endpoint_url,
        settings["region"],
        {
            "aws_access_key_id": DUMMY_ACCESS_KEY_ID,
            "aws_secret_access_key": DUMMY_SECRET_ACCESS_KEY,
        },
    )
    session = Lab(backend="local", target=target, endpoints=endpoints, **settings)
    session.key_pair = _ensure_key_pair(target, settings["key_name"], create=True)
    session.project_variables = session._store_aws_credentials(
        {
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": settings["region"],
        }
    )
    return session


def _setup_real(**settings: Any) -> Lab:
    ws: Workspace = settings["workspace"]
    problems = real_mode_problems(ws, settings["project_slug"])
    if problems:
        raise SetupIncomplete(
            "The real backend (circleci.com and AWS) is not ready:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nFix these, restart the kernel, and run the notebook again "
            "(or use BACKEND = 'local' to work offline)."
        )
    credentials = _aws_credentials()
    assert credentials is not None  # real_mode_problems checked it
    session = Lab(backend="real", target=AwsTarget(None, settings["region"]), **settings)
    session.client.me()  # a rejected token stops here, with the client's message
    session.key_pair = _ensure_key_pair(session.target, settings["key_name"], create=False)
    variables = {
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        "AWS_DEFAULT_REGION": settings["region"],
    }
    if credentials.token:
        variables["AWS_SESSION_TOKEN"] = credentials.token
    session.project_variables = session._store_aws_credentials(variables)
    return session


def real_mode_problems(ws: Workspace, project_slug: str) -> list[str]:
    """Everything the real backend lacks, each named with how to fix it (no secret values)."""
    problems = []
    if not any(os.environ.get(name, "").strip() for name in TOKEN_VARIABLES):
        problems.append(
            "CIRCLE_TOKEN is not set: create a personal API token on circleci.com (User "
            "Settings → Personal API Tokens) and export CIRCLE_TOKEN before starting Jupyter"
        )
    if os.environ.get("AWS_ENDPOINT_URL"):
        problems.append(
            f"AWS_ENDPOINT_URL is set ({os.environ['AWS_ENDPOINT_URL']}), so AWS calls would "
            "not reach AWS: unset it, and CIRCLECI_CLI_HOST with it (a kernel that ran in local "
            "mode keeps both; restart the kernel)"
        )
    elif _aws_credentials() is None:
        problems.append(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
            "AWS_PROFILE for a profile in ~/.aws/credentials) for an IAM user that may use "
            "CloudFormation and EC2"
        )
    remote = ws.remote_url("origin")
    if remote is None:
        problems.append(
            f"the workspace {ws.path} has no git remote 'origin': create the GitHub repository "
            f"of {project_slug}, set it up as a project in CircleCI, then run "
            f"`git -C {ws.path} remote add origin git@github.com:{_org_repo(project_slug)}.git`"
        )
    elif (found := _remote_org_repo(remote)) and found.lower() != _org_repo(project_slug).lower():
        problems.append(
            f"the workspace's remote 'origin' is {redact_url(remote)}, but PROJECT_SLUG is "
            f"{project_slug}: make them name the same repository"
        )
    return problems


def _aws_credentials() -> Any:
    import boto3

    credentials = boto3.session.Session().get_credentials()
    return credentials.get_frozen_credentials() if credentials is not None else None


def _org_repo(slug: str) -> str:
    return "/".join(slug.split("/")[1:])


def _remote_org_repo(url: str) -> str | None:
    match = re.search(r"[:/]([^/:]+/[^/]+?)(?:\.git)?/?$", url)
    return match.group(1) if match else None


def _ensure_key_pair(target: AwsTarget, name: str, *, create: bool) -> dict[str, str]:
    """The key pair's public facts; created locally when missing. The private key that AWS
    returns on creation is dropped unread: nothing in the lab logs into the instance."""
    from botocore.exceptions import ClientError

    ec2 = aws_client("ec2", target)
    try:
        found = ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"][0]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "InvalidKeyPair.NotFound":
            raise
        if not create:
            raise SetupIncomplete(
                f"the EC2 key pair {name!r} does not exist in {target.region}: create it in "
                "the EC2 console (Network & Security → Key Pairs) and keep the .pem file, or "
                "set KEY_NAME to a key pair you have"
            ) from None
        ec2.create_key_pair(KeyName=name)
        found = ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"][0]
    return {
        "KeyName": found["KeyName"],
        "KeyPairId": found.get("KeyPairId", ""),
        "KeyFingerprint": found.get("KeyFingerprint", ""),
    }


# --- the session -----------------------------------------------------------------------------


@dataclass
class Lab:
    """Where the lab's pieces are, and the few actions the notebooks take with them."""

    backend: Backend
    project_slug: str
    workspace: Workspace
    region: str
    stack_prefix: str
    key_name: str
    output_dir: Path
    target: AwsTarget = field(repr=False)
    endpoints: Endpoints | None = field(default=None, repr=False)
    key_pair: dict[str, str] = field(default_factory=dict)
    project_variables: list[str] = field(default_factory=list)
    _client: CircleCIClient | None = field(default=None, repr=False)

    @property
    def client(self) -> CircleCIClient:
        """The CircleCI API client: the local CircleCI or circleci.com, one code path."""
        if self._client is None:
            from helpers.circleci.client import DEFAULT_HOST, CircleCIClient

            host = self.endpoints.circleci_url if self.endpoints else None
            if self.backend == "real":
                host = os.environ.get("CIRCLECI_CLI_HOST") or DEFAULT_HOST
                token = None
            else:
                token = self.endpoints.circle_token if self.endpoints else None
            self._client = CircleCIClient(token=token, host=host)
        return self._client

    # --- what the session uses ---------------------------------------------------------------

    def summary(self) -> pd.DataFrame:
        """What this session talks to and works on — names and places, never secret values."""
        local = self.backend == "local"
        aws = self.target.endpoint_url or f"AWS ({self.region})"
        rows = {
            "backend": "local services (offline)" if local else "circleci.com and AWS",
            "AWS": f"{aws}, region {self.region}" if local else aws,
            "CircleCI": self.client.host,
            "CircleCI token from": ("the local services" if local else self.client.token_source),
            "project": self.project_slug,
            "workspace": str(self.workspace.path),
            "EC2 key pair": self.key_pair.get("KeyName", self.key_name),
            "project variables": ", ".join(self.project_variables) or "(none)",
            "stack names": f"{self.stack_prefix}<first 7 characters of the workflow id>",
            "charts saved in": str(self.output_dir),
        }
        if local and self.endpoints is not None:
            rows["local services state"] = str(self.endpoints.state_dir)
        return pd.DataFrame({"value": rows}).rename_axis("setting")

    def __repr__(self) -> str:
        return self.summary().to_string()

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def project_settings(self) -> pd.DataFrame:
        """The project's environment variables as CircleCI lists them: names and dates only."""
        variables = self.client.list_env_vars(self.project_slug)
        return pd.DataFrame(
            [{"name": v.name, "created_at": v.created_at} for v in variables],
            columns=["name", "created_at"],
        )

    def pipelines(self) -> pd.DataFrame:
        """The project's pipelines so far, newest first (CircleCI answers only for a project
        it knows, so this also proves the project is set up)."""
        rows = [
            {
                "number": p.number,
                "state": p.state,
                "created_at": p.created_at,
                "revision": (p.vcs.revision or "")[:7] if p.vcs else "",
            }
            for p in self.client.list_pipelines(self.project_slug)
        ]
        return pd.DataFrame(rows, columns=["number", "state", "created_at", "revision"])

    def _store_aws_credentials(self, values: Mapping[str, str]) -> list[str]:
        for name, value in values.items():
            self.client.set_env_var(self.project_slug, name, value)
        return list(values)

    # --- files and pipelines -----------------------------------------------------------------

    def commit(
        self,
        config: Mapping[str, Any],
        template: Mapping[str, Any] | None = None,
        message: str = "Update the lab's pipeline",
    ) -> str:
        """Write the files into the workspace and commit them; in real mode push the commit.
        Returns the commit's sha (unchanged files keep the current commit)."""
        if template is not None:
            self.workspace.write_template(template)
        self.workspace.write_config(config)
        sha = self.workspace.commit(message)
        if self.backend == "real":
            self.workspace.push("origin")
        return sha

    def run_pipeline(
        self,
        config: Mapping[str, Any],
        template: Mapping[str, Any] | None = None,
        *,
        message: str = "Update the lab's pipeline",
        view: str = "auto",
        timeout: float = 1800.0,
    ) -> PipelineRun:
        """Commit (and push), trigger the pipeline through the API, watch it live until every
        workflow has finished; the result holds the jobs, the stack name and the step logs."""
        sha = self.commit(config, template, message)
        created = self.client.trigger_pipeline(self.project_slug, branch=self.workspace.branch)
        run = self._watch(created.id, view=view, timeout=timeout)
        if run.revision and run.revision != sha:
            raise LabError(
                f"pipeline {run.number} built {run.revision[:7]}, not the commit {sha[:7]} "
                "just made: is the branch pushed?"
            )
        return run

    def latest_run(self, *, view: str = "none") -> PipelineRun:
        """The project's newest pipeline that ran a workflow; when there is none yet, run the
        lab's pipeline first — so a notebook that needs a run works on its own."""
        for pipeline in self.client.list_pipelines(self.project_slug):
            if self.client.list_workflows(pipeline.id):
                return self._watch(pipeline.id, view=view)
        return self.run_pipeline(
            exercise.lab_config(stack_prefix=self.stack_prefix, region=self.region),
            exercise.lab_template(key_name=self.key_name),
            message="Add the lab's template and pipeline",
        )

    def _watch(self, pipeline_id: str, *, view: str, timeout: float = 1800.0) -> PipelineRun:
        from helpers.circleci.watch import watch

        # watch() picks its poll interval from the host: quick on loopback, gentle on circleci.com
        jobs = watch(self.client, pipeline_id, view=view, timeout=timeout)  # type: ignore[arg-type]
        pipeline = self.client.get_pipeline(pipeline_id)
        workflow_id = str(jobs["workflow_id"].iloc[0]) if len(jobs) else None
        return PipelineRun(
            session=self,
            pipeline_id=pipeline_id,
            number=pipeline.number,
            revision=pipeline.vcs.revision if pipeline.vcs else None,
            workflow_id=workflow_id,
            outcome=jobs.attrs.get("outcome", ""),
            stack_name=self._stack_name(pipeline_id, workflow_id),
            jobs=jobs,
        )

    def _stack_name(self, pipeline_id: str, workflow_id: str | None) -> str | None:
        """The stack the create job made: its ``--stack-name`` in the pipeline's config,
        expanded by bash as the job's shell expanded it."""
        from ruamel.yaml import YAML

        if workflow_id is None:
            return None
        source = self.client.get_pipeline_config(pipeline_id).source
        names = exercise.stack_names(YAML(typ="safe").load(source) or {})
        created = [name for where, name in names.items() if where.startswith("jobs.")]
        if not created:
            return None
        return exercise.expand_with_bash(created[0], {"CIRCLE_WORKFLOW_ID": workflow_id})

    # --- AWS ---------------------------------------------------------------------------------

    def aws(self, *args: str | os.PathLike[str], timeout: float = 600.0) -> CommandResult:
        """Run the ``aws`` CLI as a student types it in a terminal; a failure is a result to
        look at (its exit code and output), not an exception."""
        program = _aws_program()
        words = [str(a) for a in args]
        result = subprocess.run(
            [program, *words],
            cwd=self.workspace.path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        return CommandResult(["aws", *words], result.returncode, result.stdout)

    def stack_status(self, name: str, *, timeout: float = 900.0) -> str:
        """The newest stack of that name's status once it stops changing (deleted stacks too:
        DELETE_COMPLETE)."""
        from helpers.stack_events import StackNotFound, stacks_named

        cloudformation = aws_client("cloudformation", self.target)
        pause = 0.2 if self.backend == "local" else 5.0
        deadline = time.monotonic() + timeout
        while True:
            found = stacks_named(cloudformation, name)
            if not found:
                raise StackNotFound(f"no stack named {name!r}, live or deleted")
            status = found[-1]["StackStatus"]
            if _SETTLED_STACK.search(status) or time.monotonic() > deadline:
                return status
            time.sleep(pause)

    def stack_events(self, name: str) -> pd.DataFrame:
        """Every event of the newest stack of that name (deleted ones too), oldest first."""
        from helpers.stack_events import stack_events

        return stack_events(name, client=aws_client("cloudformation", self.target))

    def lab_stacks(self) -> pd.DataFrame:
        """The stacks named with the lab's prefix that still exist, in any state."""
        return stacks_frame(list_lab_stacks(self.stack_prefix, self.target))

    def delete_stacks(self, names: Iterable[str] | None = None) -> pd.DataFrame:
        """Delete the lab's remaining stacks (or only those named) and wait until they are
        gone, as ``rollback-lab cleanup --yes`` does; returns each one's final status."""
        stacks = list_lab_stacks(self.stack_prefix, self.target)
        if names is not None:
            wanted = set(names)
            stacks = [s for s in stacks if s.name in wanted]
        delay = 1 if self.backend == "local" else 10
        return stacks_frame(delete_lab_stacks(stacks, self.stack_prefix, self.target, delay=delay))

    def check(self) -> Findings:
        """``rollback-lab check`` on the workspace: the lab's mistakes, found before running."""
        return check_workspace(self.workspace.path, target=self.target)

    def rubric(self) -> Marks:
        """The exercise's six needs plus its final check (no stacks left), on the workspace."""
        return Marks(mark_rubric(self.workspace.path, prefix=self.stack_prefix, target=self.target))

    # --- charts ------------------------------------------------------------------------------

    def chart(
        self,
        events: pd.DataFrame,
        run: PipelineRun | None = None,
        *,
        name: str,
        title: str | None = None,
    ) -> Figure:
        """The stack's timeline — with the pipeline's jobs and on_fail steps when ``run`` is
        given — saved as ``<output dir>/<name>.png`` and returned for the notebook to show."""
        from helpers.stack_events import save, timeline

        jobs = on_fail = None
        if run is not None:
            jobs = run.jobs[["name", "status", "started_at", "stopped_at"]]
            on_fail = run.on_fail_steps()
            on_fail = on_fail if len(on_fail) else None
        figure = timeline(events, jobs, on_fail=on_fail, title=title)
        save(figure, self.output_dir / f"{name}.png")
        return figure


# --- results the notebooks show --------------------------------------------------------------


@dataclass
class PipelineRun:
    """One pipeline as the lab looks at it: its jobs, the stack it made, its steps' logs."""

    session: Lab = field(repr=False)
    pipeline_id: str
    number: int
    revision: str | None
    workflow_id: str | None
    outcome: str
    stack_name: str | None
    jobs: pd.DataFrame = field(repr=False)
    _logs: dict[int, list[StepLog]] = field(default_factory=dict, repr=False)

    def job_number(self, job: str) -> int:
        rows = self.jobs[self.jobs["name"] == job]
        if rows.empty or pd.isna(rows["job_number"].iloc[0]):
            raise InputError(
                f"pipeline {self.number} has no job {job!r} that ran; its jobs: "
                f"{', '.join(self.jobs['name'])}",
                field="job",
            )
        return int(rows["job_number"].iloc[0])

    def _step_logs(self, job: str) -> list[StepLog]:
        number = self.job_number(job)
        if number not in self._logs:
            self._logs[number] = self.session.client.step_logs(self.session.project_slug, number)
        return self._logs[number]

    def steps(self, job: str) -> pd.DataFrame:
        """The job's steps in order: status, exit code, times and the first line of the log
        after the shell line CircleCI opens a ``run`` step's log with (so: its command)."""
        rows = [
            {
                "step": log.action.name,
                "status": log.action.status,
                "exit_code": log.action.exit_code,
                "started_at": log.action.start_time,
                "stopped_at": log.action.end_time,
                "output": _first_line(_without_shell_line(log.text)),
            }
            for log in self._step_logs(job)
        ]
        return pd.DataFrame(rows, columns=list(STEP_COLUMNS))

    def step_output(self, job: str, step: str) -> CommandResult:
        """One step's log, as CircleCI's job page shows it."""
        for log in self._step_logs(job):
            if log.action.name == step:
                return CommandResult([f"{job} › {step}"], log.action.exit_code, log.text)
        names = ", ".join(log.action.name for log in self._step_logs(job))
        raise InputError(f"job {job!r} has no step {step!r}; its steps: {names}", field="step")

    def on_fail_steps(self) -> pd.DataFrame:
        """Steps that ran after a step of their job had failed — only ``when: on_fail`` (or
        ``always``) steps do: the pipeline's rollback."""
        rows = []
        for job in self.jobs[self.jobs["status"] == "failed"]["name"]:
            failed = False
            for log in self._step_logs(str(job)):
                if failed:
                    rows.append(
                        {
                            "job": job,
                            "name": log.action.name,
                            "status": log.action.status,
                            "exit_code": log.action.exit_code,
                            "started_at": log.action.start_time,
                            "stopped_at": log.action.end_time,
                        }
                    )
                failed = failed or log.failed
        frame = pd.DataFrame(
            rows, columns=["job", "name", "status", "exit_code", "started_at", "stopped_at"]
        )
        for column in ("started_at", "stopped_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def headline(self) -> str:
        stack = f", stack {self.stack_name}" if self.stack_name else ""
        return f"pipeline {self.number}: {self.outcome}{stack}"

    def table(self) -> pd.DataFrame:
        table = self.jobs[["name", "status", "job_number", "started_at", "stopped_at"]].copy()
        # Seconds read better in a lecture than a timedelta's "0 days 00:00:01.448000".
        table["seconds"] = self.jobs["duration"].dt.total_seconds().round(1)
        return table

    def __repr__(self) -> str:
        return f"{self.headline()}\n{self.table().to_string(index=False)}"

    def _repr_html_(self) -> str:
        return f"<p><b>{html.escape(self.headline())}</b></p>{self.table()._repr_html_()}"


@dataclass(frozen=True)
class CommandResult:
    """A command's (or a step's) exit code and output, shown as a terminal would."""

    command: Sequence[str]
    exit_code: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def __repr__(self) -> str:
        shown = " ".join(self.command)
        body = self.output.rstrip() or "(no output)"
        return f"$ {shown}\n{body}\n[exit code {self.exit_code}]"


def stacks_frame(stacks: Sequence[LabStack]) -> pd.DataFrame:
    """Stacks as a table (an empty table still has its columns)."""
    return pd.DataFrame(
        [{"name": s.name, "status": s.status, "reason": s.reason} for s in stacks],
        columns=["name", "status", "reason"],
    )


# --- the rubric, need by need ----------------------------------------------------------------

_MARKS = {"pass": "✓", "fail": "✗", "not checked": "–"}


@dataclass(frozen=True)
class Mark:
    """One need of the exercise, passed ✓ or failed ✗, with the reason."""

    item: RubricItem

    @property
    def passed(self) -> bool:
        return self.item.passed

    def __repr__(self) -> str:
        item = self.item
        return f"{_MARKS[item.status]} {item.number}. {item.need}\n    {item.reason}"

    def _repr_html_(self) -> str:
        item = self.item
        colour = {"pass": "#009E73", "fail": "#D55E00"}.get(item.status, "#666666")
        return (
            f'<p><span style="color:{colour};font-size:1.3em">{_MARKS[item.status]}</span> '
            f"<b>{item.number}. {html.escape(item.need)}</b><br>"
            f"<span style='margin-left:1.6em'>{_code_spans(item.reason)}</span></p>"
        )


def _code_spans(text: str) -> str:
    """HTML of a reason written for a terminal: its `backticked` names set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


class Marks(list[Mark]):
    """The whole rubric, one ✓/✗ row per need."""

    def __init__(self, rubric: Rubric | Iterable[RubricItem]) -> None:
        super().__init__(Mark(item) for item in rubric)

    def need(self, number: int) -> Mark:
        """A need by its number in the exercise's list (1-based)."""
        for mark in self:
            if mark.item.number == number:
                return mark
        raise InputError(f"the rubric has no need {number}", field="number")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"": _MARKS[m.item.status], "need": m.item.need, "why": m.item.reason} for m in self],
            index=pd.Index([m.item.number for m in self], name="#"),
        )

    def __repr__(self) -> str:
        return "\n".join(repr(mark) for mark in self)

    def _repr_html_(self) -> str:
        return "".join(mark._repr_html_() for mark in self)  # whole reasons, not truncated


def rubric(workspace: str | os.PathLike[str] | None = None) -> Marks:
    """The six needs of the workspace's config, ✓ or ✗ (files only: no AWS is asked, so the
    final "no stacks left" is not part of it)."""
    marked = mark_rubric(_workspace_dir(workspace), check_aws=False)
    return Marks(item for item in marked if item.status != "not checked")


def need(number: int, workspace: str | os.PathLike[str] | None = None) -> Mark:
    """One need of the exercise (1–6, in the exercise's order) for the workspace's config."""
    if not 1 <= number <= 6:
        raise InputError(f"the exercise lists needs 1 to 6, not {number}", field="number")
    return rubric(workspace).need(number)


def _workspace_dir(workspace: str | os.PathLike[str] | None) -> Path:
    from helpers.workspace import default_path

    return Path(workspace).expanduser() if workspace is not None else default_path()


# --- small helpers ---------------------------------------------------------------------------


def _aws_program() -> str:
    """The ``aws`` CLI of this environment (the kernel's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "aws"
    if beside.is_file():
        return str(beside)
    found = shutil.which("aws")
    if found is None:
        raise LabError("the aws CLI is not installed: `pip install awscli` (make setup does)")
    return found


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0][:100] if lines else ""


def _without_shell_line(text: str) -> str:
    """A run step's log opens with its shell (``#!/bin/bash -eo pipefail``), the same in every
    step; what follows (the command, then its output) tells the steps apart."""
    first, _, rest = text.lstrip("\n").partition("\n")
    return rest if first.startswith("#!") else text


def environment() -> pd.DataFrame:
    """The programs the lab runs, with their versions: python, git, bash and the aws CLI."""
    rows = [{"program": "python", "version": sys.version.split()[0], "path": sys.executable}]
    for program, args in (("git", ["--version"]), ("bash", ["--version"]), ("aws", ["--version"])):
        path = _aws_program() if program == "aws" else shutil.which(program)
        version = ""
        if path:
            done = subprocess.run(
                [path, *args], capture_output=True, text=True, check=False, timeout=60
            )
            version = _first_line(done.stdout or done.stderr)
        rows.append({"program": program, "version": version or "NOT FOUND", "path": path or ""})
    return pd.DataFrame(rows).set_index("program")
