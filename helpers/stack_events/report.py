"""One self-contained HTML page: the timeline (inline SVG), its phases and the raw events.

It opens anywhere without a kernel or the kit, so it can be attached to a course page or a CI
artifact.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; }}
table {{ border-collapse: collapse; font-size: 0.85rem; }}
th, td {{ border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; }}
svg {{ max-width: 100%; height: auto; }}
</style></head>
<body>
<h1>{title}</h1>
<figure>{svg}</figure>
<h2>Phases</h2>
{phases}
<h2>Events ({count}, oldest first)</h2>
{events}
</body></html>
"""


def write_html(
    path: str | Path, fig: Figure, events: pd.DataFrame, phase_table: pd.DataFrame
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and doctype: inline SVG needs neither
    title = fig.get_suptitle() or "Stack events"
    page = PAGE.format(
        title=html.escape(title),
        svg=svg,
        phases=_table(phase_table),
        count=len(events),
        events=_table(events),
    )
    path.write_text(page, encoding="utf-8")
    return path


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="", border=0, escape=True)
