"""Compiling config.yml 2.1: parameters, reusable pieces, and CircleCI's errors with places."""

from __future__ import annotations

import textwrap

import pytest

from helpers.errors import InputError
from helpers.localci.config import ConfigError, compile_config
from helpers.localci.images import profile_for
from helpers.localci.observer import PipelineContext

PIPE = PipelineContext(id="pid-1", number=7, revision="abc123", branch="main")


def compile_text(text: str, **kw):  # noqa: ANN003, ANN201
    kw.setdefault("pipeline", PIPE)
    return compile_config(textwrap.dedent(text).lstrip(), **kw)


PARAMS = """
version: 2.1
parameters:
  deploy: {type: boolean, default: true}
  region: {type: string, default: us-east-1}
executors:
  py:
    parameters:
      tag: {type: string, default: "3.12"}
    docker: [{image: "cimg/python:<< parameters.tag >>"}]
    environment: {FROM_EXECUTOR: "1"}
commands:
  greet:
    parameters:
      to: {type: string}
      loud: {type: boolean, default: false}
      mode: {type: enum, enum: [fast, slow], default: fast}
      var: {type: env_var_name, default: HOME}
      then: {type: steps, default: []}
    steps:
      - run: echo "hi << parameters.to >> $<< parameters.var >> << parameters.mode >>"
      - when:
          condition: << parameters.loud >>
          steps: [{run: echo LOUD}]
      - << parameters.then >>
jobs:
  build:
    parameters:
      who: {type: string, default: world}
    executor: {name: py, tag: "3.11"}
    steps:
      - greet: {to: << parameters.who >>, loud: true, then: [{run: echo after}]}
      - when:
          condition:
            and: [<< pipeline.parameters.deploy >>, {equal: [main, << pipeline.git.branch >>]}]
          steps: [{run: "echo deploy to << pipeline.parameters.region >> #<< pipeline.number >>"}]
      - unless:
          condition: << pipeline.parameters.deploy >>
          steps: [{run: echo skipped}]
workflows:
  w:
    jobs:
      - build: {name: build-alice, who: alice}
"""


def test_parameters_commands_executors_and_pipeline_values() -> None:
    text = PARAMS
    compiled = compile_text(text)
    job = compiled.jobs["build-alice"]
    assert job.image == "cimg/python:3.11"
    assert job.environment == {"FROM_EXECUTOR": "1"}
    commands = [s.args["command"] for s in job.steps]
    assert commands == [
        'echo "hi alice $HOME fast"',
        "echo LOUD",
        "echo after",
        "echo deploy to us-east-1 #7",
    ]
    assert compiled.workflows["w"].jobs[0].name == "build-alice"
    yaml_text = compiled.to_yaml()
    assert "version: 2" in yaml_text and "echo deploy to us-east-1 #7" in yaml_text
    # pipeline parameters given at trigger time
    other = compile_text(
        text,
        pipeline=PipelineContext("p", 1, "r", branch="main", parameters={"deploy": False}),
    )
    assert [s.args["command"] for s in other.jobs["build-alice"].steps][-1] == "echo skipped"


def _error(text: str, **kw) -> ConfigError:  # noqa: ANN003
    with pytest.raises(ConfigError) as info:
        compile_text(text, **kw)
    assert isinstance(info.value, InputError)
    return info.value


BASE = """
version: 2.1
commands:
  greet:
    parameters:
      to: {type: string}
    steps:
      - run: echo << parameters.to >>
jobs:
  build:
    docker: [{image: alpine}]
    steps:
      - STEP
workflows:
  w:
    jobs:
      - build
"""


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("greet: {to: x, too: y}", "Error calling command: 'greet'\nUnexpected argument(s): too"),
        ("greet", "Error calling command: 'greet'\nMissing required argument(s): to"),
        ("gret: {to: x}", "Cannot find a definition for command named gret"),
        ("aws-cli/setup", "orb commands are not supported locally"),
        ("run: {command: x, when: on_failure}", "when: expected one of on_success"),
        ("run: {name: x}", "run: required key [command] not found"),
    ],
)
def test_step_errors_name_the_line(step: str, message: str) -> None:
    err = _error(BASE.replace("STEP", step))
    assert message in err.message
    assert err.file == ".circleci/config.yml"
    assert err.line == 12  # the step's line in the dedented config (1-based)


def test_type_errors_and_undeclared_parameters() -> None:
    text = BASE.replace("STEP", "greet: {to: x}").replace(
        "to: {type: string}", "to: {type: boolean}"
    )
    err = _error(text)
    assert 'Type error for argument to: expected type: boolean, actual value: "x"' in err.message
    err = _error(BASE.replace("STEP", "run: echo << parameters.nope >>"))
    assert "Arguments referenced without declared parameters: nope" in err.message
    assert err.line == 12


def test_job_executor_and_workflow_errors() -> None:
    err = _error(BASE.replace("STEP", "checkout").replace("      - build\n", "      - biuld\n"))
    assert err.message == "Cannot find a definition for job named biuld" and err.line == 16
    err = _error(
        BASE.replace("STEP", "checkout").replace("docker: [{image: alpine}]", "executor: nope")
    )
    assert "Cannot find a definition for executor named nope" in err.message
    assert err.field == "jobs.build.executor"
    err = _error(
        BASE.replace("STEP", "checkout").replace("      - build\n", "      - build: {x: 1}\n")
    )
    assert err.message == "Error calling job: 'build'\nUnexpected argument(s): x"


def test_requires_errors_and_cycles() -> None:
    workflow = """
version: 2.1
jobs:
  a: {docker: [{image: alpine}], steps: [checkout]}
  b: {docker: [{image: alpine}], steps: [checkout]}
workflows:
  w:
    jobs:
      - a: {requires: [b]}
      - b: {requires: [REQ]}
"""
    err = _error(workflow.replace("REQ", "a"))
    assert "Cycle detected in workflow 'w'" in err.message
    err = _error(workflow.replace("REQ", "c"))
    assert err.message == (
        "Job 'b' requires 'c', which is the name of 0 other jobs in workflow 'w'"
    )
    assert err.line == 9  # the `- b:` entry


def test_file_level_errors() -> None:
    assert "version missing-required-key" in _error("jobs: {}\nworkflows: {}\n").message
    err = _error("version: 2.1\njobs:\n  a: [\n")
    assert err.message.startswith("Unable to parse YAML") and err.line is not None
    err = _error("version: 2.1\norbs:\n  aws-cli: circleci/aws-cli@4.0\n")
    assert "Orbs are not supported locally" in err.message and err.line == 2
    err = _error(BASE.replace("STEP", "checkout"), pipeline=PipelineContext(
        "p", 1, "r", parameters={"bogus": 1}))  # fmt: skip
    assert "Unexpected argument(s): bogus" in err.message


def test_matrix_and_requires_by_alias() -> None:
    compiled = compile_text(
        """
        version: 2.1
        jobs:
          test:
            parameters: {py: {type: string}}
            docker: [{image: "python:<< parameters.py >>"}]
            steps: [checkout]
          report: {docker: [{image: alpine}], steps: [checkout]}
        workflows:
          w:
            jobs:
              - test: {matrix: {parameters: {py: ["3.11", "3.12"]}}}
              - report: {requires: [test]}
        """
    )
    wf = compiled.workflows["w"]
    assert [j.name for j in wf.jobs] == ["test-3.11", "test-3.12", "report"]
    assert [r.job for r in wf.job("report").requires] == ["test-3.11", "test-3.12"]
    assert compiled.jobs["test-3.12"].image == "python:3.12"


@pytest.mark.parametrize(
    ("image", "name", "shell", "aws", "git"),
    [
        ("amazon/aws-cli", "amazon/aws-cli", "bash", True, False),
        ("amazon/aws-cli:2.15.0", "amazon/aws-cli", "bash", True, False),
        ("alpine:latest", "alpine", "sh", False, False),
        ("cimg/base:stable", "cimg/base", "bash", False, True),
        ("cimg/aws:2024.03", "cimg/aws", "bash", True, True),
        ("cimg/python:3.12", "cimg/python", "bash", False, True),
        ("cimg/node:20.11", "cimg/node", "bash", False, True),
        ("python:3.12-slim", "python:slim", "bash", False, False),
        ("python:3.12-alpine", "python:alpine", "sh", False, False),
        ("python:3.12", "python", "bash", False, True),
        ("node:20-alpine", "node:alpine", "sh", False, False),
        ("docker.io/library/ubuntu:22.04", "ubuntu", "bash", False, False),
    ],
)
def test_image_profiles(image: str, name: str, shell: str, aws: bool, git: bool) -> None:
    profile = profile_for(image)
    assert profile is not None
    assert (profile.name, profile.shell) == (name, shell)
    assert profile.has("aws") is aws
    assert profile.has("git") is git


def test_unknown_image_has_no_profile() -> None:
    assert profile_for("example.org/team/custom:1") is None
    assert profile_for("hashicorp/terraform:1.7") is None
