"""``rollback-lab up / status / down``: the local services from a shell or Makefile."""

from __future__ import annotations

import argparse
import json
import shlex

from helpers.services import Endpoints, ensure_services, services_status, stop_services
from helpers.services.state import STATE_DIR_ENV, resolve_state_dir


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        default=None,
        help=f"instance to use (default: ${STATE_DIR_ENV}, else the user's cache dir)",
    )


def _describe(endpoints: Endpoints) -> str:
    lines = [
        f"local AWS (moto):    {endpoints.aws_endpoint_url}  region {endpoints.region}",
        f"local CircleCI API:  {endpoints.circleci_url or 'not hosted'}"
        + (f" ({endpoints.circleci_error}; see services.log)" if endpoints.circleci_error else ""),
        f"state dir:           {endpoints.state_dir}  (pid {endpoints.pid})",
        "use them from a shell with:",
    ]
    env = {**endpoints.aws_env(), **endpoints.circleci_env()}
    env.pop("CIRCLE_TOKEN", None)  # a secret: printed only by `up --json`
    lines += [f"  export {name}={value}" for name, value in env.items()]
    return "\n".join(lines)


def _exports(endpoints: Endpoints) -> str:
    """``export`` lines for ``eval "$(rollback-lab up --env)"``: asked for, so with the token,
    and with the state dir so later commands (`ci run --local-aws`, `events`) find this instance."""
    env = {
        STATE_DIR_ENV: str(endpoints.state_dir),
        **endpoints.aws_env(),
        **endpoints.circleci_env(),
    }
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items())


def configure_up(parser: argparse.ArgumentParser) -> None:
    _add_state_dir(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (endpoints, and the local CircleCI token when hosted)",
    )
    output.add_argument(
        "--env",
        action="store_true",
        help='`export` lines for a shell, token included: eval "$(rollback-lab up --env)"',
    )


def run_up(args: argparse.Namespace) -> int:
    endpoints = ensure_services(args.state_dir)
    if args.json:
        print(json.dumps(endpoints.as_json(include_secrets=True)))
    elif args.env:
        print(_exports(endpoints))
    else:
        print(_describe(endpoints))
    return 0


def configure_status(parser: argparse.ArgumentParser) -> None:
    _add_state_dir(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_status(args: argparse.Namespace) -> int:
    endpoints = services_status(args.state_dir)
    if args.json:
        data = (
            endpoints.as_json()
            if endpoints
            else {"state_dir": str(resolve_state_dir(args.state_dir))}
        )
        print(json.dumps({"running": endpoints is not None, **data}))
    elif endpoints is None:
        print(
            f"not running (state dir {resolve_state_dir(args.state_dir)}); "
            "start them with `rollback-lab up`"
        )
    else:
        print(_describe(endpoints))
    return 0 if endpoints is not None else 1


def configure_down(parser: argparse.ArgumentParser) -> None:
    _add_state_dir(parser)


def run_down(args: argparse.Namespace) -> int:
    stopped = stop_services(args.state_dir)
    directory = resolve_state_dir(args.state_dir)
    print(
        f"stopped the local services ({directory})"
        if stopped
        else f"the local services were not running ({directory})"
    )
    return 0
