"""Pipeline-config helpers: builders, layout of the written file, lossless read, schema check."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import pipeline_config as pc
from helpers.errors import InputError


def _config() -> dict:
    return pc.config(
        parameters={"stack_prefix": pc.parameter("string", default="myStack-")},
        commands={
            "destroy": pc.command(
                [
                    pc.run(
                        "aws cloudformation delete-stack --stack-name << parameters.name >>\n",
                        name="Destroy",
                        when="on_fail",
                    )
                ],
                parameters={"name": pc.parameter("string", description="the stack")},
            )
        },
        jobs={
            "create": pc.docker_job(
                "amazon/aws-cli",
                [
                    pc.checkout(),
                    pc.run(
                        "aws cloudformation deploy \\\n  --stack-name s\n",
                        name="Create",
                        environment={"AWS_PAGER": ""},
                    ),
                ],
                environment={"AWS_DEFAULT_REGION": "us-east-1"},
            ),
            "smoke": pc.docker_job(
                "amazon/aws-cli", [pc.run("exit 1", name="Fail"), pc.invoke("destroy", name="s")]
            ),
        },
        workflows={"main": pc.workflow(["create", pc.workflow_job("smoke", requires=["create"])])},
    )


def test_builders_make_circleci_shapes() -> None:
    step = pc.run("echo hi", when="always", name="Say")
    assert step == {"run": {"name": "Say", "when": "always", "command": "echo hi"}}
    assert list(step["run"]) == ["name", "when", "command"]
    assert pc.checkout() == "checkout"
    assert pc.invoke("destroy") == "destroy"
    assert pc.invoke("destroy", name="s") == {"destroy": {"name": "s"}}
    assert pc.workflow_job("a") == "a"
    assert pc.workflow_job("b", requires=["a"]) == {"b": {"requires": ["a"]}}
    job = pc.docker_job("alpine", ["checkout"], environment={"A": "1"})
    assert job == {
        "docker": [{"image": "alpine"}],
        "environment": {"A": "1"},
        "steps": ["checkout"],
    }
    assert list(_config()) == ["version", "parameters", "commands", "jobs", "workflows"]


def test_written_config_looks_hand_written_and_reads_back(tmp_path: Path) -> None:
    cfg = _config()
    path = pc.write_config(cfg, tmp_path / ".circleci" / "config.yml")
    text = path.read_text()
    assert text.startswith("version: 2.1\n\nparameters:\n")
    assert "\n\ncommands:\n" in text and "\n\njobs:\n" in text and "\n\nworkflows:\n" in text
    assert "          command: |\n            aws cloudformation deploy \\\n" in text
    assert "      - checkout\n" in text
    assert pc.read_config(path) == cfg


def test_sections_are_reordered_conventionally(tmp_path: Path) -> None:
    cfg = {
        "workflows": {"w": {"jobs": ["j"]}},
        "jobs": {"j": pc.docker_job("a", ["checkout"])},
        "orbs": {"aws-cli": "circleci/aws-cli@4.1"},
        "version": 2.1,
    }
    text = pc.write_config(cfg, tmp_path / "c.yml").read_text()
    positions = [text.index(f"{key}:") for key in ("version", "orbs", "jobs", "workflows")]
    assert positions == sorted(positions)


def test_rewriting_a_read_config_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(
        "version: 2.1\njobs:\n  j:\n    docker:\n      - image: alpine\n"
        "    steps:\n      # Fail on purpose\n      - run: exit 1\n"
        "workflows:\n  w:\n    jobs: [j]\n"
    )
    cfg = pc.read_config(path)
    again = pc.write_config(cfg, tmp_path / "again.yml")
    assert "# Fail on purpose" in again.read_text()
    assert pc.read_config(again) == cfg
    assert path.read_text().count("\n") == 11  # the original is untouched


def test_config_line_points_at_the_key(tmp_path: Path) -> None:
    path = pc.write_config(_config(), tmp_path / "c.yml")
    lines = path.read_text().splitlines()
    cfg = pc.read_config(path)
    line = pc.config_line(cfg, ["jobs", "smoke", "steps", 1])
    assert lines[line - 1].strip() == "- destroy:"
    line = pc.config_line(cfg, ["commands", "destroy", "steps", 0, "run", "when"])
    assert lines[line - 1].strip() == "when: on_fail"
    assert pc.config_line(_config(), ["jobs"]) is None


def test_valid_config_has_no_schema_errors(tmp_path: Path) -> None:
    path = pc.write_config(_config(), tmp_path / "c.yml")
    assert pc.validate_config(path) == []
    assert pc.validate_config(_config()) == []


def test_schema_error_carries_precise_path_line_and_message(tmp_path: Path) -> None:
    cfg = _config()
    cfg["commands"]["destroy"]["steps"][0]["run"]["when"] = "on_failure"
    path = pc.write_config(cfg, tmp_path / "c.yml")
    errors = pc.validate_config(path)
    assert len(errors) == 1
    (error,) = errors
    assert error.path == "$.commands.destroy.steps[0].run.when"
    assert "'on_failure' is not one of" in error.message
    assert path.read_text().splitlines()[error.line - 1].strip() == "when: on_failure"
    table = pc.errors_table(errors)
    assert list(table.columns) == ["line", "path", "message"] and len(table) == 1
    from_data = pc.validate_config(cfg)
    assert [e.path for e in from_data] == [error.path] and from_data[0].line is None


def test_missing_version_is_a_schema_error_not_an_exception(tmp_path: Path) -> None:
    cfg = _config()
    del cfg["version"]
    path = pc.write_config(cfg, tmp_path / "c.yml")
    errors = pc.validate_config(path)
    assert [(e.path, e.line) for e in errors] == [("$", 1)]
    assert "'version' is a required property" in errors[0].message


def test_run_steps_lists_every_run_step() -> None:
    steps = list(pc.run_steps(_config()))
    assert [(s.owner, s.index, s.name, s.when) for s in steps] == [
        ("commands.destroy", 0, "Destroy", "on_fail"),
        ("jobs.create", 1, "Create", "on_success"),
        ("jobs.smoke", 0, "Fail", "on_success"),
    ]
    assert steps[0].path == ["commands", "destroy", "steps", 0]


# --- bad input ------------------------------------------------------------------------------


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / ".circleci" / "config.yml"
    for call in (pc.read_config, pc.validate_config):
        with pytest.raises(InputError) as info:
            call(missing)
        assert info.value.file == str(missing) and "not found" in str(info.value)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("version: 2.1\njobs:\n  j:\n    steps: [checkout\nworkflows: {}\n")
    for call in (pc.read_config, pc.validate_config):
        with pytest.raises(InputError) as info:
            call(path)
        assert info.value.file == str(path)
        assert info.value.line == 5
        assert "malformed YAML" in str(info.value)


def test_duplicate_key_is_malformed_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("version: 2.1\njobs: {}\njobs: {}\n")
    with pytest.raises(InputError) as info:
        pc.read_config(path)
    assert info.value.line == 3


def test_config_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("- version: 2.1\n")
    with pytest.raises(InputError) as info:
        pc.read_config(path)
    assert info.value.file == str(path) and info.value.line == 1
    assert "must be a mapping" in str(info.value)


def test_config_without_version_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("jobs:\n  j:\n    docker: [{image: alpine}]\n    steps: [checkout]\n")
    with pytest.raises(InputError) as info:
        pc.read_config(path)
    assert info.value.field == "version"
    assert info.value.file == str(path)
    assert str(info.value).startswith(f"{path}:1: version: missing `version`")


def test_blank_line_goes_above_a_sections_comment(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(
        "version: 2.1\n# the jobs\njobs:\n  j:\n    docker:\n      - image: alpine\n"
        "    steps:\n      - checkout\nworkflows:\n  w:\n    jobs:\n      - j\n"
    )
    text = pc.write_config(pc.read_config(path), tmp_path / "out.yml").read_text()
    assert "version: 2.1\n\n# the jobs\njobs:\n" in text
    assert "      - checkout\n\nworkflows:\n" in text
    assert "\n\n\n" not in text
