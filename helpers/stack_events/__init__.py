"""CloudFormation stack events: fetch them, read them as phases, chart them with the pipeline.

Notebook use::

    events = stack_events("myStack-abc1234")      # deleted stacks too
    phases(events)                                # who did what, when, how it ended
    timeline(events, jobs, on_fail=steps)         # matplotlib Figure; save(fig, "x.png")
    for event in tail("myStack-abc1234"): print(describe(event))
"""

from helpers.stack_events.chart import save, time_unit, timeline
from helpers.stack_events.fetch import (
    StackNotFound,
    from_describe_output,
    latest_stack_id,
    raw_events,
    stack_events,
    stacks_named,
)
from helpers.stack_events.frame import events_frame, select_deployment
from helpers.stack_events.live import describe, tail
from helpers.stack_events.phases import PHASES, phases
from helpers.stack_events.report import write_html

__all__ = [
    "PHASES",
    "StackNotFound",
    "describe",
    "events_frame",
    "from_describe_output",
    "latest_stack_id",
    "phases",
    "raw_events",
    "save",
    "select_deployment",
    "stack_events",
    "stacks_named",
    "tail",
    "time_unit",
    "timeline",
    "write_html",
]
