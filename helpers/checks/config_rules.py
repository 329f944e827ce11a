"""The lab's rules for .circleci/config.yml: the mistakes that make a rollback not roll back.

Each rule is a function ``(facts) -> findings``. Structural rules (used but not defined,
parameters) report every problem with its line, where CircleCI's compiler stops at the first;
the pipeline rules look at what the jobs really run, commands expanded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from helpers.checks.config_facts import (
    BUILTIN_STEPS,
    PARAM_REF,
    WORKFLOW_JOB_KEYS,
    ConfigFacts,
    JobFacts,
    RunStep,
    StackOp,
    line_of,
    requires_names,
    step_name_and_args,
)
from helpers.checks.findings import Finding, Severity

Rule = Callable[[ConfigFacts], Iterator[Finding]]

# Variables that differ on every run (a rerun included), so a stack named with one is new each time.
PER_RUN_VARIABLES = ("CIRCLE_WORKFLOW_ID", "CIRCLE_BUILD_NUM", "CIRCLE_WORKFLOW_JOB_ID")
ROLLBACK_WHEN = ("on_fail", "always")


def _finding(
    facts: ConfigFacts, rule: str, severity: Severity, line: int | None, message: str, hint: str
) -> Finding:
    return Finding(rule, severity, facts.file, line, message, hint)


# ---- used but not defined; parameters ---------------------------------------------------------


def undefined_steps(facts: ConfigFacts) -> Iterator[Finding]:
    """Every step that invokes a command: the command exists and gets the arguments it declares."""
    orbs = _keys(facts.data.get("orbs"))
    for owner, steps in _step_lists(facts):
        yield from _check_steps(facts, owner, steps, orbs)


def _check_steps(facts: ConfigFacts, owner: str, steps: Any, orbs: set[str]) -> Iterator[Finding]:
    if not isinstance(steps, list):
        return
    for index, step in enumerate(steps):
        line = line_of(steps, index)
        name, args = step_name_and_args(step)
        if name is None or name.startswith("<<"):
            continue
        if name in ("when", "unless"):
            if isinstance(args, Mapping):
                yield from _check_steps(facts, owner, args.get("steps"), orbs)
            continue
        if name in BUILTIN_STEPS:
            continue
        if "/" in name:
            orb = name.split("/", 1)[0]
            if orb not in orbs:
                yield _finding(
                    facts,
                    "undefined-orb",
                    "error",
                    line,
                    f"{owner} uses `{name}`, but no orb `{orb}` is declared under `orbs:`",
                    f"declare the orb (`orbs: {{{orb}: namespace/{orb}@version}}`) or fix the name",
                )
            continue
        spec = facts.commands.get(name)
        if spec is None:
            yield _finding(
                facts,
                "undefined-command",
                "error",
                line,
                f"Cannot find a definition for command named {name} (used in {owner})",
                _did_you_mean(name, facts.commands, "define it under `commands:`"),
            )
            continue
        yield from _check_arguments(facts, f"command `{name}`", spec, args, line, f"in {owner}")


def undefined_executors(facts: ConfigFacts) -> Iterator[Finding]:
    executors = facts.data.get("executors") or {}
    for job, spec in _items(facts.data.get("jobs")):
        executor = spec.get("executor")
        if executor is None:
            continue
        args = executor if isinstance(executor, Mapping) else {}
        name = args.get("name") if isinstance(executor, Mapping) else executor
        line = line_of(spec, "executor")
        if not isinstance(name, str) or name not in executors:
            if isinstance(name, str) and "/" in name:
                continue  # an orb's executor
            yield _finding(
                facts,
                "undefined-executor",
                "error",
                line,
                f"Cannot find a definition for executor named {name} (used in job `{job}`)",
                _did_you_mean(str(name), executors, "define it under `executors:`"),
            )
            continue
        passed = {k: v for k, v in args.items() if k != "name"}
        yield from _check_arguments(
            facts, f"executor `{name}`", executors[name], passed, line, f"in job `{job}`"
        )


def undefined_jobs(facts: ConfigFacts) -> Iterator[Finding]:
    """Workflow entries name defined jobs, pass declared parameters, require jobs that exist."""
    jobs = facts.data.get("jobs") or {}
    for workflow, spec in _items(facts.data.get("workflows")):
        entries = spec.get("jobs")
        if not isinstance(entries, list):
            continue
        aliases = set(facts.workflows[workflow].jobs) if workflow in facts.workflows else set()
        for index, entry in enumerate(entries):
            line = line_of(entries, index)
            job, args = step_name_and_args(entry)
            if job is None:
                continue
            args = args if isinstance(args, Mapping) else {}
            if job not in jobs:
                if "/" in job:
                    continue  # an orb's job
                yield _finding(
                    facts,
                    "undefined-job",
                    "error",
                    line,
                    f"Cannot find a definition for job named {job} (in workflow `{workflow}`)",
                    _did_you_mean(job, jobs, "define it under `jobs:`"),
                )
            else:
                passed = {k: v for k, v in args.items() if k not in WORKFLOW_JOB_KEYS}
                yield from _check_arguments(
                    facts, f"job `{job}`", jobs[job], passed, line, f"in workflow `{workflow}`"
                )
            for required in requires_names(args.get("requires")):
                if required not in aliases:
                    yield _finding(
                        facts,
                        "undefined-requires",
                        "error",
                        line_of(args, "requires") or line,
                        f"`{args.get('name', job)}` requires `{required}`, "
                        f"which is not a job of workflow `{workflow}`",
                        "list the required job in the same workflow, or fix its name",
                    )


def undeclared_parameters(facts: ConfigFacts) -> Iterator[Finding]:
    """``<< parameters.x >>`` inside a command, job or executor that declares no ``x``."""
    for section in ("commands", "jobs", "executors"):
        for name, spec in _items(facts.data.get(section)):
            declared = _keys(spec.get("parameters"))
            kind = section[:-1]
            for key, value in spec.items():
                if key == "parameters":
                    continue
                for line, ref in _param_refs(spec, key, value):
                    if ref not in declared:
                        yield _finding(
                            facts,
                            "undeclared-parameter",
                            "error",
                            line,
                            f"{kind} `{name}` uses `<< parameters.{ref} >>`, "
                            f"but declares no parameter `{ref}`",
                            f"declare it under the {kind}'s `parameters:`, or fix the name",
                        )


def _check_arguments(
    facts: ConfigFacts, what: str, spec: Any, args: Any, line: int | None, who: str
) -> Iterator[Finding]:
    declared = spec.get("parameters") if isinstance(spec, Mapping) else None
    declared = declared if isinstance(declared, Mapping) else {}
    passed = set(args) if isinstance(args, Mapping) else set()
    unexpected = sorted(passed - set(declared))
    if unexpected:
        names = ", ".join(unexpected)
        yield _finding(
            facts,
            "unexpected-argument",
            "error",
            line,
            f"Error calling {what}: Unexpected argument(s): {names} ({who})",
            f"declare them under the {what.split()[0]}'s `parameters:`, or remove them"
            + (f" (it declares: {', '.join(declared)})" if declared else ""),
        )
    missing = sorted(
        name
        for name, decl in declared.items()
        if name not in passed and not (isinstance(decl, Mapping) and "default" in decl)
    )
    if missing:
        yield _finding(
            facts,
            "missing-argument",
            "error",
            line,
            f"Error calling {what}: Missing required argument(s): {', '.join(missing)} ({who})",
            "pass them, or give the parameters a `default:`",
        )


# ---- what the jobs run ----------------------------------------------------------------------


def stack_name_mismatch(facts: ConfigFacts) -> Iterator[Finding]:
    """A delete must name the stack as it was created, or the created stack is left behind."""
    created = _created_names(facts)
    if not created:
        return
    for job, step, op in _ops(facts, lambda op: op.deletes):
        if op.stack is None or op.stack in created:
            continue
        made = ", ".join(f"`{name}` (job `{j}`)" for name, j in sorted(created.items()))
        yield _finding(
            facts,
            "stack-name-mismatch",
            "error",
            step.line,
            f"`{job.name}` deletes the stack `{op.stack}`, but the stack is created as {made}"
            + _via(step),
            "delete the stack with exactly the name expression used to create it",
        )


def destroy_not_on_fail(facts: ConfigFacts) -> Iterator[Finding]:
    """The destroy step runs only on success unless it says ``when: on_fail`` (or ``always``)."""
    seen: set[int | None] = set()
    for job, step, _op in _ops(facts, lambda op: op.deletes):
        if step.when in ROLLBACK_WHEN or step.line in seen:
            continue
        seen.add(step.line)
        yield _finding(
            facts,
            "destroy-not-on-fail",
            "error",
            step.when_line,
            f"the step `{step.label}` deletes a stack with `when: {step.when}`: after a failed "
            f"step (job `{job.name}`) it is skipped, so nothing rolls back",
            "add `when: on_fail` to the run step (or `when: always`)",
        )


def aws_cli_missing(facts: ConfigFacts) -> Iterator[Finding]:
    """``aws`` in an image without the AWS CLI fails with "aws: not found", as on CircleCI."""
    from helpers.localci.images import profile_for

    for job in facts.jobs.values():
        aws_steps = [s for s in job.steps if s.calls_aws]
        if not aws_steps or job.image is None:
            continue
        profile = profile_for(job.image)
        where = "; ".join(f"`{s.label}` (line {s.line}{_via(s)})" for s in aws_steps)
        if profile is None:
            yield _finding(
                facts,
                "unknown-image",
                "info",
                job.image_line,
                f"job `{job.name}` runs `aws` in `{job.image}`, an image the lab has no profile "
                f"for, so whether it has the AWS CLI is not checked: {where}",
                "use an image known to have the AWS CLI, such as `amazon/aws-cli` or `cimg/aws`",
            )
        elif not profile.has("aws"):
            yield _finding(
                facts,
                "aws-cli-missing",
                "error",
                job.image_line,
                f"job `{job.name}` runs `aws` in `{job.image}`, which has no AWS CLI "
                f'("aws: not found"): {where}',
                "run the job in an image with the AWS CLI, such as `amazon/aws-cli` or `cimg/aws`",
            )


def delete_races_create(facts: ConfigFacts) -> Iterator[Finding]:
    """Jobs of a workflow start together unless ``requires`` orders them."""
    for workflow in facts.workflows.values():
        creators = _jobs_with(facts, workflow.jobs.values(), lambda op: op.creates)
        deleters = _jobs_with(facts, workflow.jobs.values(), lambda op: op.deletes)
        for d_alias, d_names in deleters.items():
            ancestors = workflow.ancestors(d_alias)
            matching = [a for a, names in creators.items() if names & d_names] or list(creators)
            for c_alias in matching:
                if c_alias == d_alias or c_alias in ancestors:
                    continue
                entry = workflow.jobs[d_alias]
                yield _finding(
                    facts,
                    "delete-races-create",
                    "error",
                    entry.line,
                    f"in workflow `{workflow.name}`, `{d_alias}` deletes the stack that "
                    f"`{c_alias}` creates but does not require it: both start at once, so the "
                    "delete can run before the stack exists and the stack is left behind",
                    f"add `requires: [{c_alias}]` to `{d_alias}` in workflow `{workflow.name}`",
                )


def delete_not_awaited(facts: ConfigFacts) -> Iterator[Finding]:
    """``delete-stack`` returns at once; without a wait the job passes before the stack is gone."""
    seen: set[int | None] = set()
    for job in facts.jobs.values():
        for index, step in enumerate(job.steps):
            deletes = [op for op in step.stack_ops if op.deletes]
            if not deletes or step.line in seen:
                continue
            waits = any(
                op.waits_for_delete for later in job.steps[index:] for op in later.stack_ops
            )
            if waits:
                continue
            seen.add(step.line)
            stack = deletes[0].stack or "STACK"
            yield _finding(
                facts,
                "delete-not-awaited",
                "warning",
                step.line,
                f"the step `{step.label}` starts deleting `{stack}` but nothing waits for the "
                f"deletion (job `{job.name}`): a failed delete goes unnoticed",
                f"add `aws cloudformation wait stack-delete-complete --stack-name {stack}`",
            )


def deploy_fails_on_rerun(facts: ConfigFacts) -> Iterator[Finding]:
    """A stack name that is the same on every run meets an unchanged template on the next run."""
    seen: set[int | None] = set()
    for job, step, op in _ops(facts, lambda op: op.op == "deploy"):
        if "--no-fail-on-empty-changeset" in op.options or step.line in seen:
            continue
        if op.stack and any(var in op.stack for var in PER_RUN_VARIABLES):
            continue
        seen.add(step.line)
        yield _finding(
            facts,
            "deploy-fails-on-rerun",
            "warning",
            step.line,
            f"`{job.name}` deploys `{op.stack}` again on every run, and `aws cloudformation "
            'deploy` exits 255 ("No changes to deploy") when the template has not changed',
            "add `--no-fail-on-empty-changeset` to the deploy command",
        )


CONFIG_RULES: tuple[Rule, ...] = (
    undefined_steps,
    undefined_executors,
    undefined_jobs,
    undeclared_parameters,
    stack_name_mismatch,
    destroy_not_on_fail,
    aws_cli_missing,
    delete_races_create,
    delete_not_awaited,
    deploy_fails_on_rerun,
)


def config_findings(facts: ConfigFacts) -> list[Finding]:
    return [finding for rule in CONFIG_RULES for finding in rule(facts)]


# ---- helpers --------------------------------------------------------------------------------


def _ops(
    facts: ConfigFacts, wanted: Callable[[StackOp], bool]
) -> Iterator[tuple[JobFacts, RunStep, StackOp]]:
    for job in facts.jobs.values():
        for step, op in job.ops():
            if wanted(op):
                yield job, step, op


def _created_names(facts: ConfigFacts) -> dict[str, str]:
    return {op.stack: job.name for job, _s, op in _ops(facts, lambda op: op.creates) if op.stack}


def _jobs_with(facts: ConfigFacts, entries: Any, wanted: Callable[[StackOp], bool]):
    """Workflow aliases whose job does ``wanted`` -> the stack names involved."""
    found: dict[str, set[str | None]] = {}
    for entry in entries:
        job = facts.jobs.get(entry.job)
        if job is None:
            continue
        names = {op.stack for _s, op in job.ops() if wanted(op)}
        if names:
            found[entry.alias] = names
    return found


def _via(step: RunStep) -> str:
    if not step.via:
        return ""
    chain = " → ".join(f"`{c.command}`" + (f" (line {c.line})" if c.line else "") for c in step.via)
    return f", via {chain}"


def _step_lists(facts: ConfigFacts) -> Iterator[tuple[str, Any]]:
    for name, spec in _items(facts.data.get("commands")):
        yield f"command `{name}`", spec.get("steps")
    for name, spec in _items(facts.data.get("jobs")):
        yield f"job `{name}`", spec.get("steps")
    for workflow, spec in _items(facts.data.get("workflows")):
        entries = spec.get("jobs")
        for entry in entries if isinstance(entries, list) else []:
            job, args = step_name_and_args(entry)
            if isinstance(args, Mapping):
                for key in ("pre-steps", "post-steps"):
                    if key in args:
                        yield f"workflow `{workflow}` ({job} {key})", args[key]


def _param_refs(parent: Any, key: Any, value: Any) -> Iterator[tuple[int | None, str]]:
    if isinstance(value, str):
        for match in PARAM_REF.finditer(value):
            yield line_of(parent, key), match.group(1)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _param_refs(value, k, v)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _param_refs(value, index, item)


def _items(section: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(section, Mapping):
        for name, spec in section.items():
            if isinstance(spec, Mapping):
                yield str(name), spec


def _keys(section: Any) -> set[str]:
    return {str(k) for k in section} if isinstance(section, Mapping) else set()


def _did_you_mean(name: str, known: Any, otherwise: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, [str(k) for k in (known or {})], n=1)
    return f"did you mean `{close[0]}`?" if close else otherwise
