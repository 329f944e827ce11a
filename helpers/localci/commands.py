"""``rollback-lab ci run [DIR]``: run a repository's .circleci/config.yml on this machine.

Output is streamed as it comes, each line labelled with its job (and each step announced), so
two jobs running at once stay readable. The exit status is 0 only when every workflow
succeeded, like a green pipeline.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from helpers.errors import InputError
from helpers.localci.config import CompiledConfig, Workflow, WorkflowJob, load_config_file
from helpers.localci.observer import PipelineContext, ProjectContext
from helpers.localci.projects import git_toplevel
from helpers.localci.recorder import RecordingObserver
from helpers.localci.runner import Engine, PipelineResult

LOCAL_AWS_HINT = (
    "hint: local services are running: add --local-aws to send the jobs' aws commands to them"
)


def configure_ci(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ci_command", metavar="ACTION", required=True)
    about = "run .circleci/config.yml of a git repository locally"
    run = sub.add_parser("run", help=about, description=about)
    run.add_argument("dir", nargs="?", default=".", help="the repository (default: .)")
    run.add_argument(
        "--workflow", action="append", help="run only this workflow (repeatable)", default=None
    )
    run.add_argument("--job", help="run only this job, alone (like `circleci local execute`)")
    run.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a project variable (masked in output like CircleCI's project settings)",
    )
    run.add_argument("--branch", help="the branch the pipeline is for (default: the current one)")
    run.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline parameter (read as YAML: true, 3, text)",
    )
    run.add_argument(
        "--local-aws",
        action="store_true",
        help="start or reuse the local AWS and point the jobs' aws CLI at it",
    )
    run.add_argument("--max-jobs", type=int, default=4, help="jobs running at once (default 4)")
    run.add_argument("--keep", action="store_true", help="keep the job folders and artifacts")
    run.add_argument("--json", action="store_true", help="print the run as JSON at the end")


def run_ci(args: argparse.Namespace) -> int:
    repo = _git_root(Path(args.dir))
    env = _pairs(args.env, "-e")
    params = {k: _yaml_scalar(v) for k, v in _pairs(args.parameter, "--parameter").items()}
    revision = _git(repo, "rev-parse", "HEAD")
    branch = args.branch or _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":
        branch = None
    pipeline = PipelineContext(
        id=str(uuid.uuid4()), number=1, revision=revision, branch=branch, parameters=params
    )
    slug = _slug(repo)
    compiled = load_config_file(
        repo / ".circleci" / "config.yml", pipeline=pipeline, project_slug=slug
    )
    if args.job:
        compiled = _single_job(compiled, args.job)
    if _git(repo, "status", "--porcelain"):
        print(
            "note: uncommitted changes are not part of the run (checkout uses the last commit)",
            file=sys.stderr,
        )
    if args.local_aws:
        extra_env = _local_aws_env()
    else:
        extra_env = {}
        if _local_services_running():
            print(LOCAL_AWS_HINT, file=sys.stderr, flush=True)
    observer = RecordingObserver(on_event=None if args.json else _Printer().event)
    work_root = Path(tempfile.mkdtemp(prefix="rollback-lab-ci-"))
    engine = Engine(work_root, max_concurrent_jobs=args.max_jobs, keep_job_dirs=args.keep)
    project = ProjectContext(slug=slug, repo_path=repo, env=env)
    try:
        result = _run_interruptibly(
            engine,
            lambda: engine.run_pipeline(
                compiled,
                project=project,
                pipeline=pipeline,
                observer=observer,
                extra_env=extra_env,
                workflows=args.workflow,
            ),
        )
    finally:
        if args.keep:
            print(f"job folders and artifacts kept in {work_root}", file=sys.stderr)
        else:
            shutil.rmtree(work_root, ignore_errors=True)
    if args.json:
        print(json.dumps(observer.to_json(), indent=2))
    else:
        for wf in result.workflows:
            jobs = ", ".join(f"{j.name}: {j.status}" for j in wf.jobs.values())
            print(f"workflow {wf.name}: {wf.status} ({jobs})")
        if not result.workflows:
            print("no workflow ran (filters left no job for this branch)")
    return 0 if result.success else 1


def _run_interruptibly(engine: Engine, run: Any) -> PipelineResult:
    """Run in a thread so Ctrl-C cancels the jobs (their process groups) instead of orphaning."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = run()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="ci-run")
    thread.start()
    try:
        while thread.is_alive():
            thread.join(timeout=3600)
    except KeyboardInterrupt:
        engine.cancel_all()
        thread.join()
        raise
    if "error" in box:
        raise box["error"]
    return box["result"]


class _Printer:
    """Labels each line with its job; one lock keeps lines of parallel jobs whole."""

    def __init__(self) -> None:
        self.partial: dict[tuple[str, str], str] = {}

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "step_started":
            print(f"==> [{data['job']}] {_first_line(data['name'])}", flush=True)
        elif kind == "step_output":
            key = (data["job_id"], data["step"])
            text = self.partial.pop(key, "") + data["message"]
            lines = text.split("\n")
            if lines[-1]:
                self.partial[key] = lines[-1]
            for line in lines[:-1]:
                print(f"    [{data['job']}] {line}", flush=True)
        elif kind == "step_finished":
            rest = self.partial.pop((data["job_id"], data["step"]), "")
            if rest:
                print(f"    [{data['job']}] {rest}", flush=True)
            if data["status"] != "success":
                code = data["exit_code"]
                extra = f" (exit {code})" if code is not None else ""
                print(
                    f"<== [{data['job']}] {_first_line(data['step'])}: {data['status']}{extra}",
                    flush=True,
                )
        elif kind == "job_status" and data["status"] not in ("running", "queued"):
            print(f"=== job {data['name']}: {data['status']}", flush=True)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= 100 else line[:97] + "..."


def _single_job(compiled: CompiledConfig, name: str) -> CompiledConfig:
    if name not in compiled.jobs:
        raise InputError(
            f"no job named {name} in the workflows (jobs: {', '.join(compiled.jobs)})",
            field="--job",
        )
    workflow = Workflow(name, (WorkflowJob(name, name),))
    return CompiledConfig(
        compiled.source, compiled.source_yaml, {name: compiled.jobs[name]}, {name: workflow}
    )


def _git_root(path: Path) -> Path:
    root = git_toplevel(path, hint="checkout needs one: run `git init`")
    if subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "-q", "HEAD"],
                      capture_output=True, check=False).returncode:  # fmt: skip
        raise InputError("the repository has no commit yet: commit the config first", file=root)
    return root


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    ).stdout.strip()


def _slug(repo: Path) -> str:
    url = _git(repo, "remote", "get-url", "origin")
    m = re.search(r"github\.com[:/]([^/]+)/([^/]+?)(?:\.git)?$", url)
    if m:
        return f"gh/{m.group(1)}/{m.group(2)}"
    return f"gh/local/{repo.name}"


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"expected KEY=VALUE, got {item!r}", field=option)
        out[key] = value
    return out


def _yaml_scalar(text: str) -> Any:
    from ruamel.yaml import YAML

    try:
        value = YAML(typ="safe", pure=True).load(text)
    except Exception:
        return text
    return value if isinstance(value, str | int | float | bool) else text


def _local_services_running() -> bool:
    """Whether a local-services instance answers for this state dir: a job's ``aws`` without
    --local-aws goes to real AWS and, with no credentials in the job, fails with "Unable to
    locate credentials" — the usual slip after `rollback-lab up`."""
    from helpers.services import services_status

    return services_status() is not None


def _local_aws_env() -> dict[str, str]:
    try:
        from helpers.services import ensure_services  # type: ignore[attr-defined]
        from helpers.services.state import resolve_state_dir
    except ImportError as exc:
        raise InputError(f"the local AWS is not available in this version ({exc})") from None
    return dict(ensure_services(resolve_state_dir()).aws_env())
