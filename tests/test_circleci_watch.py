"""watch(): polls a (fake, spec-shaped) CircleCI until every workflow is terminal."""

from __future__ import annotations

import io
import json
import sys
import textwrap

import nbformat
import pandas as pd
import pytest
from circleci_fakes import Snapshot, exercise_run, new_id
from nbclient import NotebookClient

from helpers.circleci import models as m
from helpers.circleci.errors import WatchTimeout
from helpers.circleci.watch import FRAME_COLUMNS, watch, watch_pipeline


def test_watch_returns_the_jobs_and_shows_the_failed_steps_log(client, fake) -> None:
    pid = new_id()
    fake.add_pipeline(exercise_run(pid), pid=pid)
    fake.add_failed_build(2, [f"line {i}\n" for i in range(30)] + ["curl: (7) refused\n"])
    out = io.StringIO()

    frame = watch(client, pid, poll=0.001, max_poll=0.001, view="terminal", stream=out)

    assert list(frame.columns) == list(FRAME_COLUMNS)
    typed = {c: t for c, t in FRAME_COLUMNS.items() if t != "str"}
    assert {c: str(frame.dtypes[c]) for c in typed} == typed
    assert frame[["name", "status"]].values.tolist() == [
        ["create_infrastructure", "success"],
        ["smoke_test", "failed"],
    ]
    assert frame["job_number"].tolist() == [1, 2]
    assert frame["duration"].tolist() == [pd.Timedelta(seconds=40), pd.Timedelta(seconds=6)]
    assert str(frame["started_at"].dt.tz) == "UTC"
    assert frame.attrs["outcome"] == "failed"
    assert frame.attrs["failures"] == [
        "job smoke_test (#2) failed in step 'smoke test', exit code 1"
    ]

    text = out.getvalue()
    # a line per change in a non-terminal stream: the job went blocked -> running -> failed
    for line in ("default/smoke_test: blocked", "default/smoke_test: running",
                 "default/smoke_test: failed", "workflow default: failed"):  # fmt: skip
        assert line in text
    assert "curl: (7) refused" in text and "line 29" in text
    assert "line 10" not in text  # only the tail (20 lines)


def test_a_passing_pipeline_reads_no_logs(client, fake, clock) -> None:
    pid = new_id()
    fake.add_pipeline(exercise_run(pid, smoke="success"), pid=pid)
    result = watch_pipeline(client, pid, view="none", sleep=clock.sleep, clock=clock)
    assert result.outcome == "success" and result.succeeded and result.failures == []
    assert not fake.calls("GET", "/api/v1.1/")
    polls = [r for r in fake.requests if r.path == f"/api/v2/pipeline/{pid}"]
    assert len(polls) == 4  # one per snapshot: it stops as soon as the workflow is terminal


def test_an_errored_pipeline_ends_the_watch_with_its_config_errors(client, fake, clock) -> None:
    pid = new_id()
    error = m.PipelineError(type="config", message="Job 'smoke_tst' requires 'build', unknown")
    fake.add_pipeline([Snapshot("errored", errors=[error])], pid=pid)
    out = io.StringIO()
    frame = watch(client, pid, poll=0.001, view="terminal", stream=out)
    assert frame.empty and list(frame.columns) == list(FRAME_COLUMNS)
    assert frame.attrs["outcome"] == "errored"
    assert frame.attrs["errors"] == [error.message]
    assert f"config error (config): {error.message}" in out.getvalue()
    assert not fake.calls("GET", f"/api/v2/pipeline/{pid}/workflow")


def test_the_watch_times_out_naming_what_is_still_running(client, fake, clock) -> None:
    pid = new_id()
    fake.add_pipeline(exercise_run(pid)[:2], pid=pid)  # stuck with create_infrastructure running
    with pytest.raises(WatchTimeout) as caught:
        watch_pipeline(
            client, pid, poll=1, max_poll=4, timeout=30, view="none",
            sleep=clock.sleep, clock=clock,
        )  # fmt: skip
    assert "create_infrastructure (running)" in str(caught.value)
    assert "smoke_test (blocked)" in str(caught.value)
    assert caught.value.jobs["status"].tolist() == ["running", "blocked"]
    # waits grow while nothing changes, never beyond max_poll, and stop at the timeout
    assert clock.sleeps[:4] == [1, 1, 1.5, 2.25] and max(clock.sleeps) == 4
    assert sum(clock.sleeps) == 30


def test_a_burst_of_server_errors_does_not_end_the_watch(client, fake, clock) -> None:
    pid = new_id()
    fake.add_pipeline(exercise_run(pid, smoke="success"), pid=pid)
    fake.fault("GET", f"/api/v2/pipeline/{pid}", "503", times=4)  # one poll fails after retries
    result = watch_pipeline(client, pid, view="none", sleep=clock.sleep, clock=clock)
    assert result.outcome == "success"


def test_a_terminal_is_redrawn_in_place(client, fake) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    pid = new_id()
    fake.add_pipeline(exercise_run(pid, smoke="success"), pid=pid)
    out = Tty()
    watch(client, pid, poll=0.001, view="terminal", stream=out)
    text = out.getvalue()
    assert "\x1b[" in text and "F\x1b[J" in text  # cursor up, clear below
    assert text.rstrip().splitlines()[-1].split()[:3] == ["✓", "smoke_test", "#2"]


def test_in_jupyter_one_display_updates_in_place(fake) -> None:
    """Run watch() in a real kernel: the cell keeps one progress output, showing the end."""
    pid = new_id()
    fake.add_pipeline(exercise_run(pid), pid=pid)
    fake.add_failed_build(2, ["curl: (7) refused\n"])
    code = textwrap.dedent(
        f"""
        from helpers.circleci.client import CircleCIClient
        from helpers.circleci.watch import watch
        client = CircleCIClient(token={fake.token!r}, host={fake.url!r})
        frame = watch(client, {pid!r}, poll=0.05, max_poll=0.05)
        print(frame.attrs["outcome"])
        """
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(fake_root())}}).execute()  # fmt: skip
    outputs = nb.cells[0].outputs
    displays = [o for o in outputs if o.output_type == "display_data"]
    progress = [o for o in displays if "text/html" in o.data]
    assert len(progress) == 1, json.dumps(outputs, indent=1)[:2000]
    final = progress[0].data["text/plain"]
    assert "smoke_test" in final and "failed" in final and "running" not in final
    assert "<table>" in progress[0].data["text/html"]
    logs = [o for o in displays if "text/html" not in o.data]
    assert "curl: (7) refused" in logs[0].data["text/plain"]
    streams = "".join(o.text for o in outputs if o.output_type == "stream")
    assert streams.strip() == "failed"
    assert fake.token not in json.dumps(outputs)


def fake_root():
    from pathlib import Path

    return Path(sys.modules["helpers"].__file__).resolve().parents[1]
