"""The rubric: the exercise's six needs, each failing with its reason when the config misses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import exercise
from helpers import pipeline_config as pc
from helpers.checks import rubric

DESTROY = "aws cloudformation delete-stack --stack-name myStack-${CIRCLE_WORKFLOW_ID:0:7}\n"


def marks(tmp_path: Path, config: dict) -> dict[int, tuple[str, str]]:
    pc.write_config(config, tmp_path / ".circleci" / "config.yml")
    return {m.number: (m.status, m.reason) for m in rubric(tmp_path, check_aws=False)}


def destroy_step(config: dict) -> dict:
    return config["commands"]["destroy_environment"]["steps"][0]["run"]


def test_the_corrected_config_meets_the_six_needs(tmp_path):
    result = marks(tmp_path, exercise.lab_config())
    assert [result[n][0] for n in range(1, 7)] == ["pass"] * 6
    assert result[7][0] == "not checked"
    assert "created by job `create_infrastructure`" in result[2][1]
    assert "deleted by command `destroy_environment`" in result[2][1]


def test_delete_written_in_the_job_is_not_a_reusable_command(tmp_path):
    config = exercise.lab_config()
    del config["commands"]
    config["jobs"]["smoke_test"]["steps"][1] = pc.run(DESTROY, when="on_fail")
    result = marks(tmp_path, config)
    assert result[1][0] == "fail" and "smoke_test" in result[1][1]
    assert result[5][0] == "fail"


def test_delete_under_another_name(tmp_path):
    config = exercise.lab_config()
    destroy_step(config)["command"] = DESTROY.replace("0:7", "0:5")
    status, reason = marks(tmp_path, config)[2]
    assert status == "fail" and "0:5" in reason and "0:7" in reason


@pytest.mark.parametrize(
    ("image", "status"), [("alpine:latest", "fail"), ("cimg/aws:2024.03", "pass")]
)
def test_the_image_of_the_job_that_rolls_back(tmp_path, image, status):
    config = exercise.lab_config()
    config["jobs"]["smoke_test"]["docker"][0]["image"] = image
    assert marks(tmp_path, config)[3][0] == status


def test_no_step_that_fails(tmp_path):
    config = exercise.lab_config()
    config["jobs"]["smoke_test"]["steps"][0] = pc.run("echo all good", name="Test job")
    assert marks(tmp_path, config)[4][0] == "fail"


@pytest.mark.parametrize("when", [None, "always"])
def test_destroy_not_limited_to_failure(tmp_path, when):
    config = exercise.lab_config()
    destroy_step(config).pop("when")
    if when:
        destroy_step(config)["when"] = when
    status, reason = marks(tmp_path, config)[5]
    assert status == "fail" and "on_fail" in reason


def test_destroy_command_never_used(tmp_path):
    config = exercise.lab_config()
    config["jobs"]["smoke_test"]["steps"].pop()
    status, reason = marks(tmp_path, config)[5]
    assert status == "fail" and "no job uses" in reason


def test_workflow_without_the_rollback_job(tmp_path):
    config = exercise.lab_config()
    config["workflows"]["default"]["jobs"] = ["create_infrastructure"]
    status, reason = marks(tmp_path, config)[6]
    assert status == "fail" and "smoke_test" in reason
