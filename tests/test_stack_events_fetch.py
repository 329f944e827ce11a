"""Fetching events: every page, deleted stacks by name, saved CLI output, the live tail.

The paging and deleted-stack cases use botocore's Stubber on a real client: requests and
responses are checked against CloudFormation's API model, so the shapes are AWS's own.
"""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from botocore.stub import Stubber
from stack_events_samples import START, Stack, created, deleted, native_rollback, pages

from helpers.errors import InputError
from helpers.stack_events import (
    StackNotFound,
    describe,
    from_describe_output,
    stack_events,
    tail,
)


@pytest.fixture
def client():
    return boto3.client(
        "cloudformation",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def missing(name: str) -> dict:
    return {
        "service_error_code": "ValidationError",
        "service_message": f"Stack with id {name} does not exist",
        "http_status_code": 400,
    }


def add_pages(stubber: Stubber, stack_ref: str, events: list[dict], size: int) -> None:
    chunks = pages(events, size)
    for number, chunk in enumerate(chunks):
        request = {"StackName": stack_ref}
        if number:
            request["NextToken"] = f"token-{number}"
        response = {"StackEvents": chunk}
        if number + 1 < len(chunks):
            response["NextToken"] = f"token-{number + 1}"
        stubber.add_response("describe_stack_events", response, request)


def summary(stack: Stack, status: str, created_at) -> dict:
    return {
        "StackId": stack.stack_id,
        "StackName": stack.name,
        "CreationTime": created_at,
        "StackStatus": status,
    }


def test_every_page_is_read_oldest_first(client):
    stack = deleted(created())
    with Stubber(client) as stubber:
        add_pages(stubber, stack.name, stack.api(), size=4)
        frame = stack_events(stack.name, client=client)
        stubber.assert_no_pending_responses()

    assert len(frame) == len(stack.events)
    assert frame["event_id"].tolist() == [e["EventId"] for e in stack.events]


def test_a_deleted_stack_is_found_by_name_through_list_stacks(client):
    old = deleted(created(Stack("myStack-abc1234")))
    new = deleted(created(Stack("myStack-abc1234", start=old.now + timedelta(minutes=3))))
    other = Stack("otherStack")
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_stack_events", **missing(new.name))
        stubber.add_response(
            "list_stacks",
            {
                "StackSummaries": [summary(new, "DELETE_COMPLETE", new.events[0]["Timestamp"])],
                "NextToken": "more",
            },
            {},
        )
        stubber.add_response(
            "list_stacks",
            {
                "StackSummaries": [
                    summary(other, "CREATE_COMPLETE", START),
                    summary(old, "DELETE_COMPLETE", old.events[0]["Timestamp"]),
                ]
            },
            {"NextToken": "more"},
        )
        add_pages(stubber, new.stack_id, new.api(), size=5)
        frame = stack_events(new.name, client=client)
        stubber.assert_no_pending_responses()

    assert set(frame["stack_id"]) == {new.stack_id}
    assert frame["status"].iloc[-1] == "DELETE_COMPLETE"


def test_all_deployments_of_a_name(client):
    old = deleted(created(Stack("myStack-abc1234")))
    new = native_rollback(Stack("myStack-abc1234", start=old.now + timedelta(minutes=3)))
    with Stubber(client) as stubber:
        stubber.add_response(
            "list_stacks",
            {
                "StackSummaries": [
                    summary(new, "ROLLBACK_COMPLETE", new.events[0]["Timestamp"]),
                    summary(old, "DELETE_COMPLETE", old.events[0]["Timestamp"]),
                ]
            },
            {},
        )
        add_pages(stubber, old.stack_id, old.api(), size=100)
        add_pages(stubber, new.stack_id, new.api(), size=100)
        frame = stack_events(new.name, client=client, deployments="all")

    assert frame.groupby("deployment")["stack_id"].first().tolist() == [
        old.stack_id,
        new.stack_id,
    ]


def test_an_unknown_stack_says_so(client):
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_stack_events", **missing("nope"))
        stubber.add_response("list_stacks", {"StackSummaries": []}, {})
        with pytest.raises(StackNotFound, match="no stack named 'nope'"):
            stack_events("nope", client=client)


def test_saved_cli_output_is_read(tmp_path):
    stack = native_rollback()
    path = tmp_path / "events.json"
    path.write_text(json.dumps(stack.cli_json(), indent=4))
    frame = from_describe_output(path)
    assert frame["event_id"].tolist() == [e["EventId"] for e in stack.events]

    # pages saved one by one, in any order
    document = stack.cli_json()["StackEvents"]
    paged = [{"StackEvents": chunk} for chunk in reversed(pages(document, 4))]
    path.write_text(json.dumps(paged))
    assert from_describe_output(path)["event_id"].tolist() == frame["event_id"].tolist()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"StackEvents": [\n{"EventId": "x",\n}', r"events\.json:3: not JSON"),
        ('{"Stacks": []}', r"events\.json: StackEvents: expected the JSON object"),
        ("missing-timestamp", r"events\.json: StackEvents\[1\]\.Timestamp: missing"),
        ("bad-timestamp", r"StackEvents\[0\]\.Timestamp: not a timestamp: 'yesterday'"),
    ],
)
def test_bad_saved_output_names_file_line_and_field(tmp_path, text, expected):
    document = created().cli_json()
    if text == "missing-timestamp":
        del document["StackEvents"][1]["Timestamp"]
        text = json.dumps(document)
    elif text == "bad-timestamp":
        document["StackEvents"][0]["Timestamp"] = "yesterday"
        text = json.dumps(document)
    path = tmp_path / "events.json"
    path.write_text(text)
    with pytest.raises(InputError, match=expected):
        from_describe_output(path)


def test_a_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="absent.json: cannot read"):
        from_describe_output(tmp_path / "absent.json")


def test_tail_waits_for_the_stack_and_yields_each_event_once(client):
    stack = native_rollback()
    newest_first = stack.api()
    first_half = newest_first[6:]  # the oldest events
    sleeps: list[float] = []
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_stack_events", **missing(stack.name))
        stubber.add_response(
            "describe_stack_events", {"StackEvents": first_half}, {"StackName": stack.name}
        )
        # Later polls ask by id; the newest page reaches an event already seen, so the
        # older pages are not read again.
        stubber.add_response(
            "describe_stack_events",
            {"StackEvents": newest_first[:8], "NextToken": "older"},
            {"StackName": stack.stack_id},
        )
        events = list(tail(stack.name, client=client, interval=2.5, sleep=sleeps.append))
        stubber.assert_no_pending_responses()

    assert [e["EventId"] for e in events] == [e["EventId"] for e in stack.events]
    assert sleeps == [2.5, 2.5]
    assert describe(events[-1]).endswith("myStack-abc1234  ROLLBACK_COMPLETE")
    assert "The key pair 'udacity' does not exist" in describe(events[6])


def test_tail_gives_up_at_the_timeout(client):
    now = [0.0]
    with Stubber(client) as stubber:
        for _ in range(4):  # at 0, 5, 10 and 12 s
            stubber.add_client_error("describe_stack_events", **missing("later"))
        events = list(
            tail(
                "later",
                client=client,
                interval=5,
                timeout=12,
                sleep=lambda s: now.__setitem__(0, now[0] + s),
                clock=lambda: now[0],
            )
        )
        stubber.assert_no_pending_responses()
    assert events == []
    assert now[0] == 12
