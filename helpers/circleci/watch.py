"""Watch a pipeline until every workflow has finished, showing its jobs live.

In JupyterLab the progress is one output that updates in place (``display_id``); in a terminal
it is a view redrawn in place (or, when output is not a terminal, one line per change). The
result is a pandas DataFrame of the jobs — the pipeline's half of the stack-events chart.

    df = watch(client, created.id)          # in a notebook
    result = watch_pipeline(client, pid)    # the same, with outcome and failed steps
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal, TextIO
from urllib.parse import urlsplit

import pandas as pd

from helpers.circleci import models as m
from helpers.circleci.client import CircleCIClient
from helpers.circleci.errors import (
    CircleCIError,
    RateLimited,
    ServerError,
    TransportError,
    WatchTimeout,
)

Outcome = Literal["success", "failed", "errored", "not_run", "no_workflows"]
View = Literal["auto", "jupyter", "terminal", "none"]

#: Columns of the jobs frame, in order, with their dtypes ("str": pandas' text dtype).
FRAME_COLUMNS: dict[str, str] = {
    "workflow": "str",
    "workflow_id": "str",
    "workflow_status": "str",
    "name": "str",
    "status": "str",
    "type": "str",
    "job_number": "Int64",
    "started_at": "datetime64[ns, UTC]",
    "stopped_at": "datetime64[ns, UTC]",
    "duration": "timedelta64[ns]",
}
_LOG_STATUSES = frozenset({"failed", "timedout", "infrastructure_fail"})
_TRANSIENT = (TransportError, ServerError, RateLimited)
_MAX_TRANSIENT = 3  # consecutive poll failures tolerated (each already retried by the client)
_NO_WORKFLOW_GRACE = 15.0  # seconds a created pipeline may show no workflows before we stop
# Poll waits (first, longest). circleci.com rate-limits and its jobs take seconds to minutes, so
# polls there start at 2 s and back off; the local CircleCI answers on loopback in milliseconds,
# where a 2-15 s wait would only add that much to every pipeline the lab watches.
REMOTE_POLL = (2.0, 15.0)
LOCAL_POLL = (0.05, 0.1)
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_ICONS = {
    "success": "✓",
    "failed": "✗",
    "error": "✗",
    "infrastructure_fail": "✗",
    "timedout": "✗",
    "canceled": "⊘",
    "running": "▶",
    "failing": "▶",
    "queued": "…",
    "blocked": "·",
    "not_run": "-",
    "on_hold": "‖",
}


@dataclass(frozen=True)
class FailedStep:
    """Where a job failed: the step, its exit code and the end of its output."""

    workflow: str
    job: str
    job_number: int | None
    status: str
    step: str | None = None
    exit_code: int | None = None
    log_tail: list[str] = field(default_factory=list)
    note: str | None = None  # why the step is unknown, when it is

    def describe(self) -> str:
        where = f"job {self.job}" + (f" (#{self.job_number})" if self.job_number else "")
        if self.step:
            code = f", exit code {self.exit_code}" if self.exit_code is not None else ""
            return f"{where} {self.status} in step {self.step!r}{code}"
        return f"{where} {self.status}" + (f" ({self.note})" if self.note else "")


@dataclass
class WatchResult:
    pipeline: m.Pipeline
    workflows: list[m.Workflow]
    jobs: dict[str, list[m.Job]]  # by workflow id
    failures: list[FailedStep] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        if self.pipeline.state == "errored":
            return "errored"
        if not self.workflows:
            return "no_workflows"
        statuses = {wf.status for wf in self.workflows}
        if statuses == {"success"}:
            return "success"
        if statuses & m.FAILED_WORKFLOW_STATUSES:
            return "failed"
        return "not_run"

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"

    def frame(self) -> pd.DataFrame:
        return jobs_frame(self.workflows, self.jobs)


def jobs_frame(workflows: list[m.Workflow], jobs: dict[str, list[m.Job]]) -> pd.DataFrame:
    """One row per job: tz-aware (UTC) start/stop timestamps and a timedelta duration."""
    rows = [
        {
            "workflow": wf.name,
            "workflow_id": wf.id,
            "workflow_status": wf.status,
            "name": job.name,
            "status": job.status,
            "type": job.type,
            "job_number": job.job_number,
            "started_at": job.started_at,
            "stopped_at": job.stopped_at,
        }
        for wf in workflows
        for job in jobs.get(wf.id, [])
    ]
    frame = pd.DataFrame(rows, columns=[c for c in FRAME_COLUMNS if c != "duration"])
    for column in ("started_at", "stopped_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype(FRAME_COLUMNS[column])
    frame["duration"] = (frame["stopped_at"] - frame["started_at"]).astype("timedelta64[ns]")
    frame["job_number"] = frame["job_number"].astype("Int64")
    for column, dtype in FRAME_COLUMNS.items():
        if dtype == "str":
            frame[column] = frame[column].astype(str)
    return frame


def watch(
    client: CircleCIClient,
    pipeline_id: str,
    *,
    poll: float | None = None,
    max_poll: float | None = None,
    timeout: float = 1800.0,
    view: View = "auto",
    stream: TextIO | None = None,
    log_tail: int = 20,
) -> pd.DataFrame:
    """Watch until every workflow is terminal; return the jobs frame.

    ``frame.attrs`` holds ``outcome`` (success/failed/errored/not_run/no_workflows),
    ``pipeline_id``, ``errors`` (config errors of an errored pipeline) and ``failures``.
    """
    result = watch_pipeline(
        client,
        pipeline_id,
        poll=poll,
        max_poll=max_poll,
        timeout=timeout,
        view=view,
        stream=stream,
        log_tail=log_tail,
    )
    frame = result.frame()
    frame.attrs.update(
        outcome=result.outcome,
        pipeline_id=result.pipeline.id,
        errors=[e.message for e in result.pipeline.errors],
        failures=[f.describe() for f in result.failures],
    )
    return frame


def watch_pipeline(
    client: CircleCIClient,
    pipeline_id: str,
    *,
    poll: float | None = None,
    max_poll: float | None = None,
    timeout: float = 1800.0,
    view: View = "auto",
    stream: TextIO | None = None,
    log_tail: int = 20,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> WatchResult:
    """Poll (waits grow from ``poll`` to ``max_poll`` while nothing changes) until done.

    Unset waits follow the host (:func:`poll_intervals`): short on the local CircleCI.
    """
    default_poll, default_max = poll_intervals(client.host)
    poll = default_poll if poll is None else poll
    max_poll = max(poll, default_max) if max_poll is None else max_poll
    screen = _make_view(view, stream)
    started = clock()
    interval = poll
    previous: object = None
    failures_in_a_row = 0
    empty_since: float | None = None
    while True:
        try:
            snapshot = _snapshot(client, pipeline_id)
            failures_in_a_row = 0
        except _TRANSIENT:
            failures_in_a_row += 1
            if failures_in_a_row > _MAX_TRANSIENT:
                raise
            snapshot = None
        if snapshot is not None:
            screen.update(snapshot)
            if snapshot.pipeline.state == "created" and not snapshot.workflows:
                empty_since = clock() if empty_since is None else empty_since
            else:
                empty_since = None
            if _finished(snapshot, empty_since, clock()):
                snapshot.failures = _find_failures(client, snapshot, log_tail)
                screen.finish(snapshot)
                return snapshot
            key = _fingerprint(snapshot)
            interval = poll if key != previous else min(max_poll, interval * 1.5)
            previous = key
        left = timeout - (clock() - started)
        if left <= 0:
            raise WatchTimeout(
                _timeout_message(pipeline_id, snapshot, timeout), jobs=_frame(snapshot)
            )
        sleep(min(interval, left))


def poll_intervals(host: str) -> tuple[float, float]:
    """(first, longest) poll wait for a CircleCI at ``host``: short on loopback."""
    name = urlsplit(host).hostname or ""
    return LOCAL_POLL if name in _LOOPBACK_HOSTS else REMOTE_POLL


def _snapshot(client: CircleCIClient, pipeline_id: str) -> WatchResult:
    pipeline = client.get_pipeline(pipeline_id)
    workflows = [] if pipeline.state == "errored" else client.list_workflows(pipeline_id)
    workflows.sort(key=lambda wf: (wf.created_at, wf.name))
    jobs = {wf.id: client.list_jobs(wf.id) for wf in workflows}
    return WatchResult(pipeline=pipeline, workflows=workflows, jobs=jobs)


def _finished(snapshot: WatchResult, empty_since: float | None, now: float) -> bool:
    if snapshot.pipeline.state == "errored":
        return True
    if snapshot.workflows:
        return all(wf.is_terminal for wf in snapshot.workflows)
    return empty_since is not None and now - empty_since >= _NO_WORKFLOW_GRACE


def _fingerprint(snapshot: WatchResult) -> tuple:
    return (
        snapshot.pipeline.state,
        tuple((wf.id, wf.status) for wf in snapshot.workflows),
        tuple((job.id, job.status) for jobs in snapshot.jobs.values() for job in jobs),
    )


def _frame(snapshot: WatchResult | None) -> pd.DataFrame | None:
    return snapshot.frame() if snapshot is not None else None


def _timeout_message(pipeline_id: str, snapshot: WatchResult | None, timeout: float) -> str:
    waiting = []
    if snapshot is not None:
        for wf in snapshot.workflows:
            for job in snapshot.jobs.get(wf.id, []):
                if job.status not in m.TERMINAL_JOB_STATUSES:
                    waiting.append(f"{wf.name}/{job.name} ({job.status})")
    still = f"; still waiting for {', '.join(waiting)}" if waiting else ""
    return f"pipeline {pipeline_id} had not finished after {timeout:.0f}s{still}"


def _find_failures(client: CircleCIClient, snapshot: WatchResult, tail: int) -> list[FailedStep]:
    """For each failed job, the first failed step and the end of its log (v1.1)."""
    found = []
    for wf in snapshot.workflows:
        for job in snapshot.jobs.get(wf.id, []):
            if job.status not in m.FAILED_JOB_STATUSES:
                continue
            base = {
                "workflow": wf.name,
                "job": job.name,
                "job_number": job.job_number,
                "status": job.status,
            }
            if job.status not in _LOG_STATUSES or job.job_number is None:
                found.append(FailedStep(**base))
                continue
            found.append(_failed_step(client, job, base, tail))
    return found


def _failed_step(client: CircleCIClient, job: m.Job, base: dict, tail: int) -> FailedStep:
    try:
        build = client.get_build(job.project_slug, job.job_number or 0)
        for step in build.steps:
            for action in step.actions:
                if action.status in ("failed", "timedout") or action.exit_code:
                    lines = client.get_output(action.output_url) if action.output_url else []
                    text = "".join(line.message for line in lines)
                    return FailedStep(
                        **base,
                        step=step.name,
                        exit_code=action.exit_code,
                        log_tail=text.splitlines()[-tail:] if tail else [],
                    )
    except CircleCIError as exc:
        return FailedStep(**base, note=f"step log unavailable: {exc}")
    return FailedStep(**base, note="no failed step in the job's log")


# --- views ------------------------------------------------------------------------------------


def _make_view(view: View, stream: TextIO | None) -> _NullView:
    if view == "auto":
        view = "jupyter" if _in_notebook() else "terminal"
    if view == "jupyter":
        return _JupyterView()
    if view == "terminal":
        return _TerminalView(stream or sys.stdout)
    return _NullView()


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class _NullView:
    def update(self, snapshot: WatchResult) -> None:
        pass

    def finish(self, snapshot: WatchResult) -> None:
        pass


@dataclass
class Progress:
    """What the live display shows; renders as text and as an HTML table."""

    snapshot: WatchResult
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        rows = []
        for wf in self.snapshot.workflows:
            for job in self.snapshot.jobs.get(wf.id, []):
                number = f"#{job.job_number}" if job.job_number else ""
                rows.append((wf.name, job.name, number, job.status, _duration(job, self.now)))
        return rows

    def headline(self) -> str:
        p = self.snapshot.pipeline
        states = ", ".join(f"{wf.name}: {wf.status}" for wf in self.snapshot.workflows)
        return f"pipeline {p.number} ({p.project_slug}) — {states or p.state}"

    def __repr__(self) -> str:
        lines = [self.headline()]
        current = None
        for workflow, name, number, status, took in self.rows():
            if workflow != current:
                lines.append(f"  workflow {workflow}")
                current = workflow
            icon = _ICONS.get(status, "?")
            lines.append(f"    {icon} {name:<28} {number:>5}  {status:<20} {took}".rstrip())
        lines.extend(_error_lines(self.snapshot))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in self.rows()
        )
        errors = "".join(
            f"<p style='color:#b00'>{html.escape(line)}</p>" for line in _error_lines(self.snapshot)
        )
        return (
            f"<div><b>{html.escape(self.headline())}</b><table>"
            "<tr><th>workflow</th><th>job</th><th>#</th><th>status</th><th>duration</th></tr>"
            f"{body}</table>{errors}</div>"
        )


def _duration(job: m.Job, now: datetime) -> str:
    if job.started_at is None:
        return ""
    seconds = int(((job.stopped_at or now) - job.started_at).total_seconds())
    return f"{seconds // 60}:{seconds % 60:02d}"


def _error_lines(snapshot: WatchResult) -> list[str]:
    return [f"config error ({e.type}): {e.message}" for e in snapshot.pipeline.errors]


def _failure_text(failures: list[FailedStep]) -> str:
    parts = []
    for failure in failures:
        parts.append(failure.describe())
        if failure.log_tail:
            parts.append(f"--- last {len(failure.log_tail)} lines of {failure.step!r} ---")
            parts.extend(failure.log_tail)
    return "\n".join(parts)


class _JupyterView(_NullView):
    """One output updated in place; the failed step's log below it at the end."""

    def __init__(self) -> None:
        self._handle = None

    def update(self, snapshot: WatchResult) -> None:
        from IPython.display import display

        progress = Progress(snapshot)
        if self._handle is None:
            self._handle = display(progress, display_id=True)
        else:
            self._handle.update(progress)

    def finish(self, snapshot: WatchResult) -> None:
        from IPython.display import Pretty, display

        self.update(snapshot)
        if snapshot.failures:
            display(Pretty(_failure_text(snapshot.failures)))


class _TerminalView(_NullView):
    """Redraws in place on a terminal; elsewhere (CI logs) prints a line per change."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._drawn = 0
        self._seen: dict[str, str] = {}

    def update(self, snapshot: WatchResult) -> None:
        if self._tty:
            text = repr(Progress(snapshot))
            if self._drawn:
                self._stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._stream.write(text + "\n")
            self._drawn = text.count("\n") + 1
        else:
            self._print_changes(snapshot)
        self._stream.flush()

    def _print_changes(self, snapshot: WatchResult) -> None:
        p = snapshot.pipeline
        entries = {f"pipeline {p.number}": p.state}
        for wf in snapshot.workflows:
            entries[f"workflow {wf.name}"] = wf.status
            for job in snapshot.jobs.get(wf.id, []):
                entries[f"{wf.name}/{job.name}"] = job.status
        for key, status in entries.items():
            if self._seen.get(key) != status:
                self._stream.write(f"{key}: {status}\n")
                self._seen[key] = status
        for line in _error_lines(snapshot):
            if self._seen.get(line) is None:
                self._stream.write(line + "\n")
                self._seen[line] = "shown"

    def finish(self, snapshot: WatchResult) -> None:
        self.update(snapshot)
        if snapshot.failures:
            self._stream.write(_failure_text(snapshot.failures) + "\n")
        self._stream.flush()


__all__ = [
    "FRAME_COLUMNS",
    "FailedStep",
    "Progress",
    "WatchResult",
    "jobs_frame",
    "watch",
    "watch_pipeline",
]
