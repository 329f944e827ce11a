"""The timeline: one row per resource (the stack first), bars coloured by phase, and under it
the pipeline's jobs on the same clock, so a student sees which job's step started the delete.

Bars are drawn as one PolyCollection per phase kind (and per job status), never one artist per
event: ten thousand events draw as fast as ten.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from helpers.errors import InputError
from helpers.stack_events.phases import PHASES, phases

# Okabe–Ito colours: tellable apart with the common colour-vision deficiencies.
PHASE_COLOURS: dict[str, str] = {
    "review": "#BBBBBB",
    "create": "#0072B2",
    "alive": "#009E73",
    "update": "#56B4E9",
    "update-rollback": "#CC79A7",
    "rollback": "#D55E00",
    "delete": "#E69F00",
    "import": "#F0E442",
}
JOB_COLOURS: dict[str, str] = {  # Paul Tol's "vibrant": apart from the phases' colours
    "success": "#009988",
    "failed": "#CC3311",
    "running": "#33BBEE",
    "canceled": "#999999",
}
OTHER_JOB_COLOUR = "#BBBBBB"
ON_FAIL_COLOUR = "#333333"
JOB_COLUMNS = ("name", "status", "started_at", "stopped_at")
ON_FAIL_COLUMNS = ("job", "started_at")
EVENTS_LANE = "stack events"
JOBS_LANE = "pipeline jobs"
MAX_ROW_LABELS = 60
BAR_HEIGHT = 0.6
# Bars shorter than this share of the time span are widened to it, or they would not show
# (the local AWS finishes a resource within the same millisecond).
MIN_BAR_SHARE = 0.003


class TimelineFigure(Figure):
    """A Figure that shows itself in a notebook cell even when pyplot was never imported
    (a bare Figure then displays as text)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


def timeline(
    events: pd.DataFrame,
    jobs: pd.DataFrame | None = None,
    *,
    on_fail: pd.DataFrame | None = None,
    title: str | None = None,
    deployment: int | str | None = "all",
    origin: pd.Timestamp | None = None,
    max_reasons: int = 3,
    width: float = 11.0,
) -> Figure:
    """Chart stack events (from :func:`stack_events`) and optionally the pipeline's jobs.

    ``jobs`` has columns name, status, started_at, stopped_at (tz-aware; stopped_at may be
    NaT while a job runs). ``on_fail`` marks the steps that ran because a step failed
    (columns job, started_at and optionally stopped_at, name). Time 0 is the first event or
    job start shown, unless ``origin`` is given.
    """
    table = phases(events, deployment=deployment)
    jobs = _check_times(jobs, JOB_COLUMNS, "jobs")
    on_fail = _check_times(on_fail, ON_FAIL_COLUMNS, "on_fail")
    starts = [table["start"].min()]
    ends = [table["end"].max()]
    if jobs is not None:
        starts.append(jobs["started_at"].min())
        ends += [jobs["started_at"].max(), jobs["stopped_at"].max()]
    if on_fail is not None:
        starts.append(on_fail["started_at"].min())
        ends.append(on_fail["started_at"].max())
    origin = _first([origin, *starts]) if origin is None else pd.Timestamp(origin)
    if origin is None:
        origin = pd.Timestamp.now(tz="UTC")
    last = max((t for t in ends if pd.notna(t)), default=origin)
    span = max((last - origin).total_seconds(), 1e-3)
    unit, per_second = time_unit(span)
    clock = _Clock(origin, per_second, min_width=span * per_second * MIN_BAR_SHARE)

    event_rows = _row_labels(table)
    job_rows = len(jobs) if jobs is not None else 0
    height = min(1.2 + 0.28 * (min(len(event_rows), 80) + min(job_rows, 20)) + 1.0, 24.0)
    fig = TimelineFigure(figsize=(width, max(height, 3.0)), layout="constrained")
    if jobs is not None:
        ratios = [max(len(event_rows), 1), max(job_rows, 1) + 0.5]
        ax, jobs_ax = fig.subplots(2, 1, sharex=True, height_ratios=ratios)
    else:
        ax, jobs_ax = fig.subplots(1, 1), None
    ax.set_label(EVENTS_LANE)
    _draw_phases(ax, table, event_rows, clock, max_reasons)
    if jobs_ax is not None:
        jobs_ax.set_label(JOBS_LANE)
        _draw_jobs(jobs_ax, jobs, on_fail, clock, last)
        for lane in (ax, jobs_ax):
            _draw_on_fail_lines(lane, on_fail, clock)
    bottom = jobs_ax if jobs_ax is not None else ax
    bottom.set_xlabel(f"time since {_clock_time(origin)} UTC ({unit})")
    bottom.set_xlim(-span * per_second * 0.01, span * per_second * 1.02)
    fig.suptitle(title or _default_title(table, jobs is not None))
    for lane in fig.axes:
        if lane.get_legend_handles_labels()[0]:
            lane.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Write the chart; the format (png, svg, pdf) follows the file's suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110 if path.suffix.lower() == ".png" else "figure", bbox_inches="tight")
    return path


def time_unit(span_seconds: float) -> tuple[str, float]:
    """A unit in which the span reads well: ms for the local AWS, minutes for real AWS."""
    if span_seconds < 2:
        return "ms", 1000.0
    if span_seconds < 180:
        return "s", 1.0
    if span_seconds < 3 * 3600:
        return "min", 1 / 60
    return "h", 1 / 3600


class _Clock:
    def __init__(self, origin: pd.Timestamp, per_second: float, min_width: float) -> None:
        self.origin = origin
        self.per_second = per_second
        self.min_width = min_width

    def __call__(self, times: pd.Series) -> np.ndarray:
        seconds = (pd.to_datetime(times, utc=True) - self.origin).dt.total_seconds()
        return seconds.to_numpy(dtype=float) * self.per_second

    def point(self, time: pd.Timestamp) -> float:
        return (time - self.origin).total_seconds() * self.per_second


def _rectangles(x0: np.ndarray, x1: np.ndarray, y: np.ndarray, min_width: float) -> np.ndarray:
    x1 = np.maximum(x1, x0 + min_width)
    top, bottom = y - BAR_HEIGHT / 2, y + BAR_HEIGHT / 2
    return np.stack(
        [np.column_stack(p) for p in ((x0, top), (x0, bottom), (x1, bottom), (x1, top))],
        axis=1,
    )


def _row_labels(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(_row_keys(table)))


def _row_keys(table: pd.DataFrame) -> pd.Series:
    short_type = table["resource_type"].fillna("").str.replace("AWS::", "", regex=False)
    label = table["logical_id"].astype(str) + "  " + short_type
    label = label.where(~table["is_stack"].astype(bool), table["logical_id"] + "  (stack)")
    return label


def _draw_phases(
    ax: Axes, table: pd.DataFrame, rows: list[str], clock: _Clock, max_reasons: int
) -> None:
    row_of = {label: index for index, label in enumerate(rows)}
    y = _row_keys(table).map(row_of).to_numpy(dtype=float)
    x0, x1 = clock(table["start"]), clock(table["end"])
    kinds = table["phase"].astype(str).to_numpy()
    for kind in PHASES:
        chosen = kinds == kind
        if not chosen.any():
            continue
        bars = PolyCollection(
            _rectangles(x0[chosen], x1[chosen], y[chosen], clock.min_width),
            facecolors=PHASE_COLOURS[kind],
            edgecolors="none",
            label=kind,
        )
        bars.set_gid(f"phase:{kind}")
        ax.add_collection(bars, autolim=False)
    failed = (table["outcome"] == "failed").to_numpy()
    if failed.any():
        marks = ax.scatter(x1[failed], y[failed], marker="X", s=60, c="black", label="failed")
        marks.set_gid("failed")
        marks.set_zorder(3)
        _draw_reasons(ax, table[failed], x1[failed], y[failed], max_reasons, clock)
    _set_rows(ax, rows)


def _draw_reasons(
    ax: Axes,
    failures: pd.DataFrame,
    x: np.ndarray,
    y: np.ndarray,
    limit: int,
    clock: _Clock,
) -> None:
    """The first failures' reasons next to their marks, resources before the stack (the
    resource's reason is the cause; the stack's only lists the failed resources)."""
    order = pd.DataFrame(
        {
            "stack": failures["is_stack"].to_numpy(dtype=bool),
            "no_reason": failures["reason"].isna().to_numpy(),
            "end": x,
        }
    ).sort_values(["no_reason", "stack", "end"], kind="stable")
    mid = np.nanmax(x) / 2 if len(x) else 0.0
    for position in order.index[:limit]:
        reason = failures["reason"].iloc[position]
        if not reason:
            continue
        text = textwrap.shorten(f"{failures['logical_id'].iloc[position]}: {reason}", 150)
        text = "\n".join(textwrap.wrap(text, 75))
        right = x[position] > mid
        note = ax.annotate(
            text,
            xy=(x[position], y[position]),
            xytext=(-10 if right else 10, 0),
            textcoords="offset points",
            ha="right" if right else "left",
            multialignment="left",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#D55E00", "alpha": 0.9},
            zorder=4,
        )
        note.set_gid("reason")


def _draw_jobs(
    ax: Axes,
    jobs: pd.DataFrame,
    on_fail: pd.DataFrame | None,
    clock: _Clock,
    last: pd.Timestamp,
) -> None:
    jobs = jobs.sort_values("started_at", kind="stable", na_position="last")
    rows = list(dict.fromkeys(jobs["name"].astype(str)))
    row_of = {name: index for index, name in enumerate(rows)}
    started = jobs[jobs["started_at"].notna()]
    y = started["name"].astype(str).map(row_of).to_numpy(dtype=float)
    x0 = clock(started["started_at"])
    x1 = clock(started["stopped_at"].fillna(last))
    status = started["status"].astype(str).to_numpy()
    for name in [*JOB_COLOURS, *sorted(set(status) - set(JOB_COLOURS))]:
        chosen = status == name
        if not chosen.any():
            continue
        bars = PolyCollection(
            _rectangles(x0[chosen], x1[chosen], y[chosen], clock.min_width),
            facecolors=JOB_COLOURS.get(name, OTHER_JOB_COLOUR),
            edgecolors="none",
            label=f"job {name}",
        )
        bars.set_gid(f"job:{name}")
        ax.add_collection(bars, autolim=False)
    if on_fail is not None and not on_fail.empty:
        steps = on_fail[on_fail["job"].astype(str).isin(row_of)]
        stopped = steps["stopped_at"] if "stopped_at" in steps else steps["started_at"]
        marks = PolyCollection(
            _rectangles(
                clock(steps["started_at"]),
                clock(stopped.fillna(last)),
                steps["job"].astype(str).map(row_of).to_numpy(dtype=float),
                clock.min_width,
            ),
            facecolors="none",
            edgecolors=ON_FAIL_COLOUR,
            hatch="////",
            linewidths=0.8,
            label="on_fail step",
        )
        marks.set_gid("on_fail")
        ax.add_collection(marks, autolim=False)
    _set_rows(ax, rows)


def _draw_on_fail_lines(ax: Axes, on_fail: pd.DataFrame | None, clock: _Clock) -> None:
    """A line across both lanes where each on_fail step started: the pipeline's rollback."""
    if on_fail is None:
        return
    for when in on_fail["started_at"].dropna():
        line = ax.axvline(clock.point(when), color=ON_FAIL_COLOUR, linestyle="--", linewidth=0.9)
        line.set_gid("on_fail_line")


def _set_rows(ax: Axes, rows: Sequence[str]) -> None:
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top
    step = max(1, int(np.ceil(len(rows) / MAX_ROW_LABELS)))
    ticks = list(range(0, len(rows), step))
    ax.set_yticks(ticks, [rows[i] for i in ticks], fontsize=8)
    ax.grid(axis="x", color="#DDDDDD", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _check_times(
    frame: pd.DataFrame | None, columns: Sequence[str], what: str
) -> pd.DataFrame | None:
    if frame is None:
        return None
    for column in columns:
        if column not in frame.columns:
            raise InputError(f"the {what} DataFrame has no column {column!r}", field=column)
    frame = frame.copy()
    for column in ("started_at", "stopped_at"):
        if column not in frame.columns:
            continue
        values = pd.to_datetime(frame[column])
        if values.notna().any() and values.dt.tz is None:
            raise InputError(
                f"the {what} DataFrame's times must be timezone-aware (e.g. UTC)", field=column
            )
        frame[column] = values.dt.tz_convert("UTC") if values.dt.tz else values
    return frame


def _clock_time(moment: pd.Timestamp) -> str:
    return moment.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _first(times: Sequence[pd.Timestamp | None]) -> pd.Timestamp | None:
    present = [t for t in times if t is not None and pd.notna(t)]
    return min(present) if present else None


def _default_title(table: pd.DataFrame, with_jobs: bool) -> str:
    names = ", ".join(dict.fromkeys(table["stack_name"].astype(str))) or "no events"
    return f"{names}: CloudFormation events" + (" and the pipeline's jobs" if with_jobs else "")
