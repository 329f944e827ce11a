"""The course exercise's two files, as the course writes them and as the lab corrects them.

``example_*`` reproduce the exercise text (``/work/shared/reference/000_...txt``) including its
mistakes, because the lab shows what those mistakes do: the smoke test runs in ``alpine``,
which has no ``aws`` program, so its rollback step cannot delete anything; and the workflow has
no ``requires``, so both jobs start at the same moment. ``lab_*`` are the corrected versions the
later notebooks deploy.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from typing import Any

from helpers import pipeline_config as pc
from helpers import template as cfn

#: The AMI id the exercise hard-codes (an Ubuntu image in us-east-1 in 2020).
EXAMPLE_AMI = "ami-068663a3c619dd892"
#: The stack name expression the exercise uses: bash keeps the first 7 characters of the id.
WORKFLOW_SUFFIX = "${CIRCLE_WORKFLOW_ID:0:7}"
WORKFLOW_NAME = "default"


def example_template() -> cfn.Template:
    """``template.yml`` exactly as the exercise writes it."""
    return cfn.template(
        resources={
            "Ec2Instance": cfn.ec2_instance(
                security_groups=[cfn.ref("InstanceSecurityGroup")],
                key_name="udacity",
                image_id=EXAMPLE_AMI,
            ),
            "InstanceSecurityGroup": cfn.ssh_security_group("0.0.0.0/0"),
        }
    )


def lab_template(
    *,
    key_name: str = "udacity",
    ssh_cidr: str = "0.0.0.0/0",
    ami_parameter: str = cfn.AL2023_AMI_PARAMETER,
    instance_type: str = "t3.micro",
) -> cfn.Template:
    """The lab's template: the AMI comes from SSM at deploy time instead of a stale id, the key
    pair is a parameter (default ``udacity``), and outputs name what was made."""
    return cfn.template(
        description="rollback-lab - one EC2 instance reachable over SSH",
        parameters={
            "ImageId": cfn.ssm_ami_parameter(ami_parameter),
            "KeyName": cfn.key_pair_parameter(key_name),
        },
        resources={
            "Ec2Instance": cfn.ec2_instance(
                security_groups=[cfn.ref("InstanceSecurityGroup")],
                instance_type=instance_type,
                key_name=cfn.ref("KeyName"),
                image_id=cfn.ref("ImageId"),
                tags={"Name": cfn.sub("${AWS::StackName}-instance")},
            ),
            "InstanceSecurityGroup": cfn.ssh_security_group(ssh_cidr),
        },
        outputs={
            "InstanceId": cfn.output(cfn.ref("Ec2Instance"), description="the instance's id"),
            "PublicIp": cfn.output(
                cfn.get_att("Ec2Instance", "PublicIp"), description="address to SSH to"
            ),
        },
    )


def _destroy_command(stack_name: str, region: str | None) -> dict[str, Any]:
    region_option = f" --region {region}" if region else ""
    return pc.command(
        [
            pc.run(
                f"aws cloudformation delete-stack --stack-name {stack_name}{region_option}\n",
                name="Destroy environment",
                when="on_fail",
            )
        ]
    )


def _create_job(stack_name: str, region: str) -> dict[str, Any]:
    return pc.docker_job(
        "amazon/aws-cli",
        [
            pc.checkout(),
            pc.run(
                "aws cloudformation deploy \\\n"
                "  --template-file template.yml \\\n"
                f"  --stack-name {stack_name} \\\n"
                f"  --region {region}\n",
                name="Create Cloudformation Stack",
            ),
        ],
    )


def _smoke_test_job(image: str) -> dict[str, Any]:
    return pc.docker_job(
        image,
        [pc.run("return 1", name="Test job"), pc.invoke("destroy_environment")],
    )


def example_config() -> pc.Config:
    """``.circleci/config.yml`` as the exercise writes it: ``alpine`` smoke test, and both
    jobs in the workflow without ``requires`` ("add the two jobs above in the workflows
    section")."""
    stack_name = f"myStack-{WORKFLOW_SUFFIX}"
    return pc.config(
        commands={"destroy_environment": _destroy_command(stack_name, region=None)},
        jobs={
            "create_infrastructure": _create_job(stack_name, "us-east-1"),
            "smoke_test": _smoke_test_job("alpine:latest"),
        },
        workflows={WORKFLOW_NAME: pc.workflow(["create_infrastructure", "smoke_test"])},
    )


def lab_config(stack_prefix: str = "myStack-", region: str = "us-east-1") -> pc.Config:
    """The corrected config: the smoke test runs in ``amazon/aws-cli`` (so the rollback can
    call ``aws``), waits for ``create_infrastructure`` (``requires``), and the delete names
    the region the stack was created in."""
    stack_name = f"{stack_prefix}{WORKFLOW_SUFFIX}"
    return pc.config(
        commands={"destroy_environment": _destroy_command(stack_name, region=region)},
        jobs={
            "create_infrastructure": _create_job(stack_name, region),
            "smoke_test": _smoke_test_job("amazon/aws-cli"),
        },
        workflows={
            WORKFLOW_NAME: pc.workflow(
                [
                    "create_infrastructure",
                    pc.workflow_job("smoke_test", requires=["create_infrastructure"]),
                ]
            )
        },
    )


# --- looking at a config the way the lab's checks do ---------------------------------------

_CONTINUATION = re.compile(r"\\\n")


def stack_names(cfg: Mapping[str, Any]) -> dict[str, str]:
    """The ``--stack-name`` of every ``aws cloudformation`` call, by step (``jobs.x.steps[1]``).

    Create and delete must name the same stack, or the rollback deletes nothing.
    """
    found: dict[str, str] = {}
    for step in pc.run_steps(cfg):
        words = shlex.split(_CONTINUATION.sub(" ", step.command), comments=True)
        if "cloudformation" not in words or "--stack-name" not in words:
            continue
        position = words.index("--stack-name") + 1
        if position < len(words):
            found[f"{step.owner}.steps[{step.index}]"] = words[position]
    return found


def expand_with_bash(text: str, environment: Mapping[str, str]) -> str:
    """What bash makes of ``text`` (e.g. ``myStack-${CIRCLE_WORKFLOW_ID:0:7}``) given those
    variables: the same expansion CircleCI's shell does when the step runs."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment}
    result = subprocess.run(
        ["bash", "-c", f'printf "%s" "{text}"'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout
