"""`rollback-lab check` on .circleci/config.yml: each rule, a config that triggers it and one
that does not; the exercise's example config and the corrected one."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from helpers import exercise
from helpers import pipeline_config as pc
from helpers.checks import check_config
from helpers.checks.findings import Findings

# The exercise's config, corrected: aws-cli image, `requires`, and a wait for the delete.
FIXED = textwrap.dedent(
    """\
    version: 2.1

    commands:
      destroy_environment:
        steps:
          - run:
              name: Destroy environment
              when: on_fail
              command: |
                aws cloudformation delete-stack --stack-name myStack-${CIRCLE_WORKFLOW_ID:0:7}
                aws cloudformation wait stack-delete-complete \\
                  --stack-name myStack-${CIRCLE_WORKFLOW_ID:0:7}

    jobs:
      create_infrastructure:
        docker:
          - image: amazon/aws-cli
        steps:
          - checkout
          - run:
              name: Create Cloudformation Stack
              command: |
                aws cloudformation deploy \\
                  --template-file template.yml \\
                  --stack-name myStack-${CIRCLE_WORKFLOW_ID:0:7} \\
                  --region us-east-1
      smoke_test:
        docker:
          - image: amazon/aws-cli
        steps:
          - run:
              name: Test job
              command: return 1
          - destroy_environment

    workflows:
      default:
        jobs:
          - create_infrastructure
          - smoke_test:
              requires:
                - create_infrastructure
    """
)

# Commands, executors and job parameters, all correct.
PARAMS = textwrap.dedent(
    """\
    version: 2.1

    executors:
      aws:
        parameters:
          tag:
            type: string
            default: latest
        docker:
          - image: amazon/aws-cli:<< parameters.tag >>

    commands:
      destroy_environment:
        parameters:
          stack:
            type: string
        steps:
          - run:
              name: Destroy environment
              when: on_fail
              command: |
                aws cloudformation delete-stack --stack-name << parameters.stack >>
                aws cloudformation wait stack-delete-complete --stack-name << parameters.stack >>

    jobs:
      create:
        parameters:
          stack:
            type: string
        executor: aws
        steps:
          - run: aws cloudformation deploy --template-file t.yml --stack-name << parameters.stack >>
      smoke:
        executor:
          name: aws
          tag: "2.15.0"
        steps:
          - run: exit 1
          - destroy_environment:
              stack: myStack-${CIRCLE_WORKFLOW_ID:0:7}

    workflows:
      default:
        jobs:
          - create:
              stack: myStack-${CIRCLE_WORKFLOW_ID:0:7}
          - smoke:
              requires: [create]
    """
)


def run_check(tmp_path: Path, text: str) -> Findings:
    path = tmp_path / ".circleci" / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return check_config(path)


def variant(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, snippet: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if snippet in line)


def only(findings: Findings, rule: str):
    matching = [f for f in findings if f.rule == rule]
    assert len(matching) == 1, findings
    return matching[0]


@pytest.mark.parametrize("text", [FIXED, PARAMS], ids=["fixed", "params"])
def test_correct_configs_have_no_findings(tmp_path, text):
    assert run_check(tmp_path, text) == []


# ---- the exercise ---------------------------------------------------------------------------


def test_the_exercise_example_config_as_written_races_and_has_no_aws(tmp_path):
    config = pc.write_config(exercise.example_config(), tmp_path / ".circleci" / "config.yml")
    findings = check_config(config)
    text = config.read_text()

    assert {f.rule for f in findings.errors} == {"aws-cli-missing", "delete-races-create"}
    alpine = only(findings, "aws-cli-missing")
    assert alpine.line == line_of(text, "alpine:latest")
    assert "smoke_test" in alpine.message and "destroy_environment" in alpine.message
    race = only(findings, "delete-races-create")
    assert race.line == line_of(text, "- smoke_test")
    assert "requires: [create_infrastructure]" in race.hint
    assert findings.exit_code() == 1


def test_the_corrected_lab_config_has_no_errors(tmp_path):
    config = pc.write_config(exercise.lab_config(), tmp_path / ".circleci" / "config.yml")
    findings = check_config(config)
    assert findings.errors == []
    assert findings.exit_code() == 0


# ---- used but not defined; parameters -------------------------------------------------------


def test_undefined_command_is_named_with_its_line_and_a_suggestion(tmp_path):
    text = variant(FIXED, "      - destroy_environment\n", "      - destroy_environments\n")
    finding = only(run_check(tmp_path, text), "undefined-command")
    assert finding.severity == "error"
    assert finding.line == line_of(text, "- destroy_environments")
    assert "Cannot find a definition for command named destroy_environments" in finding.message
    assert "destroy_environment`?" in finding.hint


def test_every_undefined_command_is_reported_not_only_the_first(tmp_path):
    text = variant(FIXED, "      - checkout\n", "      - checkout\n      - install_tools\n")
    text = variant(text, "      - destroy_environment\n", "      - destroy_env\n")
    findings = run_check(tmp_path, text)
    assert [f.line for f in findings if f.rule == "undefined-command"] == [
        line_of(text, "- install_tools"),
        line_of(text, "- destroy_env"),
    ]
    # The compiler stops at the first of them; its error is not reported twice.
    assert "compile" not in findings.rules()


def test_undefined_job_in_a_workflow(tmp_path):
    text = variant(FIXED, "      - smoke_test:\n", "      - smoke_tests:\n")
    finding = only(run_check(tmp_path, text), "undefined-job")
    assert finding.line == line_of(text, "- smoke_tests:")
    assert "smoke_test`?" in finding.hint


def test_requires_naming_a_job_not_in_the_workflow(tmp_path):
    text = variant(FIXED, "            - create_infrastructure\n", "            - create_infra\n")
    findings = run_check(tmp_path, text)
    finding = only(findings, "undefined-requires")
    assert "create_infra" in finding.message


def test_undefined_executor(tmp_path):
    text = variant(PARAMS, "    executor: aws\n", "    executor: awscli\n")
    finding = only(run_check(tmp_path, text), "undefined-executor")
    assert finding.line == line_of(text, "executor: awscli")


def test_argument_the_command_does_not_declare(tmp_path):
    text = variant(
        PARAMS,
        "      - destroy_environment:\n          stack:",
        "      - destroy_environment:\n          region: us-east-1\n          stack:",
    )
    finding = only(run_check(tmp_path, text), "unexpected-argument")
    assert "Unexpected argument(s): region" in finding.message
    assert finding.line == line_of(text, "- destroy_environment:")


def test_required_argument_missing_for_a_command_and_for_a_job(tmp_path):
    text = variant(
        PARAMS,
        "      - destroy_environment:\n          stack: myStack-${CIRCLE_WORKFLOW_ID:0:7}\n",
        "      - destroy_environment\n",
    )
    text = variant(
        text,
        "      - create:\n          stack: myStack-",
        "      - create:\n          name_: myStack-",
    )
    findings = run_check(tmp_path, text)
    missing = [f for f in findings if f.rule == "missing-argument"]
    assert [f.line for f in missing] == [
        line_of(text, "- destroy_environment"),
        line_of(text, "- create:"),
    ]
    assert all("Missing required argument(s): stack" in f.message for f in missing)
    assert "Unexpected argument(s): name_" in only(findings, "unexpected-argument").message


def test_executor_argument_not_declared(tmp_path):
    text = variant(PARAMS, '      tag: "2.15.0"\n', '      version: "2.15.0"\n')
    finding = only(run_check(tmp_path, text), "unexpected-argument")
    assert "executor `aws`" in finding.message


def test_parameter_used_but_not_declared(tmp_path):
    text = variant(
        PARAMS,
        "delete-stack --stack-name << parameters.stack >>",
        "delete-stack --stack-name << parameters.stak >>",
    )
    finding = only(run_check(tmp_path, text), "undeclared-parameter")
    assert "parameters.stak" in finding.message


# ---- stacks ------------------------------------------------------------------------------------


def test_delete_under_another_name_than_the_create(tmp_path):
    text = FIXED.replace(
        "delete-stack --stack-name myStack-${CIRCLE_WORKFLOW_ID:0:7}",
        "delete-stack --stack-name myStack-${CIRCLE_WORKFLOW_ID:0:5}",
    )
    finding = only(run_check(tmp_path, text), "stack-name-mismatch")
    assert "myStack-${CIRCLE_WORKFLOW_ID:0:5}" in finding.message
    assert "myStack-${CIRCLE_WORKFLOW_ID:0:7}" in finding.message
    assert finding.line == line_of(text, "- run:")  # the step in the command


def test_same_name_written_differently_is_the_same_stack(tmp_path):
    text = FIXED.replace(
        "delete-stack --stack-name myStack-${CIRCLE_WORKFLOW_ID:0:7}",
        'delete-stack --stack-name "myStack-${CIRCLE_WORKFLOW_ID:0:7}"',
    )
    assert "stack-name-mismatch" not in run_check(tmp_path, text).rules()


def test_parameters_are_substituted_before_names_are_compared(tmp_path):
    text = variant(
        PARAMS,
        "          stack: myStack-${CIRCLE_WORKFLOW_ID:0:7}\n      - smoke",
        "          stack: otherStack\n      - smoke",
    )
    finding = only(run_check(tmp_path, text), "stack-name-mismatch")
    assert "otherStack" in finding.message


def test_destroy_step_without_on_fail(tmp_path):
    text = variant(FIXED, "          when: on_fail\n", "")
    finding = only(run_check(tmp_path, text), "destroy-not-on-fail")
    assert finding.severity == "error"
    assert "when: on_success" in finding.message


def test_destroy_step_with_always_is_accepted(tmp_path):
    text = variant(FIXED, "when: on_fail", "when: always")
    assert run_check(tmp_path, text) == []


@pytest.mark.parametrize("image", ["alpine:latest", "cimg/base:2024.01", "python:3.12-slim"])
def test_aws_in_an_image_without_the_cli(tmp_path, image):
    text = FIXED.replace("- image: amazon/aws-cli", f"- image: {image}", 1)
    finding = only(run_check(tmp_path, text), "aws-cli-missing")
    assert finding.line == line_of(text, image)
    assert "create_infrastructure" in finding.message


def test_aws_in_an_image_with_the_cli(tmp_path):
    text = FIXED.replace("- image: amazon/aws-cli", "- image: cimg/aws:2024.03", 1)
    assert run_check(tmp_path, text) == []


def test_an_unknown_image_is_a_note_not_an_error(tmp_path):
    text = FIXED.replace("- image: amazon/aws-cli", "- image: example.org/team/tools:1", 1)
    findings = run_check(tmp_path, text)
    assert only(findings, "unknown-image").severity == "info"
    assert findings.exit_code() == 0


def test_delete_without_requires_races_the_create(tmp_path):
    text = variant(
        FIXED,
        "      - smoke_test:\n          requires:\n            - create_infrastructure\n",
        "      - smoke_test\n",
    )
    finding = only(run_check(tmp_path, text), "delete-races-create")
    assert finding.line == line_of(text, "- smoke_test")


def test_requires_counts_transitively(tmp_path):
    text = variant(
        FIXED,
        "\nworkflows:",
        "  middle:\n    docker:\n      - image: alpine\n"
        "    steps:\n      - run: echo ok\n\nworkflows:",
    )
    text = variant(
        text,
        "      - smoke_test:\n          requires:\n            - create_infrastructure\n",
        "      - middle:\n          requires: [create_infrastructure]\n"
        "      - smoke_test:\n          requires: [middle]\n",
    )
    assert run_check(tmp_path, text) == []


def test_delete_nobody_waits_for(tmp_path):
    text = variant(
        FIXED,
        "            aws cloudformation wait stack-delete-complete \\\n"
        "              --stack-name myStack-${CIRCLE_WORKFLOW_ID:0:7}\n",
        "",
    )
    finding = only(run_check(tmp_path, text), "delete-not-awaited")
    assert finding.severity == "warning"
    assert "wait stack-delete-complete" in finding.hint


def test_deploy_of_a_fixed_name_fails_on_rerun(tmp_path):
    text = FIXED.replace("myStack-${CIRCLE_WORKFLOW_ID:0:7}", "myStack")
    findings = run_check(tmp_path, text)
    finding = only(findings, "deploy-fails-on-rerun")
    assert finding.severity == "warning"
    assert findings.exit_code() == 0
    fixed = variant(text, "--region us-east-1", "--region us-east-1 --no-fail-on-empty-changeset")
    assert "deploy-fails-on-rerun" not in run_check(tmp_path, fixed).rules()


# ---- schema, compiler, unreadable files ------------------------------------------------------


def test_schema_errors_are_findings(tmp_path):
    text = variant(FIXED, "when: on_fail", "when: on_failure")
    findings = run_check(tmp_path, text)
    schema = [f for f in findings if f.rule == "circleci-schema"]
    assert schema and all(f.severity == "error" for f in schema)
    assert any(f.line == line_of(text, "on_failure") for f in schema)


def test_what_only_the_compiler_sees_is_reported_with_its_words(tmp_path):
    text = variant(
        FIXED,
        "      - create_infrastructure\n",
        "      - create_infrastructure:\n          requires: [smoke_test]\n",
    )
    findings = run_check(tmp_path, text)
    cycle = only(findings, "compile")
    assert cycle.severity == "error"
    assert "cycle" in cycle.message.lower()


def test_malformed_yaml_is_a_finding_with_its_line(tmp_path):
    text = variant(FIXED, "  smoke_test:\n", "  smoke_test: [\n")
    finding = only(run_check(tmp_path, text), "unreadable")
    assert finding.line is not None and finding.line >= line_of(text, "smoke_test: [")
