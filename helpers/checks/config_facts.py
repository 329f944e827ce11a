"""What a config.yml does, with the line each fact comes from.

The rules and the rubric ask the same questions — which jobs run ``aws``, which create or delete
which stack, which workflow orders what — so the answers are computed here once, from the YAML
as written (:func:`helpers.pipeline_config.read_config`; ruamel keeps the line numbers).
Commands are expanded into the jobs that invoke them, with their parameters substituted,
because that is what a job really runs: the alpine ``smoke_test`` runs ``aws`` only through
``destroy_environment``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.localci.config import BUILTIN_STEPS as ENGINE_STEPS

# Steps CircleCI itself defines: the engine's, and the logic steps `when`/`unless` (decided
# when the config is compiled). Everything else must be a command (or an orb's command).
BUILTIN_STEPS = ENGINE_STEPS | {"when", "unless"}
# Keys of a workflow's job entry that are not job parameters.
WORKFLOW_JOB_KEYS = frozenset(
    {
        "requires",
        "name",
        "context",
        "filters",
        "matrix",
        "type",
        "pre-steps",
        "post-steps",
        "serial-group",
        "override-with",
    }
)
PARAM_REF = re.compile(r"<<\s*parameters\.([A-Za-z0-9_-]+)\s*>>")
AWS_CALL = re.compile(r"(?:^|[\s;&|(`])(?:[\w./-]*/)?aws(?=\s|$)")
CFN_OP = re.compile(r"\bcloudformation\s+(deploy|create-stack|delete-stack|wait|update-stack)\b")


def line_of(node: Any, key: Any = None) -> int | None:
    """1-based line of ``node[key]`` (a mapping key or a list index), or of ``node`` itself."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is None:
            return lc.line + 1
        if isinstance(key, int):
            return lc.item(key)[0] + 1
        return lc.key(key)[0] + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class Call:
    """One command invocation on the way to a step: which command, from which line."""

    command: str
    line: int | None


@dataclass(frozen=True)
class StackOp:
    """``aws cloudformation <op> --stack-name <name>`` as written in a run step."""

    op: str  # deploy | create-stack | update-stack | delete-stack | wait stack-delete-complete ...
    stack: str | None  # the name expression, normalised (``$X`` -> ``${X}``, quotes removed)
    options: frozenset[str]

    @property
    def creates(self) -> bool:
        return self.op in ("deploy", "create-stack")

    @property
    def deletes(self) -> bool:
        return self.op == "delete-stack"

    @property
    def waits_for_delete(self) -> bool:
        return self.op == "wait stack-delete-complete"


@dataclass(frozen=True)
class RunStep:
    """A run step as a job executes it, after command expansion."""

    name: str | None
    command: str
    when: str  # on_success | on_fail | always
    line: int | None  # where the step is written (in a job or in a command)
    when_line: int | None
    via: tuple[Call, ...] = ()  # the command invocations that led here, outermost first

    @property
    def calls_aws(self) -> bool:
        return any(AWS_CALL.search(line) for line in _code_lines(self.command))

    @property
    def stack_ops(self) -> list[StackOp]:
        return list(_stack_ops(self.command))

    @property
    def label(self) -> str:
        """How the step shows in CircleCI's UI: its name, else its first line of code."""
        return self.name or next(_code_lines(self.command), "run")[:60]


@dataclass
class JobFacts:
    name: str
    line: int | None
    image: str | None
    image_line: int | None
    steps: list[RunStep] = field(default_factory=list)
    invoked: list[Call] = field(default_factory=list)  # every command invocation, nested too

    def ops(self) -> Iterator[tuple[RunStep, StackOp]]:
        for step in self.steps:
            for op in step.stack_ops:
                yield step, op


@dataclass(frozen=True)
class WorkflowJob:
    """A job's entry in a workflow: its alias (``name:`` or the job name) and what it requires."""

    alias: str
    job: str
    requires: tuple[str, ...]
    line: int | None
    args: Mapping[str, Any] = field(default_factory=dict)  # the job's parameters' arguments


@dataclass
class WorkflowFacts:
    name: str
    line: int | None
    jobs: dict[str, WorkflowJob] = field(default_factory=dict)  # by alias

    def ancestors(self, alias: str) -> set[str]:
        """Every alias that must finish before ``alias`` starts (``requires``, transitively)."""
        seen: set[str] = set()
        todo = list(self.jobs[alias].requires) if alias in self.jobs else []
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            if current in self.jobs:
                todo.extend(self.jobs[current].requires)
        return seen


@dataclass
class ConfigFacts:
    path: Path
    data: Any
    commands: dict[str, Any]
    jobs: dict[str, JobFacts]
    workflows: dict[str, WorkflowFacts]

    @property
    def file(self) -> str:
        return self.path.name if self.path.parent.name != ".circleci" else ".circleci/config.yml"

    def command_line(self, name: str) -> int | None:
        return line_of(self.data.get("commands"), name)

    def command_steps(self, name: str) -> list[RunStep]:
        """The run steps of a reusable command, expanded with its default parameters."""
        spec = self.commands.get(name)
        if not isinstance(spec, Mapping):
            return []
        expander = _Expander(self.commands)
        return list(expander.steps(spec.get("steps"), _defaults(spec), (Call(name, None),)))


def read_config_facts(path: str | Path) -> ConfigFacts:
    """Read a config (InputError naming file and line when it cannot be read) into facts."""
    from helpers.pipeline_config import read_config

    path = Path(path)
    return config_facts(read_config(path), path)


def config_facts(data: Mapping[str, Any], path: Path) -> ConfigFacts:
    commands = _mapping(data.get("commands"))
    executors = _mapping(data.get("executors"))
    expander = _Expander(commands)
    workflows = {
        name: _workflow(name, spec, line_of(data["workflows"], name))
        for name, spec in _mapping(data.get("workflows")).items()
        if isinstance(spec, Mapping)
    }
    # A job's parameters take the arguments of its first workflow entry (one expansion per
    # job: enough for the lab's rules, not for a matrix of different arguments).
    arguments: dict[str, Mapping[str, Any]] = {}
    for workflow in workflows.values():
        for entry in workflow.jobs.values():
            arguments.setdefault(entry.job, entry.args)
    jobs: dict[str, JobFacts] = {}
    for name, spec in _mapping(data.get("jobs")).items():
        if not isinstance(spec, Mapping):
            continue
        params = {**_defaults(spec), **arguments.get(name, {})}
        image, image_line = _job_image(spec, executors, params)
        facts = JobFacts(name, line_of(data["jobs"], name), image, image_line)
        facts.steps = list(expander.steps(spec.get("steps"), params, (), facts.invoked))
        jobs[name] = facts
    return ConfigFacts(path, data, commands, jobs, workflows)


def step_name_and_args(step: Any) -> tuple[str | None, Any]:
    """A step as written: ``checkout`` or ``{name: args}``; (None, None) when neither."""
    if isinstance(step, str):
        return step, None
    if isinstance(step, Mapping) and len(step) == 1:
        ((name, args),) = step.items()
        return str(name), args
    return None, None


def substitute(text: str, params: Mapping[str, Any]) -> str:
    return PARAM_REF.sub(lambda m: str(params.get(m.group(1), m.group(0))), text)


class _Expander:
    """Turns a list of steps into the run steps a job executes, following command invocations."""

    def __init__(self, commands: Mapping[str, Any]) -> None:
        self.commands = commands

    def steps(
        self,
        steps: Any,
        params: Mapping[str, Any],
        via: tuple[Call, ...],
        invoked: list[Call] | None = None,
    ) -> Iterator[RunStep]:
        if not isinstance(steps, list):
            return
        for index, step in enumerate(steps):
            line = line_of(steps, index)
            name, args = step_name_and_args(step)
            if name == "run":
                yield _run_step(args, params, line, via)
            elif name in ("when", "unless") and isinstance(args, Mapping):
                yield from self.steps(args.get("steps"), params, via, invoked)
            elif name in self.commands and name not in {c.command for c in via}:
                call = Call(name, line)
                if invoked is not None:
                    invoked.append(call)
                spec = self.commands[name]
                if not isinstance(spec, Mapping):
                    continue
                values = dict(_defaults(spec))
                if isinstance(args, Mapping):
                    values.update({k: _param_value(v, params) for k, v in args.items()})
                yield from self.steps(spec.get("steps"), values, (*via, call), invoked)


def _run_step(args: Any, params: Mapping[str, Any], line: int | None, via: tuple[Call, ...]):
    if isinstance(args, Mapping):
        command = str(args.get("command", ""))
        name = args.get("name")
        when = str(args.get("when", "on_success"))
        when_line = line_of(args, "when")
    else:
        command, name, when, when_line = str(args or ""), None, "on_success", None
    return RunStep(
        name=substitute(str(name), params) if name is not None else None,
        command=substitute(command, params),
        when=substitute(when, params),
        line=line,
        when_line=when_line or line,
        via=via,
    )


def _param_value(value: Any, outer: Mapping[str, Any]) -> Any:
    return substitute(value, outer) if isinstance(value, str) else value


def _defaults(spec: Mapping[str, Any]) -> dict[str, Any]:
    declared = _mapping(spec.get("parameters"))
    return {
        name: decl["default"]
        for name, decl in declared.items()
        if isinstance(decl, Mapping) and "default" in decl
    }


def _job_image(
    spec: Mapping[str, Any], executors: Mapping[str, Any], job_params: Mapping[str, Any]
) -> tuple[str | None, Any]:
    """The job's primary docker image (directly or through its executor) and its line."""
    source: Any = spec
    params: Mapping[str, Any] = job_params
    executor = spec.get("executor")
    if executor is not None:
        name, args = (executor, {}) if isinstance(executor, str) else (None, executor)
        if isinstance(args, Mapping):
            name = args.get("name", name)
        source = executors.get(name) if isinstance(name, str) else None
        if not isinstance(source, Mapping):
            return None, line_of(spec, "executor")
        passed = {k: _param_value(v, job_params) for k, v in args.items() if k != "name"}
        params = {**_defaults(source), **passed}
    docker = source.get("docker")
    if isinstance(docker, list) and docker and isinstance(docker[0], Mapping):
        image = docker[0].get("image")
        if isinstance(image, str):
            return substitute(image, params), line_of(docker[0], "image")
    return None, line_of(source, "machine") or line_of(source, "macos")


def _workflow(name: str, spec: Mapping[str, Any], line: int | None) -> WorkflowFacts:
    facts = WorkflowFacts(name, line)
    entries = spec.get("jobs")
    if not isinstance(entries, list):
        return facts
    for index, entry in enumerate(entries):
        job, args = step_name_and_args(entry)
        if job is None:
            continue
        args = args if isinstance(args, Mapping) else {}
        alias = str(args.get("name", job))
        facts.jobs[alias] = WorkflowJob(
            alias,
            job,
            tuple(requires_names(args.get("requires"))),
            line_of(entries, index),
            {k: v for k, v in args.items() if k not in WORKFLOW_JOB_KEYS},
        )
    return facts


def requires_names(value: Any) -> Iterator[str]:
    """``requires`` items: a name, or ``{name: status or [statuses]}``."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item
            elif isinstance(item, Mapping):
                yield from (str(k) for k in item)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _code_lines(command: str) -> Iterator[str]:
    """The shell lines of a command, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\r?\n", " ", command)
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield stripped


def _stack_ops(command: str) -> Iterator[StackOp]:
    for line in _code_lines(command):
        for segment in re.split(r"&&|\|\||;|\|", line):
            if not AWS_CALL.search(segment):
                continue
            match = CFN_OP.search(segment)
            if not match:
                continue
            words = _words(segment[match.end() :])
            op = match.group(1)
            if op == "wait":
                op = f"wait {words[0]}" if words else "wait"
                words = words[1:]
            yield StackOp(op, _option(words, "--stack-name"), _flags(words))


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


def _option(words: list[str], option: str) -> str | None:
    for index, word in enumerate(words):
        if word == option and index + 1 < len(words):
            return normalise_name(words[index + 1])
        if word.startswith(option + "="):
            return normalise_name(word.split("=", 1)[1])
    return None


def _flags(words: list[str]) -> frozenset[str]:
    return frozenset(w.split("=", 1)[0] for w in words if w.startswith("--"))


def normalise_name(expression: str) -> str:
    """``myStack-$ID`` and ``"myStack-${ID}"`` name the same stack; write them one way."""
    expression = expression.strip().strip("'\"")
    return re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", r"${\1}", expression)
