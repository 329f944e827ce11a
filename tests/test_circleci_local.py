"""The client, watch and ``rollback-lab trigger`` end to end against the real local CircleCI.

The same code path as circleci.com: the local server runs config.yml on the host and answers
with the shared models. No AWS is needed here (the steps only echo and fail).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from support import SLUG, commit_files, linked, local_circleci, make_repo

from helpers.circleci.client import CircleCIClient
from helpers.circleci.errors import AuthError, NotFoundError
from helpers.circleci.watch import watch, watch_pipeline
from helpers.cli import main

pytestmark = pytest.mark.timeout(180)

EXERCISE_LIKE = """\
version: 2.1
commands:
  destroy_environment:
    steps:
      - run:
          name: Destroy environment
          command: echo "deleting stack lab-${CIRCLE_WORKFLOW_ID:0:7}"
          when: on_fail
jobs:
  create_infrastructure:
    docker:
      - image: cimg/base:stable
    steps:
      - run:
          name: Create stack
          command: echo "stack created"
  smoke_test:
    docker:
      - image: cimg/base:stable
    steps:
      - run:
          name: Smoke test
          command: |
            echo "checking http://localhost:1"
            echo "smoke test failed" >&2
            exit 1
      - destroy_environment
workflows:
  default:
    jobs:
      - create_infrastructure
      - smoke_test:
          requires: [create_infrastructure]
"""


@pytest.fixture
def served(tmp_path: Path):
    repo = make_repo(tmp_path / "repo", EXERCISE_LIKE)
    state = tmp_path / "state"
    linked(state, repo)
    with local_circleci(state) as served:
        served.repo = repo  # type: ignore[attr-defined]
        yield served


@pytest.fixture
def client(served) -> Iterator[CircleCIClient]:
    with CircleCIClient(token=served.token, host=served.url) as c:
        yield c


def test_trigger_and_watch_the_exercise_flow(client, served) -> None:
    created = client.trigger_pipeline(SLUG, branch="main")
    out = io.StringIO()
    frame = watch(client, created.id, poll=0.1, max_poll=0.5, view="terminal", stream=out)

    assert frame.attrs["outcome"] == "failed"
    assert frame[["name", "status"]].values.tolist() == [
        ["create_infrastructure", "success"],
        ["smoke_test", "failed"],
    ]
    assert frame["duration"].notna().all() and (frame["duration"] >= pd.Timedelta(0)).all()
    assert str(frame["started_at"].dt.tz) == "UTC"
    smoke = frame[frame["name"] == "smoke_test"].iloc[0]
    create = frame[frame["name"] == "create_infrastructure"].iloc[0]
    assert smoke["started_at"] >= create["stopped_at"]  # requires: one after the other
    [failure] = frame.attrs["failures"]
    assert "smoke_test" in failure and "'Smoke test'" in failure and "exit code 1" in failure
    assert "smoke test failed" in out.getvalue()

    # the on_fail step ran after the failure, and its log reads back through v1.1
    logs = client.step_logs(SLUG, int(smoke["job_number"]))
    by_step = {log.step: log for log in logs}
    assert by_step["Smoke test"].failed and by_step["Smoke test"].action.exit_code == 1
    destroy = by_step["Destroy environment"]
    assert not destroy.failed and destroy.action.exit_code == 0
    assert "deleting stack lab-" in destroy.text

    details = client.get_job(SLUG, int(smoke["job_number"]))
    assert details.status == "failed" and details.pipeline.id == created.id
    assert "smoke_test" in client.get_pipeline_config(created.id).source
    assert client.get_pipeline(created.id).vcs.branch == "main"

    rerun = client.rerun_workflow(frame["workflow_id"].iloc[0], from_failed=True)
    assert rerun.workflow_id in {wf.id for wf in client.list_workflows(created.id)}


def test_an_invalid_config_ends_the_watch_with_its_errors(client, served) -> None:
    commit_files(
        served.repo,
        {".circleci/config.yml": EXERCISE_LIKE.replace("[create_infrastructure]", "[nope]")},
        "Break the config",
    )
    created = client.trigger_pipeline(SLUG)
    result = watch_pipeline(client, created.id, poll=0.1, max_poll=0.5, view="none")
    assert result.outcome == "errored" and result.workflows == []
    assert result.pipeline.errors[0].type == "config"
    assert "nope" in result.pipeline.errors[0].message


def test_env_vars_me_and_errors(client, served) -> None:
    client.set_env_var(SLUG, "AWS_DEFAULT_REGION", "us-east-1")
    assert [v.name for v in client.list_env_vars(SLUG)] == ["AWS_DEFAULT_REGION"]
    assert client.get_env_var(SLUG, "AWS_DEFAULT_REGION").value != "us-east-1"  # masked
    client.delete_env_var(SLUG, "AWS_DEFAULT_REGION")
    assert client.list_env_vars(SLUG) == []
    assert client.me().login
    with pytest.raises(NotFoundError, match="unknown or not followed"):
        client.trigger_pipeline("gh/udacity/not-linked")
    with CircleCIClient(token="wrong-token-000000", host=served.url) as bad:
        with pytest.raises(AuthError, match="rejected the token"):
            bad.me()


def test_cli_trigger_watch_exit_codes(served, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CIRCLECI_CLI_HOST", served.url)
    monkeypatch.setenv("CIRCLE_TOKEN", served.token)
    assert main(["trigger", SLUG, "--watch", "--json", "--poll", "0.1"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["outcome"] == "failed"
    assert doc["failures"][0]["job"] == "smoke_test"
    assert doc["failures"][0]["step"] == "Smoke test"

    commit_files(
        served.repo,
        {".circleci/config.yml": EXERCISE_LIKE.replace("exit 1", "exit 0")},
        "Fix the smoke test",
    )
    assert main(["trigger", SLUG, "--watch", "--poll", "0.1"]) == 0
    assert "every workflow succeeded" in capsys.readouterr().out
