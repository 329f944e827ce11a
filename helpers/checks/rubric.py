"""The exercise's six needs, plus "no stacks left", each marked pass or fail with the reason.

The needs are the exercise's own list ("What Do I Need for This Job?"); each is judged from
what the jobs really run, so the exercise's example — whose destroy command runs in ``alpine`` —
fails "a job image that can run the AWS CLI" even though another job uses ``amazon/aws-cli``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from helpers.checks.aws import AwsTarget, AwsUnreachable
from helpers.checks.cleanup import DEFAULT_PREFIX, list_lab_stacks
from helpers.checks.config_facts import ConfigFacts, RunStep, read_config_facts
from helpers.errors import InputError
from helpers.workspace import default_path

Status = Literal["pass", "fail", "not checked"]
CONFIG_PATH = Path(".circleci") / "config.yml"
FAILING_LINE = re.compile(r"^(?:exit|return)\s+[1-9]\d*\b|^false$")


@dataclass(frozen=True)
class RubricItem:
    number: int
    need: str
    status: Status
    reason: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"


class Rubric(list[RubricItem]):
    """The rubric's rows; shows as a DataFrame in a notebook."""

    def __init__(self, items: Iterable[RubricItem] = ()) -> None:
        super().__init__(items)

    @property
    def failed(self) -> list[RubricItem]:
        return [item for item in self if item.status == "fail"]

    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([asdict(item) for item in self]).set_index("number")

    def to_json(self) -> str:
        return json.dumps([asdict(item) for item in self], indent=2)

    def to_table(self) -> str:
        marks = {"pass": "PASS", "fail": "FAIL", "not checked": "----"}
        width = max((len(item.need) for item in self), default=0)
        lines = [
            f"{item.number}. {marks[item.status]}  {item.need.ljust(width)}  {item.reason}"
            for item in self
        ]
        passed = sum(item.passed for item in self)
        checked = [item for item in self if item.status != "not checked"]
        summary = f"{passed} of {len(checked)} checked passed"
        if len(checked) < len(self):
            summary += f" ({len(self) - len(checked)} not checked)"
        lines.append("\n" + summary)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.to_frame()._repr_html_()


def rubric(
    workspace_dir: str | os.PathLike[str] | None = None,
    *,
    check_aws: bool = True,
    prefix: str | None = None,
    target: AwsTarget | None = None,
) -> Rubric:
    """Mark a workspace (the folder holding ``.circleci/config.yml``) against the exercise."""
    directory = Path(workspace_dir) if workspace_dir is not None else default_path()
    if not directory.is_dir():
        raise InputError("no such directory", file=directory)  # the words `check DIR` uses
    facts = read_config_facts(directory / CONFIG_PATH)
    destroy = _destroy_commands(facts)
    items = [
        _reusable_command(facts, destroy),
        _deletes_created_name(facts, destroy),
        _image_runs_aws(facts, destroy),
        _failing_step(facts),
        _runs_on_fail(facts, destroy),
        _workflow_runs_jobs(facts, destroy),
    ]
    if check_aws:
        items.append(_no_stacks_left(prefix or _stack_prefix(facts), target))
    else:
        items.append(_item("No stacks left", "not checked", "AWS checks were turned off"))
    return Rubric(RubricItem(n, *item) for n, item in enumerate(items, start=1))


def _item(need: str, status: Status, reason: str) -> tuple[str, Status, str]:
    return need, status, reason


def _destroy_commands(facts: ConfigFacts) -> dict[str, list[RunStep]]:
    """Commands that delete a stack -> their delete steps."""
    found = {}
    for name in facts.commands:
        steps = [s for s in facts.command_steps(name) if any(op.deletes for op in s.stack_ops)]
        if steps:
            found[name] = steps
    return found


def _reusable_command(facts: ConfigFacts, destroy: dict[str, list[RunStep]]):
    need = "A reusable command that destroys the environment"
    if destroy:
        name = next(iter(destroy))
        return _item(
            need,
            "pass",
            f"command `{name}` (line {facts.command_line(name)}) runs "
            "`aws cloudformation delete-stack`",
        )
    in_jobs = [j.name for j in facts.jobs.values() if any(op.deletes for _s, op in j.ops())]
    if in_jobs:
        return _item(
            need,
            "fail",
            f"the delete-stack is written in job(s) {', '.join(in_jobs)}, not in a command "
            "under `commands:` that other jobs can reuse",
        )
    return _item(need, "fail", "no command under `commands:` runs a delete-stack")


def _deletes_created_name(facts: ConfigFacts, destroy: dict[str, list[RunStep]]):
    need = "It deletes the stack by the name it was created with"
    created = {
        op.stack: job.name
        for job in facts.jobs.values()
        for _s, op in job.ops()
        if op.creates and op.stack
    }
    if not created:
        return _item(need, "fail", "no job creates a stack (`aws cloudformation deploy`)")
    if not destroy:
        return _item(need, "fail", "no reusable command deletes a stack")
    deleted = {op.stack for steps in destroy.values() for s in steps for op in s.stack_ops}
    same = sorted(n for n in deleted if n in created)
    if same:
        deleter = next(
            name
            for name, steps in destroy.items()
            if any(op.stack == same[0] for s in steps for op in s.stack_ops)
        )
        return _item(
            need,
            "pass",
            f"`{same[0]}` is created by job `{created[same[0]]}` "
            f"and deleted by command `{deleter}`",
        )
    return _item(
        need,
        "fail",
        f"the command deletes {', '.join(f'`{n}`' for n in sorted(map(str, deleted)))} "
        f"but the stack is created as {', '.join(f'`{n}`' for n in sorted(created))}",
    )


def _image_runs_aws(facts: ConfigFacts, destroy: dict[str, list[RunStep]]):
    from helpers.localci.images import profile_for

    need = "A job image that can run the AWS CLI"
    users = [j for j in facts.jobs.values() if any(c.command in destroy for c in j.invoked)]
    if not users:
        users = [j for j in facts.jobs.values() if any(s.calls_aws for s in j.steps)]
    if not users:
        return _item(need, "fail", "no job runs the AWS CLI")
    lacking, unknown = [], []
    for job in users:
        profile = profile_for(job.image) if job.image else None
        if profile is None:
            unknown.append(job)
        elif not profile.has("aws"):
            lacking.append(job)
    if lacking:
        job = lacking[0]
        return _item(
            need,
            "fail",
            f"job `{job.name}` runs `aws` in `{job.image}` (line {job.image_line}), "
            'which has no AWS CLI: the rollback fails with "aws: not found"',
        )
    if unknown:
        job = unknown[0]
        return _item(
            need, "fail", f"job `{job.name}` runs `aws` in `{job.image}`, an unknown image"
        )
    names = ", ".join(f"`{j.name}` ({j.image})" for j in users)
    return _item(need, "pass", f"{names} can run `aws`")


def _failing_step(facts: ConfigFacts):
    need = "A step that fails on purpose"
    for job in facts.jobs.values():
        for step in job.steps:
            if _fails(step):
                return _item(need, "pass", f"`{step.label}` in job `{job.name}` (line {step.line})")
    return _item(need, "fail", "no run step exits non-zero (`exit 1`, `return 1` or `false`)")


def _fails(step: RunStep) -> bool:
    lines = [line.strip() for line in step.command.splitlines() if line.strip()]
    return any(FAILING_LINE.match(line) for line in lines)


def _runs_on_fail(facts: ConfigFacts, destroy: dict[str, list[RunStep]]):
    need = "The command runs only when something failed"
    if not destroy:
        return _item(need, "fail", "no reusable command deletes a stack")
    users = {
        name: [j.name for j in facts.jobs.values() if any(c.command == name for c in j.invoked)]
        for name in destroy
    }
    for name, steps in destroy.items():
        if not users[name]:
            continue
        whens = {s.when for s in steps}
        if whens == {"on_fail"}:
            return _item(
                need,
                "pass",
                f"job `{users[name][0]}` uses `{name}`, whose delete step has `when: on_fail`",
            )
        return _item(
            need,
            "fail",
            f"the delete step of `{name}` has `when: {', '.join(sorted(whens))}`; "
            "it needs `when: on_fail`",
        )
    return _item(need, "fail", f"no job uses the command `{next(iter(destroy))}`")


def _workflow_runs_jobs(facts: ConfigFacts, destroy: dict[str, list[RunStep]]):
    need = "A workflow that runs the jobs"
    creators = {j.name for j in facts.jobs.values() if any(op.creates for _s, op in j.ops())}
    users = {j.name for j in facts.jobs.values() if any(c.command in destroy for c in j.invoked)}
    if not facts.workflows:
        return _item(need, "fail", "there is no workflow under `workflows:`")
    for workflow in facts.workflows.values():
        jobs = {entry.job for entry in workflow.jobs.values()}
        if jobs & creators and jobs & users:
            named = sorted((jobs & creators) | (jobs & users))
            return _item(
                need,
                "pass",
                f"workflow `{workflow.name}` runs {', '.join(f'`{n}`' for n in named)}",
            )
    missing = []
    if not creators:
        missing.append("a job that creates the stack")
    if not users:
        missing.append("a job that uses the destroy command")
    if missing:
        return _item(need, "fail", f"the config has no {' and no '.join(missing)}")
    return _item(
        need,
        "fail",
        f"no workflow runs both {', '.join(sorted(creators))} and {', '.join(sorted(users))}",
    )


def _no_stacks_left(prefix: str, target: AwsTarget | None):
    need = "No stacks left"
    try:
        stacks = list_lab_stacks(prefix, target)
    except AwsUnreachable as exc:
        return _item(need, "not checked", str(exc))
    except InputError as exc:
        return _item(need, "not checked", str(exc))
    if not stacks:
        return _item(need, "pass", f"no stack named `{prefix}…` is left")
    listed = ", ".join(f"{s.name} ({s.status})" for s in stacks[:5])
    more = f" and {len(stacks) - 5} more" if len(stacks) > 5 else ""
    return _item(
        need,
        "fail",
        f"{len(stacks)} stack(s) left: {listed}{more}; `rollback-lab cleanup --yes` deletes them",
    )


def _stack_prefix(facts: ConfigFacts) -> str:
    """The literal start of the created stack's name (``myStack-``), before any variable."""
    for job in facts.jobs.values():
        for _s, op in job.ops():
            if op.creates and op.stack:
                literal = re.split(r"\$|<<", op.stack, maxsplit=1)[0]
                if literal:
                    return literal
    return DEFAULT_PREFIX
