"""The parts of check, rubric and cleanup that ask AWS, against the kit's local AWS (moto in
its own process, started with `helpers.services.ensure_services` in a temporary state dir)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support import TEST_CREDENTIALS, aws_client, local_services

from helpers import exercise
from helpers import pipeline_config as pc
from helpers import template as cfn
from helpers.checks import check, delete_lab_stacks, list_lab_stacks, rubric
from helpers.checks.aws import AwsTarget, AwsUnreachable, aws_target
from helpers.cli import main
from helpers.errors import InputError
from helpers.services.state import pid_alive

REPO = Path(__file__).resolve().parent.parent
SG_TEMPLATE = """\
Resources:
  Group:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: lab
"""


@pytest.fixture(scope="module")
def local_aws(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("checks-state")
    # ensure_services points this process at the services: keep other tests clean
    with local_services(state_dir, cfn_step_seconds="0.02", export_env=False) as endpoints:
        yield endpoints
    assert not pid_alive(endpoints.pid)


@pytest.fixture
def target(local_aws) -> AwsTarget:
    return AwsTarget(local_aws.aws_endpoint_url, local_aws.region, dict(TEST_CREDENTIALS))


@pytest.fixture
def cloudformation(local_aws):
    return aws_client("cloudformation", local_aws.aws_endpoint_url, local_aws.region)


@pytest.fixture
def prefix() -> str:
    """Each test names its stacks apart, so tests sharing one local AWS do not see each other's."""
    return f"ck{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def no_aws_env(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "LAB_BACKEND", "ROLLBACK_LAB_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def unreachable_aws(monkeypatch):
    """AWS at a port nothing listens on, with credentials, so asking it fails to connect."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_port_url())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def workspace(tmp_path: Path, config: dict, template: dict) -> Path:
    pc.write_config(config, tmp_path / ".circleci" / "config.yml")
    cfn.write_template(template, tmp_path / "template.yml")
    return tmp_path


def wait_for_status(cloudformation, name: str, done: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        if status in done or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def rolled_back_stack(cloudformation, name: str) -> str:
    """The exercise's template (stale AMI, key pair `udacity` absent): CloudFormation rolls it
    back and the stack stays, in ROLLBACK_COMPLETE, until someone deletes it."""
    template = cfn.template_to_yaml(exercise.example_template())
    cloudformation.create_stack(StackName=name, TemplateBody=template)
    return wait_for_status(cloudformation, name, {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED"})


# ---- key pairs ------------------------------------------------------------------------------


def test_key_pair_missing_then_present(tmp_path, target, local_aws):
    key = f"lab-{uuid.uuid4().hex[:8]}"
    ws = workspace(tmp_path, exercise.lab_config(), exercise.lab_template(key_name=key))
    findings = check(ws, target=target)
    (missing,) = [f for f in findings if f.rule == "key-pair-missing"]
    assert missing.severity == "error" and key in missing.message
    assert findings.exit_code() == 1

    ec2 = aws_client("ec2", local_aws.aws_endpoint_url, local_aws.region)
    ec2.create_key_pair(KeyName=key)
    findings = check(ws, target=target)
    assert "key-pair-missing" not in findings.rules()
    assert findings.exit_code() == 0


def test_key_pair_not_checked_when_no_aws_answers(tmp_path, unreachable_aws):
    ws = workspace(tmp_path, exercise.lab_config(), exercise.lab_template())
    findings = check(ws)
    (note,) = [f for f in findings if f.rule == "key-pair-not-checked"]
    assert note.severity == "info" and "cannot connect" in note.message
    assert findings.exit_code() == 0


def test_local_services_not_running_is_reported_not_raised(tmp_path, no_aws_env, monkeypatch):
    with pytest.raises(AwsUnreachable, match="rollback-lab up"):
        aws_target(tmp_path / "no-services-here")
    monkeypatch.setenv("ROLLBACK_LAB_STATE_DIR", str(tmp_path / "no-services-here"))
    ws = workspace(tmp_path, exercise.lab_config(), exercise.lab_template())
    findings = check(ws)
    (note,) = [f for f in findings if f.rule == "key-pair-not-checked"]
    assert "rollback-lab up" in note.message


def test_cli_check_finds_the_local_aws_through_its_state_dir(tmp_path, local_aws, no_aws_env):
    key = f"lab-{uuid.uuid4().hex[:8]}"
    ws = workspace(tmp_path, exercise.lab_config(), exercise.lab_template(key_name=key))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers.cli",
            "check",
            str(ws),
            "--format",
            "json",
            "--state-dir",
            str(local_aws.state_dir),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)
    assert [f["rule"] for f in findings if f["severity"] == "error"] == ["key-pair-missing"]


# ---- cleanup --------------------------------------------------------------------------------


def test_cleanup_lists_every_lab_stack_and_touches_no_other(cloudformation, target, prefix):
    cloudformation.create_stack(StackName=f"{prefix}ok", TemplateBody=SG_TEMPLATE)
    assert rolled_back_stack(cloudformation, f"{prefix}bad") == "ROLLBACK_COMPLETE"
    outside = [f"x{prefix}keep", f"{prefix[:-1]}keep"]
    for name in outside:
        cloudformation.create_stack(StackName=name, TemplateBody=SG_TEMPLATE)
    cloudformation.create_stack(StackName=f"{prefix}gone", TemplateBody=SG_TEMPLATE)
    cloudformation.delete_stack(StackName=f"{prefix}gone")

    stacks = list_lab_stacks(prefix, target)
    assert {(s.name, s.status) for s in stacks} == {
        (f"{prefix}ok", "CREATE_COMPLETE"),
        (f"{prefix}bad", "ROLLBACK_COMPLETE"),
    }

    results = delete_lab_stacks(stacks, prefix, target, delay=1)
    assert {s.status for s in results} == {"DELETE_COMPLETE"}
    assert list_lab_stacks(prefix, target) == []
    for name in outside:
        status = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        assert status == "CREATE_COMPLETE"
        cloudformation.delete_stack(StackName=name)


def test_delete_refuses_stacks_outside_the_prefix_and_an_empty_prefix(target, prefix):
    from helpers.checks.cleanup import LabStack

    stranger = LabStack("production-db", "arn:aws:cloudformation:::stack/production-db/1", "X")
    with pytest.raises(InputError, match="outside the prefix"):
        delete_lab_stacks([stranger], prefix, target)
    with pytest.raises(InputError, match="empty prefix"):
        list_lab_stacks("", target)


def test_cli_cleanup_lists_without_yes_and_deletes_with_it(
    cloudformation, local_aws, prefix, no_aws_env, capsys
):
    cloudformation.create_stack(StackName=f"{prefix}one", TemplateBody=SG_TEMPLATE)
    base = ["cleanup", "--prefix", prefix, "--state-dir", str(local_aws.state_dir)]

    assert main(base) == 0
    listed = capsys.readouterr().out
    assert f"{prefix}one" in listed and "CREATE_COMPLETE" in listed and "--yes" in listed
    assert [s["StackName"] for s in _live(cloudformation, prefix)] == [f"{prefix}one"]

    assert main([*base, "--yes", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["status"]) for s in report["stacks"]] == [
        (f"{prefix}one", "DELETE_COMPLETE")
    ]
    assert _live(cloudformation, prefix) == []

    assert main(base) == 0
    assert "No stacks named" in capsys.readouterr().out


def test_cli_cleanup_without_local_services_says_how_to_start_them(tmp_path, no_aws_env, capsys):
    code = main(["cleanup", "--state-dir", str(tmp_path / "none")])
    assert code == 2
    assert "rollback-lab up" in capsys.readouterr().err


def _live(cloudformation, prefix: str) -> list[dict]:
    summaries = cloudformation.list_stacks()["StackSummaries"]
    return [
        s
        for s in summaries
        if s["StackName"].startswith(prefix) and s["StackStatus"] != "DELETE_COMPLETE"
    ]


# ---- rubric ---------------------------------------------------------------------------------


def test_rubric_of_the_corrected_config_passes_all_seven(tmp_path, target, prefix):
    ws = workspace(tmp_path, exercise.lab_config(prefix), exercise.lab_template())
    marks = rubric(ws, target=target)
    assert [item.status for item in marks] == ["pass"] * 7, marks.to_table()
    assert marks.exit_code() == 0


def test_rubric_no_stacks_left_fails_while_one_is_left(tmp_path, target, prefix, cloudformation):
    ws = workspace(tmp_path, exercise.lab_config(prefix), exercise.lab_template())
    assert rolled_back_stack(cloudformation, f"{prefix}abc1234") == "ROLLBACK_COMPLETE"
    last = rubric(ws, target=target)[-1]
    assert last.need == "No stacks left" and last.status == "fail"
    assert f"{prefix}abc1234 (ROLLBACK_COMPLETE)" in last.reason
    cloudformation.delete_stack(StackName=f"{prefix}abc1234")


def test_rubric_no_stacks_left_is_not_checked_without_aws(tmp_path, unreachable_aws):
    ws = workspace(tmp_path, exercise.lab_config(), exercise.lab_template())
    marks = rubric(ws)
    assert marks[-1].status == "not checked" and "cannot connect" in marks[-1].reason
    assert marks.exit_code() == 0


def test_real_backend_without_credentials_is_not_checked(tmp_path, monkeypatch, no_aws_env):
    monkeypatch.setenv("LAB_BACKEND", "real")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert aws_target().endpoint_url is None  # the real AWS
    ws = workspace(tmp_path, exercise.lab_config(), exercise.lab_template())
    (note,) = [f for f in check(ws) if f.rule == "key-pair-not-checked"]
    assert "no AWS credentials" in note.message
