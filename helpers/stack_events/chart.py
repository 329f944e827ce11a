"""The timeline: one row per resource (the stack first), bars coloured by phase, and under it
the pipeline's jobs on the same clock, so a student sees which job's step started the delete.
Failure reasons (AWS's are long) are printed in full under the lanes, numbered like their marks,
so no note covers a bar or is cut short.

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
from matplotlib.transforms import blended_transform_factory

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
# Darker (or, for an unknown status, paler) than every phase colour, so no job bar reads as a
# phase: Paul Tol's dark green, dark red ("medium contrast") and indigo ("muted"), and a grey.
JOB_COLOURS: dict[str, str] = {
    "success": "#225522",
    "failed": "#994455",
    "running": "#332288",
    "canceled": "#777777",
}
OTHER_JOB_COLOUR = "#EEEEEE"
JOB_EDGE_COLOUR = "#555555"  # outlines the pale bars on the white background
ON_FAIL_COLOUR = "#333333"
JOB_COLUMNS = ("name", "status", "started_at", "stopped_at")
ON_FAIL_COLUMNS = ("job", "started_at")
EVENTS_LANE = "stack events"
JOBS_LANE = "pipeline jobs"
REASONS_LANE = "failure reasons"
REASON_LINE_INCHES = 0.16
ROW_INCHES = 0.28
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
    reasons = _reasons(table, max_reasons)
    caption = _caption(reasons, width)
    # The caption gets its own height on top of the lanes', so a long reason never squeezes them.
    caption_inches = REASON_LINE_INCHES * (caption.count("\n") + 1) + 0.15 if caption else 0.0
    lanes_inches = min(2.2 + ROW_INCHES * (min(len(event_rows), 80) + min(job_rows, 20)), 24.0)
    lanes_inches = max(lanes_inches, 3.0)
    fig = TimelineFigure(figsize=(width, lanes_inches + caption_inches), layout="constrained")
    shares = [max(len(event_rows), 1)] + ([max(job_rows, 1) + 0.5] if jobs is not None else [])
    # in inches, like the caption's: the title, tick labels and x label take about one inch
    ratios = [(lanes_inches - 1.0) * share / sum(shares) for share in shares]
    grid = fig.add_gridspec(
        len(ratios) + bool(caption), 1, height_ratios=ratios + [caption_inches][: bool(caption)]
    )
    ax = fig.add_subplot(grid[0])
    jobs_ax = fig.add_subplot(grid[1], sharex=ax) if jobs is not None else None
    if jobs_ax is not None:
        ax.tick_params(labelbottom=False)
    ax.set_label(EVENTS_LANE)
    _draw_phases(ax, table, event_rows, clock, reasons)
    if jobs_ax is not None:
        jobs_ax.set_label(JOBS_LANE)
        _draw_jobs(jobs_ax, jobs, on_fail, clock, last)
        for lane in (ax, jobs_ax):
            _draw_on_fail_lines(lane, on_fail, clock)
    bottom = jobs_ax if jobs_ax is not None else ax
    bottom.set_xlabel(f"time since {_clock_time(origin)} UTC ({unit})")
    bottom.set_xlim(-span * per_second * 0.01, span * per_second * 1.02)
    fig.suptitle(title or _default_title(table, jobs is not None))
    if caption:
        _draw_caption(fig.add_subplot(grid[-1]), caption)
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
    ax: Axes, table: pd.DataFrame, rows: list[str], clock: _Clock, reasons: pd.DataFrame
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
    for number, position in enumerate(reasons["position"], start=1):
        _draw_reason_mark(ax, number, x1[position], y[position])
    _set_rows(ax, rows)


def _reasons(table: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The failures whose reasons the chart prints: resources before the stack (the
    resource's reason is the cause; the stack's only lists the failed resources), then by time."""
    shown = (table["outcome"] == "failed") & table["reason"].fillna("").astype(bool)
    failures = table.assign(position=np.arange(len(table)), stack=table["is_stack"].astype(bool))
    return failures[shown.to_numpy()].sort_values(["stack", "end"], kind="stable").head(limit)


def _caption(reasons: pd.DataFrame, width: float) -> str:
    """Each reason in full, numbered like its mark, wrapped to the figure's width (about 14
    characters of 8-point text an inch)."""
    columns = max(int(width * 14), 40)
    paragraphs = [
        textwrap.fill(
            f"({number})  {logical_id}: {reason}",
            columns,
            subsequent_indent="       ",
            break_long_words=True,
        )
        for number, (logical_id, reason) in enumerate(
            zip(reasons["logical_id"], reasons["reason"], strict=True), start=1
        )
    ]
    return "\n".join(paragraphs)


def _draw_reason_mark(ax: Axes, number: int, x: float, y: float) -> None:
    """The failure's number beside its X, pointing to the reason under the chart."""
    mark = ax.annotate(
        f"({number})",
        xy=(x, y),
        xytext=(7, 7),
        textcoords="offset points",
        ha="left",
        va="bottom",
        fontsize=8,
        fontweight="bold",
        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
        zorder=4,
    )
    mark.set_gid("reason_mark")


def _draw_caption(ax: Axes, caption: str) -> None:
    """The reasons below the lanes, from the figure's left edge: never over a bar, never cut."""
    ax.set_label(REASONS_LANE)
    ax.axis("off")
    note = ax.text(
        0.0,
        1.0,
        caption,
        transform=blended_transform_factory(ax.figure.transFigure, ax.transAxes),
        ha="left",
        va="top",
        fontsize=8,
        linespacing=1.3,
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
            edgecolors=JOB_EDGE_COLOUR,
            linewidths=0.6,
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
