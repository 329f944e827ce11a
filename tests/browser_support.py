"""Run notebooks in a real JupyterLab driven through headless Chromium, for tests/test_browser.py.

nbval and papermill prove that the notebooks' code runs; they cannot see what an instructor sees
after Run All in JupyterLab: a kernel that must start from the notebook's kernelspec, outputs that
must render, charts that must appear. This module starts one JupyterLab server (isolated from the
user's Jupyter config, settings and kernels), opens notebooks in Chromium, presses Run All through
the menu and reports, cell by cell, what the page shows.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from playwright.sync_api import Browser, Page, Playwright

# Another Chromium can be named for a local run; the test's skip/fail policy is tested this way too.
CHROMIUM = Path(os.environ.get("ROLLBACK_LAB_CHROMIUM", "/usr/bin/chromium"))

# The field notes' flags: root needs --no-sandbox; the rest keep Chromium off the (closed) network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

# User settings for the test's JupyterLab: nothing is ever saved back to a notebook (autosave off),
# every cell stays in the DOM so every output can be inspected (no windowing), no news toast over
# the page.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

# Cells with this tag must show a rendered chart; cells with `raises-exception` may show an error
# (JupyterLab's Run All goes on past them, as nbclient does).
CHART_TAG = "chart"
RAISES_TAG = "raises-exception"
# What JupyterLab prints in place of an ipywidget whose model or renderer is missing.
WIDGET_FAILURE = "Error displaying widget"


@dataclass
class LabServer:
    """A running JupyterLab: where it listens and how to reach it."""

    url: str
    token: str
    root_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def notebook_url(self, relative_path: str, workspace: str) -> str:
        """A URL that opens one notebook in its own fresh workspace (no restored tabs)."""
        return (
            f"{self.url}/lab/workspaces/{workspace}/tree/{relative_path}?reset&token={self.token}"
        )

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class CellReport:
    """What the page showed for one cell after Run All."""

    index: int
    cell_type: str
    source_head: str
    tags: list[str]
    execution_count: int | None
    pending: bool
    is_empty: bool
    error_outputs: list[str] = field(default_factory=list)
    shown_error_nodes: int = 0
    output_mime_types: list[str] = field(default_factory=list)
    output_text: str = ""
    rendered_charts: int = 0
    rendered_widgets: int = 0
    broken_images: int = 0

    @property
    def is_code(self) -> bool:
        return self.cell_type == "code"


@dataclass
class NotebookRun:
    """The result of Run All on one notebook in JupyterLab."""

    path: str
    kernel_status: str
    kernel_name: str
    cells: list[CellReport]
    screenshot: Path | None
    timed_out: bool = False
    page_errors: list[str] = field(default_factory=list)

    @property
    def rendered_charts(self) -> int:
        return sum(cell.rendered_charts for cell in self.cells)

    def problems(self, expects_chart: bool = False) -> list[str]:
        """Everything an instructor would see go wrong, one line each; empty means a clean run."""
        found: list[str] = []
        if self.timed_out:
            found.append(f"kernel still busy when the wait ended (status {self.kernel_status})")
        found += [f"uncaught JavaScript error on the page: {error}" for error in self.page_errors]
        for cell in self.cells:
            if not cell.is_code:
                continue
            where = f"cell {cell.index} ({cell.source_head!r})"
            if cell.error_outputs and RAISES_TAG not in cell.tags:
                found.append(f"{where} shows an error: {' | '.join(cell.error_outputs)}")
            if cell.execution_count is None and not cell.is_empty:
                found.append(f"{where} was not executed")
            if WIDGET_FAILURE in cell.output_text:
                found.append(f"{where} shows a widget that failed to render")
            if cell.broken_images:
                found.append(f"{where} has {cell.broken_images} image output(s) that did not load")
            if CHART_TAG in cell.tags and not cell.rendered_charts:
                found.append(f"{where} is tagged {CHART_TAG!r} but shows no rendered chart")
        if expects_chart and not self.rendered_charts:
            found.append("the notebook should draw a chart but none rendered")
        return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chromium_missing_reason() -> str | None:
    if CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK):
        return None
    return "chromium not installed: apt-get install chromium"


def write_jupyter_home(home: Path) -> dict[str, str]:
    """A private Jupyter home: config, data, runtime, settings, and a kernelspec for this venv.

    The kernelspec is named ``python3`` (what ipykernel writes into notebooks' metadata) and names
    this interpreter by absolute path, so a ``python3`` kernelspec in the user's own Jupyter data
    dir can never hijack the test.
    """
    kernel_dir = home / "path" / "kernels" / "python3"
    kernel_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True},
    }
    (kernel_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    settings_dir = home / "settings"
    for plugin, values in LAB_SETTINGS.items():
        target = settings_dir / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values, indent=1))
    dirs = {
        "JUPYTER_PATH": home / "path",
        "JUPYTER_CONFIG_DIR": home / "config",
        "JUPYTER_DATA_DIR": home / "data",
        "JUPYTER_RUNTIME_DIR": home / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": settings_dir,
        "JUPYTERLAB_WORKSPACES_DIR": home / "workspaces",
        "IPYTHONDIR": home / "ipython",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return {name: str(path) for name, path in dirs.items()}


def lab_environment(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """The server's environment: as after ``source .venv/bin/activate``, Jupyter kept private."""
    env = dict(os.environ)
    # An inherited MPLBACKEND=Agg would stop the inline backend from showing any figure.
    env.pop("MPLBACKEND", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env.update(write_jupyter_home(home))
    env.update(extra)
    return env


def start_lab(
    root_dir: Path, home: Path, extra_env: dict[str, str], timeout: float = 60.0
) -> LabServer:
    """Start JupyterLab on a free loopback port and wait until its API answers."""
    token = secrets.token_hex(16)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=",
        "--ServerApp.terminals_enabled=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log_path = home / "jupyterlab.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        command,
        cwd=root_dir,
        env=lab_environment(home, extra_env),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    server = LabServer(f"http://127.0.0.1:{port}", token, root_dir, log_path, process)
    try:
        _wait_until_answering(server, timeout)
    except BaseException:
        stop_lab(server)
        raise
    return server


def _wait_until_answering(server: LabServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"token {server.token}"}
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with code {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            if httpx.get(f"{server.url}/api/status", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"JupyterLab did not answer within {timeout:.0f} s:\n{server.log_tail()}")


def stop_lab(server: LabServer, timeout: float = 20.0) -> None:
    """Stop the server and every process it started (kernels run in sessions of their own)."""
    try:
        descendants = psutil.Process(server.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    headers = {"Authorization": f"token {server.token}"}
    if server.process.poll() is None:
        try:
            httpx.post(f"{server.url}/api/shutdown", headers=headers, timeout=5)
        except httpx.HTTPError:
            pass
        try:
            server.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGTERM)
            try:
                server.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait()
    _, alive = psutil.wait_procs(descendants, timeout=5)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=5)


@contextmanager
def running_lab(root_dir: Path, home: Path, extra_env: dict[str, str]) -> Iterator[LabServer]:
    server = start_lab(root_dir, home, extra_env)
    try:
        yield server
    finally:
        stop_lab(server)


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless; Playwright gives each launch a fresh temporary profile."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


# Reads the notebook model and the DOM of the current notebook panel. The model says which outputs
# are errors (in the DOM an error and a stderr stream look alike); the DOM says what was shown.
_INSPECT_JS = """
() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.map((cell, index) => {
    const model = cell.model;
    const source = model.sharedModel.getSource();
    const report = {
      index, cell_type: model.type, source_head: source.split('\\n')[0].slice(0, 60),
      tags: model.getMetadata('tags') || [], execution_count: null, pending: false,
      is_empty: source.trim() === '',
      error_outputs: [], shown_error_nodes: 0, output_mime_types: [], output_text: '',
      rendered_charts: 0, rendered_widgets: 0, broken_images: 0,
    };
    if (model.type !== 'code') { return report; }
    const area = cell.node.querySelector('.jp-OutputArea');
    report.output_text = area ? area.innerText.slice(0, 2000) : '';
    report.execution_count = model.executionCount;
    const prompt = cell.node.querySelector('.jp-InputPrompt');
    report.pending = (prompt && prompt.textContent.includes('*')) ||
      model.executionState === 'running';
    for (const output of model.outputs.toJSON()) {
      if (output.output_type === 'error') {
        report.error_outputs.push(`${output.ename}: ${output.evalue}`);
      }
    }
    for (const node of cell.node.querySelectorAll('.jp-OutputArea-output')) {
      const mime = node.getAttribute('data-mime-type') || '';
      report.output_mime_types.push(mime);
      if (mime === 'application/vnd.jupyter.stderr' && node.textContent.includes('Traceback')) {
        report.shown_error_nodes += 1;
      }
      const box = node.getBoundingClientRect();
      if (node.querySelector('.jupyter-widgets') && box.height > 0) {
        report.rendered_widgets += 1;
      }
      if (mime.startsWith('image/')) {
        for (const img of node.querySelectorAll('img')) {
          if (img.complete && img.naturalWidth > 0 && box.width > 0 && box.height > 0) {
            report.rendered_charts += 1;
          } else {
            report.broken_images += 1;
          }
        }
        if (mime === 'image/svg+xml' && node.querySelector('svg') && box.height > 0) {
          report.rendered_charts += 1;
        }
      } else if (node.querySelector('canvas, .vega-embed, .plotly-graph-div, .js-plotly-plot')
                 && box.width > 0 && box.height > 0) {
        report.rendered_charts += 1;
      }
    }
    return report;
  });
  return {
    kernel_status: kernel ? kernel.status : 'no kernel',
    kernel_name: kernel ? kernel.name : '',
    cells,
  };
}
"""

_KERNEL_IDLE_JS = """
() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.sessionContext || !panel.content) { return false; }
  const session = panel.sessionContext.session;
  return !!(session && session.kernel && session.kernel.status === 'idle');
}
"""

_RUN_FINISHED_JS = """
() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session.kernel;
  if (kernel.status !== 'idle') { return false; }
  const code = panel.content.widgets.filter((cell) => cell.model.type === 'code');
  const started = code.some((cell) => cell.model.executionCount !== null ||
    cell.model.outputs.length > 0);
  const pending = code.some((cell) => {
    const prompt = cell.node.querySelector('.jp-InputPrompt');
    return (prompt && prompt.textContent.includes('*')) || cell.model.executionState === 'running';
  });
  return (started || code.length === 0) && !pending;
}
"""


def run_notebook(
    browser: Browser,
    server: LabServer,
    relative_path: str,
    screenshot: Path | None,
    timeout: float = 300.0,
) -> NotebookRun:
    """Open one notebook, clear it, Run All through the menu, wait, inspect, screenshot."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        workspace = "t" + secrets.token_hex(4)
        page.goto(server.notebook_url(relative_path, workspace), wait_until="domcontentloaded")
        _wait_for_kernel(page, relative_path)
        page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        timed_out = _wait_for_run(page, timeout)
        data = page.evaluate(_INSPECT_JS)
        if screenshot is not None:
            _screenshot_whole_notebook(page, screenshot)
        cells = [CellReport(**cell) for cell in data["cells"]]
        _shut_down_kernel(page)
        return NotebookRun(
            path=relative_path,
            kernel_status=data["kernel_status"],
            kernel_name=data["kernel_name"],
            cells=cells,
            screenshot=screenshot,
            timed_out=timed_out,
            page_errors=page_errors,
        )
    finally:
        context.close()


def _shut_down_kernel(page: Page) -> None:
    """Each notebook's kernel ends with its page; the server's shutdown catches any left over."""
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")


def _wait_for_kernel(page: Page, relative_path: str) -> None:
    """Wait for the notebook's own kernel; fail plainly when Lab asks which kernel to use."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if page.evaluate(_KERNEL_IDLE_JS):
            return
        if page.get_by_text("Select Kernel", exact=True).is_visible():
            raise AssertionError(
                f"{relative_path}: JupyterLab asks which kernel to use — the notebook's "
                "metadata.kernelspec names no kernel this environment has (expected python3)"
            )
        page.wait_for_timeout(250)
    raise TimeoutError(f"{relative_path}: the kernel did not become idle within 90 s")


def _wait_for_run(page: Page, timeout: float) -> bool:
    """Wait until the kernel is idle with no cell queued, twice in a row; True when time ran out."""
    deadline = time.monotonic() + timeout
    settled = 0
    while time.monotonic() < deadline:
        settled = settled + 1 if page.evaluate(_RUN_FINISHED_JS) else 0
        if settled >= 2:
            # Give the last outputs' images a moment to decode before they are inspected.
            page.wait_for_timeout(300)
            return False
        page.wait_for_timeout(250)
    return True


def _screenshot_whole_notebook(page: Page, path: Path) -> None:
    """Grow the window to the notebook's height so the picture holds every cell, then shoot.

    The height is that of the cells (.jp-WindowedPanel-viewport): the scroller's scrollHeight
    also counts the blank "scroll past end" space JupyterLab adds below the last cell.
    """
    height = page.evaluate(_NOTEBOOK_HEIGHT_JS)
    page.set_viewport_size({"width": 1400, "height": max(900, min(int(height), 12000))})
    page.wait_for_timeout(300)
    page.evaluate(_SCROLL_TO_TOP_JS)
    page.wait_for_timeout(100)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))


_NOTEBOOK_HEIGHT_JS = """() => {
  const notebook = window.jupyterapp.shell.currentWidget.content.node;
  const scroller = notebook.querySelector('.jp-WindowedPanel-outer');
  const cells = notebook.querySelector('.jp-WindowedPanel-viewport');
  return Math.ceil(window.innerHeight - scroller.clientHeight + cells.scrollHeight + 24);
}"""

_SCROLL_TO_TOP_JS = """() => {
  const notebook = window.jupyterapp.shell.currentWidget.content.node;
  notebook.querySelector('.jp-WindowedPanel-outer').scrollTop = 0;
}"""


def copy_notebooks(source: Path, target: Path) -> list[str]:
    """Copy the numbered notebooks (and files beside them) so a run never writes to the repo."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return sorted(path.name for path in target.glob("[0-9]*.ipynb"))
