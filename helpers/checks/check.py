"""``check(workspace)``: every finding about a lab workspace's two files, in one list.

Four sources, one shape: cfn-lint and CircleCI's JSON schema (through the issue-2 helpers), the
local engine's compiler (so the check stops on what the engine stops on, with the same words),
and the lab's own rules. A file that cannot be read becomes a finding too, so the other file is
still checked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from helpers.checks.aws import AwsTarget, aws_target, key_pair_exists
from helpers.checks.config_facts import config_facts
from helpers.checks.config_rules import config_findings
from helpers.checks.findings import Finding, Findings
from helpers.checks.template_rules import template_findings
from helpers.errors import InputError, LabError
from helpers.workspace import default_path

CONFIG = ".circleci/config.yml"
TEMPLATE = "template.yml"
CFN_LINT_SEVERITY = {"error": "error", "warning": "warning", "informational": "info"}


def check(
    workspace_dir: str | os.PathLike[str] | None = None,
    *,
    check_aws: bool = True,
    target: AwsTarget | None = None,
) -> Findings:
    """Check ``template.yml`` and ``.circleci/config.yml`` of a workspace (default: the lab's)."""
    directory = Path(workspace_dir) if workspace_dir is not None else default_path()
    config, template = directory / CONFIG, directory / TEMPLATE
    if not directory.is_dir():
        raise InputError("no such directory", file=directory)
    if not config.is_file() and not template.is_file():
        raise InputError(f"neither {TEMPLATE} nor {CONFIG} is here", file=directory)
    findings = Findings()
    for path, name, checker in (
        (config, CONFIG, check_config),
        (template, TEMPLATE, lambda p: check_template(p, _key_pairs(check_aws, target))),
    ):
        if path.is_file():
            findings.extend(checker(path))
        elif name == TEMPLATE and not _deploys_a_stack(config):
            continue  # a pipeline that creates no stack (the kit's own CI) needs no template
        else:
            findings.append(
                Finding(
                    "missing-file",
                    "warning",
                    name,
                    None,
                    f"{name} is missing, so it was not checked",
                    f"write it (notebook {'02' if name == CONFIG else '01'} builds it)",
                )
            )
    return findings.sorted()


def _deploys_a_stack(config: Path) -> bool:
    """Whether a job of the config creates a CloudFormation stack (unreadable: assume so)."""
    from helpers.checks.config_facts import read_config_facts

    try:
        facts = read_config_facts(config)
    except (InputError, LabError):
        return True
    return any(op.creates for job in facts.jobs.values() for _step, op in job.ops())


def check_config(path: str | os.PathLike[str]) -> Findings:
    """The schema's errors, the lab's rules, and the compiler's first error if no rule saw it."""
    from helpers.pipeline_config import read_config, validate_config

    path = Path(path)
    try:
        data = read_config(path)
    except InputError as exc:
        return Findings([_unreadable(exc, CONFIG)])
    findings = Findings(
        Finding(
            "circleci-schema",
            "error",
            CONFIG,
            error.line,
            f"{error.path}: {error.message}",
            "fix the key or value CircleCI's schema names (see CircleCI's configuration reference)",
        )
        for error in validate_config(path)
    )
    facts = config_facts(data, path)
    findings.extend(config_findings(facts))
    compiled = _compile_finding(path, findings)
    if compiled is not None:
        findings.append(compiled)
    return findings


def check_template(
    path: str | os.PathLike[str], key_pair_exists: Callable[[str], bool] | None = None
) -> Findings:
    """cfn-lint's findings and the lab's template rules (the key pair one when AWS is asked)."""
    from helpers.template import lint_template, read_template

    path = Path(path)
    try:
        template = read_template(path)
    except InputError as exc:
        return Findings([_unreadable(exc, TEMPLATE)])
    findings = Findings(
        Finding(
            f"cfn-lint:{match.rule}",
            CFN_LINT_SEVERITY.get(match.severity, "warning"),  # type: ignore[arg-type]
            TEMPLATE,
            match.line,
            match.message,
            f"see https://github.com/aws-cloudformation/cfn-lint/blob/main/docs/rules.md "
            f"({match.rule})",
        )
        for match in lint_template(path)
    )
    findings.extend(template_findings(template, key_pair_exists, TEMPLATE))
    return findings


def _compile_finding(path: Path, findings: Findings) -> Finding | None:
    """The local engine's compile error, unless a rule already reported that line."""
    from helpers.localci.config import ConfigError, compile_config

    try:
        compile_config(path.read_text(encoding="utf-8"), source=CONFIG)
    except ConfigError as exc:
        if "not supported locally" in exc.message:
            return Finding(
                "local-engine",
                "info",
                CONFIG,
                exc.line,
                exc.message,
                "the config may be fine on circleci.com; `rollback-lab ci run` cannot run it",
            )
        if any(f.severity == "error" and f.line == exc.line for f in findings):
            return None
        message = exc.message + (f" ({exc.field})" if exc.field else "")
        return Finding(
            "compile",
            "error",
            CONFIG,
            exc.line,
            message,
            "CircleCI stops compiling here: no job of the pipeline would run",
        )
    return None


def _key_pairs(check_aws: bool, target: AwsTarget | None) -> Callable[[str], bool] | None:
    """The key-pair lookup the template rule uses; it raises AwsUnreachable when no AWS is up."""
    if not check_aws:
        return None

    def exists(name: str) -> bool:
        return key_pair_exists(name, target or aws_target())

    return exists


def _unreadable(exc: InputError | LabError, file: str) -> Finding:
    line = getattr(exc, "line", None)
    message = getattr(exc, "message", str(exc))
    return Finding(
        "unreadable", "error", file, line, message, "fix the YAML so the file can be read"
    )
