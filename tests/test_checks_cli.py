"""`rollback-lab check` and `check --rubric` from the command line: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import exercise
from helpers import pipeline_config as pc
from helpers import template as cfn
from helpers.cli import main


def workspace(tmp_path: Path, config: dict) -> Path:
    pc.write_config(config, tmp_path / ".circleci" / "config.yml")
    cfn.write_template(exercise.lab_template(ssh_cidr="203.0.113.7/32"), tmp_path / "template.yml")
    return tmp_path


def test_check_prints_a_table_and_exits_1_on_errors(tmp_path, capsys):
    ws = workspace(tmp_path, exercise.example_config())
    assert main(["check", str(ws), "--no-aws"]) == 1
    out = capsys.readouterr().out
    assert "error    .circleci/config.yml:" in out
    assert "aws-cli-missing" in out and "delete-races-create" in out
    assert "hint: add `requires: [create_infrastructure]`" in out
    assert "2 errors" in out


def test_check_json_and_exit_0_without_errors(tmp_path, capsys):
    ws = workspace(tmp_path, exercise.lab_config())
    assert main(["check", str(ws), "--no-aws", "--format", "json"]) == 0
    findings = json.loads(capsys.readouterr().out)
    assert all(f["severity"] != "error" for f in findings)
    assert all(set(f) == {"rule", "severity", "file", "line", "message", "hint"} for f in findings)


def test_check_of_a_folder_without_the_lab_files_is_a_clear_error(tmp_path, capsys):
    assert main(["check", str(tmp_path), "--no-aws"]) == 2
    assert "neither template.yml nor .circleci/config.yml" in capsys.readouterr().err


def test_check_of_a_folder_that_does_not_exist_says_so(tmp_path, capsys):
    assert main(["check", str(tmp_path / "typo"), "--no-aws"]) == 2
    assert f"{tmp_path / 'typo'}: no such directory" in capsys.readouterr().err


def test_a_missing_file_is_a_warning_and_the_other_is_still_checked(tmp_path, capsys):
    pc.write_config(exercise.example_config(), tmp_path / ".circleci" / "config.yml")
    assert main(["check", str(tmp_path), "--no-aws", "--format", "json"]) == 1
    rules = {f["rule"]: f for f in json.loads(capsys.readouterr().out)}
    assert rules["missing-file"]["file"] == "template.yml"
    assert "aws-cli-missing" in rules


def test_rubric_of_the_example_fails_the_image_need_only(tmp_path, capsys):
    ws = workspace(tmp_path, exercise.example_config())
    assert main(["check", str(ws), "--rubric", "--no-aws", "--format", "json"]) == 1
    marks = json.loads(capsys.readouterr().out)
    assert [m["status"] for m in marks] == [
        "pass",
        "pass",
        "fail",
        "pass",
        "pass",
        "pass",
        "not checked",
    ]
    assert "alpine:latest" in marks[2]["reason"] and "smoke_test" in marks[2]["reason"]


def test_rubric_table(tmp_path, capsys):
    ws = workspace(tmp_path, exercise.lab_config())
    assert main(["check", str(ws), "--rubric", "--no-aws"]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 6 and "6 of 6 checked passed (1 not checked)" in out


def test_notebook_tables(tmp_path):
    from helpers.checks import check, rubric

    ws = workspace(tmp_path, exercise.example_config())
    frame = check(ws, check_aws=False).to_frame()
    assert list(frame.columns) == ["rule", "severity", "file", "line", "message", "hint"]
    assert list(frame[frame.severity == "error"].rule) == ["aws-cli-missing", "delete-races-create"]
    marks = rubric(ws, check_aws=False).to_frame()
    assert list(marks.columns) == ["need", "status", "reason"]
    assert marks.loc[3, "status"] == "fail"


def test_rubric_of_a_folder_that_does_not_exist_says_so_like_check(tmp_path, capsys):
    missing = tmp_path / "typo"
    assert main(["check", str(missing), "--rubric", "--no-aws"]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: no such directory" in err
    assert "config file not found" not in err
