"""Notebooks are committed without outputs (nbstripout), each starting with a papermill
``parameters`` cell.

A cell may keep its outputs only when marked ``"keep_output": true`` in its metadata (nbstripout's
convention); nbval then also needs its execution count, which nbstripout only keeps with
``--keep-count`` — see README "Notebooks in git". The lab's notebooks use none: their checks are
asserts in code.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9]*.ipynb"))
PARAMETERS = ("BACKEND", "WORKSPACE", "STACK_PREFIX", "REGION")


def dirty_cells(notebook: nbformat.NotebookNode) -> list[str]:
    """What nbstripout would have removed, cell by cell."""
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        kept = bool(cell.metadata.get("keep_output"))
        if cell.outputs and not kept:
            problems.append(f"cell {index}: has outputs")
        if cell.execution_count is not None and not kept:
            problems.append(f"cell {index}: has execution_count {cell.execution_count}")
        if kept and cell.outputs and cell.execution_count is None:
            problems.append(f"cell {index}: keep_output without an execution count fails nbval")
    return problems


def test_there_are_notebooks() -> None:
    names = [path.name for path in NOTEBOOKS]
    assert "01_template.ipynb" in names and "02_pipeline_config.ipynb" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert dirty_cells(notebook) == [], f"{path.name}: run `nbstripout {path}`"
    assert "widgets" not in notebook.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_starts_with_a_parameters_cell(path: Path) -> None:
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    for name in PARAMETERS:
        assert f"\n{name} = " in f"\n{first.source}", f"{path.name}: parameters cell lacks {name}"


def test_the_check_sees_outputs_and_allows_kept_ones() -> None:
    dirty = new_code_cell("1 + 1", execution_count=3)
    dirty.outputs = [new_output("execute_result", {"text/plain": "2"}, execution_count=3)]
    kept = new_code_cell("2 + 2", execution_count=4, metadata={"keep_output": True})
    kept.outputs = [new_output("execute_result", {"text/plain": "4"}, execution_count=4)]
    kept_no_count = new_code_cell("3", metadata={"keep_output": True})
    kept_no_count.outputs = [new_output("stream", name="stdout", text="3\n")]
    notebook = new_notebook(cells=[new_markdown_cell("x"), dirty, kept, kept_no_count])
    assert dirty_cells(notebook) == [
        "cell 1: has outputs",
        "cell 1: has execution_count 3",
        "cell 3: keep_output without an execution count fails nbval",
    ]
