"""environment.yml (conda/Binder) and pyproject.toml must name the same packages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from ruamel.yaml import YAML

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs tomli on 3.10")

ROOT = Path(__file__).resolve().parent.parent
# conda-only entries: the interpreter and tools pip does not install.
CONDA_ONLY = {"python", "pip", "git", "make"}


def pyproject_requirements(text: str) -> set[str]:
    return {str(Requirement(dep)) for dep in tomllib.loads(text)["project"]["dependencies"]}


def environment_requirements(text: str) -> tuple[set[str], set[str], list[str]]:
    """(pip requirements, conda package names, pip lines that are not requirements)."""
    pip: set[str] = set()
    conda: set[str] = set()
    other: list[str] = []
    for entry in YAML(typ="safe").load(text)["dependencies"]:
        if isinstance(entry, dict):
            for line in entry.get("pip", []):
                if line.startswith("-"):
                    other.append(line)
                else:
                    pip.add(str(Requirement(line)))
        else:
            conda.add(Requirement(entry.replace("=", "==", 1) if "=" in entry else entry).name)
    return pip, conda, other


def disagreements(pyproject_text: str, environment_text: str) -> list[str]:
    wanted = pyproject_requirements(pyproject_text)
    pip, conda, other = environment_requirements(environment_text)
    problems = [f"only in pyproject.toml: {r}" for r in sorted(wanted - pip)]
    problems += [f"only in environment.yml: {r}" for r in sorted(pip - wanted)]
    problems += [f"unexpected conda package: {name}" for name in sorted(conda - CONDA_ONLY)]
    if "-e ." not in other:
        problems.append("environment.yml must install the kit itself (pip: [-e .])")
    return problems


def test_environment_yml_matches_pyproject() -> None:
    problems = disagreements(
        (ROOT / "pyproject.toml").read_text(), (ROOT / "environment.yml").read_text()
    )
    assert problems == []


def test_python_versions_agree() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    env = YAML(typ="safe").load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    version = python.split("=", 1)[1]
    from packaging.specifiers import SpecifierSet

    assert version in SpecifierSet(requires)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda e: e.replace('      - "pandas>=2.2"\n', ""), "only in pyproject.toml: pandas>=2.2"),
        (
            lambda e: e.replace('"pandas>=2.2"', '"pandas>=2.3"'),
            "only in environment.yml: pandas>=2.3",
        ),
        (
            lambda e: e.replace("  - make\n", "  - make\n  - nodejs\n"),
            "unexpected conda package: nodejs",
        ),
        (lambda e: e.replace("      - -e .\n", ""), "environment.yml must install the kit itself"),
    ],
    ids=["missing", "different-version", "extra-conda", "no-editable"],
)
def test_a_disagreement_is_caught(edit, expected: str) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    environment = (ROOT / "environment.yml").read_text()
    edited = edit(environment)
    assert edited != environment, "the test's edit no longer applies to environment.yml"
    assert any(p.startswith(expected) for p in disagreements(pyproject, edited))
