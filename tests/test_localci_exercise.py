"""The course exercise, run by the local engine against a real moto server and real `aws`.

As the exercise writes it, smoke_test runs in alpine: `return 1` fails the step, the on_fail
`destroy_environment` runs and fails with "aws: not found" — what a student sees on
CircleCI. With amazon/aws-cli (and `requires`), the destroy step really deletes the stack.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from support import aws_client, run_config

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
EXERCISE = REFERENCE / "000_7ff12d223026ddc4.txt"

# The exercise's three config snippets, verbatim (test_snippets_match_the_exercise checks it).
COMMANDS_SNIPPET = "\n".join(
    [
        "commands:",
        "   # Exercise - Rollback",
        "   destroy_environment:",
        "     steps:",
        "       - run:",
        "           name: Destroy environment",
        "           # ${CIRCLE_WORKFLOW_ID} is a Built-in environment variable ",
        "           # ${CIRCLE_WORKFLOW_ID:0:5} takes the first 5 cha"
        "rs of the variable CIRCLE_CI_WORKFLOW_ID ",
        "           when: on_fail",
        "           command: |",
        "             aws cloudformation delete-stack --stack-name my"
        "Stack-${CIRCLE_WORKFLOW_ID:0:7}",
        "",
    ]
)
CREATE_SNIPPET = "\n".join(
    [
        "# Exercise - Rollback",
        "create_infrastructure: ",
        " docker:",
        "   - image: amazon/aws-cli",
        " steps:",
        "   - checkout",
        "   - run:",
        "       name: Create Cloudformation Stack",
        "       command: |",
        "         aws cloudformation deploy \\",
        "           --template-file template.yml \\",
        "           --stack-name myStack-${CIRCLE_WORKFLOW_ID:0:7} \\",
        "           --region us-east-1",
        "",
    ]
)
SMOKE_SNIPPET = "\n".join(
    [
        "# Exercise: Smoke Testing",
        "smoke_test:",
        " docker:",
        "   - image: alpine:latest",
        " steps:",
        "   - run:",
        "       name: Test job",
        "       # Fail the job intentionally to simulate an error.",
        "       command:  return 1",
        "   - destroy_environment  ",
        "",
    ]
)
TEMPLATE = """\
Resources:
  Ec2Instance:
    Type: 'AWS::EC2::Instance'
    Properties:
      SecurityGroups:
        - !Ref InstanceSecurityGroup
      KeyName: udacity
      ImageId: 'ami-068663a3c619dd892'
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


def exercise_config(smoke: str = SMOKE_SNIPPET, requires: bool = False) -> str:
    smoke_entry = "      - smoke_test"
    if requires:
        smoke_entry = "      - smoke_test:\n          requires: [create_infrastructure]"
    return (
        "version: 2.1\n"
        + COMMANDS_SNIPPET
        + "jobs:\n"
        + textwrap.indent(CREATE_SNIPPET, "  ")
        + textwrap.indent(smoke, "  ")
        + "workflows:\n  default:\n    jobs:\n      - create_infrastructure\n"
        + smoke_entry
        + "\n"
    )


def test_snippets_match_the_exercise() -> None:
    if not EXERCISE.exists():
        pytest.skip(f"the exercise text is not at {EXERCISE} (../shared/reference is absent)")
    blocks = re.findall(r"```\n(.*?)```", EXERCISE.read_text(), re.S)
    assert COMMANDS_SNIPPET in blocks
    assert CREATE_SNIPPET in blocks
    assert SMOKE_SNIPPET in blocks
    assert TEMPLATE in blocks


@pytest.fixture
def local_aws(moto_server: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _cloudformation(env: dict[str, str]):  # noqa: ANN202
    return aws_client("cloudformation", env["AWS_ENDPOINT_URL"])


def test_exercise_as_written_alpine_has_no_aws(tmp_path: Path, local_aws) -> None:
    run = run_config(
        tmp_path, exercise_config(), files={"template.yml": TEMPLATE}, extra_env=local_aws
    )
    wf = run.result.workflow("default")
    assert wf.status == "failed"
    assert wf.jobs["create_infrastructure"].status == "success"
    smoke = run.job("smoke_test")
    assert smoke.status == "failed"
    test_step = smoke.step("Test job")
    assert (test_step.status, test_step.exit_code) == ("failed", 1)
    destroy = smoke.step("Destroy environment")  # ran because of when: on_fail
    assert destroy.status == "failed"
    assert destroy.exit_code == 127
    assert "aws: not found" in destroy.text
    # The stack the create job made is still there: the rollback could not run.
    stack_name = f"myStack-{wf.id[:7]}"
    stacks = _cloudformation(local_aws).describe_stacks(StackName=stack_name)["Stacks"]
    assert stacks[0]["StackStatus"] == "CREATE_COMPLETE"
    # checkout in amazon/aws-cli warns as CircleCI does (no git, no ssh in that image)
    checkout = run.job("create_infrastructure").step("Checkout code")
    assert "Falling back to CircleCI's native git client" in checkout.text


def test_exercise_with_aws_cli_image_deletes_the_stack(tmp_path: Path, local_aws) -> None:
    smoke = SMOKE_SNIPPET.replace("alpine:latest", "amazon/aws-cli")
    run = run_config(
        tmp_path,
        exercise_config(smoke, requires=True),
        files={"template.yml": TEMPLATE},
        extra_env=local_aws,
    )
    wf = run.result.workflow("default")
    assert wf.status == "failed"  # the smoke test still fails on purpose
    destroy = run.job("smoke_test").step("Destroy environment")
    assert (destroy.status, destroy.exit_code) == ("success", 0)
    cfn = _cloudformation(local_aws)
    summaries = cfn.list_stacks(StackStatusFilter=["DELETE_COMPLETE"])["StackSummaries"]
    assert f"myStack-{wf.id[:7]}" in [s["StackName"] for s in summaries]
