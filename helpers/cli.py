"""The ``rollback-lab`` command: one sub-command per capability, each in its own module.

Sub-command modules are imported only when used, so ``rollback-lab --help`` stays fast. A
module named here defines ``configure_<name>(parser)`` and ``run_<name>(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from helpers.errors import LabError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("helpers.demo", "run the lab's notebooks headless into a build folder"),
    "up": ("helpers.services.commands", "start the local services (AWS on moto, CircleCI)"),
    "status": ("helpers.services.commands", "show whether the local services are running"),
    "down": ("helpers.services.commands", "stop the local services"),
    "link": (
        "helpers.localci.server_commands",
        "link a CircleCI project slug to a local git repository",
    ),
    "ci": ("helpers.localci.commands", "run a config.yml locally (rollback-lab ci run)"),
    "trigger": ("helpers.circleci.commands", "trigger a pipeline through CircleCI's API"),
    "events": ("helpers.stack_events.commands", "fetch and chart a stack's CloudFormation events"),
    "check": ("helpers.checks.commands", "check template.yml and .circleci/config.yml"),
    "cleanup": ("helpers.checks.commands", "list or delete the lab's leftover stacks"),
    "bench": ("helpers.bench", "measure the local services against a baseline"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollback-lab",
        description="The Rollback lab's command line: the local AWS and CircleCI, pipelines, "
        "charts of a stack's events, and checks of your template.yml and config.yml.",
        epilog="`rollback-lab COMMAND --help` describes a command's options.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = _wanted_command(sys.argv[1:])
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            module = importlib.import_module(module_name)
            getattr(module, f"configure_{name.replace('-', '_')}")(sub)
    return parser


def _wanted_command(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    if argv is not None:
        sys.argv[1:] = list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(getattr(module, f"run_{args.command.replace('-', '_')}")(args) or 0)
    except LabError as exc:
        print(f"rollback-lab {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
