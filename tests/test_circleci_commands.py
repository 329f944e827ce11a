"""``rollback-lab trigger``: exit codes 0 / 1 / 2 and what it prints, against the fake API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from circleci_fakes import SLUG, FakeCircleCI, exercise_run

from helpers.circleci.commands import parse_params
from helpers.cli import main
from helpers.errors import InputError


@pytest.fixture
def fake(monkeypatch) -> Iterator[FakeCircleCI]:
    server = FakeCircleCI().start()
    monkeypatch.setenv("CIRCLECI_CLI_HOST", server.url)
    monkeypatch.setenv("CIRCLE_TOKEN", server.token)
    monkeypatch.delenv("CIRCLECI_CLI_TOKEN", raising=False)
    yield server
    server.stop()
    assert server.contract_errors == []


def test_trigger_without_watch_prints_the_pipeline(fake, capsys) -> None:
    code = main(["trigger", SLUG, "--branch", "main", "--param", "deploy=true", "--param", "n=3"])
    assert code == 0
    assert "pipeline 1 created" in capsys.readouterr().out
    assert fake.triggered == [{"branch": "main", "parameters": {"deploy": True, "n": 3}}]


def test_watch_exits_1_and_names_the_failed_job_and_step(fake, capsys) -> None:
    fake.on_trigger = exercise_run
    fake.add_failed_build(2, ["curl: (7) Failed to connect\n"])
    code = main(["trigger", SLUG, "--watch", "--poll", "0.001"])
    out = capsys.readouterr().out
    assert code == 1
    assert "job smoke_test (#2) failed in step 'smoke test', exit code 1" in out
    assert "curl: (7) Failed to connect" in out


def test_watch_exits_0_when_every_workflow_succeeded(fake, capsys) -> None:
    fake.on_trigger = lambda pid: exercise_run(pid, smoke="success")
    assert main(["trigger", SLUG, "--watch", "--poll", "0.001"]) == 0
    assert "every workflow succeeded" in capsys.readouterr().out


def test_json_output_is_one_document(fake, capsys) -> None:
    fake.on_trigger = exercise_run
    fake.add_failed_build(2, ["boom\n"])
    assert main(["trigger", SLUG, "--watch", "--json", "--poll", "0.001"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["outcome"] == "failed"
    assert [(j["name"], j["status"]) for j in doc["jobs"]] == [
        ("create_infrastructure", "success"),
        ("smoke_test", "failed"),
    ]
    assert doc["failures"][0]["step"] == "smoke test" and doc["failures"][0]["exit_code"] == 1
    assert "default/smoke_test: failed" in captured.err  # progress went to stderr


def test_a_rejected_token_exits_2_naming_the_variables(fake, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CIRCLE_TOKEN", "wrong-token-abcdef")
    assert main(["trigger", SLUG]) == 2
    err = capsys.readouterr().err
    assert "rejected the token" in err and "CIRCLECI_CLI_TOKEN" in err
    assert "wrong-token-abcdef" not in err and not fake.triggered


def test_usage_errors_exit_2(fake, capsys) -> None:
    assert main(["trigger", SLUG, "--param", "novalue"]) == 2
    assert "--param" in capsys.readouterr().err
    assert main(["trigger", "not-a-slug"]) == 2
    assert "VCS/ORG/REPO" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["trigger", SLUG, "--branch", "a", "--tag", "b"])
    assert caught.value.code == 2
    assert not fake.triggered


def test_parse_params() -> None:
    assert parse_params(["a=true", "b=false", "c=12", "d=x=y", "e="]) == {
        "a": True,
        "b": False,
        "c": 12,
        "d": "x=y",
        "e": "",
    }
    with pytest.raises(InputError):
        parse_params(["=x"])
