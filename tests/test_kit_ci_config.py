"""The kit tests itself the way it teaches: its own .circleci/config.yml runs `make test`,
compiles with the local engine, and passes `rollback-lab check`."""

from __future__ import annotations

from pathlib import Path

from helpers import exercise
from helpers import pipeline_config as pc
from helpers.checks import check
from helpers.localci.config import compile_config

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / ".circleci" / "config.yml"


def test_the_kits_config_compiles_and_runs_make_test() -> None:
    compiled = compile_config(CONFIG.read_text(encoding="utf-8"), source=".circleci/config.yml")
    job = compiled.jobs["test"]
    assert job.image is not None and job.image.startswith("cimg/python:")
    steps = job.to_data()["steps"]  # "checkout" is a string; a run step is {"run": {...}}
    commands = [s["run"]["command"] for s in steps if isinstance(s, dict) and "run" in s]
    assert "make test" in [command.strip() for command in commands], commands
    assert [wj.name for wj in compiled.workflows["test"].jobs] == ["test"]


def test_rollback_lab_check_passes_on_the_kit_itself() -> None:
    findings = check(REPO, check_aws=False)
    assert not findings.errors, findings.to_table()
    assert "missing-file" not in findings.rules()  # no job deploys a template


def test_a_missing_template_matters_only_when_a_job_deploys_one(tmp_path: Path) -> None:
    builds_only = pc.config(
        jobs={"test": pc.docker_job("cimg/python:3.12", [pc.checkout(), pc.run("make test")])},
        workflows={"test": pc.workflow(["test"])},
    )
    pc.write_config(builds_only, tmp_path / "kit" / ".circleci" / "config.yml")
    assert "missing-file" not in check(tmp_path / "kit", check_aws=False).rules()

    pc.write_config(exercise.lab_config(), tmp_path / "lab" / ".circleci" / "config.yml")
    missing = [f for f in check(tmp_path / "lab", check_aws=False) if f.rule == "missing-file"]
    assert [(f.file, f.severity) for f in missing] == [("template.yml", "warning")]
