"""Against real servers on 127.0.0.1: moto's own server, and the kit's local AWS (moto with
per-resource events, rollback and paging), with the real ``aws`` CLI and ``rollback-lab``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import support

from helpers.cli import main
from helpers.stack_events import phases, stack_events, tail

AWS = Path(sys.executable).with_name("aws")
REGION = "us-east-1"
GROUP = {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "lab"}}
# What `rollback-lab up` tells a shell to export.
LOCAL_AWS_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EC2_METADATA_DISABLED",
)


def client_for(endpoint: str):
    return support.aws_client("cloudformation", endpoint, REGION)


def counting_calls(client) -> list[dict]:
    """Record each DescribeStackEvents request's parameters (to see the pages followed)."""
    calls: list[dict] = []
    client.meta.events.register(
        "provide-client-params.cloudformation.DescribeStackEvents",
        lambda params, **_: calls.append(dict(params)),
    )
    return calls


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:7]}"


def template(groups: int) -> str:
    return json.dumps({"Resources": {f"Group{i:02d}": GROUP for i in range(groups)}})


def test_moto_server_deleted_stack_by_name_and_every_deployment(moto_server):
    client = client_for(moto_server)
    calls = counting_calls(client)
    name = unique("myStack")
    for _ in range(2):  # the same stack name deployed (and rolled back) twice
        client.create_stack(StackName=name, TemplateBody=template(1))
        client.delete_stack(StackName=name)

    events = stack_events(name, client=client)
    assert events["stack_name"].unique().tolist() == [name]
    assert events["stack_id"].nunique() == 1
    assert events["status"].astype(str).tolist()[-2:] == ["DELETE_IN_PROGRESS", "DELETE_COMPLETE"]
    stacks = client.list_stacks()["StackSummaries"]
    newest = max((s for s in stacks if s["StackName"] == name), key=lambda s: s["CreationTime"])
    assert events["stack_id"].iloc[0] == newest["StackId"]
    # by name (refused: deleted), then by the ARN found through list_stacks, every page
    assert calls[0] == {"StackName": name}
    assert all(call["StackName"] == newest["StackId"] for call in calls[1:])
    assert phases(events)["phase"].astype(str).tolist() == ["create", "alive", "delete"]

    both = stack_events(name, client=client, deployments="all")
    assert sorted(both["deployment"].unique()) == [1, 2]
    assert both["stack_id"].nunique() == 2


@pytest.fixture(scope="module")
def local_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack-events-state")


@pytest.fixture(scope="module")
def local_aws(local_state_dir: Path) -> Iterator[str]:
    from helpers.services.state import pid_alive

    state_dir = local_state_dir
    # ensure_services also sets AWS_ENDPOINT_URL & co. here, while the module's tests run
    with support.local_services(state_dir, cfn_step_seconds="0.002") as endpoints:
        yield endpoints.aws_endpoint_url
    assert not pid_alive(endpoints.pid)


def test_local_aws_pages_of_a_deleted_stack_by_name(local_aws):
    client = client_for(local_aws)
    calls = counting_calls(client)
    name = unique("paged")
    client.create_stack(StackName=name, TemplateBody=template(40))
    client.delete_stack(StackName=name)

    events = stack_events(name, client=client)
    expected = 1 + 40 * 3 + 1 + 1 + 40 * 2 + 1  # create, 3 per group, delete, 2 per group
    assert len(events) == expected
    assert events["event_id"].is_unique
    assert events["timestamp"].is_monotonic_increasing
    assert len([c for c in calls if "NextToken" in c]) == 2  # 203 events: three pages
    table = phases(events)
    groups = table[~table["is_stack"]]
    assert groups["logical_id"].nunique() == 40
    assert set(groups["phase"].astype(str)) == {"create", "alive", "delete"}
    assert (groups["outcome"] != "failed").all()


def test_local_aws_native_rollback_through_the_cli(local_aws, tmp_path, capsys):
    """A missing key pair: CloudFormation rolls back; `rollback-lab events` charts it, from the
    API and from the aws CLI's saved output alike."""
    client = client_for(local_aws)
    name = unique("native")
    body = {
        "Resources": {
            "InstanceSecurityGroup": GROUP,
            "Ec2Instance": {
                "Type": "AWS::EC2::Instance",
                "Properties": {
                    "ImageId": "ami-03c3da4cfa8e8943a",
                    "KeyName": "no-such-key",
                    "SecurityGroups": [{"Ref": "InstanceSecurityGroup"}],
                },
            },
        }
    }
    try:
        client.create_stack(StackName=name, TemplateBody=json.dumps(body))
    except client.exceptions.ClientError:
        pass
    png, csv, html = tmp_path / "chart.png", tmp_path / "events.csv", tmp_path / "page.html"
    assert main(["events", name, "--png", str(png), "--csv", str(csv), "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "rollback" in out and "The key pair 'no-such-key' does not exist" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    saved = pd.read_csv(csv)
    assert saved["status"].iloc[-1] == "ROLLBACK_COMPLETE"
    assert "<svg" in html.read_text()

    described = subprocess.run(
        [str(AWS), "cloudformation", "describe-stack-events", "--stack-name", name,
         "--output", "json"],
        env=os.environ, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    saved_json = tmp_path / "described.json"
    saved_json.write_text(described.stdout)
    assert main(["events", "--input", str(saved_json), "--svg", str(tmp_path / "c.svg")]) == 0
    from_file = capsys.readouterr().out

    def table(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("wrote ")]

    assert table(from_file) == table(out)
    client.delete_stack(StackName=name)


def test_local_aws_tail_follows_a_stack_through_its_deletion(local_aws):
    client = client_for(local_aws)
    name = unique("tail")
    client.create_stack(StackName=name, TemplateBody=template(2))
    deletes: list[float] = []

    def delete_on_first_sleep(_seconds: float) -> None:
        if not deletes:
            client.delete_stack(StackName=name)  # as the pipeline's on_fail step does
        deletes.append(_seconds)

    seen = list(tail(name, client=client, until={"DELETE_COMPLETE"}, sleep=delete_on_first_sleep))
    statuses = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in seen]
    assert statuses[0] == (name, "CREATE_IN_PROGRESS")
    assert (name, "CREATE_COMPLETE") in statuses
    assert statuses[-1] == (name, "DELETE_COMPLETE")
    assert len({e["EventId"] for e in seen}) == len(seen) == 1 + 2 * 3 + 1 + 1 + 2 * 2 + 1


def test_local_aws_through_the_cli_from_a_shell_that_exported_nothing(
    local_aws, local_state_dir, monkeypatch, capsys
):
    """`rollback-lab up` in one terminal, `rollback-lab events NAME` in another: the command
    finds the running services by their state dir, not through exported AWS_* variables."""
    client = client_for(local_aws)
    name = unique("fresh-shell")
    client.create_stack(StackName=name, TemplateBody=template(1))
    for variable in (*LOCAL_AWS_VARIABLES, "LAB_BACKEND"):
        monkeypatch.setenv(variable, "")  # so that monkeypatch puts back what the run sets
        monkeypatch.delenv(variable)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    assert main(["events", name, "--state-dir", str(local_state_dir)]) == 0
    rows = [line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:]]
    assert [name, "create"] in rows and ["Group00", "alive"] in rows
    client.delete_stack(StackName=name)


def test_no_region_for_the_real_aws_is_one_line_not_a_traceback(monkeypatch, capsys):
    for variable in LOCAL_AWS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("LAB_BACKEND", "real")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    assert main(["events", "myStack-abc1234"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rollback-lab events: myStack-abc1234: ") and "region" in err
    assert "Traceback" not in err
