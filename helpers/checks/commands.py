"""``rollback-lab check [DIR] [--rubric] [--format json]`` and ``rollback-lab cleanup``."""

from __future__ import annotations

import argparse
import json
import os

from helpers.checks.aws import aws_target
from helpers.checks.check import check
from helpers.checks.cleanup import DEFAULT_PREFIX, LabStack, delete_lab_stacks, list_lab_stacks
from helpers.checks.rubric import rubric


def configure_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory", nargs="?", default=".", metavar="DIR", help="the lab workspace (default: .)"
    )
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )
    parser.add_argument(
        "--rubric",
        action="store_true",
        help="mark the workspace against the exercise's six needs, plus no stacks left",
    )
    parser.add_argument(
        "--no-aws", action="store_true", help="do not ask AWS (key pairs, leftover stacks)"
    )
    _state_dir_option(parser)


def run_check(args: argparse.Namespace) -> int:
    """Exit 1 when there are errors (or, with --rubric, a failed need); 0 otherwise."""
    _use_state_dir(args.state_dir)
    if args.rubric:
        result = rubric(args.directory, check_aws=not args.no_aws)
    else:
        result = check(args.directory, check_aws=not args.no_aws)
    print(result.to_json() if args.format == "json" else result.to_table())
    return result.exit_code()


def configure_cleanup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"only stacks whose name starts with this (default: {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--yes", action="store_true", help="delete the stacks listed and wait until they are gone"
    )
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )
    _state_dir_option(parser)


def run_cleanup(args: argparse.Namespace) -> int:
    """List (or with --yes delete) the lab's stacks; exit 1 when one could not be deleted."""
    _use_state_dir(args.state_dir)
    target = aws_target()
    stacks = list_lab_stacks(args.prefix, target)
    if not args.yes:
        if args.format == "json":
            print(json.dumps({"stacks": [s.to_dict() for s in stacks], "deleted": []}, indent=2))
        elif stacks:
            print(_stack_table(stacks))
            print(
                f"\n{len(stacks)} stack(s) named {args.prefix}… in {target.description}. "
                "Delete them with: rollback-lab cleanup --yes"
                + (f" --prefix {args.prefix}" if args.prefix != DEFAULT_PREFIX else "")
            )
        else:
            print(f"No stacks named {args.prefix}… in {target.description}.")
        return 0
    results = delete_lab_stacks(stacks, args.prefix, target)
    left = [s for s in results if s.status != "DELETE_COMPLETE"]
    if args.format == "json":
        print(
            json.dumps(
                {"stacks": [s.to_dict() for s in results], "left": [s.name for s in left]},
                indent=2,
            )
        )
    elif results:
        print(_stack_table(results))
        print(f"\nDeleted {len(results) - len(left)} of {len(results)} stack(s).")
    else:
        print(f"No stacks named {args.prefix}… in {target.description}: nothing to delete.")
    return 1 if left else 0


def _state_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("ROLLBACK_LAB_STATE_DIR"),
        help="the local services instance to use (default: $ROLLBACK_LAB_STATE_DIR)",
    )


def _use_state_dir(state_dir: str | None) -> None:
    """Every AWS lookup of this process (the check's, the rubric's) uses this instance."""
    if state_dir:
        os.environ["ROLLBACK_LAB_STATE_DIR"] = state_dir


def _stack_table(stacks: list[LabStack]) -> str:
    rows = [
        (s.name, s.status, s.created.strftime("%Y-%m-%d %H:%M:%S") if s.created else "")
        for s in stacks
    ]
    header = ("STACK", "STATUS", "CREATED")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )
