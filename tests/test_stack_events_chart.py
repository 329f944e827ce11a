"""The timeline, checked through the figure's objects (lanes, rows, bars, colours, legend)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgb
from stack_events_samples import (
    KEY_PAIR_REASON,
    Stack,
    created,
    deleted,
    many_resources,
    native_rollback,
)

from helpers.errors import InputError
from helpers.stack_events import events_frame, phases, save, time_unit, timeline
from helpers.stack_events.chart import (
    EVENTS_LANE,
    JOB_COLOURS,
    JOBS_LANE,
    MAX_ROW_LABELS,
    OTHER_JOB_COLOUR,
    PHASE_COLOURS,
    REASONS_LANE,
)


def lane(fig, label):
    (found,) = [ax for ax in fig.axes if ax.get_label() == label]
    return found


def bars(ax, gid):
    (found,) = [c for c in ax.collections if c.get_gid() == gid]
    return found


def spans(collection) -> list[tuple[float, float, float]]:
    """(x start, x end, row) of each bar."""
    out = []
    for path in collection.get_paths():
        corners = path.vertices[:4]  # a closed path repeats a dummy vertex at the end
        xs, ys = corners[:, 0], corners[:, 1]
        out.append((xs.min(), xs.max(), round(ys.mean(), 6)))
    return sorted(out)


def tick_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


@pytest.fixture
def pipeline_run():
    """The exercise: create_infrastructure creates the stack, smoke_test fails, its on_fail
    step deletes the stack."""
    stack = deleted(created())
    events = events_frame(stack.api())
    t0 = events["timestamp"].min()

    def at(seconds: float) -> pd.Timestamp:
        return t0 + pd.Timedelta(seconds=seconds)

    jobs = pd.DataFrame(
        {
            "name": ["create_infrastructure", "smoke_test"],
            "status": ["success", "failed"],
            "job_number": [1, 2],
            "started_at": [at(-4), at(45)],
            "stopped_at": [at(42), at(62)],
        }
    )
    on_fail = pd.DataFrame(
        {"job": ["smoke_test"], "name": ["Destroy environment"], "started_at": [at(58)]}
    )
    on_fail["stopped_at"] = [at(60)]
    return events, jobs, on_fail


def test_rows_bars_colours_and_legend(pipeline_run):
    events, jobs, on_fail = pipeline_run
    fig = timeline(events, jobs, on_fail=on_fail)

    stack_lane = lane(fig, EVENTS_LANE)
    assert tick_labels(stack_lane) == [
        "myStack-abc1234  (stack)",
        "InstanceSecurityGroup  EC2::SecurityGroup",
        "Ec2Instance  EC2::Instance",
    ]
    for phase, count in {"review": 1, "create": 3, "alive": 3, "delete": 3}.items():
        collection = bars(stack_lane, f"phase:{phase}")
        assert len(collection.get_paths()) == count
        assert to_hex(collection.get_facecolor()[0]) == PHASE_COLOURS[phase].lower()
    legend = [t.get_text() for t in stack_lane.get_legend().get_texts()]
    assert legend == ["review", "create", "alive", "delete"]

    # one row each: the stack (row 0) is deleted from 63.5 s to 107 s after the first job
    # started (t = 0 is the create_infrastructure job's start, 4 s before the first event)
    delete_spans = spans(bars(stack_lane, "phase:delete"))
    assert sorted(row for *_, row in delete_spans) == [0.0, 1.0, 2.0]
    stack_delete = next(s for s in delete_spans if s[2] == 0.0)
    assert stack_delete[0] == pytest.approx(4 + 59.5)
    assert stack_delete[1] == pytest.approx(4 + 103)


def test_the_jobs_lane_shares_the_clock_and_marks_the_on_fail_step(pipeline_run):
    events, jobs, on_fail = pipeline_run
    fig = timeline(events, jobs, on_fail=on_fail)
    stack_lane, jobs_lane = lane(fig, EVENTS_LANE), lane(fig, JOBS_LANE)

    assert stack_lane.get_shared_x_axes().joined(stack_lane, jobs_lane)
    assert tick_labels(jobs_lane) == ["create_infrastructure", "smoke_test"]
    assert spans(bars(jobs_lane, "job:success")) == [(0.0, 46.0, 0.0)]
    failed = bars(jobs_lane, "job:failed")
    assert spans(failed) == [(49.0, 66.0, 1.0)]
    assert to_hex(failed.get_facecolor()[0]) == JOB_COLOURS["failed"].lower()
    step = bars(jobs_lane, "on_fail")
    assert step.get_hatch() == "////"
    assert spans(step) == [(62.0, 64.0, 1.0)]
    # the same dashed line through both lanes where the destroy step started
    for ax in (stack_lane, jobs_lane):
        (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "on_fail_line"]
        assert line.get_xdata()[0] == pytest.approx(62.0)
    assert [t.get_text() for t in jobs_lane.get_legend().get_texts()] == [
        "job success",
        "job failed",
        "on_fail step",
    ]
    assert jobs_lane.get_xlabel().endswith("UTC (s)")
    assert "myStack-abc1234" in fig.get_suptitle()


def test_the_failed_resource_and_its_reason_are_visible():
    fig = timeline(events_frame(native_rollback().api()))
    ax = lane(fig, EVENTS_LANE)

    marks = [c for c in ax.collections if c.get_gid() == "failed"][0]
    rows = sorted(marks.get_offsets()[:, 1].tolist())
    assert rows == [0.0, 2.0]  # the stack's create and the instance's create
    # each X carries the number of its reason; the resource's (the cause) comes first
    numbers = {t.get_text(): t.xy[1] for t in ax.texts if t.get_gid() == "reason_mark"}
    assert numbers == {"(1)": 2.0, "(2)": 0.0}
    assert not [t for t in ax.texts if t.get_gid() == "reason"]  # no box over the bars
    (caption,) = [t for t in lane(fig, REASONS_LANE).texts if t.get_gid() == "reason"]
    text = caption.get_text()
    assert text.startswith("(1)  Ec2Instance: Resource handler returned message")
    assert "[…]" not in text and "..." not in text
    # the whole reason, only wrapped: no word of it cut off
    assert " ".join(text.split()).count(" ".join(KEY_PAIR_REASON.split())) == 1
    assert "(2)  myStack-abc1234: The following resource(s) failed to create: [Ec2Instance]" in text
    assert "rollback" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "failed" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_the_reasons_sit_below_the_lanes_inside_the_figure(pipeline_run):
    events, jobs, on_fail = pipeline_run
    failing = events_frame(native_rollback().api())
    for fig, bottom in (
        (timeline(failing), EVENTS_LANE),
        (timeline(failing, jobs, on_fail=on_fail), JOBS_LANE),
    ):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()  # lays the figure out, as saving it does
        renderer = canvas.get_renderer()
        (caption,) = [t for t in lane(fig, REASONS_LANE).texts if t.get_gid() == "reason"]
        box = caption.get_window_extent(renderer)
        lanes = lane(fig, bottom).get_tightbbox(renderer)  # bars, ticks and the x label
        assert box.y1 <= lanes.y0  # under the lanes: it covers no bar, label or tick
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1  # not cut at the figure's edges
        assert box.y0 >= 0


def test_max_reasons_limits_the_numbered_reasons():
    fig = timeline(events_frame(native_rollback().api()), max_reasons=1)
    ax = lane(fig, EVENTS_LANE)
    assert [t.get_text() for t in ax.texts if t.get_gid() == "reason_mark"] == ["(1)"]
    (caption,) = lane(fig, REASONS_LANE).texts
    assert caption.get_text().startswith("(1)  Ec2Instance:") and "(2)" not in caption.get_text()
    assert REASONS_LANE not in [a.get_label() for a in timeline(events_frame(created().api())).axes]


# Machado, Oliveira & Fernandes (2009), severity 1: linear-RGB matrices simulating protanopia,
# deuteranopia and tritanopia.
COLOUR_VISION = {
    "normal": np.eye(3),
    "protanopia": np.array(
        [
            [0.152286, 1.052583, -0.204868],
            [0.114503, 0.786281, 0.099216],
            [-0.003882, -0.048116, 1.051998],
        ]
    ),
    "deuteranopia": np.array(
        [
            [0.367322, 0.860646, -0.227968],
            [0.280085, 0.672501, 0.047413],
            [-0.011820, 0.042940, 0.968881],
        ]
    ),
    "tritanopia": np.array(
        [
            [1.255528, -0.076749, -0.178779],
            [-0.078411, 0.930809, 0.147602],
            [0.004733, 0.691367, 0.303900],
        ]
    ),
}


def cielab(colour: str, vision: np.ndarray) -> np.ndarray:
    srgb = np.array(to_rgb(colour))
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    linear = np.clip(vision @ linear, 0, 1)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    x, y, z = (xyz @ linear) / np.array([0.95047, 1.0, 1.08883])
    fx, fy, fz = (np.cbrt(v) if v > 0.008856 else 7.787 * v + 16 / 116 for v in (x, y, z))
    return np.array([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)])


def test_every_legend_colour_is_told_apart_also_with_colour_blindness():
    """Phases and job statuses share one legend column: no two of their colours may look alike,
    with normal vision or any of the three dichromacies (CIE76 distance of at least 10)."""
    colours = {
        **{f"phase {k}": v for k, v in PHASE_COLOURS.items()},
        **{f"job {k}": v for k, v in JOB_COLOURS.items()},
        "job of another status": OTHER_JOB_COLOUR,
    }
    too_close = [
        (first, second, vision, round(distance, 1))
        for (first, a), (second, b) in itertools.combinations(colours.items(), 2)
        for vision, matrix in COLOUR_VISION.items()
        if (distance := float(np.linalg.norm(cielab(a, matrix) - cielab(b, matrix)))) < 10
    ]
    assert too_close == []


@pytest.mark.parametrize(
    ("seconds", "unit"),
    [(0.004, "ms"), (1.5, "ms"), (2.5, "s"), (170, "s"), (600, "min"), (5 * 3600, "h")],
)
def test_time_unit_reads_well_from_milliseconds_to_hours(seconds, unit):
    assert time_unit(seconds)[0] == unit


def test_a_local_run_in_milliseconds_keeps_every_bar_visible():
    stack = Stack("local")
    stack.stack("CREATE_IN_PROGRESS", "User Initiated", after=0)
    stack.resource("Topic", "AWS::SNS::Topic", "CREATE_IN_PROGRESS", after=0.002)
    stack.resource("Topic", "AWS::SNS::Topic", "CREATE_COMPLETE", physical_id="t", after=0)
    stack.stack("CREATE_COMPLETE", after=0.180)
    fig = timeline(events_frame(stack.api()))
    ax = lane(fig, EVENTS_LANE)

    assert ax.get_xlabel().endswith("(ms)")
    ((start, end, row),) = spans(bars(ax, "phase:create"))[:1]
    assert (start, row) == (pytest.approx(0.0), 0.0)
    assert end == pytest.approx(182.0)
    topic = [s for s in spans(bars(ax, "phase:create")) if s[2] == 1.0][0]
    assert topic[0] == pytest.approx(2.0)
    assert topic[1] > topic[0]  # a zero-length create still shows


def test_files_are_written(tmp_path, pipeline_run):
    events, jobs, on_fail = pipeline_run
    fig = timeline(events, jobs, on_fail=on_fail)
    png, svg = save(fig, tmp_path / "chart.png"), save(fig, tmp_path / "out" / "chart.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = svg.read_text()
    assert "<svg" in text
    assert "smoke_test" in text
    # a notebook cell shows the figure even when pyplot was never imported
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ten_thousand_events_draw_one_collection_per_phase():
    events = events_frame(many_resources(1428).api())
    fig = timeline(events)
    ax = lane(fig, EVENTS_LANE)

    phase_bars = [c for c in ax.collections if (c.get_gid() or "").startswith("phase:")]
    assert sorted(c.get_gid() for c in phase_bars) == [
        "phase:alive",
        "phase:create",
        "phase:delete",
        "phase:update",
    ]
    assert sum(len(c.get_paths()) for c in phase_bars) == len(phases(events))
    assert len(ax.get_yticklabels()) <= MAX_ROW_LABELS
    assert ax.get_ylim() == (1428.5, -0.5)


def test_jobs_without_times_or_timezones_are_refused(pipeline_run):
    events, jobs, _ = pipeline_run
    with pytest.raises(InputError, match="started_at: the jobs DataFrame has no column"):
        timeline(events, jobs.drop(columns="started_at"))
    naive = jobs.assign(started_at=jobs["started_at"].dt.tz_localize(None))
    with pytest.raises(InputError, match="timezone-aware"):
        timeline(events, naive)


def test_a_job_still_running_reaches_the_end_of_the_chart(pipeline_run):
    events, jobs, _ = pipeline_run
    running = jobs.assign(status=["success", "running"], stopped_at=[jobs["stopped_at"][0], pd.NaT])
    fig = timeline(events, running)
    (bar,) = spans(bars(lane(fig, JOBS_LANE), "job:running"))
    last_event = (events["timestamp"].max() - jobs["started_at"].min()).total_seconds()
    assert bar[1] == pytest.approx(last_event)
    assert not np.isnan(bar[0])
