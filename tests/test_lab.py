"""The notebooks' facade: real mode names what is missing without showing a secret; local
mode creates the exercise's prerequisites idempotently and finds (or runs) a pipeline."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from circleci_fakes import FakeCircleCI

from helpers import exercise, lab
from helpers.circleci.errors import AuthError
from helpers.errors import InputError
from helpers.workspace import GitError, Workspace

SLUG = "gh/student/rollback-lab"
TOKEN = "cci-secret-token-0123456789abcdef"
ACCESS_KEY = "AKIASECRETACCESSKEY01"
SECRET_KEY = "very/secret+access+key+value0123456789"
LOCAL_ONLY = (
    "CIRCLE_TOKEN",
    "CIRCLECI_CLI_TOKEN",
    "CIRCLECI_CLI_HOST",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CircleCI token, no AWS credentials anywhere boto3 looks (and no metadata service)."""
    for name in LOCAL_ONLY:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCLE_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


def _assert_no_secret(text: str) -> None:
    for secret in (TOKEN, ACCESS_KEY, SECRET_KEY, "hunter2-password"):
        assert secret not in text


def test_real_mode_without_anything_names_every_missing_piece(bare_env: None, tmp_path: Path):
    with pytest.raises(lab.SetupIncomplete) as caught:
        lab.setup("real", project_slug=SLUG, workspace=tmp_path / "ws")
    message = str(caught.value)
    assert "CIRCLE_TOKEN is not set" in message
    assert "no AWS credentials" in message and "AWS_ACCESS_KEY_ID" in message
    assert "no git remote 'origin'" in message
    assert "git@github.com:student/rollback-lab.git" in message  # how to add it
    assert "BACKEND = 'local'" in message


def test_real_mode_with_credentials_names_only_what_lacks_and_no_secret(
    bare_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    _secrets(monkeypatch)
    with pytest.raises(lab.SetupIncomplete) as caught:
        lab.setup("real", project_slug=SLUG, workspace=tmp_path / "ws")
    message = str(caught.value)
    assert "no git remote 'origin'" in message
    assert "CIRCLE_TOKEN" not in message and "AWS credentials" not in message
    _assert_no_secret(message)


def test_real_mode_remote_for_another_repository_is_shown_redacted(
    bare_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    _secrets(monkeypatch)
    ws = Workspace.open_or_init(tmp_path / "ws")
    remote = "https://student:hunter2-password@github.com/student/other-repo.git"
    subprocess.run(["git", "-C", str(ws.path), "remote", "add", "origin", remote], check=True)
    with pytest.raises(lab.SetupIncomplete) as caught:
        lab.setup("real", project_slug=SLUG, workspace=ws.path)
    message = str(caught.value)
    assert "https://***@github.com/student/other-repo.git" in message
    assert f"PROJECT_SLUG is {SLUG}" in message
    _assert_no_secret(message)


def test_real_mode_in_a_kernel_that_ran_locally_says_to_restart(
    bare_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    _secrets(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    with pytest.raises(lab.SetupIncomplete, match="AWS_ENDPOINT_URL is set") as caught:
        lab.setup("real", project_slug=SLUG, workspace=tmp_path / "ws")
    assert "restart the kernel" in str(caught.value)


@pytest.fixture
def fake_circleci() -> Iterator[FakeCircleCI]:
    server = FakeCircleCI(token="the-right-token-abcdef").start()
    try:
        yield server
    finally:
        server.stop()


def test_real_mode_with_a_rejected_token_stops_before_aws_without_showing_it(
    bare_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_circleci: FakeCircleCI
):
    _secrets(monkeypatch)
    monkeypatch.setenv("CIRCLECI_CLI_HOST", fake_circleci.url)
    ws = Workspace.open_or_init(tmp_path / "ws")
    remote = "git@github.com:student/rollback-lab.git"
    subprocess.run(["git", "-C", str(ws.path), "remote", "add", "origin", remote], check=True)
    with pytest.raises(AuthError) as caught:
        lab.setup("real", project_slug=SLUG, workspace=ws.path)
    message = str(caught.value)
    assert "CIRCLE_TOKEN" in message and "rejected" in message.lower()
    _assert_no_secret(message)
    assert [r.path for r in fake_circleci.requests] == ["/api/v2/me"]  # nothing stored


def test_an_unknown_backend_is_an_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="BACKEND"):
        lab.setup("cloud", workspace=tmp_path / "ws")


def test_push_sends_the_branch_and_redacts_credentials_on_failure(tmp_path: Path):
    ws = Workspace.open_or_init(tmp_path / "ws")
    ws.write_config(exercise.lab_config())
    sha = ws.commit("config")
    bare = tmp_path / "student" / "rollback-lab.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
    subprocess.run(["git", "-C", str(ws.path), "remote", "add", "origin", str(bare)], check=True)
    ws.push("origin")
    pushed = subprocess.run(
        ["git", "-C", str(bare), "rev-parse", "refs/heads/main"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pushed.stdout.strip() == sha

    secret_url = "http://student:hunter2-password@127.0.0.1:9/rollback-lab.git"
    subprocess.run(["git", "-C", str(ws.path), "remote", "add", "broken", secret_url], check=True)
    with pytest.raises(GitError) as caught:
        ws.push("broken")
    assert "hunter2-password" not in str(caught.value)


def test_needs_are_marked_one_by_one(tmp_path: Path):
    ws = Workspace.open_or_init(tmp_path / "ws")
    ws.write_config(exercise.example_config())
    course = lab.rubric(ws.path)
    assert [mark.passed for mark in course] == [True, True, False, True, True, True]
    assert repr(lab.need(3, ws.path)).startswith("✗ 3. A job image that can run the AWS CLI")
    assert "<code>alpine:latest</code>" in lab.need(3, ws.path)._repr_html_()  # not `alpine:…`

    ws.write_config(exercise.lab_config())
    assert all(lab.need(n, ws.path).passed for n in range(1, 7))
    assert list(lab.rubric(ws.path).frame()[""]) == ["✓"] * 6
    with pytest.raises(InputError, match="1 to 6"):
        lab.need(7, ws.path)


@pytest.fixture
def local_lab(tmp_path: Path) -> Iterator[tuple[lab.Lab, Path]]:
    from helpers.services import stop_services

    state_dir = tmp_path / "state"
    saved = dict(os.environ)  # setup points this process at the services it starts
    try:
        session = lab.setup(
            "local",
            workspace=tmp_path / "ws",
            state_dir=state_dir,
            output_dir=tmp_path / "charts",
        )
        yield session, state_dir
    finally:
        stop_services(state_dir)
        os.environ.clear()
        os.environ.update(saved)


def test_local_setup_is_idempotent_and_a_first_latest_run_runs_the_pipeline(
    local_lab: tuple[lab.Lab, Path], tmp_path: Path
):
    session, state_dir = local_lab
    assert session.key_pair["KeyName"] == "udacity"
    again = lab.setup("local", workspace=tmp_path / "ws", state_dir=state_dir)
    assert again.key_pair == session.key_pair  # found, not created twice
    assert set(lab.AWS_PROJECT_VARIABLES) <= set(session.project_settings()["name"])
    token = session.endpoints.circle_token
    assert token and token not in repr(session) and token not in session._repr_html_()

    assert session.pipelines().empty
    run = session.latest_run()  # no pipeline yet: it runs the lab's pipeline
    assert run.outcome == "failed"
    assert run.stack_name == f"myStack-{run.workflow_id[:7]}"
    assert list(run.on_fail_steps()["name"]) == ["Destroy environment"]
    assert session.stack_status(run.stack_name) == "DELETE_COMPLETE"
    assert session.latest_run().pipeline_id == run.pipeline_id  # now found, not run again
    assert len(session.pipelines()) == 1

    session.chart(session.stack_events(run.stack_name), run, name="rollback")
    assert (tmp_path / "charts" / "rollback.png").stat().st_size > 0
    assert session.lab_stacks().empty


def test_a_steps_output_column_skips_the_shell_line_every_run_step_opens_with():
    log = "#!/bin/bash -eo pipefail\nreturn 1\n/bin/bash: line 1: return: can only\n"
    assert lab._first_line(lab._without_shell_line(log)) == "return 1"
    spin_up = "Build-agent version local (rollback-lab)\nStarting container\n"
    assert lab._first_line(lab._without_shell_line(spin_up)) == spin_up.splitlines()[0]
