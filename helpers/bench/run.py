"""One bench run: its own services instance, the parts asked for, a JSON-ready report.

The services are started on a temp state dir (with the CloudFormation step delay chosen for
both sides) and stopped at the end whatever happens; this process's environment, which
``ensure_services`` points at the instance, is put back as it was. A part that fails is
reported with its error and the others still run.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from helpers.demo import NOTEBOOKS
from helpers.errors import LabError

PARTS = ("pipeline", "classroom", "events", "lab")
NEEDS_SERVICES = frozenset({"pipeline", "classroom", "lab"})
STEP_SECONDS_ENV = "ROLLBACK_LAB_CFN_STEP_SECONDS"  # read by helpers.services.cfn_fidelity

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    runs: int = 5
    pipelines: int = 20
    events: int = 10_000
    parts: tuple[str, ...] = PARTS
    warmup: int = 1
    # 0: the per-resource pause is a teaching aid (bars with lengths), not a cost to measure.
    cfn_step_seconds: float = 0.0
    notebooks: Path = field(default=NOTEBOOKS)


def run(options: BenchOptions, progress: Progress = lambda _text: None) -> dict[str, Any]:
    unknown = set(options.parts) - set(PARTS)
    if unknown:
        raise LabError(f"unknown bench part(s): {', '.join(sorted(unknown))}")
    root = Path(tempfile.mkdtemp(prefix="rollback-lab-bench-"))
    saved_env = dict(os.environ)
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {**asdict(options), "notebooks": str(options.notebooks)},
        "state_dir": str(root / "state"),
        "parts": {},
    }
    try:
        os.environ[STEP_SECONDS_ENV] = repr(options.cfn_step_seconds)
        _run_parts(options, root, report["parts"], progress)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        _forget_clients()
        shutil.rmtree(root, ignore_errors=True)
    report["ok"] = all(part.get("ok") for part in report["parts"].values())
    return report


def _run_parts(
    options: BenchOptions, root: Path, parts: dict[str, Any], progress: Progress
) -> None:
    wanted = [name for name in PARTS if name in options.parts]
    if "events" in wanted:
        progress(f"events: charting {options.events} synthetic events")
        parts["events"] = _guard(lambda: _events(options, root))
    if not NEEDS_SERVICES & set(wanted):
        return
    from helpers.services import ensure_services, stop_services

    state_dir = root / "state"
    progress(f"starting the local services in {state_dir}")
    started = time.perf_counter()
    try:
        try:
            endpoints = ensure_services(state_dir)
        except Exception as exc:  # noqa: BLE001 (every part that needed them reports it)
            parts["services"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            return
        parts["services"] = {"start_s": round(time.perf_counter() - started, 3), "ok": True}
        with_services = _Services(endpoints, root, options, progress)
        for name in wanted:
            if name in NEEDS_SERVICES:
                parts[name] = _guard(getattr(with_services, name))
    finally:
        progress("stopping the local services")
        stop_services(state_dir)


class _Services:
    """The parts that need the local services, sharing one instance and one lab project."""

    def __init__(self, endpoints: Any, root: Path, options: BenchOptions, progress: Progress):
        self.endpoints = endpoints
        self.root = root
        self.options = options
        self.progress = progress
        self._project: Any = None

    def project(self) -> Any:
        if self._project is None:
            from helpers.bench.project import prepare_project

            self._project = prepare_project(self.root, self.endpoints)
        return self._project

    def client(self) -> Any:
        from helpers.circleci.client import CircleCIClient

        if not self.endpoints.circleci_url:
            raise LabError(
                f"the local CircleCI API is not running: {self.endpoints.circleci_error}"
            )
        return CircleCIClient(token=self.endpoints.circle_token, host=self.endpoints.circleci_url)

    def pipeline(self) -> dict[str, Any]:
        from helpers.bench.pipeline import measure_pipeline_overhead

        with self.client() as client:
            result = measure_pipeline_overhead(
                self.project(),
                client,
                runs=self.options.runs,
                warmup=self.options.warmup,
                home=self.root / "home",
                progress=self.progress,
            )
        return result.to_json()

    def classroom(self) -> dict[str, Any]:
        from helpers.bench.classroom import measure_classroom

        result = measure_classroom(
            self.project(), self.client, pipelines=self.options.pipelines, progress=self.progress
        )
        return result.to_json()

    def lab(self) -> dict[str, Any]:
        from helpers.bench.lab import measure_lab

        self.progress(f"lab: running the notebooks in {self.options.notebooks}")
        env = {
            "ROLLBACK_LAB_STATE_DIR": str(self.endpoints.state_dir),
            "ROLLBACK_LAB_WORKSPACE": str(self.root / "lab" / "workspace"),
            STEP_SECONDS_ENV: repr(self.options.cfn_step_seconds),
            "MPLBACKEND": "Agg",
        }
        return measure_lab(self.options.notebooks, self.root / "lab", env).to_json()


def _events(options: BenchOptions, root: Path) -> dict[str, Any]:
    from helpers.bench.events import measure_events_chart

    return measure_events_chart(options.events, root).to_json()


def _forget_clients() -> None:
    """The boto3 clients of the stopped instance are of no further use."""
    project = sys.modules.get("helpers.bench.project")
    if project is not None:
        project.aws_client.cache_clear()


def _guard(part: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one part; an exception becomes its report (the other parts still run)."""
    try:
        return part()
    except Exception as exc:  # noqa: BLE001 (reported, and the exit status says so)
        traceback.print_exc(file=sys.stderr)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    versions = {}
    for package in ("moto", "awscli", "matplotlib", "pandas"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions,
    }
