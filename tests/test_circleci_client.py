"""The CircleCI client against a fake circleci.com on 127.0.0.1 that injects faults.

Waits go through a fake clock (no real sleeping, no timed assertions): the tests read which
waits the client asked for.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import circleci_fakes as fake_api
import pytest
from circleci_fakes import SLUG, FakeCircleCI, policy

from helpers.circleci import spec
from helpers.circleci.client import CircleCIClient, ProjectSlug
from helpers.circleci.errors import (
    AuthError,
    CircleCIError,
    NotFoundError,
    RateLimited,
    ServerError,
    TransportError,
    UnexpectedResponse,
)
from helpers.circleci.transport import parse_retry_after
from helpers.errors import InputError, LabError

TRIGGER = f"/api/v2/project/{SLUG}/pipeline"


# --- happy paths, shaped by the spec (the fake validates every body it sees) ------------------


def test_trigger_sends_the_token_and_a_spec_shaped_body(client, fake) -> None:
    created = client.trigger_pipeline(SLUG, branch="main", parameters={"deploy": True, "n": 2})
    assert created.state == "created" and created.number == 1
    (call,) = fake.calls("POST", TRIGGER)
    assert call.headers["circle-token"] == fake.token
    assert call.body == {"branch": "main", "parameters": {"deploy": True, "n": 2}}


def test_pipeline_workflows_jobs_and_details(client, fake) -> None:
    wf_id = fake_api.new_id()
    pid = fake_api.new_id()
    wf = fake_api.workflow(pid, status="failed", wid=wf_id)
    jobs = [fake_api.job("build", "success", number=1), fake_api.job("smoke", "failed", number=2)]
    fake.add_pipeline([fake_api.Snapshot("created", [wf], {wf_id: jobs})], pid=pid)

    assert client.get_pipeline(pid).state == "created"
    assert client.get_pipeline_config(pid).source.startswith("version")
    assert [w.id for w in client.list_workflows(pid)] == [wf_id]
    assert client.get_workflow(wf_id).status == "failed"
    assert [j.name for j in client.list_jobs(wf_id)] == ["build", "smoke"]
    assert client.get_job(SLUG, 2).number == 2
    assert client.cancel_workflow(wf_id).message == "Accepted."
    assert client.cancel_job(SLUG, 2).message == "Canceled"
    assert client.rerun_workflow(wf_id).workflow_id
    assert fake.calls("POST", f"/api/v2/workflow/{wf_id}/rerun")[0].body == {"from_failed": True}
    assert client.me().login == "student"


def test_step_logs_follow_output_urls_without_sending_the_token_there(client, fake) -> None:
    fake.add_failed_build(7, ["running smoke test\n", "curl: (7) Failed to connect\n"])
    logs = client.step_logs(SLUG, 7)
    assert [(log.step, log.failed) for log in logs] == [
        ("Spin up environment", False),
        ("smoke test", True),
    ]
    assert logs[1].action.exit_code == 1
    assert "Failed to connect" in logs[1].text
    # v1.1 speaks "github", not "gh"
    assert fake.calls("GET", "/api/v1.1/project/github/udacity/rollback-lab/7")
    # output_url on the same host still gets the token; a foreign host does not (below)
    assert all("circle-token" in r.headers for r in fake.calls("GET", "/output/"))


def test_output_on_another_host_never_receives_the_token(client, fake) -> None:
    other = FakeCircleCI(token="unused").start()
    try:
        other.outputs["1/0"] = fake_api.log_lines("hello\n")
        lines = client.get_output(f"{other.url}/output/1/0?X-Amz-Signature=abc")
        assert [line.message for line in lines] == ["hello\n"]
        (call,) = other.calls("GET", "/output/")
        assert "circle-token" not in call.headers and fake.token not in str(call.headers)
    finally:
        other.stop()


def test_env_vars_set_list_get_delete(client, fake) -> None:
    made = client.set_env_var(SLUG, "AWS_DEFAULT_REGION", "us-east-1")
    assert made.value == "xxxxst-1"  # masked as CircleCI masks it
    assert [v.name for v in client.list_env_vars(SLUG)] == ["AWS_DEFAULT_REGION"]
    assert client.get_env_var(SLUG, "AWS_DEFAULT_REGION").value == "xxxxst-1"
    assert "deleted" in client.delete_env_var(SLUG, "AWS_DEFAULT_REGION").message
    with pytest.raises(NotFoundError):
        client.get_env_var(SLUG, "AWS_DEFAULT_REGION")


# --- pagination -------------------------------------------------------------------------------


@pytest.mark.parametrize("omit_last_token", [False, True])
def test_lists_follow_page_tokens_to_the_end(client, fake, omit_last_token: bool) -> None:
    fake.page_size = 2
    fake.omit_last_token = omit_last_token
    for i in range(5):
        fake.envvars[f"VAR_{i}"] = "value"
    names = [v.name for v in client.list_env_vars(SLUG)]
    assert names == [f"VAR_{i}" for i in range(5)]
    calls = fake.calls("GET", f"/api/v2/project/{SLUG}/envvar")
    assert [c.query.get("page-token") for c in calls] == [None, ["2"], ["4"]]
    # circleci.com sometimes omits the token on the last page, though the spec requires it
    # (checked only where the spec is present: the fake validates against it when it can)
    spec_present = spec.find_spec() is not None
    expected = (
        ["'next_page_token' is a required property"] if omit_last_token and spec_present else []
    )
    assert fake.contract_errors == expected
    fake.contract_errors.clear()


# --- faults -----------------------------------------------------------------------------------


def test_429_waits_as_retry_after_says_then_succeeds(client, fake, clock) -> None:
    fake.fault("GET", "/api/v2/me", "429", retry_after="3")
    assert client.me().login == "student"
    assert clock.sleeps == [3.0]
    assert len(fake.calls("GET", "/api/v2/me")) == 2


def test_429_with_an_http_date(client, fake, clock) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    fake.fault("GET", "/api/v2/me", "429", retry_after=format_datetime(when, usegmt=True))
    client.me()
    assert len(clock.sleeps) == 1 and 20 < clock.sleeps[0] <= 30


def test_parse_retry_after() -> None:
    now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after("Sat, 01 Mar 2025 12:00:09 GMT", now=now) == 9.0
    assert parse_retry_after("Sat, 01 Mar 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


def test_a_trigger_is_retried_after_429_and_created_once(client, fake, clock) -> None:
    fake.fault("POST", TRIGGER, "429", retry_after="1", times=2)
    client.trigger_pipeline(SLUG, branch="main")
    assert len(fake.calls("POST", TRIGGER)) == 3
    assert len(fake.triggered) == 1
    assert clock.sleeps == [1.0, 1.0]


def test_429_beyond_the_time_budget_raises_rate_limited(fake, clock) -> None:
    c = CircleCIClient(token=fake.token, host=fake.url, policy=policy(clock, total=25, attempts=9))
    fake.fault("GET", "/api/v2/me", "429", retry_after="10", times=99)
    with pytest.raises(RateLimited) as caught:
        c.me()
    assert clock.sleeps == [10.0, 10.0]  # a third wait would pass 25 s
    assert caught.value.retry_after == 10.0 and caught.value.status == 429
    assert "throttling" in str(caught.value) and "wait 10s" in str(caught.value)


def test_a_retry_after_longer_than_allowed_is_not_waited_for(fake, clock) -> None:
    c = CircleCIClient(token=fake.token, host=fake.url, policy=policy(clock, max_retry_after=60))
    fake.fault("GET", "/api/v2/me", "429", retry_after="3600")
    with pytest.raises(RateLimited) as caught:
        c.me()
    assert clock.sleeps == [] and caught.value.retry_after == 3600.0


def test_5xx_on_a_get_is_retried_with_growing_bounded_waits(client, fake, clock) -> None:
    fake.fault("GET", "/api/v2/me", "503", times=99)
    with pytest.raises(ServerError) as caught:
        client.me()
    assert len(fake.calls("GET", "/api/v2/me")) == 4  # attempts=4
    assert len(clock.sleeps) == 3
    ceilings = [0.01, 0.02, 0.04]
    assert all(0 <= s <= c for s, c in zip(clock.sleeps, ceilings, strict=True))
    assert "503" in str(caught.value) and "after retrying" in str(caught.value)


def test_5xx_then_success(client, fake) -> None:
    fake.fault("GET", "/api/v2/me", "500", times=2)
    assert client.me().name == "Student"
    assert len(fake.calls("GET", "/api/v2/me")) == 3


def test_a_trigger_is_never_repeated_after_a_500(client, fake, clock) -> None:
    fake.fault("POST", TRIGGER, "500", times=99)
    with pytest.raises(ServerError, match="not repeated"):
        client.trigger_pipeline(SLUG, branch="main")
    assert len(fake.calls("POST", TRIGGER)) == 1 and clock.sleeps == []


def test_a_dropped_connection_on_a_get_is_retried(client, fake) -> None:
    fake.fault("GET", "/api/v2/me", "drop", times=2)
    assert client.me().login == "student"
    assert len(fake.calls("GET", "/api/v2/me")) == 3


def test_a_trigger_is_never_repeated_after_a_dropped_connection(client, fake, clock) -> None:
    fake.fault("POST", TRIGGER, "drop", times=99)
    with pytest.raises(TransportError) as caught:
        client.trigger_pipeline(SLUG, branch="main")
    assert len(fake.calls("POST", TRIGGER)) == 1 and clock.sleeps == []
    assert caught.value.maybe_sent is True
    assert "may have acted" in str(caught.value)


def test_connection_refused_is_retried_even_for_a_post_and_bounded(clock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    c = CircleCIClient(token="t0ken-abcdef", host=f"http://127.0.0.1:{port}", policy=policy(clock))
    with pytest.raises(TransportError) as caught:
        c.trigger_pipeline(SLUG)
    assert len(clock.sleeps) == 3  # four attempts in all: nothing reached a server
    assert caught.value.maybe_sent is False and "nothing was sent" in str(caught.value)


# --- clear errors -----------------------------------------------------------------------------


def test_401_says_the_token_was_rejected_and_where_it_came_from(fake, clock, monkeypatch):
    monkeypatch.delenv("CIRCLE_TOKEN", raising=False)
    monkeypatch.setenv("CIRCLECI_CLI_TOKEN", "wrong-token-123456")
    c = CircleCIClient(host=fake.url, policy=policy(clock))
    with pytest.raises(AuthError) as caught:
        c.me()
    text = str(caught.value)
    assert "rejected the token" in text and "CIRCLE_TOKEN" in text
    assert "read from CIRCLECI_CLI_TOKEN" in text
    assert caught.value.status == 401 and isinstance(caught.value, LabError)


def test_missing_token_names_the_variables(monkeypatch) -> None:
    monkeypatch.delenv("CIRCLE_TOKEN", raising=False)
    monkeypatch.delenv("CIRCLECI_CLI_TOKEN", raising=False)
    with pytest.raises(AuthError, match="CIRCLE_TOKEN.*CIRCLECI_CLI_TOKEN"):
        CircleCIClient(host="http://127.0.0.1:9")


def test_token_and_host_from_the_environment(fake, monkeypatch) -> None:
    monkeypatch.setenv("CIRCLE_TOKEN", fake.token)
    monkeypatch.setenv("CIRCLECI_CLI_TOKEN", "not-this-one-0000")
    monkeypatch.setenv("CIRCLECI_CLI_HOST", fake.url + "/")
    with CircleCIClient.from_env() as c:
        assert c.host == fake.url and c.token_source == "CIRCLE_TOKEN"
        assert c.me().login == "student"


def test_404_on_a_project_says_unknown_or_not_followed(client) -> None:
    with pytest.raises(NotFoundError, match="unknown or not followed") as caught:
        client.trigger_pipeline("gh/nobody/nothing")
    assert "Project not found" in str(caught.value) and caught.value.status == 404


def test_404_on_a_pipeline_names_it(client) -> None:
    with pytest.raises(NotFoundError, match="no such pipeline"):
        client.get_pipeline(fake_api.new_id())


def test_bad_slugs_and_refs_are_input_errors(client) -> None:
    with pytest.raises(InputError, match="VCS/ORG/REPO"):
        client.trigger_pipeline("udacity/rollback-lab")
    with pytest.raises(InputError, match="not both"):
        client.trigger_pipeline(SLUG, branch="main", tag="v1")
    assert str(ProjectSlug.parse("gh%2Fa%2Fb")) == "gh/a/b"


def test_a_body_of_the_wrong_shape_is_reported(client, fake) -> None:
    pid = fake_api.new_id()
    body = {**fake_api.pipeline(pid).to_api(), "number": "many"}
    fake.raw[f"/api/v2/pipeline/{pid}"] = body
    with pytest.raises(UnexpectedResponse, match="shape of Pipeline.*number"):
        client.get_pipeline(pid)
    fake.raw[f"/api/v2/pipeline/{pid}"] = "<html>oops</html>"
    with pytest.raises(UnexpectedResponse, match="Pipeline"):
        client.get_pipeline(pid)


# --- the token never shows ----------------------------------------------------------------------


def test_the_token_is_redacted_everywhere(fake, clock, caplog) -> None:
    token = fake.token
    caplog.set_level(logging.DEBUG)  # httpx, httpcore and our own retry notices
    c = CircleCIClient(token=token, host=fake.url, policy=policy(clock))
    assert token not in repr(c) and token not in repr(c._http.headers)
    # a server that echoes the token back in its error message
    fake.error_message_override = f"token {token} is not valid"
    fake.token = "something-else-entirely"
    errors: list[CircleCIError] = []
    for call in (c.me, lambda: c.get_output(f"{fake.url}/output/none?circle-token={token}")):
        with pytest.raises(CircleCIError) as caught:
            call()
        errors.append(caught.value)
    fake.fault("GET", "/api/v2/me", "503", times=99)
    with pytest.raises(ServerError) as caught:
        c.me()
    errors.append(caught.value)
    fake.fault("POST", TRIGGER, "drop")
    with pytest.raises(TransportError) as caught:
        c.trigger_pipeline(SLUG)
    errors.append(caught.value)
    for exc in errors:
        shown = [str(exc), repr(exc), repr(exc.args), str(vars(exc)), str(exc.__cause__)]
        assert not any(token in text for text in shown), shown
    assert "***" in str(errors[0])  # the echoed token was masked, not dropped silently
    assert "circle-token=%2A%2A%2A" in errors[1].url or "***" in errors[1].url
    assert caplog.records, "the retries should have been logged"
    assert token not in caplog.text
    assert all(token not in str(r.__dict__) for r in caplog.records)
    c.close()


def test_env_var_values_are_redacted_from_errors(client, fake) -> None:
    fake.fault("POST", f"/api/v2/project/{SLUG}/envvar", "500")
    fake.error_message_override = None
    with pytest.raises(ServerError) as caught:
        client.set_env_var(SLUG, "AWS_SECRET_ACCESS_KEY", "s3cr3t-value-xyz")
    assert "s3cr3t-value-xyz" not in str(caught.value)
