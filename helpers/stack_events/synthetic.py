"""Synthetic stack events shaped like DescribeStackEvents output on AWS.

The benchmark charts 10,000 of them and the tests build their sequences from the same
:class:`Stack` builder. Field names, status strings and id formats follow the API reference
(StackEvent) and the awscli example ``describe-stack-events.rst``: newest first, stack events
with UUID event ids, resource events with ``LogicalId-STATUS-Timestamp`` ids.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

REGION_ACCOUNT = "us-east-1:123456789012"
START = datetime(2024, 5, 6, 12, 0, 0, 123000, tzinfo=timezone.utc)
STACK_TYPE = "AWS::CloudFormation::Stack"
#: Events :func:`many_resources` makes per resource (create 3, update 2, delete 2) and for the
#: stack itself (create 2, update 3, delete 2).
EVENTS_PER_RESOURCE = 7
STACK_EVENTS = 7


class Stack:
    """Builds one stack's events in the order they happen; ``api()`` lists them as AWS does."""

    def __init__(self, name: str = "myStack-abc1234", start: datetime = START) -> None:
        self.name = name
        self.stack_id = f"arn:aws:cloudformation:{REGION_ACCOUNT}:stack/{name}/{uuid.uuid4()}"
        self.now = start
        self.events: list[dict[str, Any]] = []

    def wait(self, seconds: float) -> Stack:
        self.now += timedelta(seconds=seconds)
        return self

    def stack(self, status: str, reason: str | None = None, after: float = 0.5) -> Stack:
        return self._add(self.name, STACK_TYPE, status, reason, self.stack_id, after)

    def resource(
        self,
        logical_id: str,
        resource_type: str,
        status: str,
        reason: str | None = None,
        physical_id: str = "",
        after: float = 0.5,
    ) -> Stack:
        return self._add(logical_id, resource_type, status, reason, physical_id, after)

    def _add(
        self,
        logical_id: str,
        resource_type: str,
        status: str,
        reason: str | None,
        physical_id: str,
        after: float,
    ) -> Stack:
        self.wait(after)
        stamp = self.now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        is_stack = resource_type == STACK_TYPE and logical_id == self.name
        event = {
            "StackId": self.stack_id,
            "EventId": str(uuid.uuid4()) if is_stack else f"{logical_id}-{status}-{stamp}",
            "StackName": self.name,
            "LogicalResourceId": logical_id,
            "PhysicalResourceId": physical_id,
            "ResourceType": resource_type,
            "Timestamp": self.now,
            "ResourceStatus": status,
        }
        if reason:
            event["ResourceStatusReason"] = reason
        self.events.append(event)
        return self

    def api(self) -> list[dict[str, Any]]:
        """Newest first, timestamps as datetimes: what boto3 returns."""
        return list(reversed(self.events))

    def cli_json(self) -> dict[str, Any]:
        """What ``aws cloudformation describe-stack-events --output json`` prints."""
        events = []
        for event in reversed(self.events):
            copy = dict(event)
            copy["Timestamp"] = event["Timestamp"].isoformat().replace("+00:00", "Z")
            events.append(copy)
        return {"StackEvents": events}


def many_resources(count: int, stack: Stack | None = None) -> Stack:
    """A create, an update and a delete of ``count`` queues: 7 events per resource, plus the
    stack's own 7."""
    stack = stack or Stack("bigStack")
    queue = "AWS::SQS::Queue"

    def each_queue(*statuses: str) -> None:
        """One queue after the other, each through ``statuses``: how AWS orders an update."""
        for index in range(count):
            for status in statuses:
                stack.resource(f"Queue{index}", queue, status, physical_id=f"q-{index}", after=0.01)

    stack.stack("CREATE_IN_PROGRESS", "User Initiated", after=0)
    for index in range(count):
        stack.resource(f"Queue{index}", queue, "CREATE_IN_PROGRESS", after=0.01)
        stack.resource(
            f"Queue{index}",
            queue,
            "CREATE_IN_PROGRESS",
            "Resource creation Initiated",
            f"q-{index}",
            after=0.01,
        )
        stack.resource(
            f"Queue{index}", queue, "CREATE_COMPLETE", physical_id=f"q-{index}", after=0.01
        )
    stack.stack("CREATE_COMPLETE")
    stack.stack("UPDATE_IN_PROGRESS", "User Initiated", after=1)
    each_queue("UPDATE_IN_PROGRESS", "UPDATE_COMPLETE")
    stack.stack("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
    stack.stack("UPDATE_COMPLETE")
    stack.stack("DELETE_IN_PROGRESS", "User Initiated", after=1)
    each_queue("DELETE_IN_PROGRESS", "DELETE_COMPLETE")
    stack.stack("DELETE_COMPLETE")
    return stack


def synthetic_events(events: int) -> list[dict[str, Any]]:
    """At least ``events`` events (whole resource lifecycles: up to 6 more), newest first."""
    count = max(1, -(-(events - STACK_EVENTS) // EVENTS_PER_RESOURCE))
    return many_resources(count).api()
