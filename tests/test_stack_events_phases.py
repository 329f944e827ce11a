"""Events → tidy frame → phases, on sequences shaped like AWS's DescribeStackEvents output."""

from __future__ import annotations

import random

import pandas as pd
import pytest
from stack_events_samples import (
    KEY_PAIR_REASON,
    ROLLBACK_REASON,
    UPDATE_FAILED_REASON,
    Stack,
    created,
    deleted,
    many_resources,
    native_rollback,
    pages,
    update_rollback,
)

from helpers.stack_events import events_frame, phases, select_deployment
from helpers.stack_events.frame import COLUMNS, STATUSES


def rows(table: pd.DataFrame, logical_id: str) -> list[tuple[str, str]]:
    chosen = table[table["logical_id"] == logical_id]
    return list(zip(chosen["phase"].astype(str), chosen["outcome"], strict=True))


def test_frame_is_tidy_oldest_first_with_tz_aware_times_and_categorical_status():
    stack = created()
    frame = events_frame(stack.api())

    assert tuple(frame.columns) == COLUMNS
    assert len(frame) == len(stack.events)
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["timestamp"].is_monotonic_increasing
    assert isinstance(frame["status"].dtype, pd.CategoricalDtype)
    assert list(frame["status"].cat.categories[: len(STATUSES)]) == list(STATUSES)
    assert frame["status"].iloc[0] == "REVIEW_IN_PROGRESS"
    assert frame["status"].iloc[-1] == "CREATE_COMPLETE"
    assert frame["is_stack"].tolist() == [
        e["LogicalResourceId"] == stack.name for e in stack.events
    ]
    assert frame.loc[frame["logical_id"] == "Ec2Instance", "physical_id"].tolist() == [
        "",
        "i-0123",
        "i-0123",
    ]


def test_create_only_ends_alive_and_ongoing():
    table = phases(events_frame(created().api()))

    assert rows(table, "myStack-abc1234") == [
        ("review", "ended"),
        ("create", "complete"),
        ("alive", "ongoing"),
    ]
    # The bare CREATE_IN_PROGRESS and the "Resource creation Initiated" one are one interval.
    assert rows(table, "InstanceSecurityGroup") == [("create", "complete"), ("alive", "ongoing")]
    sg_create = table[(table["logical_id"] == "InstanceSecurityGroup")].iloc[0]
    assert sg_create["duration"] == pd.Timedelta(seconds=5.5)
    assert sg_create["physical_id"] == "sg-0abc"
    # The stack's rows come first, then resources in the order they first appear.
    assert table["logical_id"].drop_duplicates().tolist() == [
        "myStack-abc1234",
        "InstanceSecurityGroup",
        "Ec2Instance",
    ]


def test_create_then_delete_is_a_delete_not_a_rollback():
    table = phases(events_frame(deleted(created()).api()))

    assert rows(table, "myStack-abc1234") == [
        ("review", "ended"),
        ("create", "complete"),
        ("alive", "ended"),
        ("delete", "complete"),
    ]
    assert rows(table, "Ec2Instance") == [
        ("create", "complete"),
        ("alive", "ended"),
        ("delete", "complete"),
    ]
    stack_delete = table[(table["phase"] == "delete") & table["is_stack"]].iloc[0]
    assert stack_delete["reason"] == "User Initiated"
    assert stack_delete["end_status"] == "DELETE_COMPLETE"
    assert "rollback" not in set(table["phase"].astype(str))


def test_cloudformation_rollback_keeps_the_failure_and_its_reason():
    table = phases(events_frame(native_rollback().api()))

    assert rows(table, "myStack-abc1234") == [
        ("review", "ended"),
        ("create", "failed"),
        ("rollback", "complete"),
    ]
    instance = table[table["logical_id"] == "Ec2Instance"]
    assert rows(table, "Ec2Instance") == [("create", "failed")]
    assert instance["reason"].iloc[0] == KEY_PAIR_REASON
    assert instance["end_status"].iloc[0] == "CREATE_FAILED"
    # The security group's delete happened inside the stack's rollback: it is a rollback.
    assert rows(table, "InstanceSecurityGroup") == [
        ("create", "complete"),
        ("alive", "ended"),
        ("rollback", "complete"),
    ]
    stack_create = table[table["is_stack"] & (table["phase"] == "create")].iloc[0]
    assert stack_create["reason"] == ROLLBACK_REASON


def test_update_rollback():
    table = phases(events_frame(update_rollback().api()))

    assert rows(table, "myStack-abc1234") == [
        ("review", "ended"),
        ("create", "complete"),
        ("alive", "ended"),
        ("update", "failed"),
        ("update-rollback", "complete"),
        ("alive", "ongoing"),
    ]
    assert rows(table, "Ec2Instance") == [
        ("create", "complete"),
        ("alive", "ended"),
        ("update", "failed"),
        ("alive", "ended"),
        ("update-rollback", "complete"),
        ("alive", "ongoing"),
    ]
    failed = table[(table["logical_id"] == "Ec2Instance") & (table["outcome"] == "failed")]
    assert failed["reason"].tolist() == [UPDATE_FAILED_REASON]
    # the cleanup step continues the update-rollback instead of opening a phase of its own
    stack_rollback = table[table["is_stack"] & (table["phase"] == "update-rollback")].iloc[0]
    assert stack_rollback["end_status"] == "UPDATE_ROLLBACK_COMPLETE"


def test_pages_out_of_order_and_read_twice_give_the_same_frame():
    api = deleted(created()).api()
    expected = events_frame(api)
    shuffled = pages(api, 3)
    random.Random(7).shuffle(shuffled)
    shuffled.append(shuffled[0])  # one page read twice
    frame = events_frame(event for page in shuffled for event in page)

    assert len(frame) == len(api)
    assert frame["event_id"].tolist() == expected["event_id"].tolist()
    pd.testing.assert_frame_equal(phases(frame), phases(expected))


def test_iso_strings_from_the_cli_and_datetimes_from_boto3_agree():
    stack = native_rollback()
    from_boto3 = events_frame(stack.api())
    from_cli = events_frame(stack.cli_json()["StackEvents"])
    pd.testing.assert_frame_equal(from_boto3, from_cli)


def test_events_sharing_a_timestamp_keep_the_order_the_api_implies():
    stack = Stack("fast")
    stack.stack("CREATE_IN_PROGRESS", "User Initiated", after=0)
    stack.resource("Topic", "AWS::SNS::Topic", "CREATE_IN_PROGRESS", after=0)
    stack.resource("Topic", "AWS::SNS::Topic", "CREATE_COMPLETE", physical_id="t", after=0)
    stack.stack("CREATE_COMPLETE", after=0)
    frame = events_frame(stack.api())

    assert frame["status"].astype(str).tolist() == [
        "CREATE_IN_PROGRESS",
        "CREATE_IN_PROGRESS",
        "CREATE_COMPLETE",
        "CREATE_COMPLETE",
    ]
    assert rows(phases(frame), "Topic") == [("create", "complete"), ("alive", "ongoing")]


def test_ten_thousand_events():
    stack = many_resources(1428)
    frame = events_frame(stack.api())
    table = phases(frame)

    assert len(frame) == 10_003
    assert frame["timestamp"].is_monotonic_increasing
    resources = table[~table["is_stack"]]
    assert resources["logical_id"].nunique() == 1428
    per_resource = resources.groupby("logical_id")["phase"].apply(lambda s: list(s.astype(str)))
    assert (per_resource.map(tuple) == ("create", "alive", "update", "alive", "delete")).all()
    assert set(resources["outcome"]) == {"complete", "ended"}
    assert rows(table, "bigStack") == [
        ("create", "complete"),
        ("alive", "ended"),
        ("update", "complete"),
        ("alive", "ended"),
        ("delete", "complete"),
    ]


def test_several_deployments_of_one_stack_name():
    first = deleted(created(Stack("myStack-abc1234")))
    second = native_rollback(Stack("myStack-abc1234", start=first.now + pd.Timedelta(minutes=5)))
    frame = events_frame(second.api() + first.api())

    assert sorted(frame["deployment"].unique()) == [1, 2]
    assert set(frame.loc[frame["deployment"] == 1, "stack_id"]) == {first.stack_id}
    latest = select_deployment(frame, "latest")
    assert set(latest["stack_id"]) == {second.stack_id}

    everything = phases(frame)
    assert set(everything["deployment"]) == {1, 2}
    assert rows(phases(frame, deployment=1), "myStack-abc1234")[-1] == ("delete", "complete")
    assert rows(phases(frame, deployment="latest"), "myStack-abc1234")[-1] == (
        "rollback",
        "complete",
    )
    with pytest.raises(ValueError, match="no deployment 3"):
        phases(frame, deployment=3)


def test_a_status_aws_adds_later_is_kept():
    stack = created()
    stack.stack("FUTURE_STATUS_IN_PROGRESS")
    frame = events_frame(stack.api())
    assert frame["status"].iloc[-1] == "FUTURE_STATUS_IN_PROGRESS"
    assert "FUTURE_STATUS_IN_PROGRESS" in frame["status"].cat.categories


def test_no_events():
    frame = events_frame([])
    assert tuple(frame.columns) == COLUMNS
    assert frame.empty
    table = phases(frame)
    assert table.empty
    assert "phase" in table.columns
