"""Shared set-up for the local CircleCI engine tests: a real git repo and a real engine."""

from __future__ import annotations

import subprocess
import textwrap
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from helpers.localci.config import CompiledConfig, compile_config
from helpers.localci.observer import PipelineContext, ProjectContext
from helpers.localci.recorder import RecordingObserver
from helpers.localci.runner import Engine, PipelineResult

SLUG = "gh/udacity/rollback-lab"


def make_repo(root: Path, config: str, files: Mapping[str, str] | None = None) -> Path:
    repo = root / "repo"
    (repo / ".circleci").mkdir(parents=True)
    (repo / ".circleci" / "config.yml").write_text(textwrap.dedent(config))
    for name, text in (files or {}).items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return repo


def head(repo: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


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
    repo = make_repo(tmp_path, config, files)
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
