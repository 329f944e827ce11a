"""Events → intervals: what each resource (the stack first) was doing, from when to when.

A status that ends in ``_IN_PROGRESS`` opens an interval; the next status of the same resource
closes it and says how it ended. A resource's own statuses do not tell a rollback from a
plain delete (both are DELETE_IN_PROGRESS → DELETE_COMPLETE), so each resource event is read
in the context of the stack's status at that moment — that is the lesson: the pipeline's
rollback is a *delete*, CloudFormation's own is a *rollback*.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.stack_events.frame import select_deployment

# Phase kinds in the order the chart's legend lists them.
PHASES: tuple[str, ...] = (
    "review",
    "create",
    "alive",
    "update",
    "update-rollback",
    "rollback",
    "delete",
    "import",
)
PHASE_DTYPE = pd.CategoricalDtype(PHASES, ordered=True)

# What each status opens. Statuses not listed close the running interval and open nothing.
OPENS: dict[str, str] = {
    "REVIEW_IN_PROGRESS": "review",
    "CREATE_IN_PROGRESS": "create",
    "CREATE_COMPLETE": "alive",
    "UPDATE_IN_PROGRESS": "update",
    "UPDATE_COMPLETE": "alive",
    "UPDATE_FAILED": "alive",  # the resource (or a stack without rollback) still exists
    "UPDATE_ROLLBACK_IN_PROGRESS": "update-rollback",
    "UPDATE_ROLLBACK_COMPLETE": "alive",
    "ROLLBACK_IN_PROGRESS": "rollback",
    "DELETE_IN_PROGRESS": "delete",
    "DELETE_FAILED": "alive",  # what failed to be deleted is still there
    "IMPORT_IN_PROGRESS": "import",
    "IMPORT_COMPLETE": "alive",
    "IMPORT_ROLLBACK_IN_PROGRESS": "rollback",
}
# Steps inside an interval that neither open nor close one.
CONTINUES = frozenset(
    {"UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"}
)
# A stack status that ends the previous interval as a failure.
FAILS = frozenset({"ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS"})
FAILS |= {"IMPORT_ROLLBACK_IN_PROGRESS"}
_ROLLBACK_CONTEXT = frozenset({"ROLLBACK_IN_PROGRESS", "IMPORT_ROLLBACK_IN_PROGRESS"})
_UPDATE_ROLLBACK_CONTEXT = frozenset(
    {"UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"}
)

COLUMNS: tuple[str, ...] = (
    "stack_name",
    "deployment",
    "logical_id",
    "resource_type",
    "physical_id",
    "is_stack",
    "phase",
    "start",
    "end",
    "duration",
    "start_status",
    "end_status",
    "outcome",
    "reason",
    "stack_id",
)


def phases(events: pd.DataFrame, *, deployment: int | str | None = "all") -> pd.DataFrame:
    """One row per interval of one resource, the stack's rows first, then resources in the
    order they first appear. ``outcome`` is complete, failed, cancelled, skipped, ended (an
    ``alive`` interval that ended) or ongoing (no event has closed it yet); ``reason`` is the
    closing event's reason, else the opening one's.
    """
    events = select_deployment(events, deployment)
    if events.empty:
        return _empty()
    status = events["status"].astype(str)
    kind = _kinds(events, status)
    kept = ~status.isin(CONTINUES).to_numpy()
    key = _resource_keys(events)

    ev = pd.DataFrame(
        {
            "key": key,
            "status": status,
            "kind": kind,
            "timestamp": events["timestamp"],
            "reason": events["reason"],
        }
    )[kept]
    # A repeated IN_PROGRESS (AWS sends two per resource create: a bare one, then "Resource
    # creation Initiated") continues the interval it opened.
    by_key = ev.groupby("key", sort=False)
    prev_status = by_key["status"].shift()
    prev_kind = by_key["kind"].shift()
    repeat = ev["status"].str.endswith("_IN_PROGRESS") & (ev["status"] == prev_status)
    repeat &= ev["kind"] == prev_kind
    ev = ev[~repeat.to_numpy()]

    by_key = ev.groupby("key", sort=False)
    nxt_time = by_key["timestamp"].shift(-1)
    nxt_status = by_key["status"].shift(-1)
    nxt_reason = by_key["reason"].shift(-1)
    opens = ev["kind"].notna().to_numpy()

    source = events.loc[ev.index[opens]]
    stack_end = events.groupby("stack_id")["timestamp"].transform("max")
    end = nxt_time[opens].fillna(stack_end.loc[ev.index[opens]])
    end_status = nxt_status[opens]
    phase_kind = ev["kind"][opens]
    # An alive interval's own reason is why it ended; the reason it began belongs to the
    # interval before it.
    opening_reason = ev["reason"][opens].where(phase_kind != "alive")
    reason = nxt_reason[opens].where(nxt_reason[opens].notna(), opening_reason)

    result = pd.DataFrame(
        {
            "stack_name": source["stack_name"].to_numpy(),
            "deployment": source["deployment"].to_numpy(),
            "logical_id": source["logical_id"].to_numpy(),
            "resource_type": source["resource_type"].to_numpy(),
            "physical_id": _last_physical_ids(events, key).loc[source.index].to_numpy(),
            "is_stack": source["is_stack"].to_numpy(),
            "phase": pd.Categorical(phase_kind.to_numpy(), dtype=PHASE_DTYPE),
            "start": source["timestamp"].to_numpy(),
            "end": end.to_numpy(),
            "start_status": source["status"].astype(str).to_numpy(),
            "end_status": end_status.to_numpy(),
            "outcome": _outcomes(phase_kind, end_status, reason).to_numpy(),
            "reason": reason.to_numpy(),
            "stack_id": source["stack_id"].to_numpy(),
            "_first": key.map(_first_seen(key)).loc[source.index].to_numpy(),
        }
    )
    result["start"] = pd.to_datetime(result["start"], utc=True)
    result["end"] = pd.to_datetime(result["end"], utc=True)
    result["duration"] = result["end"] - result["start"]
    result["end_status"] = result["end_status"].astype(object).where(result["end_status"].notna())
    result["reason"] = result["reason"].astype(object).where(result["reason"].notna(), None)
    result = result.sort_values(
        ["stack_name", "deployment", "is_stack", "_first", "start"],
        ascending=[True, True, False, True, True],
        kind="stable",
    )
    return result[list(COLUMNS)].reset_index(drop=True)


def _kinds(events: pd.DataFrame, status: pd.Series) -> pd.Series:
    """The kind each event opens, read in the stack's context (see the module docstring)."""
    kind = status.map(OPENS)
    stack_status = status.where(events["is_stack"].to_numpy())
    context = stack_status.groupby(events["stack_id"].to_numpy(), sort=False).ffill()
    resource = ~events["is_stack"].to_numpy()
    starts = status.isin(["CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS"])
    in_rollback = resource & context.isin(_ROLLBACK_CONTEXT) & (status == "DELETE_IN_PROGRESS")
    in_update_rollback = resource & context.isin(_UPDATE_ROLLBACK_CONTEXT) & starts
    kind = kind.mask(in_rollback, "rollback").mask(in_update_rollback, "update-rollback")
    return kind


def _resource_keys(events: pd.DataFrame) -> pd.Series:
    return events["stack_id"].astype(str) + "\x1f" + events["logical_id"].astype(str)


def _first_seen(key: pd.Series) -> pd.Series:
    return pd.Series(np.arange(len(key)), index=key.index).groupby(key.to_numpy()).min()


def _last_physical_ids(events: pd.DataFrame, key: pd.Series) -> pd.Series:
    """The resource's physical id as last reported (a create's first event has none yet)."""
    physical = events["physical_id"].where(events["physical_id"] != "")
    last = physical.groupby(key.to_numpy()).last()
    return key.map(last)


def _outcomes(kind: pd.Series, end_status: pd.Series, reason: pd.Series) -> pd.Series:
    ended = end_status.notna()
    text = end_status.fillna("")
    failed = text.str.endswith("_FAILED") | text.isin(FAILS)
    cancelled = failed & reason.fillna("").str.contains("cancel", case=False)
    outcome = pd.Series("ongoing", index=kind.index, dtype=object)
    outcome = outcome.mask(ended, "ended")
    outcome = outcome.mask(ended & (kind != "alive") & text.str.endswith("_COMPLETE"), "complete")
    outcome = outcome.mask(failed & (kind != "alive"), "failed")
    outcome = outcome.mask(cancelled & (kind != "alive"), "cancelled")
    outcome = outcome.mask(text == "DELETE_SKIPPED", "skipped")
    return outcome


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype=object) for column in COLUMNS})
    frame["phase"] = frame["phase"].astype(PHASE_DTYPE)
    for column in ("start", "end"):
        frame[column] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["duration"] = pd.Series(dtype="timedelta64[ns]")
    return frame
