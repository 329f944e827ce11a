"""``rollback-lab bench``: how the kit performs on this machine, measured side by side.

Four parts, in one run on a services instance of its own (a temp state dir, stopped at the
end): the pipeline's overhead against its bare ``aws`` commands, a classroom of pipelines
triggered at once, events → chart, and the whole lab's notebooks. The targets are figures to
read, not pass/fail checks; the exit status is 1 only when a part did not work (a pipeline
lost or ending wrongly, a notebook failing).

    rollback-lab bench                      # the table
    rollback-lab bench --json --runs 3      # one JSON document on stdout
    rollback-lab bench --only pipeline events
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers.bench.run import PARTS, BenchOptions, run
from helpers.bench.table import render_table

__all__ = ["PARTS", "BenchOptions", "configure_bench", "render_table", "run", "run_bench"]


def configure_bench(parser: argparse.ArgumentParser) -> None:
    defaults = BenchOptions()
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument(
        "--runs",
        type=_positive,
        default=defaults.runs,
        help="alternated runs of each side (default: %(default)s)",
    )
    parser.add_argument(
        "--pipelines",
        type=_positive,
        default=defaults.pipelines,
        help="pipelines the classroom triggers at once (default: %(default)s)",
    )
    parser.add_argument(
        "--events",
        type=_positive,
        default=defaults.events,
        help="synthetic events to chart (default: %(default)s)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        metavar="NAME",
        help=f"parts to run: {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=defaults.warmup,
        help="uncounted rounds before the runs (default: %(default)s)",
    )
    parser.add_argument(
        "--cfn-step-seconds",
        type=float,
        default=defaults.cfn_step_seconds,
        help="the local CloudFormation's pause per resource, for both sides "
        "(default: %(default)s; the lab's own default is 0.2)",
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=defaults.notebooks,
        help="folder of numbered notebooks for the lab part",
    )


def run_bench(args: argparse.Namespace) -> int:
    options = BenchOptions(
        runs=args.runs,
        pipelines=args.pipelines,
        events=args.events,
        parts=tuple(args.only or PARTS),
        warmup=max(0, args.warmup),
        cfn_step_seconds=max(0.0, args.cfn_step_seconds),
        notebooks=args.notebooks,
    )
    report = run(options, progress=lambda text: print(f"bench: {text}", file=sys.stderr))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_table(report))
    return 0 if report["ok"] else 1


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value
