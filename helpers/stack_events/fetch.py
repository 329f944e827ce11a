"""Stack events from CloudFormation (local or real) or from a saved ``describe-stack-events``.

boto3 finds the endpoint, region and credentials the usual way, so the same calls reach the
local AWS (``AWS_ENDPOINT_URL``, set by the local services) and real AWS.

A stack that has been deleted no longer answers to its name — only to its stack id (ARN), as
AWS documents for DescribeStackEvents. The lab's stacks are deleted by the pipeline's
rollback before anyone charts them, so a name that does not resolve is looked up in
``list_stacks`` and the newest stack of that name is used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.errors import InputError, LabError
from helpers.stack_events.frame import events_frame

LOCAL_REGION = "us-east-1"
REQUIRED_FIELDS = ("EventId", "StackId", "StackName", "Timestamp", "ResourceStatus")


class StackNotFound(LabError):
    """No stack, live or deleted, has this name."""


def cloudformation_client(client: Any = None) -> Any:
    """The given client, or boto3's default one (a region is supplied for the local AWS)."""
    if client is not None:
        return client
    import boto3

    session = boto3.session.Session()
    region = session.region_name
    if region is None and os.environ.get("AWS_ENDPOINT_URL"):
        region = LOCAL_REGION
    return session.client("cloudformation", region_name=region)


def stack_events(stack: str, *, client: Any = None, deployments: str = "latest") -> pd.DataFrame:
    """All events of a stack (name or ARN, live or deleted) as a tidy frame, oldest first.

    ``deployments="all"`` also fetches every earlier stack that had this name (their
    ``deployment`` column numbers them 1, 2, … in creation order).
    """
    cfn = cloudformation_client(client)
    if deployments not in ("latest", "all"):
        raise ValueError(f"deployments must be 'latest' or 'all', not {deployments!r}")
    if deployments == "all" and not stack.startswith("arn:"):
        stack_ids = [s["StackId"] for s in stacks_named(cfn, stack)]
        if not stack_ids:
            raise StackNotFound(_not_found_message(stack))
        return events_frame(r for stack_id in stack_ids for r in raw_events(cfn, stack_id))
    return events_frame(raw_events(cfn, stack))


def raw_events(client: Any, stack: str) -> Iterator[dict[str, Any]]:
    """Every page of DescribeStackEvents, as the API lists them (newest first)."""
    from botocore.exceptions import ClientError

    started = False
    try:
        for event in _pages(client, stack):
            started = True
            yield event
        return
    except ClientError as exc:
        if started or not _is_missing_stack(exc) or stack.startswith("arn:"):
            raise
    yield from _pages(client, latest_stack_id(client, stack))


def _pages(client: Any, stack: str) -> Iterator[dict[str, Any]]:
    paginator = client.get_paginator("describe_stack_events")
    for page in paginator.paginate(StackName=stack):
        yield from page.get("StackEvents", [])


def latest_stack_id(client: Any, name: str) -> str:
    """The ARN of the newest stack named ``name``, deleted ones included."""
    candidates = stacks_named(client, name)
    if not candidates:
        raise StackNotFound(_not_found_message(name))
    return candidates[-1]["StackId"]


def stacks_named(client: Any, name: str) -> list[dict[str, Any]]:
    """Every stack summary with this name (live and deleted), oldest first."""
    paginator = client.get_paginator("list_stacks")
    found = [
        summary
        for page in paginator.paginate()
        for summary in page.get("StackSummaries", [])
        if summary.get("StackName") == name
    ]
    return sorted(found, key=lambda s: pd.Timestamp(s["CreationTime"]))


def _is_missing_stack(exc: Exception) -> bool:
    error = getattr(exc, "response", {}).get("Error", {})
    return error.get("Code") == "ValidationError" and "does not exist" in error.get("Message", "")


def _not_found_message(name: str) -> str:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    where = f"the local AWS at {endpoint}" if endpoint else "this AWS account and region"
    return f"no stack named {name!r}, live or deleted, in {where}"


def from_describe_output(path: str | Path) -> pd.DataFrame:
    """Events saved with ``aws cloudformation describe-stack-events --output json > FILE``.

    Also accepts a JSON list of such objects (pages saved one by one, in any order).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=path) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc.msg}", file=path, line=exc.lineno) from None
    pages = document if isinstance(document, list) else [document]
    records: list[dict[str, Any]] = []
    for number, page in enumerate(pages):
        where = f"[{number}]." if isinstance(document, list) else ""
        if not isinstance(page, dict) or not isinstance(page.get("StackEvents"), list):
            raise InputError(
                "expected the JSON object that `aws cloudformation describe-stack-events "
                "--output json` prints, with a StackEvents list",
                file=path,
                field=f"{where}StackEvents",
            )
        for index, event in enumerate(page["StackEvents"]):
            _check_event(event, path, f"{where}StackEvents[{index}]")
            records.append(event)
    try:
        return events_frame(records)
    except (ValueError, TypeError) as exc:
        raise InputError(f"bad Timestamp: {exc}", file=path, field="Timestamp") from None


def _check_event(event: Any, path: Path, where: str) -> None:
    if not isinstance(event, dict):
        raise InputError("expected an event object", file=path, field=where)
    for field in REQUIRED_FIELDS:
        if not event.get(field):
            raise InputError("missing", file=path, field=f"{where}.{field}")
    try:
        pd.Timestamp(event["Timestamp"])
    except (ValueError, TypeError):
        raise InputError(
            f"not a timestamp: {event['Timestamp']!r}", file=path, field=f"{where}.Timestamp"
        ) from None
