"""``rollback-lab demo`` runs numbered notebooks headless and names the cell that fails."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from helpers.cli import main


def _notebook(path: Path, *sources: str) -> None:
    params = new_code_cell('WORKSPACE = None\nNAME = "x"', metadata={"tags": ["parameters"]})
    cells = [params, new_markdown_cell("# test")] + [new_code_cell(s) for s in sources]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, path)


def test_demo_runs_notebooks_in_order_and_exports_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(
        notebooks / "01_a.ipynb",
        "import os, sys\nprint('cwd', os.getcwd())\nprint('py', sys.executable)",
        "print('ws', WORKSPACE)",
    )
    _notebook(notebooks / "02_b.ipynb", "assert WORKSPACE.endswith('workspace')")
    _notebook(notebooks / "helper.ipynb", "raise SystemExit('unnumbered notebooks are not run')")
    out = tmp_path / "out"

    assert main(["demo", "--out", str(out), "--notebooks", str(notebooks), "--no-services"]) == 0

    printed = capsys.readouterr().out
    assert printed.index("01_a.ipynb") < printed.index("02_b.ipynb")
    assert "helper.ipynb" not in printed
    for name in ("01_a", "02_b"):
        assert (out / f"{name}.ipynb").is_file()
        assert "<html" in (out / f"{name}.html").read_text()
    executed = nbformat.read(out / "01_a.ipynb", as_version=4)
    text = "".join(
        o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
    )
    assert f"cwd {notebooks}" in text
    assert f"ws {(out / 'workspace').resolve()}" in text
    import sys

    assert f"py {sys.executable}" in text


def test_demo_fails_naming_notebook_and_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "01_fails.ipynb", "x = 1", "assert x == 2, 'x is not two'")
    _notebook(notebooks / "02_never.ipynb", "print('never')")
    out = tmp_path / "out"

    assert main(["demo", "--out", str(out), "--notebooks", str(notebooks), "--no-services"]) == 1

    captured = capsys.readouterr()
    assert "01_fails.ipynb" in captured.err
    assert "AssertionError: x is not two" in captured.err
    assert "1 later notebook(s) not run" in captured.err
    assert "cell " in captured.err
    assert (out / "01_fails.html").is_file()
    assert not (out / "02_never.ipynb").exists()


def test_demo_without_notebooks_folder_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(tmp_path), "--notebooks", str(tmp_path / "none")]) == 2
    assert str(tmp_path / "none") in capsys.readouterr().err


def test_demo_starts_the_services_for_the_notebooks_saves_charts_and_stops_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers.services import services_status

    monkeypatch.delenv("ROLLBACK_LAB_STATE_DIR", raising=False)
    before = os.environ.get("AWS_ENDPOINT_URL")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(
        notebooks / "01_chart.ipynb",
        "import os, boto3\n"
        f"assert os.environ['ROLLBACK_LAB_STATE_DIR'] == {str(tmp_path / 'state')!r}\n"
        "assert boto3.client('cloudformation').list_stacks()['StackSummaries'] == []",
        "import matplotlib.pyplot as plt, pathlib\n"
        "pathlib.Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)\n"
        "plt.plot([0, 1]); plt.savefig(pathlib.Path(OUTPUT_DIR) / 'line.png')",
    )
    out = tmp_path / "out"
    state = tmp_path / "state"
    argv = ["demo", "--out", str(out), "--notebooks", str(notebooks), "--state-dir", str(state)]
    try:
        assert main(argv) == 0
    finally:
        from helpers.services import stop_services

        stop_services(state)  # a no-op when the demo stopped them, as it should

    printed = capsys.readouterr().out
    assert "local services started" in printed and "local services stopped" in printed
    assert (out / "charts" / "line.png").is_file()
    assert f"charts in {out / 'charts'}" in printed and "line.png" in printed
    assert services_status(state) is None
    assert "AWS_ENDPOINT_URL" not in os.environ or os.environ["AWS_ENDPOINT_URL"] == before
