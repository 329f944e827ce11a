"""The notebooks in a real JupyterLab, in headless Chromium: Run All as an instructor would.

One JupyterLab server and one Chromium for the module, a fresh browser context per notebook.
JupyterLab serves a temporary copy of notebooks/, with autosave off, so executed outputs never
reach the committed notebooks. The local services the notebooks start use a state dir of this
module's own and are stopped at the end. Screenshots land in build/screenshots/NN_name.png.

Chromium is Debian's /usr/bin/chromium: missing, the module skips locally and fails with CI=true.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from browser_support import (
    CHART_TAG,
    RAISES_TAG,
    LabServer,
    NotebookRun,
    chromium_missing_reason,
    copy_notebooks,
    launch_chromium,
    run_notebook,
    running_lab,
)
from playwright.sync_api import Browser, sync_playwright

from helpers.services import services_status

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(path.name for path in (REPO / "notebooks").glob("[0-9]*.ipynb"))
SCREENSHOTS = REPO / "build" / "screenshots"
HARNESS = "harness"


@pytest.fixture(scope="module")
def chromium() -> None:
    reason = chromium_missing_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run in CI)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def services_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A local-services instance and lab workspace of this module's own, stopped at the end."""
    base = tmp_path_factory.mktemp("browser-lab")
    env = {
        "ROLLBACK_LAB_STATE_DIR": str(base / "state"),
        "ROLLBACK_LAB_WORKSPACE": str(base / "lab-workspace"),
        "LAB_BACKEND": "local",
    }
    yield env
    _stop_services(env)


def _stop_services(env: dict[str, str]) -> None:
    state_dir = Path(env["ROLLBACK_LAB_STATE_DIR"])
    if not state_dir.exists() or not any(state_dir.iterdir()):
        return  # no notebook started the services
    result = subprocess.run(
        [sys.executable, "-m", "helpers.cli", "down", "--state-dir", str(state_dir)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"rollback-lab down failed:\n{result.stdout}{result.stderr}"
    assert services_status(state_dir) is None, f"the local services in {state_dir} still run"


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's root: a copy of notebooks/ and the harness's own self-test notebooks."""
    root = tmp_path_factory.mktemp("lab-root")
    copy_notebooks(REPO / "notebooks", root / "notebooks")
    _write_harness_notebooks(root / HARNESS)
    return root


@pytest.fixture(scope="module")
def lab(
    chromium: None,
    lab_root: Path,
    services_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LabServer]:
    with running_lab(lab_root, tmp_path_factory.mktemp("jupyter-home"), services_env) as server:
        yield server


@pytest.fixture(scope="module")
def browser(chromium: None) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        instance = launch_chromium(playwright)
        try:
            yield instance
        finally:
            instance.close()


def _describe(run: NotebookRun, problems: list[str], server: LabServer) -> str:
    lines = [f"{run.path} in JupyterLab (screenshot: {run.screenshot}):", *problems]
    lines += ["--- JupyterLab log (tail) ---", server.log_tail(15)]
    return "\n".join(lines)


# --- the harness proves it can tell a good run from a bad one ------------------------------------


def _code(source: str, *tags: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _stale(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A cell as committed with kept outputs: a count and an output from some earlier run."""
    cell.execution_count = 7
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="stale\n")]
    return cell


def _write_harness_notebooks(folder: Path) -> None:
    folder.mkdir()
    kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebooks = {
        "chart.ipynb": [
            nbformat.v4.new_markdown_cell("# A chart, a warning, a widget, an empty cell"),
            _code("import sys\nprint(sys.executable)"),
            _code("import warnings\nwarnings.warn('a warning is not an error')"),
            _code(
                "import matplotlib.pyplot as plt\n"
                "fig, ax = plt.subplots(figsize=(5, 2.5))\n"
                "ax.plot([0, 1, 2, 3], [0, 3, 1, 2])\n"
                "ax.set_title('harness chart')\n"
                "plt.show()",
                CHART_TAG,
            ),
            _code("import ipywidgets\nipywidgets.IntSlider(value=3, description='widget')"),
            _code(""),
        ],
        "error.ipynb": [
            _code("print('before')"),
            _code("raise ValueError('boom from the harness self-test')"),
            _stale(_code("print('after')")),
        ],
        "tagged.ipynb": [
            _code("raise KeyError('expected by its tag')", RAISES_TAG),
            _code("print('no chart here')", CHART_TAG),
        ],
    }
    for name, cells in notebooks.items():
        notebook = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernelspec})
        nbformat.write(notebook, folder / name)


def test_harness_sees_a_rendered_chart_from_the_venv_kernel(
    lab: LabServer, browser: Browser, tmp_path: Path
) -> None:
    run = run_notebook(browser, lab, f"{HARNESS}/chart.ipynb", tmp_path / "chart.png")

    assert run.problems(expects_chart=True) == []
    assert run.kernel_name == "python3"
    assert run.rendered_charts == 1
    executable, warning, chart, widget, empty = run.cells[1:]
    assert [cell.execution_count for cell in (executable, warning, chart, widget)] == [1, 2, 3, 4]
    assert Path(executable.output_text.strip()).parent == Path(sys.executable).parent
    assert empty.execution_count is None  # JupyterLab sends no empty cell to the kernel
    assert "application/vnd.jupyter.stderr" in warning.output_mime_types
    assert warning.error_outputs == [] and warning.shown_error_nodes == 0
    assert "image/png" in chart.output_mime_types
    assert widget.rendered_widgets == 1 and "widget" in widget.output_text
    assert run.page_errors == []
    assert run.screenshot is not None and run.screenshot.stat().st_size > 10_000
    printed = (lab.root_dir / HARNESS / "chart.ipynb").read_text()
    assert 'execution_count": null' in printed, "autosave wrote outputs back to the notebook"


def test_harness_reports_an_error_cell_and_the_cells_it_stopped(
    lab: LabServer, browser: Browser, tmp_path: Path
) -> None:
    run = run_notebook(browser, lab, f"{HARNESS}/error.ipynb", tmp_path / "error.png")

    problems = run.problems()
    assert len(problems) == 2, problems
    assert problems[0].startswith('cell 1 ("raise ValueError(')
    assert "ValueError: boom from the harness self-test" in problems[0]
    # The stale count and output committed with the cell were cleared before Run All.
    assert problems[1] == "cell 2 (\"print('after')\") was not executed"
    assert run.cells[2].output_mime_types == []
    assert run.cells[1].shown_error_nodes == 1  # the traceback is on the page, not just the model


def test_harness_tolerates_raises_exception_and_wants_tagged_charts(
    lab: LabServer, browser: Browser
) -> None:
    run = run_notebook(browser, lab, f"{HARNESS}/tagged.ipynb", None)

    assert run.cells[0].error_outputs == ["KeyError: 'expected by its tag'"]
    assert run.problems() == [
        f"cell 1 (\"print('no chart here')\") is tagged {CHART_TAG!r} but shows no rendered chart"
    ]
    assert "the notebook should draw a chart" in run.problems(expects_chart=True)[-1]


# --- the lab's own notebooks ----------------------------------------------------------------------


def _notebook_params() -> list:
    if not NOTEBOOKS:
        reason = "no notebooks/[0-9]*.ipynb in the repository yet"
        return [pytest.param(None, id="no-notebooks", marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(name, id=Path(name).stem) for name in NOTEBOOKS]


@pytest.mark.parametrize("notebook", _notebook_params())
def test_notebook_runs_clean_in_jupyterlab(lab: LabServer, browser: Browser, notebook: str) -> None:
    """Run All shows no error, runs every cell, and draws the chart when the notebook has one."""
    screenshot = SCREENSHOTS / f"{Path(notebook).stem}.png"
    run = run_notebook(browser, lab, f"notebooks/{notebook}", screenshot)

    problems = run.problems(expects_chart="chart" in notebook)
    assert problems == [], _describe(run, problems, lab)
    assert run.kernel_name == "python3"
    assert screenshot.exists()


# --- the skip/fail policy when Chromium is missing -----------------------------------------------


@pytest.mark.parametrize(
    ("ci", "outcome", "says"),
    [
        ("", "1 skipped", "chromium not installed: apt-get install chromium"),
        ("true", "1 error", "CI=true: the browser test must run in CI"),
    ],
    ids=["local-skips", "ci-fails"],
)
def test_missing_chromium_skips_locally_and_fails_in_ci(
    tmp_path: Path, ci: str, outcome: str, says: str
) -> None:
    env = {**os.environ, "ROLLBACK_LAB_CHROMIUM": str(tmp_path / "no-chromium"), "CI": ci}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-rs", "-p", "no:cacheprovider"]
        + ["-k", "harness_sees_a_rendered_chart"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    assert says in result.stdout
    assert result.returncode == (0 if outcome.endswith("skipped") else 1)
