"""Follow a stack while it deploys: yield each new event once, oldest first.

Polling reads the newest page first and stops at the first event it has already yielded, so a
long history costs one page per poll. Once the stack's id is known the tail asks by id, so it
keeps following after the pipeline deletes the stack (a deleted stack no longer answers to
its name).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

from botocore.exceptions import ClientError

from helpers.stack_events.fetch import _is_missing_stack, cloudformation_client
from helpers.stack_events.frame import STACK_TYPE

# Stack statuses after which nothing happens until someone acts again.
SETTLED: frozenset[str] = frozenset(
    {
        "CREATE_COMPLETE",
        "CREATE_FAILED",
        "ROLLBACK_COMPLETE",
        "ROLLBACK_FAILED",
        "UPDATE_COMPLETE",
        "UPDATE_FAILED",
        "UPDATE_ROLLBACK_COMPLETE",
        "UPDATE_ROLLBACK_FAILED",
        "DELETE_COMPLETE",
        "DELETE_FAILED",
        "IMPORT_COMPLETE",
        "IMPORT_ROLLBACK_COMPLETE",
        "IMPORT_ROLLBACK_FAILED",
    }
)


def tail(
    stack: str,
    *,
    client: Any = None,
    until: Collection[str] = SETTLED,
    interval: float = 1.0,
    timeout: float | None = 600.0,
    include_existing: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[dict[str, Any]]:
    """Yield new events (DescribeStackEvents records) until the stack itself reaches a status
    in ``until`` (e.g. ``{"DELETE_COMPLETE"}`` to follow a create and the pipeline's delete),
    or ``timeout`` seconds pass. A stack that does not exist yet is waited for.
    """
    cfn = cloudformation_client(client)
    deadline = None if timeout is None else clock() + timeout
    seen: set[str] = set()
    stack_ref = stack
    first_poll = True
    while True:
        fresh = _newest_unseen(cfn, stack_ref, seen)
        if first_poll and not include_existing:
            seen.update(event["EventId"] for event in fresh)
            fresh = []
        first_poll = False
        for event in reversed(fresh):
            seen.add(event["EventId"])
            stack_ref = event.get("StackId") or stack_ref
            yield event
            if _is_stack_event(event) and event.get("ResourceStatus") in until:
                return
        if deadline is None:
            sleep(interval)
            continue
        remaining = deadline - clock()
        if remaining <= 0:
            return
        sleep(min(interval, remaining))  # the last poll happens at the deadline


def _newest_unseen(client: Any, stack: str, seen: set[str]) -> list[dict[str, Any]]:
    """Events not yet seen, newest first (the API's order)."""
    fresh: list[dict[str, Any]] = []
    try:
        for page in client.get_paginator("describe_stack_events").paginate(StackName=stack):
            for event in page.get("StackEvents", []):
                if event["EventId"] in seen:
                    return fresh
                fresh.append(event)
    except ClientError as exc:
        if not _is_missing_stack(exc):
            raise
    return fresh


def _is_stack_event(event: dict[str, Any]) -> bool:
    return event.get("ResourceType") == STACK_TYPE and (
        event.get("PhysicalResourceId") == event.get("StackId")
        or event.get("LogicalResourceId") == event.get("StackName")
    )


def describe(event: dict[str, Any]) -> str:
    """One line for a watch cell: time, resource, status, reason."""
    stamp = event.get("Timestamp")
    clock_time = stamp.strftime("%H:%M:%S.%f")[:-3] if hasattr(stamp, "strftime") else stamp
    reason = f"  {event['ResourceStatusReason']}" if event.get("ResourceStatusReason") else ""
    return f"{clock_time}  {event.get('LogicalResourceId')}  {event.get('ResourceStatus')}{reason}"
