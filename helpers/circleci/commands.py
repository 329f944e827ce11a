"""``rollback-lab trigger SLUG``: trigger a pipeline, optionally watch it to the end.

Exit codes: 0 every workflow succeeded (or, without ``--watch``, the pipeline was created);
1 a workflow failed or the pipeline errored (the failed job and step are printed); 2 usage,
auth and other errors (raised as LabError and printed by the dispatcher).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from helpers.circleci.client import CircleCIClient
from helpers.circleci.watch import WatchResult, watch_pipeline
from helpers.errors import InputError


def configure_trigger(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("slug", metavar="SLUG", help="project slug, e.g. gh/ORG/REPO")
    ref = parser.add_mutually_exclusive_group()
    ref.add_argument("--branch", help="branch to build (default: the project's default)")
    ref.add_argument("--tag", help="tag to build")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pipeline parameter (true/false and integers are typed); repeatable",
    )
    parser.add_argument("--watch", action="store_true", help="follow the pipeline to the end")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds to watch before giving up"
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=None,
        help="seconds between the first polls, then longer (default: 2, or 0.05 on loopback)",
    )
    parser.add_argument(
        "--host", help="CircleCI URL (default: $CIRCLECI_CLI_HOST or https://circleci.com)"
    )
    parser.epilog = "The token is read from CIRCLE_TOKEN or CIRCLECI_CLI_TOKEN."


def parse_params(pairs: list[str]) -> dict[str, bool | int | str]:
    """``KEY=VALUE`` pairs; ``true``/``false`` become booleans and integers ints, as in YAML."""
    params: dict[str, bool | int | str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{pair!r} is not KEY=VALUE", field="--param")
        params[key.strip()] = _typed(value)
    return params


def _typed(value: str) -> bool | int | str:
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        return value


def run_trigger(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    with CircleCIClient(host=args.host) as client:
        created = client.trigger_pipeline(
            args.slug, branch=args.branch, tag=args.tag, parameters=params or None
        )
        if not args.watch:
            if args.json:
                print(json.dumps({"pipeline": created.to_api()}, indent=2))
            else:
                print(f"pipeline {created.number} created: {created.id} ({created.state})")
            return 0
        progress = sys.stderr if args.json else sys.stdout
        if not args.json:
            print(f"pipeline {created.number} created: {created.id}", flush=True)
        result = watch_pipeline(
            client,
            created.id,
            poll=args.poll,
            timeout=args.timeout,
            view="terminal",
            stream=progress,
        )
    if args.json:
        print(json.dumps(_summary(created.to_api(), result), indent=2))
    else:
        print(_verdict(result))
    return 0 if result.succeeded else 1


def _verdict(result: WatchResult) -> str:
    outcome = result.outcome
    if outcome == "success":
        return "every workflow succeeded"
    if outcome == "errored":
        errors = "; ".join(f"{e.type}: {e.message}" for e in result.pipeline.errors)
        return f"the pipeline errored: {errors or 'no reason given'}"
    if outcome == "no_workflows":
        return "no workflow ran (check the config's workflows and filters)"
    failed = [wf.name for wf in result.workflows if wf.status != "success"]
    lines = [f"workflow {', '.join(failed)} did not succeed ({outcome})"]
    lines += [f"  {failure.describe()}" for failure in result.failures]
    return "\n".join(lines)


def _summary(created: dict[str, Any], result: WatchResult) -> dict[str, Any]:
    return {
        "pipeline": created,
        "outcome": result.outcome,
        "errors": [e.to_api() for e in result.pipeline.errors],
        "workflows": [wf.to_api() for wf in result.workflows],
        "jobs": [job.to_api() for jobs in result.jobs.values() for job in jobs],
        "failures": [
            {
                "workflow": f.workflow,
                "job": f.job,
                "job_number": f.job_number,
                "status": f.status,
                "step": f.step,
                "exit_code": f.exit_code,
                "log_tail": f.log_tail,
            }
            for f in result.failures
        ],
    }
