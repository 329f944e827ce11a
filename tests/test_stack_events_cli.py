"""`rollback-lab events`: saved describe-stack-events output in, table and files out."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from stack_events_samples import created, deleted, native_rollback

from helpers.cli import main


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "events.json"
    path.write_text(json.dumps(native_rollback().cli_json(), indent=4))
    return path


def test_input_file_to_table_png_csv_and_html(tmp_path, saved, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "events",
            "--input",
            str(saved),
            "--png",
            str(out / "c.png"),
            "--csv",
            str(out / "e.csv"),
            "--html",
            str(out / "p.html"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    lines = printed.splitlines()
    assert lines[0].split() == ["logical_id", "phase", "start_s", "duration_s", "outcome", "reason"]
    assert any(
        line.split()[:3] == ["Ec2Instance", "create", "8.5"] and "failed" in line for line in lines
    )
    assert "The key pair 'udacity' does not exist" in printed
    assert (out / "c.png").read_bytes()[:4] == b"\x89PNG"
    events = pd.read_csv(out / "e.csv")
    assert len(events) == 12
    assert events["timestamp"].iloc[0] == "2024-05-06T12:00:00.123000Z"
    page = (out / "p.html").read_text()
    assert page.count("<svg") == 1
    assert "ROLLBACK_COMPLETE" in page and "Rollback requested by user." in page


def test_create_then_delete_summary(tmp_path, capsys):
    path = tmp_path / "e.json"
    path.write_text(json.dumps(deleted(created()).cli_json()))
    assert main(["events", "--input", str(path)]) == 0
    rows = [line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows[:4] == [
        ["myStack-abc1234", "review"],
        ["myStack-abc1234", "create"],
        ["myStack-abc1234", "alive"],
        ["myStack-abc1234", "delete"],
    ]


def test_bad_input_exits_2_naming_the_file(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text('{"StackEvents": [}')
    assert main(["events", "--input", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rollback-lab events: ")
    assert "broken.json:1: not JSON" in err


def test_stack_or_input_is_required(capsys):
    assert main(["events"]) == 2
    assert "give a stack name or --input FILE" in capsys.readouterr().err


def test_without_local_services_or_endpoint_it_says_how_to_start_them(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("LAB_BACKEND", raising=False)
    state = tmp_path / "no-services"
    assert main(["events", "myStack", "--state-dir", str(state)]) == 2
    err = capsys.readouterr().err
    assert "rollback-lab up" in err and "not running" in err
