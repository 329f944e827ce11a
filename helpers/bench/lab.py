"""The whole lab: the demo's headless run of every numbered notebook, timed after set-up.

"After set-up" means the kit is installed and the local services are up (the bench starts
them before this part), so the figure is what an instructor waits for after pressing Run All
on each notebook in turn. It runs whatever notebooks exist, in the demo's order, through
``helpers.demo`` itself, on the bench's own services instance and workspace.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.bench.stats import rounded

TARGET_SECONDS = 60.0


@dataclass
class LabRun:
    seconds: float
    notebooks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.notebooks)

    def to_json(self) -> dict[str, Any]:
        return {
            "notebooks": self.notebooks,
            "count": len(self.notebooks),
            "seconds": rounded(self.seconds),
            "target_s": TARGET_SECONDS,
            "meets_target": self.ok and self.seconds <= TARGET_SECONDS,
            "ok": self.ok,
            "error": self.error,
        }


def measure_lab(notebooks_dir: Path, out: Path, env: Mapping[str, str]) -> LabRun:
    """Run the notebooks as ``rollback-lab demo`` does; ``env`` reaches their kernels."""
    from helpers import demo

    notebooks = demo.find_notebooks(notebooks_dir)
    if not notebooks:
        return LabRun(0.0, error=f"no numbered notebooks in {notebooks_dir}")
    parameters = {"WORKSPACE": str((out / "workspace").resolve())}
    # demo prints a line per notebook: progress, so it goes where the bench's progress goes.
    with _environment(env), contextlib.redirect_stdout(sys.stderr):
        started = time.perf_counter()
        runs = demo.run_all(notebooks, out, parameters)
        seconds = time.perf_counter() - started
    failed = [run for run in runs if not run.ok]
    error = None
    if failed:
        error = f"{failed[0].source.name}: {failed[0].error}"
    elif len(runs) < len(notebooks):
        error = f"only {len(runs)} of {len(notebooks)} notebooks ran"
    return LabRun(
        seconds,
        [{"name": r.source.name, "seconds": rounded(r.seconds), "ok": r.ok} for r in runs],
        error,
    )


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Kernels inherit this process's environment: set it for the run, then put it back."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
