"""Stacks the lab left behind: list them, and delete them only when asked.

A failed rollback (the alpine image without ``aws``, a destroy that raced the create) leaves
``myStack-…`` stacks running — on real AWS, an EC2 instance that costs money. Only stacks whose
name starts with the lab's prefix are ever touched, and each is deleted by its stack id, so a
homonym created meanwhile is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from helpers.checks.aws import AwsTarget, call, client
from helpers.errors import InputError

DEFAULT_PREFIX = "myStack-"
GONE = "DELETE_COMPLETE"


@dataclass(frozen=True)
class LabStack:
    name: str
    stack_id: str
    status: str
    created: datetime | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stack_id": self.stack_id,
            "status": self.status,
            "created": self.created.isoformat() if self.created else None,
            "reason": self.reason,
        }


def list_lab_stacks(
    prefix: str = DEFAULT_PREFIX, target: AwsTarget | None = None
) -> list[LabStack]:
    """Every stack named ``prefix…`` that still exists, in any state (ROLLBACK_COMPLETE too)."""
    _check_prefix(prefix)
    cloudformation = client("cloudformation", target)
    stacks: list[LabStack] = []
    token: str | None = None
    while True:
        page = call(cloudformation.list_stacks, **({"NextToken": token} if token else {}))
        for summary in page.get("StackSummaries", []):
            name = summary.get("StackName", "")
            if summary.get("StackStatus") == GONE or not name.startswith(prefix):
                continue
            stacks.append(
                LabStack(
                    name=name,
                    stack_id=summary["StackId"],
                    status=summary["StackStatus"],
                    created=summary.get("CreationTime"),
                    reason=summary.get("StackStatusReason"),
                )
            )
        token = page.get("NextToken")
        if not token:
            break
    return sorted(stacks, key=lambda s: (s.created is None, s.created or datetime.min, s.name))


def delete_lab_stacks(
    stacks: list[LabStack],
    prefix: str = DEFAULT_PREFIX,
    target: AwsTarget | None = None,
    *,
    wait: bool = True,
    delay: int = 5,
    max_attempts: int = 120,
) -> list[LabStack]:
    """Delete each stack (by id) and wait until it is gone; returns each one's final status."""
    from botocore.exceptions import ClientError, WaiterError

    _check_prefix(prefix)
    outside = [s.name for s in stacks if not s.name.startswith(prefix)]
    if outside:
        raise InputError(f"refusing to delete stacks outside the prefix {prefix!r}: {outside}")
    cloudformation = client("cloudformation", target)
    for stack in stacks:
        call(cloudformation.delete_stack, StackName=stack.stack_id)
    if not wait:
        return [_describe(cloudformation, s) for s in stacks]
    waiter = cloudformation.get_waiter("stack_delete_complete")
    results = []
    for stack in stacks:
        try:
            waiter.wait(
                StackName=stack.stack_id,
                WaiterConfig={"Delay": delay, "MaxAttempts": max_attempts},
            )
        except (WaiterError, ClientError):
            pass  # DELETE_FAILED, or still deleting: the status read below says which
        results.append(_describe(cloudformation, stack))
    return results


def _describe(cloudformation: Any, stack: LabStack) -> LabStack:
    from botocore.exceptions import ClientError

    try:
        found = call(cloudformation.describe_stacks, StackName=stack.stack_id)["Stacks"]
    except ClientError:
        return LabStack(stack.name, stack.stack_id, GONE, stack.created)
    if not found:
        return LabStack(stack.name, stack.stack_id, GONE, stack.created)
    current = found[0]
    return LabStack(
        stack.name,
        stack.stack_id,
        current["StackStatus"],
        stack.created,
        current.get("StackStatusReason"),
    )


def _check_prefix(prefix: str) -> None:
    if not prefix or not prefix.strip():
        raise InputError("an empty prefix would match every stack", field="--prefix")
