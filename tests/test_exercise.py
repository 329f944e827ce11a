"""The exercise's files: the helpers reproduce the course text's YAML, and the lab's versions
fix what the course gets wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from helpers import exercise
from helpers import pipeline_config as pc
from helpers import template as cfn

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
EXERCISE = REFERENCE / "000_7ff12d223026ddc4.txt"


def _exercise_blocks() -> list[str]:
    if not EXERCISE.is_file():
        pytest.skip(f"course exercise text not found at {EXERCISE} (../shared/reference absent)")
    return re.findall(r"^```[^\n]*\n(.*?)^```", EXERCISE.read_text(), flags=re.M | re.S)


def _yaml_block(starts_with: str) -> str:
    matches = [b for b in _exercise_blocks() if b.lstrip().startswith(starts_with)]
    assert len(matches) == 1, f"expected one block starting with {starts_with!r}"
    return matches[0]


def _config_block(starts_with: str) -> dict:
    return YAML(typ="safe").load(_yaml_block(starts_with))


def test_example_template_is_the_exercise_template(tmp_path: Path) -> None:
    path = tmp_path / "template.yml"
    path.write_text(_yaml_block("Resources:"))
    assert cfn.read_template(path) == exercise.example_template()


def test_example_config_has_the_exercise_command_and_jobs() -> None:
    cfg = exercise.example_config()
    assert {"commands": cfg["commands"]} == _config_block("commands:")
    assert {"create_infrastructure": cfg["jobs"]["create_infrastructure"]} == _config_block(
        "# Exercise - Rollback\ncreate_infrastructure:"
    )
    assert {"smoke_test": cfg["jobs"]["smoke_test"]} == _config_block("# Exercise: Smoke Testing")


def test_example_config_workflow_runs_both_jobs_without_requires() -> None:
    cfg = exercise.example_config()
    assert cfg["version"] == 2.1
    assert list(cfg["jobs"]) == ["create_infrastructure", "smoke_test"]
    assert cfg["workflows"] == {"default": {"jobs": ["create_infrastructure", "smoke_test"]}}
    assert cfg["jobs"]["smoke_test"]["docker"] == [{"image": "alpine:latest"}]


@pytest.mark.parametrize(
    "build", [exercise.example_template, exercise.lab_template], ids=["example", "lab"]
)
def test_templates_round_trip(tmp_path: Path, build) -> None:
    tpl = build()
    assert cfn.read_template(cfn.write_template(tpl, tmp_path / "template.yml")) == tpl


@pytest.mark.parametrize(
    "build", [exercise.example_config, exercise.lab_config], ids=["example", "lab"]
)
def test_configs_round_trip_and_pass_the_schema(tmp_path: Path, build) -> None:
    cfg = build()
    path = pc.write_config(cfg, tmp_path / ".circleci" / "config.yml")
    assert pc.read_config(path) == cfg
    assert pc.validate_config(path) == []


def test_lab_template_takes_the_ami_from_ssm_and_lints_clean(tmp_path: Path) -> None:
    tpl = exercise.lab_template(key_name="mykey", ssh_cidr="198.51.100.7/32")
    assert tpl["Parameters"]["ImageId"] == cfn.ssm_ami_parameter()
    assert tpl["Parameters"]["KeyName"]["Default"] == "mykey"
    properties = tpl["Resources"]["Ec2Instance"]["Properties"]
    assert properties["ImageId"] == {"Ref": "ImageId"}
    ingress = tpl["Resources"]["InstanceSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert ingress[0]["CidrIp"] == "198.51.100.7/32"
    assert exercise.lab_template()["Parameters"]["KeyName"]["Default"] == "udacity"
    path = cfn.write_template(tpl, tmp_path / "template.yml")
    assert [f for f in cfn.lint_template(path) if f.severity == "error"] == []


def test_lab_config_fixes_the_course_mistakes() -> None:
    cfg = exercise.lab_config(stack_prefix="demo-")
    assert cfg["jobs"]["smoke_test"]["docker"] == [{"image": "amazon/aws-cli"}]
    assert cfg["workflows"]["default"]["jobs"] == [
        "create_infrastructure",
        {"smoke_test": {"requires": ["create_infrastructure"]}},
    ]
    destroy = cfg["commands"]["destroy_environment"]["steps"][0]["run"]
    assert destroy["when"] == "on_fail"
    assert cfg["jobs"]["smoke_test"]["steps"][-1] == "destroy_environment"
    assert set(exercise.stack_names(cfg).values()) == {"demo-${CIRCLE_WORKFLOW_ID:0:7}"}
    assert "--region us-east-1" in destroy["command"]


def test_stack_names_finds_create_and_delete() -> None:
    names = exercise.stack_names(exercise.example_config())
    assert names == {
        "commands.destroy_environment.steps[0]": "myStack-${CIRCLE_WORKFLOW_ID:0:7}",
        "jobs.create_infrastructure.steps[1]": "myStack-${CIRCLE_WORKFLOW_ID:0:7}",
    }
    mismatched = exercise.lab_config()
    mismatched["jobs"]["create_infrastructure"]["steps"][1]["run"]["command"] = (
        "aws cloudformation deploy --template-file template.yml --stack-name other\n"
    )
    assert len(set(exercise.stack_names(mismatched).values())) == 2


def test_bash_expands_the_workflow_id_like_circleci() -> None:
    expanded = exercise.expand_with_bash(
        "myStack-${CIRCLE_WORKFLOW_ID:0:7}", {"CIRCLE_WORKFLOW_ID": "0123456789abcdef"}
    )
    assert expanded == "myStack-0123456"
