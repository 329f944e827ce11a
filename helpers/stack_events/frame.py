"""Raw DescribeStackEvents records → one tidy DataFrame, oldest event first.

Everything downstream (phases, chart, CSV) reads this frame, so it is where the API's quirks
are absorbed: pages may arrive in any order or twice, timestamps come as ``datetime`` from
boto3 and as ISO strings from saved ``aws ... --output json`` files, and the API lists events
newest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

STACK_TYPE = "AWS::CloudFormation::Stack"

# Every status a stack event can carry: the ResourceStatus and StackStatus enums of
# CloudFormation's API model (botocore's cloudformation-2010-05-15), in lifecycle order.
STATUSES: tuple[str, ...] = (
    "REVIEW_IN_PROGRESS",
    "CREATE_IN_PROGRESS",
    "CREATE_FAILED",
    "CREATE_COMPLETE",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE",
    "UPDATE_IN_PROGRESS",
    "UPDATE_FAILED",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
    "UPDATE_COMPLETE",
    "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE",
    "DELETE_IN_PROGRESS",
    "DELETE_FAILED",
    "DELETE_SKIPPED",
    "DELETE_COMPLETE",
    "IMPORT_IN_PROGRESS",
    "IMPORT_FAILED",
    "IMPORT_COMPLETE",
    "IMPORT_ROLLBACK_IN_PROGRESS",
    "IMPORT_ROLLBACK_FAILED",
    "IMPORT_ROLLBACK_COMPLETE",
    "EXPORT_IN_PROGRESS",
    "EXPORT_FAILED",
    "EXPORT_COMPLETE",
    "EXPORT_ROLLBACK_IN_PROGRESS",
    "EXPORT_ROLLBACK_FAILED",
    "EXPORT_ROLLBACK_COMPLETE",
)

# AWS field → tidy column. The first block is what the lab reads; the rest is kept when present.
FIELDS: dict[str, str] = {
    "Timestamp": "timestamp",
    "StackName": "stack_name",
    "LogicalResourceId": "logical_id",
    "ResourceType": "resource_type",
    "ResourceStatus": "status",
    "ResourceStatusReason": "reason",
    "PhysicalResourceId": "physical_id",
    "EventId": "event_id",
    "StackId": "stack_id",
    "ClientRequestToken": "client_request_token",
    "DetailedStatus": "detailed_status",
}
COLUMNS: tuple[str, ...] = (*FIELDS.values(), "deployment", "is_stack")


def status_dtype(extra: Iterable[str] = ()) -> pd.CategoricalDtype:
    """The categorical dtype of ``status``; statuses AWS adds later are appended, not lost."""
    unknown = sorted(set(extra) - set(STATUSES))
    return pd.CategoricalDtype([*STATUSES, *unknown])


def empty_frame() -> pd.DataFrame:
    """A frame with no events but every column and dtype, so callers need no special case."""
    return _finish(pd.DataFrame({column: pd.Series(dtype=object) for column in FIELDS.values()}))


def events_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Tidy frame from StackEvents records (AWS field names), in the order the API gave them.

    Records are taken as the API lists them, newest first; events that share a timestamp keep
    that order reversed, which is the order they happened in. Duplicates (same EventId, e.g. a
    page read twice) are dropped.
    """
    raw = pd.DataFrame.from_records(list(records))
    if raw.empty:
        return empty_frame()
    for field in FIELDS:
        if field not in raw.columns:
            raw[field] = None
    frame = raw[list(FIELDS)].rename(columns=FIELDS)
    frame["_seq"] = range(len(frame))
    frame = frame.drop_duplicates("event_id", keep="first")
    return _finish(frame)


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    if "_seq" not in frame.columns:
        frame["_seq"] = range(len(frame))
    frame = frame.sort_values(["timestamp", "_seq"], ascending=[True, False], kind="stable")
    frame = frame.drop(columns="_seq").reset_index(drop=True)
    for column in FIELDS.values():
        if column not in ("timestamp", "status"):
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    frame["status"] = frame["status"].astype(status_dtype(frame["status"].dropna().unique()))
    frame["deployment"] = _deployment_numbers(frame)
    frame["is_stack"] = _is_stack(frame)
    return frame[list(COLUMNS)]


def _deployment_numbers(frame: pd.DataFrame) -> pd.Series:
    """1, 2, … per stack name, in the order its stacks (stack ids) first appear."""
    if frame.empty:
        return pd.Series(dtype="int64")
    first = frame.groupby("stack_id", sort=False)["timestamp"].min().rename("first").reset_index()
    names = frame.drop_duplicates("stack_id").set_index("stack_id")["stack_name"]
    first["stack_name"] = first["stack_id"].map(names)
    first = first.sort_values("first", kind="stable")
    first["deployment"] = first.groupby("stack_name", sort=False).cumcount() + 1
    return frame["stack_id"].map(first.set_index("stack_id")["deployment"]).astype("int64")


def _is_stack(frame: pd.DataFrame) -> pd.Series:
    """True for the stack's own events (not for a nested stack that is one of its resources)."""
    is_type = frame["resource_type"] == STACK_TYPE
    by_id = frame["physical_id"] == frame["stack_id"]
    by_name = frame["physical_id"].isna() & (frame["logical_id"] == frame["stack_name"])
    return (is_type & (by_id | by_name)).astype(bool)


def select_deployment(frame: pd.DataFrame, deployment: int | str | None) -> pd.DataFrame:
    """Events of one deployment: ``None``/``"all"`` keeps all, ``"latest"`` the newest, or N."""
    if deployment is None or deployment == "all" or frame.empty:
        return frame
    if deployment == "latest":
        latest = frame.groupby("stack_name", sort=False)["deployment"].transform("max")
        return frame[frame["deployment"] == latest].reset_index(drop=True)
    if isinstance(deployment, int) and not isinstance(deployment, bool):
        chosen = frame[frame["deployment"] == deployment].reset_index(drop=True)
        if chosen.empty:
            known = sorted(frame["deployment"].unique().tolist())
            raise ValueError(f"no deployment {deployment}; the events hold {known}")
        return chosen
    raise ValueError(f"deployment must be 'all', 'latest' or a number, not {deployment!r}")
