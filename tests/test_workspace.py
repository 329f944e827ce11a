"""The lab workspace is a real git repository the lab writes and commits to."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import exercise, pipeline_config, template
from helpers import workspace as ws_module
from helpers.errors import LabError
from helpers.workspace import Workspace


def _git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def no_git_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine where git knows nobody: no global or system config."""
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)


def test_init_write_commit(tmp_path: Path, no_git_identity: None) -> None:
    ws = Workspace.open_or_init(tmp_path / "lab")
    assert (tmp_path / "lab" / ".git").is_dir()
    assert ws.branch == "main"
    assert ws.head() is None

    ws.write_template(exercise.lab_template())
    ws.write_config(exercise.lab_config())
    sha = ws.commit("Add the lab files")

    assert sha == _git(ws.path, "rev-parse", "HEAD") == ws.head()
    assert _git(ws.path, "ls-files").splitlines() == [".circleci/config.yml", "template.yml"]
    assert template.read_template(ws.template_path) == exercise.lab_template()
    assert pipeline_config.read_config(ws.config_path) == exercise.lab_config()
    assert ws.log() == [(sha, "Add the lab files")]
    # the fresh machine got a repository-local identity, nothing global
    assert _git(ws.path, "config", "--local", "user.email") == "student@rollback-lab.invalid"


def test_commit_without_changes_keeps_head(tmp_path: Path, no_git_identity: None) -> None:
    ws = Workspace.open_or_init(tmp_path / "lab")
    with pytest.raises(LabError, match="nothing to commit"):
        ws.commit("empty")
    ws.write_template(exercise.example_template())
    first = ws.commit("one")
    assert ws.commit("again") == first
    assert len(ws.log()) == 1
    second = ws.commit("retrigger", allow_empty=True)
    assert second != first and ws.log()[0] == (second, "retrigger")
    ws.write_template(exercise.lab_template())
    third = ws.commit("lab template")
    assert _git(ws.path, "rev-parse", "HEAD~1") == second and ws.head() == third


def test_reopen_keeps_history_and_configured_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tname = Ada\n\temail = ada@example.invalid\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    ws = Workspace.open_or_init(tmp_path / "lab")
    ws.write_template(exercise.example_template())
    sha = ws.commit("one")
    again = Workspace.open_or_init(tmp_path / "lab")
    assert again.head() == sha
    assert _git(ws.path, "log", "-1", "--format=%an <%ae>") == "Ada <ada@example.invalid>"
    local = subprocess.run(
        ["git", "config", "--local", "user.name"], cwd=ws.path, capture_output=True, text=True
    )
    assert local.returncode == 1  # the user's own identity was left alone


def test_default_path_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ws_module.ENV_VAR, raising=False)
    assert ws_module.default_path() == ws_module.REPO_ROOT / "lab-workspace"
    monkeypatch.setenv(ws_module.ENV_VAR, str(tmp_path / "elsewhere"))
    assert ws_module.default_path() == tmp_path / "elsewhere"
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    ws = Workspace.open_or_init()
    assert ws.path == (tmp_path / "elsewhere").resolve() and ws.branch == "main"


def test_default_workspace_is_ignored_by_the_kit_repository() -> None:
    root = ws_module.REPO_ROOT
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "check-ignore", "-q", "lab-workspace/template.yml"], cwd=root, check=False
    )
    assert result.returncode == 0, "lab-workspace/ must be git-ignored"


def test_git_failure_is_a_lab_error(tmp_path: Path, no_git_identity: None) -> None:
    ws = Workspace.open_or_init(tmp_path / "lab")
    with pytest.raises(ws_module.GitError, match="git symbolic-ref"):
        ws._git("symbolic-ref", "--short", "NOT_A_REF")
