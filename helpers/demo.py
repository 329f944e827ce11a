"""``rollback-lab demo``: run the lab's notebooks headless, as a class would with Run All.

The local services (AWS on moto, the local CircleCI) are started first unless they already run
for the state dir (``ROLLBACK_LAB_STATE_DIR`` or ``--state-dir``), and stopped at the end only if
the demo started them. Each ``notebooks/[0-9]*.ipynb`` runs in order with papermill on a kernel
of this very Python environment (never whatever ``python3`` kernel a machine happens to have
registered), and lands in the out folder twice: the executed notebook and an HTML page of it;
the charts the notebooks draw are saved under ``<out>/charts``. The first failing cell stops the
run and is named (notebook, cell, error), so the exit status tells CI what broke.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.errors import InputError

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
CELL_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class NotebookRun:
    """What happened to one notebook."""

    source: Path
    executed: Path
    html: Path
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def find_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """The lab's numbered notebooks, in the order a student opens them."""
    if not folder.is_dir():
        raise InputError("notebooks folder not found", file=folder)
    return sorted(folder.glob("[0-9]*.ipynb"))


def _kernel_manager_class() -> type:
    # papermill hands this to nbclient; the kernel spec is built from this interpreter, like
    # nbval's --nbval-current-env, so a stray user-level "python3" kernel is never picked.
    import ipykernel.kernelspec
    import zmq
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class CurrentEnvKernelSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> Any:
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES,
                **ipykernel.kernelspec.get_kernel_dict(),
            )

    class CurrentEnvKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self) -> KernelSpecManager:
            return CurrentEnvKernelSpecs(data_dir=self.data_dir)

        @default("transport_encryption")
        def _transport_encryption_default(self) -> str:
            # Without CurveZMQ keys ipykernel warns, once per notebook, that it runs over TCP
            # without encryption: noise in front of a class, and a fair point on shared machines.
            return "auto" if zmq.has("curve") else "disabled"

    return CurrentEnvKernelManager


def run_notebook(source: Path, out: Path, parameters: Mapping[str, Any]) -> NotebookRun:
    """Execute one notebook into ``out`` and export it as HTML, even when a cell fails."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed = out / source.name
    html = executed.with_suffix(".html")
    started = time.monotonic()
    error = None
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=dict(parameters),
            kernel_name="python3",
            kernel_manager_class=_kernel_manager_class(),
            cwd=str(source.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=CELL_TIMEOUT_SECONDS,
        )
    except PapermillExecutionError as exc:
        first_line = (exc.source or "").strip().splitlines()[0] if exc.source else ""
        error = (
            f"cell {exc.cell_index} of the executed copy (In [{exc.exec_count}]: "
            f"{first_line[:60]!r}) raised {exc.ename}: {exc.evalue}"
        )
    seconds = time.monotonic() - started
    if executed.exists():
        export_html(executed, html)
    return NotebookRun(source, executed, html, seconds, error)


def export_html(notebook: Path, html: Path) -> Path:
    """An HTML page of an executed notebook, readable without Jupyter."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    html.write_text(body, encoding="utf-8")
    return html


def run_all(
    notebooks: Sequence[Path], out: Path, parameters: Mapping[str, Any]
) -> list[NotebookRun]:
    """Run notebooks in order, stopping at the first failure (later ones build on it)."""
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for source in notebooks:
        result = run_notebook(source, out, parameters)
        runs.append(result)
        print(_summary_line(result), flush=True)
        if not result.ok:
            break
    return runs


def _summary_line(result: NotebookRun) -> str:
    status = "ok    " if result.ok else "FAILED"
    line = f"{status} {result.source.name} ({result.seconds:.1f} s)"
    line += f" -> {result.executed}, {result.html}"
    return line if result.ok else f"{line}\n       {result.error}"


def configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("build/demo"),
        help="folder for the executed notebooks, their HTML pages and charts (default: build/demo)",
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=NOTEBOOKS,
        help="folder of numbered notebooks (default: the kit's notebooks/)",
    )
    parser.add_argument(
        "--services",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start the local services for the run (default) and stop them afterwards",
    )
    parser.add_argument(
        "--state-dir",
        default=None,
        help="local-services instance (default: $ROLLBACK_LAB_STATE_DIR, else the user cache)",
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="lab workspace repository the notebooks write to (default: <out>/workspace)",
    )


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    notebooks = find_notebooks(Path(args.notebooks))
    if not notebooks:
        print(f"rollback-lab demo: no numbered notebooks in {args.notebooks}", file=sys.stderr)
        return 1
    workspace = Path(args.workspace) if args.workspace else out / "workspace"
    charts = out / "charts"
    parameters = {"WORKSPACE": str(workspace.resolve()), "OUTPUT_DIR": str(charts)}
    with _local_services(args.services, args.state_dir):
        runs = run_all(notebooks, out, parameters)
    failed = [run for run in runs if not run.ok]
    if failed:
        skipped = notebooks[len(runs) :]
        print(
            f"rollback-lab demo: {failed[0].source} failed: {failed[0].error}"
            + (f" ({len(skipped)} later notebook(s) not run)" if skipped else ""),
            file=sys.stderr,
        )
        return 1
    print(_summary(runs, out, sorted(charts.glob("*.png"))))
    return 0


@contextmanager
def _local_services(wanted: bool, state_dir: str | None) -> Iterator[None]:
    """Start the local services unless they run; stop them afterwards only if started here.
    Kernels inherit this process's environment, so the notebooks attach to this instance."""
    if not wanted:
        yield
        return
    from helpers.services import (
        STATE_DIR_ENV,
        ensure_services,
        resolve_state_dir,
        services_status,
        stop_services,
    )

    directory = resolve_state_dir(state_dir)
    saved = dict(os.environ)  # ensure_services points this process at the services: undone below
    os.environ[STATE_DIR_ENV] = str(directory)
    started = services_status(directory) is None
    endpoints = ensure_services(directory)
    how = "started" if started else "already running"
    print(
        f"local services {how}: AWS {endpoints.aws_endpoint_url}, "
        f"CircleCI {endpoints.circleci_url} (state dir {directory})",
        flush=True,
    )
    try:
        yield
    finally:
        if started:
            stop_services(directory)
            print("local services stopped", flush=True)
        os.environ.clear()
        os.environ.update(saved)


def _summary(runs: Sequence[NotebookRun], out: Path, charts: Sequence[Path]) -> str:
    seconds = sum(run.seconds for run in runs)
    lines = [f"rollback-lab demo: {len(runs)} notebook(s) ran in {seconds:.1f} s; in {out}:"]
    lines += [f"  {run.executed.name:<34} {run.html.name}" for run in runs]
    if charts:
        lines.append(f"charts in {charts[0].parent}:")
        lines += [f"  {chart.name}" for chart in charts]
    return "\n".join(lines)
