"""The local services process: ``python -m helpers.services.daemon --state-dir DIR``.

Started detached by :func:`helpers.services.ensure_services` (new session, stdio to
``services.log``), so it outlives the notebook kernel or CLI that started it. It starts moto,
then the local CircleCI API when ``helpers.localci.api`` provides ``serve``, records both in
``state.json`` once they answer, and on SIGTERM/SIGINT closes them and removes its state.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from helpers.services import state as state_mod

log = logging.getLogger("rollback-lab.services")


def _start_circleci(state_dir: Path, env: dict[str, str]) -> tuple[Any, str | None]:
    """The local CircleCI API if its module exists; (None, reason) when it cannot start."""
    if importlib.util.find_spec("helpers.localci.api") is None:
        return None, None
    try:
        api = importlib.import_module("helpers.localci.api")
        serve = getattr(api, "serve", None)
        if serve is None:
            return None, None
        return serve(state_dir, env), None
    except Exception as exc:  # noqa: BLE001 (AWS still works; the error goes to state + log)
        log.error("local CircleCI API did not start:\n%s", traceback.format_exc())
        return None, f"{type(exc).__name__}: {exc}"


def run(state_dir: Path) -> int:
    from helpers.services.aws import aws_env, start_aws

    instance_id = state_mod.new_instance_id()
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    aws = start_aws({"instance_id": instance_id, "pid": os.getpid(), "service": "rollback-lab"})
    log.info("local AWS (moto) at %s", aws.url)
    served, circleci_error = _start_circleci(state_dir, aws_env(aws.url, aws.region))
    if served is not None:
        log.info("local CircleCI API at %s", served.url)
    try:
        state_mod.write_state(
            state_dir,
            state_mod.ServiceState(
                pid=os.getpid(),
                instance_id=instance_id,
                aws_endpoint_url=aws.url,
                region=aws.region,
                circleci_url=getattr(served, "url", None),
                circle_token=getattr(served, "token", None),
                circleci_error=circleci_error,
                started_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            ),
        )
        while not stop.wait(timeout=1.0):
            pass
    finally:
        state_mod.remove_state(state_dir, instance_id)
        if served is not None:
            try:
                served.close()
            except Exception:  # noqa: BLE001 (still close moto)
                log.error("closing the CircleCI API failed:\n%s", traceback.format_exc())
        aws.close()
        log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.services.daemon")
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    state_dir = args.state_dir.resolve()
    state_mod.prepare_state_dir(state_dir)
    return run(state_dir)


if __name__ == "__main__":
    sys.exit(main())
