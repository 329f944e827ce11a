"""`rollback-lab ci run`: exit status, labelled output, --json, errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from support import make_repo

from helpers.cli import main

CONFIG = """
version: 2.1
jobs:
  hello:
    docker: [{image: alpine}]
    steps:
      - run: {name: Say hello, command: 'echo "hello $WHO"'}
  fail:
    docker: [{image: alpine}]
    steps:
      - run: {name: Fail, command: return 1}
workflows:
  ok: {jobs: [hello]}
  bad: {jobs: [fail]}
"""


def test_ci_run_labels_output_and_exit_status(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    repo = make_repo(tmp_path / "repo", CONFIG)
    assert main(["ci", "run", str(repo), "--workflow", "ok", "-e", "WHO=world"]) == 0
    out = capsys.readouterr().out
    assert "==> [hello] Say hello" in out
    assert "    [hello] hello ********" in out  # -e values are project variables: masked
    assert "world" not in out
    assert "workflow ok: success" in out
    assert main(["ci", "run", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "workflow bad: failed" in out and "<== [fail] Fail: failed (exit 1)" in out


def test_ci_run_json_and_single_job(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    repo = make_repo(tmp_path / "repo", CONFIG)
    assert main(["ci", "run", str(repo), "--job", "hello", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    [workflow] = data["workflows"]
    [job] = workflow["jobs"]
    assert (job["name"], job["status"], job["job_number"]) == ("hello", "success", 1)
    assert [s["name"] for s in job["steps"]][-1] == "Say hello"


def test_ci_run_errors(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    plain = tmp_path / "plain"
    plain.mkdir()
    assert main(["ci", "run", str(plain)]) == 2
    assert "not a git repository" in capsys.readouterr().err
    repo = make_repo(tmp_path / "repo", CONFIG.replace("[hello]}", "[helo]}"))
    assert main(["ci", "run", str(repo)]) == 2
    err = capsys.readouterr().err
    assert "config.yml:13: workflows.ok.jobs[0]" in err
    assert "Cannot find a definition for job named helo" in err


def test_ci_run_hints_at_local_aws_when_the_local_services_run(
    tmp_path: Path,
    capsys,  # noqa: ANN001
    monkeypatch,  # noqa: ANN001
) -> None:
    import helpers.services

    repo = make_repo(tmp_path / "repo", CONFIG)
    monkeypatch.setenv("ROLLBACK_LAB_STATE_DIR", str(tmp_path / "state"))
    # no instance for this state dir: the real lookup finds none, and no hint is printed
    assert main(["ci", "run", str(repo), "--workflow", "ok"]) == 0
    assert "--local-aws" not in capsys.readouterr().err

    asked: list[object] = []

    def running(state_dir: object = None) -> object:
        asked.append(state_dir)
        return object()  # what matters: not None, as for a live instance's endpoints

    monkeypatch.setattr(helpers.services, "services_status", running)
    assert main(["ci", "run", str(repo), "--workflow", "ok"]) == 0
    captured = capsys.readouterr()
    hints = [line for line in captured.err.splitlines() if "--local-aws" in line]
    assert hints == [
        "hint: local services are running: add --local-aws to send the jobs' aws commands to them"
    ]
    assert asked == [None]  # the state dir comes from ROLLBACK_LAB_STATE_DIR, as --local-aws's
    assert "workflow ok: success" in captured.out  # a hint, not a refusal
