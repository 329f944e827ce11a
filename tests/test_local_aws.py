"""The local AWS behaves like CloudFormation where the lab looks: a real moto server started by
the kit's daemon, driven by real ``aws`` CLI processes through AWS_ENDPOINT_URL only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from helpers import exercise
from helpers.services import Endpoints, ensure_services, stop_services
from helpers.services.state import pid_alive

AWS = Path(sys.executable).with_name("aws")
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
EXERCISE_AMI = "ami-068663a3c619dd892"


def exercise_template(key_name: str, image_id: str | None = None) -> str:
    """The exercise's template; the AMI from SSM's public parameter unless one is given."""
    image = f"'{image_id}'" if image_id else "!Ref LatestAmiId"
    return f"""\
Parameters:
  LatestAmiId:
    Type: 'AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>'
    Default: '{AMI_PARAMETER}'
Resources:
  Ec2Instance:
    Type: 'AWS::EC2::Instance'
    Properties:
      SecurityGroups:
        - !Ref InstanceSecurityGroup
      KeyName: {key_name}
      ImageId: {image}
  InstanceSecurityGroup:
    Type: 'AWS::EC2::SecurityGroup'
    Properties:
      GroupDescription: Enable SSH access via port 22
      SecurityGroupIngress:
        - IpProtocol: tcp
          FromPort: '22'
          ToPort: '22'
          CidrIp: 0.0.0.0/0
"""


@pytest.fixture(scope="module")
def local_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    saved = dict(os.environ)
    os.environ["ROLLBACK_LAB_CFN_STEP_SECONDS"] = "0.02"  # inherited by the daemon
    state_dir = tmp_path_factory.mktemp("local-aws-state")
    endpoints = ensure_services(state_dir)
    try:
        yield endpoints
    finally:
        stop_services(state_dir)
        os.environ.clear()
        os.environ.update(saved)
        assert not pid_alive(endpoints.pid)


class Aws:
    """Runs the real aws CLI against the local AWS, with nothing but its environment."""

    def __init__(self, endpoints: Endpoints, workdir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(endpoints.aws_env())
        self.workdir = workdir
        # Checks that need no CLI behaviour go through boto3: an aws process costs ~1 s here.
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=endpoints.region,
        )
        # No retries: a server error must show at once, not after boto3's back-off.
        config = Config(retries={"max_attempts": 1, "mode": "standard"})
        url = endpoints.aws_endpoint_url
        self.cfn = session.client("cloudformation", endpoint_url=url, config=config)
        self.ec2 = session.client("ec2", endpoint_url=url, config=config)
        self.ssm = session.client("ssm", endpoint_url=url, config=config)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(AWS), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed: {result.stderr}")
        return result

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "--output", "json").stdout)

    def deploy(self, template: str, stack: str) -> subprocess.CompletedProcess[str]:
        path = self.workdir / f"{stack}.yml"
        path.write_text(template)
        return self.run(
            "cloudformation", "deploy", "--template-file", path.name,
            "--stack-name", stack, "--region", "us-east-1", check=False,
        )  # fmt: skip

    def create_stack(self, template: str, stack: str) -> subprocess.CompletedProcess[str]:
        path = self.workdir / f"{stack}.yml"
        path.write_text(template)
        return self.run(
            "cloudformation", "create-stack", "--template-body", f"file://{path.name}",
            "--stack-name", stack, check=False,
        )  # fmt: skip

    def events(self, stack: str) -> list[dict]:
        """Oldest first (the API gives newest first, in pages)."""
        pages = self.cfn.get_paginator("describe_stack_events").paginate(StackName=stack)
        return [e for page in pages for e in page["StackEvents"]][::-1]

    def cli_events(self, stack: str) -> list[dict]:
        """The same through the aws CLI (which follows NextToken itself)."""
        found = self.json("cloudformation", "describe-stack-events", "--stack-name", stack)
        return found["StackEvents"][::-1]


@pytest.fixture
def aws(local_aws: Endpoints, tmp_path: Path) -> Aws:
    return Aws(local_aws, tmp_path)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:7]}"


def sequence(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["LogicalResourceId"], e["ResourceStatus"]) for e in events]


def test_create_then_delete_gives_per_resource_events_in_dependency_order(aws: Aws) -> None:
    key, stack = unique("key"), unique("myStack")
    aws.ec2.create_key_pair(KeyName=key)

    deployed = aws.deploy(exercise_template(key), stack)
    assert deployed.returncode == 0, deployed.stderr
    assert f"Successfully created/updated stack - {stack}" in deployed.stdout
    stack_id = aws.cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackId"]
    unchanged = aws.deploy(exercise_template(key), stack)  # as on AWS: an empty change set
    assert unchanged.returncode == 255
    assert f"No changes to deploy. Stack {stack} is up to date" in unchanged.stderr
    aws.run("cloudformation", "delete-stack", "--stack-name", stack)
    aws.run("cloudformation", "wait", "stack-delete-complete", "--stack-name", stack)

    events = aws.cli_events(stack_id)  # a deleted stack's events: by ARN, as on AWS
    assert sequence(events) == [
        (stack, "REVIEW_IN_PROGRESS"),
        (stack, "CREATE_IN_PROGRESS"),
        ("InstanceSecurityGroup", "CREATE_IN_PROGRESS"),
        ("InstanceSecurityGroup", "CREATE_IN_PROGRESS"),
        ("InstanceSecurityGroup", "CREATE_COMPLETE"),
        ("Ec2Instance", "CREATE_IN_PROGRESS"),
        ("Ec2Instance", "CREATE_IN_PROGRESS"),
        ("Ec2Instance", "CREATE_COMPLETE"),
        (stack, "CREATE_COMPLETE"),
        (stack, "DELETE_IN_PROGRESS"),
        ("Ec2Instance", "DELETE_IN_PROGRESS"),
        ("Ec2Instance", "DELETE_COMPLETE"),
        ("InstanceSecurityGroup", "DELETE_IN_PROGRESS"),
        ("InstanceSecurityGroup", "DELETE_COMPLETE"),
        (stack, "DELETE_COMPLETE"),
    ]
    by_id = {e["LogicalResourceId"]: e for e in events if e["ResourceStatus"] == "CREATE_COMPLETE"}
    assert by_id["InstanceSecurityGroup"]["ResourceType"] == "AWS::EC2::SecurityGroup"
    assert by_id["InstanceSecurityGroup"]["PhysicalResourceId"].startswith("sg-")
    assert by_id["Ec2Instance"]["ResourceType"] == "AWS::EC2::Instance"
    assert by_id["Ec2Instance"]["PhysicalResourceId"].startswith("i-")
    assert by_id[stack]["PhysicalResourceId"] == stack_id
    assert events[1]["ResourceStatusReason"] == "User Initiated"
    assert events[3]["ResourceStatusReason"] == "Resource creation Initiated"
    assert events[9]["ResourceStatusReason"] == "User Initiated"
    times = [datetime.fromisoformat(e["Timestamp"]) for e in events]
    assert all(a < b for a, b in zip(times, times[1:], strict=False)), times

    with pytest.raises(aws.cfn.exceptions.ClientError, match="does not exist"):
        aws.cfn.describe_stack_events(StackName=stack)  # by name: gone, as on AWS
    deleted = aws.cfn.list_stacks(StackStatusFilter=["DELETE_COMPLETE"])["StackSummaries"]
    (summary,) = [s for s in deleted if s["StackId"] == stack_id]
    assert summary["StackStatus"] == "DELETE_COMPLETE"
    assert summary["DeletionTime"] == times[-1]
    instances = aws.ec2.describe_instances(Filters=[{"Name": "key-name", "Values": [key]}])
    states = [i["State"]["Name"] for r in instances["Reservations"] for i in r["Instances"]]
    assert states == ["terminated"]


def test_missing_key_pair_fails_the_instance_and_rolls_back(aws: Aws) -> None:
    stack = unique("myStack")
    deployed = aws.deploy(exercise_template("udacity-missing"), stack)

    assert deployed.returncode == 255
    assert "Failed to create/update the stack" in deployed.stderr
    events = aws.events(stack)
    assert sequence(events)[1:] == [
        (stack, "CREATE_IN_PROGRESS"),
        ("InstanceSecurityGroup", "CREATE_IN_PROGRESS"),
        ("InstanceSecurityGroup", "CREATE_IN_PROGRESS"),
        ("InstanceSecurityGroup", "CREATE_COMPLETE"),
        ("Ec2Instance", "CREATE_IN_PROGRESS"),
        ("Ec2Instance", "CREATE_FAILED"),
        (stack, "ROLLBACK_IN_PROGRESS"),
        ("Ec2Instance", "DELETE_COMPLETE"),
        ("InstanceSecurityGroup", "DELETE_IN_PROGRESS"),
        ("InstanceSecurityGroup", "DELETE_COMPLETE"),
        (stack, "ROLLBACK_COMPLETE"),
    ]
    failed = events[6]["ResourceStatusReason"]
    assert failed.startswith("The key pair 'udacity-missing' does not exist (Service: AmazonEC2;")
    assert "Error Code: InvalidKeyPair.NotFound" in failed
    assert events[7]["ResourceStatusReason"] == (
        "The following resource(s) failed to create: [Ec2Instance]. Rollback requested by user."
    )
    group_id = events[4]["PhysicalResourceId"]
    groups = aws.ec2.describe_security_groups()["SecurityGroups"]
    assert group_id.startswith("sg-") and group_id not in {g["GroupId"] for g in groups}
    status = aws.cfn.describe_stacks(StackName=stack)["Stacks"][0]
    assert status["StackStatus"] == "ROLLBACK_COMPLETE"


def test_redeploy_to_rolled_back_stack_is_refused_until_deleted(aws: Aws) -> None:
    key, stack = unique("key"), unique("myStack")
    assert aws.deploy(exercise_template(key), stack).returncode == 255  # no key pair yet
    aws.ec2.create_key_pair(KeyName=key)

    again = aws.deploy(exercise_template(key), stack)
    assert again.returncode == 255
    assert "ValidationError" in again.stderr
    assert "is in ROLLBACK_COMPLETE state and can not be updated." in again.stderr
    live = aws.cfn.describe_stacks()["Stacks"]
    assert [s["StackStatus"] for s in live if s["StackName"] == stack] == ["ROLLBACK_COMPLETE"]

    aws.run("cloudformation", "delete-stack", "--stack-name", stack)
    fixed = aws.deploy(exercise_template(key), stack)
    assert fixed.returncode == 0, fixed.stderr
    live = aws.cfn.describe_stacks()["Stacks"]
    assert [s["StackStatus"] for s in live if s["StackName"] == stack] == ["CREATE_COMPLETE"]
    aws.cfn.delete_stack(StackName=stack)


def test_exercise_ami_is_unknown_and_the_reason_says_where_to_get_one(aws: Aws) -> None:
    key, stack = unique("key"), unique("myStack")
    aws.ec2.create_key_pair(KeyName=key)
    with pytest.raises(aws.ec2.exceptions.ClientError, match="InvalidAMIID.NotFound"):
        aws.ec2.describe_images(ImageIds=[EXERCISE_AMI])

    assert aws.deploy(exercise_template(key, EXERCISE_AMI), stack).returncode == 255
    (failed,) = [e for e in aws.events(stack) if e["ResourceStatus"] == "CREATE_FAILED"]
    reason = failed["ResourceStatusReason"]
    assert reason.startswith(f"The image id '[{EXERCISE_AMI}]' does not exist")
    assert "Error Code: InvalidAMIID.NotFound" in reason
    assert AMI_PARAMETER in reason
    assert aws.events(stack)[-1]["ResourceStatus"] == "ROLLBACK_COMPLETE"


def test_describe_stack_events_pages_newest_first(aws: Aws) -> None:
    stack = unique("paged")
    groups = {
        f"Group{i:02d}": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {"GroupDescription": "g"},
        }
        for i in range(40)
    }
    assert aws.deploy(json.dumps({"Resources": groups}), stack).returncode == 0
    client = aws.cfn
    first = client.describe_stack_events(StackName=stack)
    second = client.describe_stack_events(StackName=stack, NextToken=first["NextToken"])
    expected_total = 2 + 40 * 3 + 1  # review, create in progress, 3 per group, create complete

    assert len(first["StackEvents"]) == 100
    assert len(second["StackEvents"]) == expected_total - 100 and "NextToken" not in second
    paged = first["StackEvents"] + second["StackEvents"]
    assert len({e["EventId"] for e in paged}) == expected_total
    times = [e["Timestamp"] for e in paged]
    assert times == sorted(times, reverse=True)
    assert (
        paged[0]["ResourceStatus"] == "CREATE_COMPLETE" and paged[0]["LogicalResourceId"] == stack
    )
    assert paged[-1]["ResourceStatus"] == "REVIEW_IN_PROGRESS"
    # The CLI follows NextToken by itself and so sees every event.
    assert [e["EventId"] for e in aws.cli_events(stack)] == [e["EventId"] for e in paged[::-1]]
    with pytest.raises(client.exceptions.ClientError, match="Invalid NextToken"):
        client.describe_stack_events(StackName=stack, NextToken="not-a-token")
    client.delete_stack(StackName=stack)


def test_update_reports_added_and_removed_resources(aws: Aws) -> None:
    stack = unique("updated")
    group = {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "g"}}
    assert aws.deploy(json.dumps({"Resources": {"Old": group}}), stack).returncode == 0
    old_id = aws.events(stack)[-2]["PhysicalResourceId"]

    updated = aws.deploy(json.dumps({"Resources": {"New": group}}), stack)
    assert updated.returncode == 0, updated.stderr
    events = aws.events(stack)
    tail = sequence(events[6:])
    assert tail == [
        (stack, "UPDATE_IN_PROGRESS"),
        ("New", "CREATE_IN_PROGRESS"),
        ("New", "CREATE_IN_PROGRESS"),  # "Resource creation Initiated", as in a create
        ("New", "CREATE_COMPLETE"),
        (stack, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
        ("Old", "DELETE_IN_PROGRESS"),
        ("Old", "DELETE_COMPLETE"),
        (stack, "UPDATE_COMPLETE"),
    ]
    assert events[-2]["PhysicalResourceId"] == old_id
    assert old_id not in {
        g["GroupId"] for g in aws.ec2.describe_security_groups()["SecurityGroups"]
    }
    aws.cfn.delete_stack(StackName=stack)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Description: nothing here\n", "At least one Resources member must be defined."),
        (
            "Resources:\n  X:\n    Type: AWS::EC2::Instanc\n",
            "Unrecognized resource types: [AWS::EC2::Instanc]",
        ),
        (
            "Resources:\n  X:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n"
            "      GroupDescription: !Ref Missing\n",
            "Unresolved resource dependencies [Missing] in the Resources block of the template",
        ),
    ],
)
def test_invalid_template_is_a_validation_error_and_creates_nothing(
    aws: Aws, template: str, message: str
) -> None:
    stack = unique("invalid")
    result = aws.deploy(template, stack)

    assert result.returncode == 255
    assert "An error occurred (ValidationError) when calling the CreateChangeSet operation" in (
        result.stderr
    )
    assert f"Template format error: {message}" in result.stderr
    listed = aws.cfn.list_stacks()["StackSummaries"]
    assert stack not in {s["StackName"] for s in listed}


def test_malformed_yaml_names_the_line(aws: Aws) -> None:
    (aws.workdir / "bad.yml").write_text("Resources:\n  X:\n    Type: [unclosed\n")
    result = aws.run(
        "cloudformation", "create-stack", "--stack-name", unique("bad"),
        "--template-body", "file://bad.yml", check=False,
    )  # fmt: skip
    assert result.returncode == 255
    assert "Template format error: YAML not well-formed. (line 4, column 1)" in result.stderr


# --- the lab's template failing: SSM AMI parameter, Name tag with !Sub, outputs with !GetAtt ---

BAD_AMI_PARAMETER = "/rollback-lab/test/exercise-ami"  # an SSM parameter naming an unknown AMI


def lab_template_yaml(**options: str) -> str:
    from helpers.template import template_to_yaml

    return template_to_yaml(exercise.lab_template(**options))


def read_everything(aws: Aws, stack: str) -> dict:
    """Every read a notebook or the CLI makes about a stack; any HTTP 500 raises here."""
    return {
        "stack": aws.cfn.describe_stacks(StackName=stack)["Stacks"][0],
        "events": aws.events(stack),
        "resources": aws.cfn.describe_stack_resources(StackName=stack)["StackResources"],
        "summaries": aws.cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"],
        "listed": aws.cfn.list_stacks()["StackSummaries"],
    }


def live_instances(aws: Aws, stack: str) -> list[str]:
    found = aws.ec2.describe_instances(
        Filters=[
            {"Name": "tag:Name", "Values": [f"{stack}-instance"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]


def lab_template_literal_yaml(key_name: str, *, image_id: str = "", ssh_cidr: str = "") -> str:
    """The lab's template, but with the key pair (and the AMI, if given) written straight into
    the instance as the exercise writes them: AWS only finds out when it creates the instance."""
    from helpers.template import template_to_yaml

    body = exercise.lab_template(**({"ssh_cidr": ssh_cidr} if ssh_cidr else {}))
    properties = body["Resources"]["Ec2Instance"]["Properties"]
    properties["KeyName"] = key_name
    del body["Parameters"]["KeyName"]
    if image_id:
        properties["ImageId"] = image_id
        del body["Parameters"]["ImageId"]
    return template_to_yaml(body)


@pytest.mark.parametrize("command", ["deploy", "create-stack"])
@pytest.mark.parametrize(
    ("case", "failed", "reason_start", "error_code"),
    [
        ("missing key pair", "Ec2Instance", "The key pair '{key}' does not exist",
         "InvalidKeyPair.NotFound"),
        ("unknown AMI", "Ec2Instance", f"The image id '[{EXERCISE_AMI}]' does not exist",
         "InvalidAMIID.NotFound"),
        ("bad CIDR in the group", "InstanceSecurityGroup", "invalid CIDR subnet specification",
         "InvalidParameterValue"),
    ],
)  # fmt: skip
def test_lab_template_failures_roll_back_and_reads_never_fail(
    aws: Aws, command: str, case: str, failed: str, reason_start: str, error_code: str
) -> None:
    """The reported bug: with the lab's template (outputs !Ref/!GetAtt the instance) a failed
    create left DescribeStacks answering HTTP 500 for good — reading the outputs re-ran
    RunInstances. Each failure must roll back and every read must answer. (The values are
    written into the resources: as typed parameters AWS would refuse them before creating
    anything — see the parameter-validation tests below.)"""
    key, stack = unique("key"), unique("lab")
    if case != "missing key pair":
        aws.ec2.create_key_pair(KeyName=key)
    template = lab_template_literal_yaml(
        key,
        image_id=EXERCISE_AMI if case == "unknown AMI" else "",
        ssh_cidr="999.1.1.1/99" if case == "bad CIDR in the group" else "",
    )
    groups_before = {g["GroupId"] for g in aws.ec2.describe_security_groups()["SecurityGroups"]}

    if command == "deploy":
        result = aws.deploy(template, stack)
        assert result.returncode == 255, result.stderr
        assert "Failed to create/update the stack" in result.stderr
    else:
        result = aws.create_stack(template, stack)
        assert result.returncode == 0, result.stderr
    assert "Internal Server Error" not in result.stderr

    for _ in range(2):  # the same answers every time: nothing is (re)created by reading
        seen = read_everything(aws, stack)
        assert seen["stack"]["StackStatus"] == "ROLLBACK_COMPLETE"
        assert "Outputs" not in seen["stack"]  # as on AWS: a rolled-back stack has none
        assert seen["resources"] == [] and seen["summaries"] == []
    events = seen["events"]
    created_first = failed == "Ec2Instance"
    expected = [(stack, "CREATE_IN_PROGRESS")]
    if created_first:
        expected += [("InstanceSecurityGroup", "CREATE_IN_PROGRESS")] * 2
        expected += [("InstanceSecurityGroup", "CREATE_COMPLETE")]
    expected += [(failed, "CREATE_IN_PROGRESS"), (failed, "CREATE_FAILED")]
    expected += [(stack, "ROLLBACK_IN_PROGRESS"), (failed, "DELETE_COMPLETE")]
    if created_first:
        expected += [
            ("InstanceSecurityGroup", "DELETE_IN_PROGRESS"),
            ("InstanceSecurityGroup", "DELETE_COMPLETE"),
        ]
    expected += [(stack, "ROLLBACK_COMPLETE")]
    if command == "deploy":  # a change set first makes the stack, in review
        expected.insert(0, (stack, "REVIEW_IN_PROGRESS"))
    assert sequence(events) == expected
    (failure,) = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failure["ResourceStatusReason"].startswith(reason_start.format(key=key)), failure
    assert f"Error Code: {error_code}" in failure["ResourceStatusReason"]
    assert live_instances(aws, stack) == []
    groups_after = {g["GroupId"] for g in aws.ec2.describe_security_groups()["SecurityGroups"]}
    assert groups_after <= groups_before, "a security group of the failed stack was left"

    aws.cfn.delete_stack(StackName=stack)
    assert stack not in {s["StackName"] for s in aws.cfn.describe_stacks()["Stacks"]}


# --- parameters of AWS-specific types: validated before any resource, as a stack rollback ---


def validation_reason(*problems: tuple[str, str], create: bool = True) -> str:
    listed = ", ".join(
        f"parameter value {value} for parameter name {name} does not exist"
        for name, value in problems
    )
    suffix = ". Rollback requested by user." if create else ""
    return f"Parameter validation failed: {listed}{suffix}"


@pytest.mark.parametrize("command", ["deploy", "create-stack"])
@pytest.mark.parametrize("case", ["missing key pair", "SSM parameter naming an unknown AMI"])
def test_lab_template_parameter_naming_nothing_rolls_back_before_any_resource(
    aws: Aws, command: str, case: str
) -> None:
    """AWS checks an AWS::EC2::KeyPair::KeyName (or SSM-resolved AWS::EC2::Image::Id) parameter
    against the account after the API call succeeded: the stack goes CREATE_IN_PROGRESS →
    ROLLBACK_IN_PROGRESS "Parameter validation failed: …" → ROLLBACK_COMPLETE, and no resource
    is touched. `deploy` gets its change set, executes it, and then reports the failed stack."""
    key, stack = unique("key"), unique("lab")
    options = {"key_name": key}
    if case == "missing key pair":
        problem = ("KeyName", key)
    else:
        aws.ec2.create_key_pair(KeyName=key)
        aws.ssm.put_parameter(
            Name=BAD_AMI_PARAMETER, Value=EXERCISE_AMI, Type="String", Overwrite=True
        )
        options["ami_parameter"] = BAD_AMI_PARAMETER
        problem = ("ImageId", EXERCISE_AMI)  # AWS names the resolved value, not the SSM name
    groups_before = {g["GroupId"] for g in aws.ec2.describe_security_groups()["SecurityGroups"]}

    if command == "deploy":
        result = aws.deploy(lab_template_yaml(**options), stack)
        assert result.returncode == 255, result.stderr
        assert "Waiting for changeset to be created.." in result.stdout
        assert "Waiting for stack create/update to complete" in result.stdout
        assert "Failed to create/update the stack" in result.stderr
        assert "ValidationError" not in result.stderr  # not refused by an API call
    else:
        result = aws.create_stack(lab_template_yaml(**options), stack)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["StackId"].startswith("arn:aws:cloudformation:")
        waited = aws.run(
            "cloudformation", "wait", "stack-create-complete", "--stack-name", stack, check=False
        )
        assert waited.returncode == 255
        assert "Waiter StackCreateComplete failed" in waited.stderr

    seen = read_everything(aws, stack)
    expected = [(stack, "CREATE_IN_PROGRESS"), (stack, "ROLLBACK_IN_PROGRESS")]
    expected += [(stack, "ROLLBACK_COMPLETE")]
    if command == "deploy":
        expected.insert(0, (stack, "REVIEW_IN_PROGRESS"))
    assert sequence(seen["events"]) == expected
    assert {e["ResourceType"] for e in seen["events"]} == {"AWS::CloudFormation::Stack"}
    created, rolling, done = seen["events"][-3:]
    assert created["ResourceStatusReason"] == "User Initiated"
    assert rolling["ResourceStatusReason"] == validation_reason(problem)
    assert "ResourceStatusReason" not in done
    assert seen["stack"]["StackStatus"] == "ROLLBACK_COMPLETE" and "Outputs" not in seen["stack"]
    assert seen["resources"] == [] and seen["summaries"] == []
    assert live_instances(aws, stack) == []
    groups_after = {g["GroupId"] for g in aws.ec2.describe_security_groups()["SecurityGroups"]}
    assert groups_after == groups_before  # the security group was never created

    aws.cfn.delete_stack(StackName=stack)
    assert stack not in {s["StackName"] for s in aws.cfn.describe_stacks()["Stacks"]}


def test_every_aws_typed_parameter_is_checked_and_all_failures_are_named(aws: Aws) -> None:
    """Several wrong values: one reason naming each, in the template's order; a list names its
    first missing element; plain String parameters are never looked up."""
    key, stack = unique("key"), unique("typed")
    aws.ec2.create_key_pair(KeyName=key)
    group = aws.ec2.create_security_group(GroupName=unique("g"), Description="g")["GroupId"]
    ami = aws.ssm.get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
    parameters = {
        "Key": ("AWS::EC2::KeyPair::KeyName", key),
        "Free": ("String", "anything-at-all"),
        "Groups": ("List<AWS::EC2::SecurityGroup::Id>", f"{group}, sg-0123456789abcdef0"),
        "Image": ("AWS::EC2::Image::Id", "ami-0123456789abcdef0"),
        "GoodImage": ("AWS::EC2::Image::Id", ami),
        "Zone": ("AWS::EC2::AvailabilityZone::Name", "us-east-1a"),
        "BadZone": ("AWS::EC2::AvailabilityZone::Name", "us-east-1z"),
        "Vpc": ("AWS::EC2::VPC::Id", "vpc-0123456789abcdef0"),
        "SsmName": ("AWS::SSM::Parameter::Name", "/rollback-lab/test/no-such-parameter"),
        "GoodSsmName": ("AWS::SSM::Parameter::Name", AMI_PARAMETER),
        "EmptyKey": ("AWS::EC2::KeyPair::KeyName", ""),
    }
    body = {
        "Parameters": {name: {"Type": kind} for name, (kind, _) in parameters.items()},
        "Resources": {
            "Group": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "g"}}
        },
    }
    aws.cfn.create_stack(
        StackName=stack,
        TemplateBody=json.dumps(body),
        Parameters=[
            {"ParameterKey": name, "ParameterValue": value}
            for name, (_, value) in parameters.items()
        ],
    )

    events = aws.events(stack)
    assert sequence(events) == [
        (stack, "CREATE_IN_PROGRESS"),
        (stack, "ROLLBACK_IN_PROGRESS"),
        (stack, "ROLLBACK_COMPLETE"),
    ]
    assert events[1]["ResourceStatusReason"] == validation_reason(
        ("Groups", "sg-0123456789abcdef0"),
        ("Image", "ami-0123456789abcdef0"),
        ("BadZone", "us-east-1z"),
        ("Vpc", "vpc-0123456789abcdef0"),
        ("SsmName", "/rollback-lab/test/no-such-parameter"),
        ("EmptyKey", ""),
    )
    described = aws.cfn.describe_stacks(StackName=stack)["Stacks"][0]
    given = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert given["GoodSsmName"] == AMI_PARAMETER  # a Parameter::Name is the name, unresolved
    aws.cfn.delete_stack(StackName=stack)


def test_update_with_a_parameter_naming_nothing_rolls_back_the_update(aws: Aws) -> None:
    """An update's parameters are checked the same way; the stack keeps what it had and can be
    updated again (UPDATE_ROLLBACK_COMPLETE)."""
    key, stack = unique("key"), unique("updated")
    aws.ec2.create_key_pair(KeyName=key)
    body = {
        "Parameters": {"KeyName": {"Type": "AWS::EC2::KeyPair::KeyName"}},
        "Resources": {
            "Group": {
                "Type": "AWS::EC2::SecurityGroup",
                "Properties": {"GroupDescription": {"Fn::Sub": "for ${KeyName}"}},
            }
        },
    }
    path = aws.workdir / "keyed.json"
    path.write_text(json.dumps(body))

    def deploy(key_name: str) -> subprocess.CompletedProcess[str]:
        return aws.run(
            "cloudformation", "deploy", "--template-file", path.name, "--stack-name", stack,
            "--parameter-overrides", f"KeyName={key_name}", check=False,
        )  # fmt: skip

    assert deploy(key).returncode == 0
    group_id = aws.events(stack)[-2]["PhysicalResourceId"]
    failed = deploy("rollback-lab-no-such-key")

    assert failed.returncode == 255
    assert "Failed to create/update the stack" in failed.stderr
    events = aws.events(stack)
    assert sequence(events)[-4:] == [
        (stack, "UPDATE_IN_PROGRESS"),
        (stack, "UPDATE_ROLLBACK_IN_PROGRESS"),
        (stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"),
        (stack, "UPDATE_ROLLBACK_COMPLETE"),
    ]
    assert events[-3]["ResourceStatusReason"] == validation_reason(
        ("KeyName", "rollback-lab-no-such-key"), create=False
    )
    assert aws.cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == (
        "UPDATE_ROLLBACK_COMPLETE"
    )
    groups = {g["GroupId"] for g in aws.ec2.describe_security_groups()["SecurityGroups"]}
    assert group_id in groups  # the stack kept its resource
    aws.cfn.delete_stack(StackName=stack)


def test_element_type_sees_through_lists_and_ssm_values() -> None:
    from helpers.services.cfn_fidelity import element_type

    assert element_type("AWS::EC2::KeyPair::KeyName") == ("AWS::EC2::KeyPair::KeyName", False)
    assert element_type("List<AWS::EC2::Subnet::Id>") == ("AWS::EC2::Subnet::Id", True)
    assert element_type("AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>") == (
        "AWS::EC2::Image::Id",
        False,
    )
    assert element_type("AWS::SSM::Parameter::Value<List<AWS::EC2::Image::Id>>") == (
        "AWS::EC2::Image::Id",
        True,
    )
    assert element_type("String") == ("String", False)


def test_lab_stack_outputs_then_deleted_stack_reads_create_nothing(aws: Aws) -> None:
    key, stack = unique("key"), unique("lab")
    aws.ec2.create_key_pair(KeyName=key)
    assert aws.create_stack(lab_template_yaml(key_name=key), stack).returncode == 0
    described = aws.cfn.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    (instance,) = live_instances(aws, stack)
    assert outputs["InstanceId"] == instance
    assert outputs["PublicIp"].count(".") == 3

    aws.cfn.delete_stack(StackName=stack)
    for _ in range(2):
        gone = aws.cfn.describe_stacks(StackName=described["StackId"])["Stacks"][0]
        assert gone["StackStatus"] == "DELETE_COMPLETE" and "Outputs" not in gone
        assert (
            aws.cfn.list_stack_resources(StackName=described["StackId"])["StackResourceSummaries"]
            == []
        )
    assert live_instances(aws, stack) == []  # reading outputs did not launch a new instance


@pytest.mark.parametrize("command", ["deploy", "create-stack"])
def test_missing_ssm_parameter_is_a_validation_error(aws: Aws, command: str) -> None:
    stack = unique("lab")
    template = lab_template_yaml(ami_parameter="/aws/service/no-such-parameter")
    result = (
        aws.deploy(template, stack) if command == "deploy" else aws.create_stack(template, stack)
    )

    assert result.returncode == 255
    assert "(ValidationError)" in result.stderr
    assert (
        "Unable to fetch parameters [/aws/service/no-such-parameter] from parameter store for "
        "this account." in result.stderr
    )
    assert stack not in {s["StackName"] for s in aws.cfn.list_stacks()["StackSummaries"]}


# --- a resource failing during an UPDATE: CloudFormation rolls the update back ---------------

FAILED_UPDATE = "The following resource(s) failed to update: [{}]. "
FAILED_CREATE = "The following resource(s) failed to create: [{}]. "
REPLACING = "Requested update requires the creation of a new physical resource; hence creating one."


def lab_stack_template(
    key_name: str, *, cidr: str = "0.0.0.0/0", extra: dict | None = None, first: bool = False
) -> str:
    """The exercise's two resources (key pair and AMI written in), plus ``extra`` resources
    listed before (``first``) or after them."""
    ami = "ami-03c3da4cfa8e8943a"  # moto's bundled Amazon Linux 2023 image in us-east-1
    lab = {
        "Ec2Instance": {
            "Type": "AWS::EC2::Instance",
            "Properties": {
                "SecurityGroups": [{"Ref": "InstanceSecurityGroup"}],
                "KeyName": key_name,
                "ImageId": ami,
            },
        },
        "InstanceSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "Enable SSH access via port 22",
                "SecurityGroupIngress": [
                    {"IpProtocol": "tcp", "FromPort": "22", "ToPort": "22", "CidrIp": cidr}
                ],
            },
        },
    }
    resources = {**(extra or {}), **lab} if first else {**lab, **(extra or {})}
    return json.dumps({"Resources": resources})


EXTRA_GROUP = {
    "ExtraGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "x"}}
}


def second_instance(key_name: str) -> dict:
    return {
        "SecondInstance": {
            "Type": "AWS::EC2::Instance",
            "Properties": {"KeyName": key_name, "ImageId": "ami-03c3da4cfa8e8943a"},
        }
    }


def stack_resources(aws: Aws, stack: str) -> dict[str, str]:
    found = aws.cfn.describe_stack_resources(StackName=stack)["StackResources"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in found}


def ingress(aws: Aws, group_id: str) -> list[tuple]:
    (group,) = aws.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return [
        (p["IpProtocol"], p["FromPort"], p["ToPort"], tuple(r["CidrIp"] for r in p["IpRanges"]))
        for p in group["IpPermissions"]
    ]


def instance_state(aws: Aws, instance_id: str) -> str:
    found = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return found[0]["Instances"][0]["State"]["Name"]


UPDATE_FAILURES = {
    # the instance is replaced (KeyName is create-only) by one with a key pair that is missing
    "replaced instance, missing key pair": (
        lambda key: lab_stack_template("rollback-lab-no-such-key"),
        "Ec2Instance",
        [
            ("Ec2Instance", "UPDATE_IN_PROGRESS"),
            ("Ec2Instance", "UPDATE_FAILED"),
        ],
        [("Ec2Instance", "UPDATE_IN_PROGRESS"), ("Ec2Instance", "UPDATE_COMPLETE")],
        [],
    ),
    # a new group is made first, then the lab group's rule (changed in place) is invalid
    "invalid rule changed in place, after a new group": (
        lambda key: lab_stack_template(key, cidr="999.1.1.1/99", extra=EXTRA_GROUP, first=True),
        "InstanceSecurityGroup",
        [
            ("ExtraGroup", "CREATE_IN_PROGRESS"),
            ("ExtraGroup", "CREATE_IN_PROGRESS"),
            ("ExtraGroup", "CREATE_COMPLETE"),
            ("InstanceSecurityGroup", "UPDATE_IN_PROGRESS"),
            ("InstanceSecurityGroup", "UPDATE_FAILED"),
        ],
        [
            ("InstanceSecurityGroup", "UPDATE_IN_PROGRESS"),
            ("InstanceSecurityGroup", "UPDATE_COMPLETE"),
        ],
        [("ExtraGroup", "DELETE_IN_PROGRESS"), ("ExtraGroup", "DELETE_COMPLETE")],
    ),
    # two new resources: a group that is made, then an instance that fails
    "new instance fails after a new group": (
        lambda key: lab_stack_template(
            key, extra={**EXTRA_GROUP, **second_instance("rollback-lab-no-such-key")}
        ),
        "SecondInstance",
        [
            ("ExtraGroup", "CREATE_IN_PROGRESS"),
            ("ExtraGroup", "CREATE_IN_PROGRESS"),
            ("ExtraGroup", "CREATE_COMPLETE"),
            ("SecondInstance", "CREATE_IN_PROGRESS"),
            ("SecondInstance", "CREATE_FAILED"),
        ],
        [],
        [
            ("SecondInstance", "DELETE_COMPLETE"),  # it never existed: only its end is recorded
            ("ExtraGroup", "DELETE_IN_PROGRESS"),
            ("ExtraGroup", "DELETE_COMPLETE"),
        ],
    ),
}


@pytest.mark.parametrize("case", list(UPDATE_FAILURES))
def test_failed_update_rolls_back_to_the_old_resources_then_a_good_update_works(
    aws: Aws, case: str
) -> None:
    make_template, failed, forward, put_back, cleanup = UPDATE_FAILURES[case]
    key, stack = unique("key"), unique("upd")
    aws.ec2.create_key_pair(KeyName=key)
    created = aws.deploy(lab_stack_template(key), stack)
    assert created.returncode == 0, created.stderr
    before = stack_resources(aws, stack)
    rules_before = ingress(aws, before["InstanceSecurityGroup"])
    groups_before = {g["GroupId"] for g in aws.ec2.describe_security_groups()["SecurityGroups"]}
    created_events = len(aws.events(stack))

    result = aws.deploy(make_template(key), stack)

    assert result.returncode == 255, result.stdout
    assert "Failed to create/update the stack" in result.stderr
    assert "Waiting for stack create/update to complete" in result.stdout
    events = aws.events(stack)[created_events:]
    verb = "create" if forward[-1][1] == "CREATE_FAILED" else "update"
    assert sequence(events) == [
        (stack, "UPDATE_IN_PROGRESS"),
        *forward,
        (stack, "UPDATE_ROLLBACK_IN_PROGRESS"),
        *put_back,
        (stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"),
        *cleanup,
        (stack, "UPDATE_ROLLBACK_COMPLETE"),
    ]
    by_status = {(e["LogicalResourceId"], e["ResourceStatus"]): e for e in events}
    assert events[0]["ResourceStatusReason"] == "User Initiated"
    rollback = by_status[(stack, "UPDATE_ROLLBACK_IN_PROGRESS")]["ResourceStatusReason"]
    template = FAILED_CREATE if verb == "create" else FAILED_UPDATE
    assert rollback == template.format(failed)
    reason = by_status[(failed, f"{verb.upper()}_FAILED")]["ResourceStatusReason"]
    if failed == "InstanceSecurityGroup":
        assert "invalid CIDR subnet specification" in reason
        assert "Error Code: InvalidParameterValue" in reason
    else:
        assert reason.startswith(
            "The key pair 'rollback-lab-no-such-key' does not exist (Service: AmazonEC2;"
        )
    if failed == "Ec2Instance":
        replacing = events[1]
        assert replacing["ResourceStatusReason"] == REPLACING
        assert replacing["PhysicalResourceId"] == before["Ec2Instance"]
    for logical_id, status in put_back:  # rolled back onto the resource as it was
        assert by_status[(logical_id, status)]["PhysicalResourceId"] == before[logical_id]
    if cleanup:
        made = by_status[("ExtraGroup", "CREATE_COMPLETE")]["PhysicalResourceId"]
        assert by_status[("ExtraGroup", "DELETE_COMPLETE")]["PhysicalResourceId"] == made
        assert made not in {
            g["GroupId"] for g in aws.ec2.describe_security_groups()["SecurityGroups"]
        }
    times = [e["Timestamp"] for e in events]
    assert all(a < b for a, b in zip(times, times[1:], strict=False)), times

    # The stack holds its old resources, as they were, and nothing the update made is left.
    described = aws.cfn.describe_stacks(StackName=stack)["Stacks"][0]
    assert described["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert stack_resources(aws, stack) == before
    assert instance_state(aws, before["Ec2Instance"]) == "running"
    assert ingress(aws, before["InstanceSecurityGroup"]) == rules_before
    groups_after = {g["GroupId"] for g in aws.ec2.describe_security_groups()["SecurityGroups"]}
    assert groups_after == groups_before
    running = aws.ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]},
                 {"Name": "tag:aws:cloudformation:stack-name", "Values": [stack]}]
    )  # fmt: skip
    assert [i["InstanceId"] for r in running["Reservations"] for i in r["Instances"]] == [
        before["Ec2Instance"]
    ]
    body = aws.cfn.get_template(StackName=stack)["TemplateBody"]  # the old template again
    assert (json.loads(body) if isinstance(body, str) else body) == json.loads(
        lab_stack_template(key)
    )

    # Still usable: a good update goes through as any update does.
    fixed_key = unique("key")
    aws.ec2.create_key_pair(KeyName=fixed_key)
    good = {
        "replaced instance, missing key pair": lab_stack_template(fixed_key),
        "invalid rule changed in place, after a new group": lab_stack_template(
            key, cidr="10.0.0.0/8", extra=EXTRA_GROUP, first=True
        ),
        "new instance fails after a new group": lab_stack_template(
            key, extra={**EXTRA_GROUP, **second_instance(fixed_key)}
        ),
    }[case]
    updated = aws.deploy(good, stack)
    assert updated.returncode == 0, updated.stderr
    assert f"Successfully created/updated stack - {stack}" in updated.stdout
    later = aws.events(stack)[created_events + len(events) :]
    assert sequence(later)[0] == (stack, "UPDATE_IN_PROGRESS")
    assert sequence(later)[-1] == (stack, "UPDATE_COMPLETE")
    after = stack_resources(aws, stack)
    assert aws.cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == (
        "UPDATE_COMPLETE"
    )
    if case == "replaced instance, missing key pair":
        assert sequence(later) == [
            (stack, "UPDATE_IN_PROGRESS"),
            ("Ec2Instance", "UPDATE_IN_PROGRESS"),
            ("Ec2Instance", "UPDATE_IN_PROGRESS"),
            ("Ec2Instance", "UPDATE_COMPLETE"),
            (stack, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
            ("Ec2Instance", "DELETE_IN_PROGRESS"),
            ("Ec2Instance", "DELETE_COMPLETE"),
            (stack, "UPDATE_COMPLETE"),
        ]
        assert later[2]["ResourceStatusReason"] == "Resource creation Initiated"
        assert later[2]["PhysicalResourceId"] == after["Ec2Instance"] != before["Ec2Instance"]
        assert later[5]["PhysicalResourceId"] == before["Ec2Instance"]
        assert instance_state(aws, before["Ec2Instance"]) == "terminated"
    elif case == "invalid rule changed in place, after a new group":
        assert after["InstanceSecurityGroup"] == before["InstanceSecurityGroup"]  # in place
        assert ingress(aws, after["InstanceSecurityGroup"]) == [("tcp", 22, 22, ("10.0.0.0/8",))]
        assert set(after) == {"Ec2Instance", "InstanceSecurityGroup", "ExtraGroup"}
    else:
        assert instance_state(aws, after["SecondInstance"]) == "running"
        assert after["Ec2Instance"] == before["Ec2Instance"]

    from helpers.stack_events import phases, stack_events

    labelled = phases(stack_events(stack, client=aws.cfn))
    stack_phases = labelled[labelled["is_stack"]]["phase"].astype(str).tolist()
    assert stack_phases == ["review", "create", "alive", "update", "update-rollback", "alive",
                            "update", "alive"]  # fmt: skip
    # the first resource with work in the rollback (a failed create has only its end there)
    rolled_id = next(name for name, status in put_back + cleanup if status.endswith("PROGRESS"))
    rolled = labelled[labelled["logical_id"] == rolled_id]
    assert "update-rollback" in rolled["phase"].astype(str).tolist()
    aws.cfn.delete_stack(StackName=stack)
