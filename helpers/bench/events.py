"""Events → chart: synthetic DescribeStackEvents records to a rendered timeline PNG.

Timed from the raw records (what boto3 returns) to the PNG on disk, in the stages a notebook
goes through: the tidy frame, the figure (phases are computed inside it), the rendering.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.bench.stats import rounded

TARGET_SECONDS = 2.0


@dataclass
class EventsChart:
    events: int
    frame_seconds: float
    figure_seconds: float
    render_seconds: float
    bars: int
    png: Path

    @property
    def seconds(self) -> float:
        return self.frame_seconds + self.figure_seconds + self.render_seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "seconds": rounded(self.seconds),
            "frame_s": rounded(self.frame_seconds),
            "figure_s": rounded(self.figure_seconds),
            "render_s": rounded(self.render_seconds),
            "bars": self.bars,
            "png_bytes": self.png.stat().st_size if self.png.exists() else 0,
            "target_s": TARGET_SECONDS,
            "meets_target": self.seconds <= TARGET_SECONDS,
            "ok": self.bars > 0 and self.png.exists(),
        }


def measure_events_chart(count: int, out_dir: Path) -> EventsChart:
    from helpers.stack_events import events_frame, save, timeline
    from helpers.stack_events.synthetic import synthetic_events

    records = synthetic_events(count)
    png = out_dir / "events-chart.png"
    started = time.perf_counter()
    frame = events_frame(records)
    framed = time.perf_counter()
    fig = timeline(frame)
    drawn = time.perf_counter()
    save(fig, png)
    rendered = time.perf_counter()
    bars = sum(
        len(c.get_paths())
        for ax in fig.axes
        for c in ax.collections
        if (c.get_gid() or "").startswith("phase:")
    )
    return EventsChart(
        events=len(frame),
        frame_seconds=framed - started,
        figure_seconds=drawn - framed,
        render_seconds=rendered - drawn,
        bars=bars,
        png=png,
    )
