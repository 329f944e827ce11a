"""``rollback-lab events``: a stack's events as a table, and as PNG/SVG/CSV/HTML files."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

import pandas as pd

from helpers.errors import LabError, ServicesNotRunning
from helpers.stack_events.chart import save, timeline
from helpers.stack_events.fetch import from_describe_output, stack_events
from helpers.stack_events.phases import phases
from helpers.stack_events.report import write_html

SUMMARY_COLUMNS = ("logical_id", "phase", "start_s", "duration_s", "outcome", "reason")


def configure_events(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stack", nargs="?", help="stack name or ARN (deleted stacks too)")
    parser.add_argument(
        "--input",
        metavar="FILE",
        help="read saved `aws cloudformation describe-stack-events --output json` output",
    )
    parser.add_argument("--png", metavar="FILE", help="write the timeline as PNG")
    parser.add_argument("--svg", metavar="FILE", help="write the timeline as SVG")
    parser.add_argument("--csv", metavar="FILE", help="write the tidy events as CSV")
    parser.add_argument("--html", metavar="FILE", help="write a page with chart and tables")
    parser.add_argument(
        "--all-deployments",
        action="store_true",
        help="include earlier stacks that had the same name",
    )
    parser.add_argument(
        "--state-dir",
        help="local services instance (default: $ROLLBACK_LAB_STATE_DIR or the user's cache)",
    )


def run_events(args: argparse.Namespace) -> int:
    if bool(args.stack) == bool(args.input):
        raise LabError("give a stack name or --input FILE (one of them)")
    if args.input:
        events = from_describe_output(args.input)
    else:
        _use_configured_aws(args.state_dir)
        events = _fetch(args.stack, deployments="all" if args.all_deployments else "latest")
    table = phases(events)
    print(summary(table).to_string(index=False, max_colwidth=60))
    failed = table[table["outcome"] == "failed"]
    if not failed.empty:
        print("\nfailed:")
        for row in failed.itertuples():
            print(f"  {row.logical_id} ({row.phase}, {row.end_status}): {row.reason or ''}")
    if args.png or args.svg or args.html:
        fig = timeline(events)
        for path in (args.png, args.svg):
            if path:
                print(f"wrote {save(fig, path)}")
        if args.html:
            print(f"wrote {write_html(args.html, fig, events, table)}")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        events.to_csv(args.csv, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        print(f"wrote {args.csv}")
    return 0


def _fetch(stack: str, *, deployments: str) -> pd.DataFrame:
    """The stack's events; AWS's own refusals (no region, no credentials, no connection, an
    error answer) become a LabError, so the command prints one line instead of a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return stack_events(stack, deployments=deployments)
    except (BotoCoreError, ClientError) as exc:
        raise LabError(f"{stack}: could not read its events from AWS: {exc}") from exc


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Phases as a person reads them: seconds from the first event, failures' reasons."""
    if table.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    origin = table["start"].min()
    return pd.DataFrame(
        {
            "logical_id": table["logical_id"],
            "phase": table["phase"].astype(str),
            "start_s": ((table["start"] - origin).dt.total_seconds()).round(3),
            "duration_s": table["duration"].dt.total_seconds().round(3),
            "outcome": table["outcome"],
            "reason": table["reason"].fillna(""),
        }
    )


def _use_configured_aws(state_dir: str | None) -> None:
    """Choose the AWS to read: an AWS_ENDPOINT_URL already set wins; LAB_BACKEND=real means
    boto3's usual credentials and region; otherwise the local services, which must be up:
    this process is pointed at them (AWS_ENDPOINT_URL, region and the dummy credentials).
    """
    if os.environ.get("AWS_ENDPOINT_URL") and not state_dir:
        return
    if os.environ.get("LAB_BACKEND", "local") == "real":
        return
    try:
        services = importlib.import_module("helpers.services")
    except ModuleNotFoundError:
        services = None
    require = getattr(services, "require_services", None)
    if require is None:
        raise ServicesNotRunning(
            "the local AWS is not configured: start it with `rollback-lab up` (or set "
            "AWS_ENDPOINT_URL), or set LAB_BACKEND=real to read real AWS"
        )
    endpoints = require(state_dir=state_dir) if state_dir else require()
    os.environ.update(endpoints.aws_env())
