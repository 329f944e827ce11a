"""Stack event sequences shaped like DescribeStackEvents output on AWS.

Field names, status strings and id formats follow the API reference (StackEvent) and the
awscli example ``describe-stack-events.rst``: newest first, stack events with UUID event ids,
resource events with ``LogicalId-STATUS-Timestamp`` ids, two CREATE_IN_PROGRESS per resource
(a bare one, then "Resource creation Initiated"), and the reasons AWS writes on a rollback.
"""

from __future__ import annotations

from typing import Any

# The builder lives in the package (the benchmark uses it too); re-exported for the tests.
from helpers.stack_events.synthetic import (  # noqa: F401
    REGION_ACCOUNT,
    START,
    Stack,
    many_resources,
)

KEY_PAIR_REASON = (
    "Resource handler returned message: \"The key pair 'udacity' does not exist (Service: Ec2, "
    'Status Code: 400, Request ID: 5f3c1c5e-3b0a-4c1e-9a2b-0d6a1a2b3c4d)" (RequestToken: '
    "1a2b3c4d-1a2b-1a2b-1a2b-1a2b3c4d5e6f, HandlerErrorCode: InvalidRequest)"
)
ROLLBACK_REASON = (
    "The following resource(s) failed to create: [Ec2Instance]. Rollback requested by user."
)
UPDATE_ROLLBACK_REASON = "The following resource(s) failed to update: [Ec2Instance]. "
UPDATE_FAILED_REASON = (
    "Resource handler returned message: \"The instance type 't2.huge' is not supported\" "
    "(HandlerErrorCode: InvalidRequest)"
)


SG = ("InstanceSecurityGroup", "AWS::EC2::SecurityGroup")
EC2 = ("Ec2Instance", "AWS::EC2::Instance")


def _creating_the_instance(stack: Stack) -> Stack:
    """The deploy up to the instance: change set, stack, security group, instance started."""
    stack.stack("REVIEW_IN_PROGRESS", "User Initiated", after=0)
    stack.stack("CREATE_IN_PROGRESS", "User Initiated", after=2)
    stack.resource(*SG, "CREATE_IN_PROGRESS")
    stack.resource(*SG, "CREATE_IN_PROGRESS", "Resource creation Initiated", "sg-0abc")
    stack.resource(*SG, "CREATE_COMPLETE", physical_id="sg-0abc", after=5)
    stack.resource(*EC2, "CREATE_IN_PROGRESS")
    return stack


def created(stack: Stack | None = None) -> Stack:
    """`aws cloudformation deploy` of the exercise's template: change set, then create."""
    stack = _creating_the_instance(stack or Stack())
    stack.resource(*EC2, "CREATE_IN_PROGRESS", "Resource creation Initiated", "i-0123")
    stack.resource(*EC2, "CREATE_COMPLETE", physical_id="i-0123", after=30)
    stack.stack("CREATE_COMPLETE")
    return stack


def deleted(stack: Stack) -> Stack:
    """The pipeline's rollback: `aws cloudformation delete-stack` from the on_fail step."""
    stack.stack("DELETE_IN_PROGRESS", "User Initiated", after=20)
    stack.resource(*EC2, "DELETE_IN_PROGRESS", physical_id="i-0123")
    stack.resource(*EC2, "DELETE_COMPLETE", physical_id="i-0123", after=40)
    stack.resource(*SG, "DELETE_IN_PROGRESS", physical_id="sg-0abc")
    stack.resource(*SG, "DELETE_COMPLETE", physical_id="sg-0abc", after=2)
    stack.stack("DELETE_COMPLETE")
    return stack


def native_rollback(stack: Stack | None = None) -> Stack:
    """CloudFormation's own rollback: the instance names a key pair that does not exist."""
    stack = _creating_the_instance(stack or Stack())
    stack.resource(*EC2, "CREATE_FAILED", KEY_PAIR_REASON, after=1)
    stack.stack("ROLLBACK_IN_PROGRESS", ROLLBACK_REASON)
    stack.resource(*EC2, "DELETE_COMPLETE", after=1)
    stack.resource(*SG, "DELETE_IN_PROGRESS", physical_id="sg-0abc")
    stack.resource(*SG, "DELETE_COMPLETE", physical_id="sg-0abc", after=2)
    stack.stack("ROLLBACK_COMPLETE")
    return stack


def update_rollback(stack: Stack | None = None) -> Stack:
    """An update whose instance change fails, rolled back to the previous template."""
    stack = created(stack)
    stack.stack("UPDATE_IN_PROGRESS", "User Initiated", after=60)
    stack.resource(*EC2, "UPDATE_IN_PROGRESS", physical_id="i-0123")
    stack.resource(*EC2, "UPDATE_FAILED", UPDATE_FAILED_REASON, "i-0123", after=3)
    stack.stack("UPDATE_ROLLBACK_IN_PROGRESS", UPDATE_ROLLBACK_REASON)
    stack.resource(*EC2, "UPDATE_IN_PROGRESS", physical_id="i-0123")
    stack.resource(*EC2, "UPDATE_COMPLETE", physical_id="i-0123", after=4)
    stack.stack("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
    stack.stack("UPDATE_ROLLBACK_COMPLETE")
    return stack


def pages(events: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [events[i : i + size] for i in range(0, len(events), size)]
