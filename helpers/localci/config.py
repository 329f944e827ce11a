"""Parse and compile a CircleCI 2.1 config into the 2.0 form the engine runs.

Compilation does what CircleCI's config processor does before anything runs: pipeline values
and parameters are substituted, reusable commands and executors are inlined, ``when``/``unless``
steps are decided, and every workflow's jobs are checked. Errors stop compilation with
CircleCI's own wording and the place in the file (line and field), so a student sees the same
message locally as on circleci.com.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarstring import LiteralScalarString

from helpers.errors import InputError
from helpers.localci.observer import PipelineContext

Path_ = tuple[str | int, ...]

BUILTIN_STEPS = frozenset(
    {
        "run",
        "checkout",
        "setup_remote_docker",
        "add_ssh_keys",
        "save_cache",
        "restore_cache",
        "store_artifacts",
        "store_test_results",
        "persist_to_workspace",
        "attach_workspace",
        "deploy",
    }
)
# Keys each built-in step accepts (besides `name` and `when`).
_STEP_KEYS: dict[str, frozenset[str]] = {
    "run": frozenset(
        {
            "command",
            "shell",
            "environment",
            "background",
            "working_directory",
            "no_output_timeout",
            "max_auto_reruns",
            "auto_rerun_delay",
        }
    ),
    "checkout": frozenset({"path", "method"}),
    "setup_remote_docker": frozenset({"version", "docker_layer_caching"}),
    "add_ssh_keys": frozenset({"fingerprints"}),
    "save_cache": frozenset({"paths", "key"}),
    "restore_cache": frozenset({"key", "keys"}),
    "store_artifacts": frozenset({"path", "destination"}),
    "store_test_results": frozenset({"path"}),
    "persist_to_workspace": frozenset({"root", "paths"}),
    "attach_workspace": frozenset({"at"}),
}
_STEP_KEYS["deploy"] = _STEP_KEYS["run"]
_WHEN_VALUES = ("on_success", "on_fail", "always")
_PARAM_TYPES = frozenset(
    {"string", "boolean", "integer", "enum", "env_var_name", "steps", "executor"}
)
_TEMPLATE = re.compile(r"<<\s*([A-Za-z_][\w.\-]*)\s*>>")
_ENV_VAR_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_JOB_KEYS = frozenset(
    {
        "docker",
        "machine",
        "macos",
        "executor",
        "steps",
        "environment",
        "working_directory",
        "shell",
        "parallelism",
        "parameters",
        "resource_class",
        "description",
        "circleci_ip_ranges",
        "type",
        "retention",
    }
)
_WORKFLOW_JOB_KEYS = frozenset(
    {"requires", "name", "context", "filters", "matrix", "type", "pre-steps", "post-steps"}
)
_MAX_DEPTH = 50


class ConfigError(InputError):
    """The config does not compile: CircleCI's message, with the file, line and field."""


@dataclass(frozen=True)
class Step:
    """One compiled step: its kind (``run``, ``checkout``…), arguments and ``when``."""

    kind: str
    args: Mapping[str, Any]
    when: str = "on_success"

    @property
    def name(self) -> str:
        return step_display_name(self)

    def to_data(self) -> Any:
        if self.kind in ("checkout", "setup_remote_docker", "add_ssh_keys") and not self.args:
            return self.kind if self.when == "on_success" else {self.kind: {"when": self.when}}
        args = dict(self.args)
        if self.when != "on_success":
            args["when"] = self.when
        return {self.kind: _yaml_ready(args)}


@dataclass(frozen=True)
class Job:
    """A job as the engine runs it: where it runs (image), its environment and steps."""

    name: str
    executor: str  # "docker" | "machine" | "macos"
    image: str | None
    steps: tuple[Step, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    working_directory: str = "~/project"
    shell: str | None = None
    parallelism: int = 1
    service_images: tuple[str, ...] = ()
    raw_executor: Mapping[str, Any] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(_yaml_ready(self.raw_executor))
        if self.environment:
            data["environment"] = dict(self.environment)
        if self.working_directory != "~/project":
            data["working_directory"] = self.working_directory
        if self.shell:
            data["shell"] = self.shell
        if self.parallelism != 1:
            data["parallelism"] = self.parallelism
        data["steps"] = [step.to_data() for step in self.steps]
        return data


@dataclass(frozen=True)
class Requirement:
    """``requires`` entry: the upstream job and the statuses that let this job run."""

    job: str
    statuses: frozenset[str] = frozenset({"success"})


@dataclass(frozen=True)
class BranchFilter:
    only: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    def is_set(self) -> bool:
        return bool(self.only or self.ignore)

    def accepts(self, value: str) -> bool:
        if self.only and not any(_filter_matches(p, value) for p in self.only):
            return False
        return not any(_filter_matches(p, value) for p in self.ignore)


@dataclass(frozen=True)
class WorkflowJob:
    """A job's place in a workflow: its (possibly renamed) name, what it requires, filters."""

    name: str
    job: str  # key in CompiledConfig.jobs
    requires: tuple[Requirement, ...] = ()
    branches: BranchFilter = BranchFilter()
    tags: BranchFilter = BranchFilter()
    context: tuple[str, ...] = ()
    approval: bool = False

    def to_data(self) -> Any:
        body: dict[str, Any] = {}
        if self.job != self.name and not self.approval:
            body["name"] = self.name
        if self.approval:
            body["type"] = "approval"
        if self.requires:
            body["requires"] = [
                r.job if r.statuses == {"success"} else {r.job: sorted(r.statuses)}
                for r in self.requires
            ]
        if self.context:
            body["context"] = list(self.context)
        filters: dict[str, Any] = {}
        for key, flt in (("branches", self.branches), ("tags", self.tags)):
            if flt.is_set():
                filters[key] = {
                    k: list(v) for k, v in (("only", flt.only), ("ignore", flt.ignore)) if v
                }
        if filters:
            body["filters"] = filters
        key = self.name if self.approval else self.job
        return {key: body} if body else key


@dataclass(frozen=True)
class Workflow:
    name: str
    jobs: tuple[WorkflowJob, ...]

    def job(self, name: str) -> WorkflowJob:
        for wj in self.jobs:
            if wj.name == name:
                return wj
        raise KeyError(name)


@dataclass(frozen=True)
class CompiledConfig:
    """The compiled config: 2.0-style jobs and workflows, ready to plan and run."""

    source: str
    source_yaml: str
    jobs: Mapping[str, Job]
    workflows: Mapping[str, Workflow]

    def to_yaml(self) -> str:
        data: dict[str, Any] = {
            "version": 2,
            "jobs": {name: job.to_data() for name, job in self.jobs.items()},
            "workflows": {
                name: {"jobs": [wj.to_data() for wj in wf.jobs]}
                for name, wf in self.workflows.items()
            },
        }
        data["workflows"]["version"] = 2
        out = io.StringIO()
        yaml = YAML(typ="rt")
        yaml.default_flow_style = False
        yaml.width = 4096
        yaml.dump(data, out)
        return out.getvalue()


# --------------------------------------------------------------------------- entry point


def compile_config(
    text: str,
    *,
    source: str = ".circleci/config.yml",
    pipeline: PipelineContext | None = None,
    project_slug: str | None = None,
) -> CompiledConfig:
    """Compile a config.yml's text; raises :class:`ConfigError` where CircleCI's compiler stops."""
    doc = _load(text, source)
    return _Compiler(doc, text, source, pipeline, project_slug).compile()


def load_config_file(path: Any, **kwargs: Any) -> CompiledConfig:
    """Compile a config file from disk (the error names the file)."""
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(p)) from None
    kwargs.setdefault("source", str(p))
    return compile_config(text, **kwargs)


def step_display_name(step: Step) -> str:
    """The name CircleCI shows for a step (a run step without a name shows its command)."""
    name = step.args.get("name")
    if name:
        return str(name)
    if step.kind in ("run", "deploy"):
        return str(step.args.get("command", "")).strip() or step.kind
    return {
        "checkout": "Checkout code",
        "setup_remote_docker": "Setup a remote Docker engine",
        "add_ssh_keys": "Install additional SSH keys",
        "save_cache": "Saving cache",
        "restore_cache": "Restoring cache",
        "store_artifacts": "Uploading artifacts",
        "store_test_results": "Uploading test results",
        "persist_to_workspace": "Persisting to Workspace",
        "attach_workspace": "Attaching workspace",
    }.get(step.kind, step.kind)


# --------------------------------------------------------------------------- YAML loading


def _load(text: str, source: str) -> Any:
    yaml = YAML(typ="rt")
    yaml.version = (1, 1)  # CircleCI reads YAML 1.1 (yes/no/on/off are booleans)
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"Unable to parse YAML: {problem}", file=source, line=line) from None
    except Exception as exc:  # ruamel raises a few unmarked errors (duplicate keys, …)
        raise ConfigError(f"Unable to parse YAML: {exc}", file=source) from None
    if doc is None:
        raise ConfigError("Config file is empty", file=source)
    if not isinstance(doc, Mapping):
        raise ConfigError("Config must be a mapping (version, jobs, workflows, …)", file=source)
    return doc


def _line_of(doc: Any, path: Path_) -> int | None:
    """1-based line of the node at `path` in the ruamel document (best effort)."""
    node = doc
    line: int | None = None
    for part in path:
        try:
            if isinstance(node, Mapping) and part in node:
                lc = getattr(node, "lc", None)
                if lc is not None:
                    line = lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                lc = getattr(node, "lc", None)
                if lc is not None:
                    line = lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return line


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _yaml_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _yaml_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_ready(v) for v in value]
    if isinstance(value, str) and "\n" in value:
        return LiteralScalarString(value)
    return value


def _field(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _filter_matches(pattern: str, value: str) -> bool:
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        return re.fullmatch(pattern[1:-1], value) is not None
    return pattern == value


# --------------------------------------------------------------------------- parameters


@dataclass
class _Scope:
    """Values of `<< parameters.x >>` in one body, and who declared them (for messages)."""

    values: dict[str, Any]


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, Mapping):
        return "map"
    return type(value).__name__


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


# --------------------------------------------------------------------------- the compiler


class _Compiler:
    def __init__(
        self,
        doc: Any,
        text: str,
        source: str,
        pipeline: PipelineContext | None,
        project_slug: str | None,
    ) -> None:
        self.doc = doc
        self.text = text
        self.source = source
        self.pipeline = pipeline
        self.project_slug = project_slug
        self.config = _plain(doc)
        self.commands: dict[str, Any] = {}
        self.executors: dict[str, Any] = {}
        self.job_defs: dict[str, Any] = {}
        self.jobs: dict[str, Job] = {}

    # -- errors -------------------------------------------------------------------------
    def error(self, message: str, path: Path_ = ()) -> ConfigError:
        return ConfigError(
            message,
            file=self.source,
            line=_line_of(self.doc, path) if path else None,
            field=_field(path) or None,
        )

    # -- top level ----------------------------------------------------------------------
    def compile(self) -> CompiledConfig:
        cfg = self.config
        if "version" not in cfg:
            raise self.error("Config does not conform to schema: {:version missing-required-key}")
        version = str(cfg["version"])
        if version not in ("2", "2.0", "2.1"):
            raise self.error(
                f"Unsupported config version {version!r}: use version: 2.1", ("version",)
            )
        if cfg.get("orbs"):
            names = ", ".join(str(k) for k in cfg["orbs"])
            raise self.error(
                f"Orbs are not supported locally (orbs: {names}): rollback-lab runs config.yml "
                "without circleci.com, so write the orb's commands into the config",
                ("orbs",),
            )
        if version != "2.1":
            for key in ("commands", "executors", "parameters", "orbs"):
                if key in cfg:
                    raise self.error(
                        f"'{key}' requires version: 2.1 (this config says version: {version})",
                        (key,),
                    )
        for key in ("commands", "executors", "jobs", "workflows", "parameters"):
            if key in cfg and cfg[key] is not None and not isinstance(cfg[key], Mapping):
                raise self.error(f"'{key}' must be a map", (key,))
        self.pipeline_values = self._pipeline_values()
        self.commands = dict(cfg.get("commands") or {})
        self.executors = dict(cfg.get("executors") or {})
        self.job_defs = dict(cfg.get("jobs") or {})
        for name, body in self.commands.items():
            self._check_parameter_decls(body, ("commands", name))
        for name, body in self.executors.items():
            self._check_parameter_decls(body, ("executors", name))
        for name, body in self.job_defs.items():
            if not isinstance(body, Mapping):
                raise self.error(f"Job '{name}' must be a map", ("jobs", name))
            self._check_parameter_decls(body, ("jobs", name))
        workflows = self._workflows()
        return CompiledConfig(
            source=self.source, source_yaml=self.text, jobs=self.jobs, workflows=workflows
        )

    # -- pipeline values ----------------------------------------------------------------
    def _pipeline_values(self) -> dict[str, Any]:
        p = self.pipeline
        decls = self.config.get("parameters") or {}
        if decls:
            self._check_parameter_decls({"parameters": decls}, ())
        given = dict(p.parameters) if p is not None else {}
        unknown = sorted(set(given) - set(decls))
        if unknown:
            raise self.error(f"Unexpected argument(s): {', '.join(unknown)}", ("parameters",))
        params = self._bind(decls, given, ("parameters",), "pipeline", "parameters")
        slug = self.project_slug or ""
        parts = slug.split("/")
        git_url = ""
        if len(parts) == 3:
            host = {"gh": "github.com", "github": "github.com", "bb": "bitbucket.org"}.get(
                parts[0], parts[0]
            )
            git_url = f"https://{host}/{parts[1]}/{parts[2]}"
        values: dict[str, Any] = {
            "pipeline.id": p.id if p else "",
            "pipeline.number": p.number if p else 0,
            "pipeline.git.branch": (p.branch or "") if p else "",
            "pipeline.git.tag": (p.tag or "") if p else "",
            "pipeline.git.revision": p.revision if p else "",
            "pipeline.git.base_revision": "",
            "pipeline.project.git_url": git_url,
            "pipeline.project.type": "github" if parts[0] in ("gh", "github") else "",
            "pipeline.trigger_source": "api",
            "pipeline.schedule.name": "",
            "pipeline.schedule.id": "",
            "pipeline.trigger_parameters.circleci.trigger_type": "api",
        }
        for name, value in params.items():
            values[f"pipeline.parameters.{name}"] = value
        return values

    # -- parameter declarations and binding ---------------------------------------------
    def _check_parameter_decls(self, body: Any, path: Path_) -> None:
        if not isinstance(body, Mapping):
            return
        decls = body.get("parameters")
        if decls is None:
            return
        if not isinstance(decls, Mapping):
            raise self.error("parameters must be a map", (*path, "parameters"))
        for pname, decl in decls.items():
            where = (*path, "parameters", pname)
            if not isinstance(decl, Mapping) or "type" not in decl:
                raise self.error(f"Parameter '{pname}' must declare a type", where)
            if decl["type"] not in _PARAM_TYPES:
                raise self.error(
                    f"Parameter '{pname}' has an unknown type '{decl['type']}' (expected one of "
                    f"{', '.join(sorted(_PARAM_TYPES))})",
                    where,
                )
            if decl["type"] == "enum" and not isinstance(decl.get("enum"), list):
                raise self.error(f"Enum parameter '{pname}' must list its values in 'enum'", where)
            if "default" in decl:
                problem = self._type_problem(pname, decl, decl["default"])
                if problem:
                    raise self.error(f"Invalid default: {problem}", where)

    def _type_problem(self, pname: str, decl: Mapping[str, Any], value: Any) -> str | None:
        kind = decl["type"]
        ok = True
        if kind == "string":
            ok = isinstance(value, str | int | float) and not isinstance(value, bool)
        elif kind == "boolean":
            ok = isinstance(value, bool)
        elif kind == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "enum":
            if value not in decl.get("enum", []):
                return (
                    f"Type error for argument {pname}: expected one of "
                    f"{', '.join(map(str, decl.get('enum', [])))}, actual value: {value!r}"
                )
        elif kind == "env_var_name":
            ok = isinstance(value, str) and bool(_ENV_VAR_NAME.match(value))
        elif kind == "steps":
            ok = isinstance(value, list)
        elif kind == "executor":
            ok = isinstance(value, str | Mapping)
        if ok:
            return None
        shown = f'"{value}"' if isinstance(value, str) else _render(value)
        return (
            f"Type error for argument {pname}: expected type: {kind}, actual value: "
            f"{shown} (type {_type_name(value)})"
        )

    def _bind(
        self, decls: Mapping[str, Any], args: Mapping[str, Any], path: Path_, kind: str, name: str
    ) -> dict[str, Any]:
        """Check arguments against declarations; CircleCI's 'Error calling …' messages."""
        prefix = f"Error calling {kind}: '{name}'\n" if kind != "pipeline" else ""
        unexpected = sorted(set(args) - set(decls))
        if unexpected:
            raise self.error(f"{prefix}Unexpected argument(s): {', '.join(unexpected)}", path)
        missing = sorted(n for n, d in decls.items() if "default" not in d and n not in args)
        if missing:
            raise self.error(f"{prefix}Missing required argument(s): {', '.join(missing)}", path)
        values: dict[str, Any] = {}
        for pname, decl in decls.items():
            value = args[pname] if pname in args else decl["default"]
            problem = self._type_problem(pname, decl, value)
            if problem:
                raise self.error(prefix + problem, path)
            if decl["type"] == "string" and not isinstance(value, str):
                value = _render(value)
            values[pname] = value
        return values

    # -- substitution -------------------------------------------------------------------
    def _substitute(self, value: Any, params: Mapping[str, Any] | None, path: Path_) -> Any:
        """Replace `<< parameters.x >>` (when `params` is given) and `<< pipeline.… >>`."""
        if isinstance(value, str):
            return self._substitute_str(value, params, path)
        if isinstance(value, Mapping):
            return {k: self._substitute(v, params, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            out: list[Any] = []
            for i, item in enumerate(value):
                sub = self._substitute(item, params, (*path, i))
                if (
                    isinstance(item, str)
                    and _TEMPLATE.fullmatch(item.strip())
                    and isinstance(sub, list)
                ):
                    out.extend(sub)  # a steps parameter spliced into a steps list
                else:
                    out.append(sub)
            return out
        return value

    def _lookup(self, ref: str, params: Mapping[str, Any] | None, path: Path_) -> tuple[bool, Any]:
        if ref.startswith("pipeline."):
            if ref in self.pipeline_values:
                return True, self.pipeline_values[ref]
            if ref.startswith("pipeline.parameters."):
                raise self.error(
                    "Arguments referenced without declared parameters: "
                    + ref[len("pipeline.parameters.") :],
                    path,
                )
            raise self.error(f"Unknown pipeline value: << {ref} >>", path)
        if ref.startswith("parameters."):
            if params is None:
                return False, None
            pname = ref[len("parameters.") :]
            if pname not in params:
                raise self.error(f"Arguments referenced without declared parameters: {pname}", path)
            return True, params[pname]
        return False, None

    def _substitute_str(self, text: str, params: Mapping[str, Any] | None, path: Path_) -> Any:
        whole = _TEMPLATE.fullmatch(text.strip())
        if whole:
            found, value = self._lookup(whole.group(1), params, path)
            if found:
                return value

        def repl(match: re.Match[str]) -> str:
            found, value = self._lookup(match.group(1), params, path)
            if not found:
                return match.group(0)
            if isinstance(value, list | Mapping):
                raise self.error(
                    f"<< {match.group(1)} >> is a list or map and cannot be part of a string", path
                )
            return _render(value)

        return _TEMPLATE.sub(repl, text)

    # -- workflows ----------------------------------------------------------------------
    def _workflows(self) -> dict[str, Workflow]:
        raw = self.config.get("workflows")
        if not raw:
            if "build" in self.job_defs:  # a 2.0 config without workflows runs its `build` job
                job = self._job_instance("build", {}, ("jobs", "build"), "build")
                return {"workflow": Workflow("workflow", (WorkflowJob("build", job.name),))}
            raise self.error("Config does not conform to schema: {:workflows missing-required-key}")
        workflows: dict[str, Workflow] = {}
        for wf_name, body in raw.items():
            if wf_name == "version":
                continue
            path: Path_ = ("workflows", wf_name)
            if not isinstance(body, Mapping):
                raise self.error(f"Workflow '{wf_name}' must be a map", path)
            if body.get("triggers"):
                continue  # scheduled workflows do not run on a push or an API trigger
            if not self._workflow_enabled(body, path):
                continue
            jobs = body.get("jobs")
            if not isinstance(jobs, list) or not jobs:
                raise self.error(f"Workflow '{wf_name}' must list its jobs", (*path, "jobs"))
            workflows[wf_name] = self._workflow(wf_name, jobs, (*path, "jobs"))
        return workflows

    def _workflow_enabled(self, body: Mapping[str, Any], path: Path_) -> bool:
        enabled = True
        if "when" in body:
            cond = self._substitute(body["when"], None, (*path, "when"))
            enabled = _truthy(self._logic(cond, (*path, "when")))
        if "unless" in body:
            cond = self._substitute(body["unless"], None, (*path, "unless"))
            enabled = enabled and not _truthy(self._logic(cond, (*path, "unless")))
        return enabled

    def _workflow(self, wf_name: str, entries: list[Any], path: Path_) -> Workflow:
        wjobs: list[WorkflowJob] = []
        aliases: dict[str, list[str]] = {}
        for index, entry in enumerate(entries):
            epath = (*path, index)
            if isinstance(entry, str):
                job_ref, args = entry, {}
            elif isinstance(entry, Mapping) and len(entry) == 1:
                job_ref, args = next(iter(entry.items()))
                args = dict(args or {})
            else:
                raise self.error("A workflow job must be a name or a map with one key", epath)
            args = self._substitute(args, None, epath)
            for inst_name, inst_args, alias in self._matrix(job_ref, args, epath):
                wj = self._workflow_job(job_ref, inst_name, inst_args, epath)
                if any(existing.name == wj.name for existing in wjobs):
                    raise self.error(
                        f"Duplicate job name '{wj.name}' in workflow '{wf_name}': "
                        "give one of them a `name:`",
                        epath,
                    )
                wjobs.append(wj)
                aliases.setdefault(alias, []).append(wj.name)
        wjobs = self._resolve_requires(wf_name, wjobs, aliases, path, entries)
        _check_cycles(wjobs, lambda names: self.error(_cycle_message(wf_name, names), path))
        return Workflow(wf_name, tuple(wjobs))

    def _matrix(
        self, job_ref: str, args: dict[str, Any], path: Path_
    ) -> Iterator[tuple[str | None, dict[str, Any], str]]:
        matrix = args.pop("matrix", None)
        if not matrix:
            yield args.get("name"), args, str(args.get("name") or job_ref)
            return
        if not isinstance(matrix, Mapping) or not isinstance(matrix.get("parameters"), Mapping):
            raise self.error("matrix must have a `parameters` map", (*path, "matrix"))
        names = list(matrix["parameters"])
        values = [
            v if isinstance(v, list) else [v] for v in (matrix["parameters"][n] for n in names)
        ]
        excluded = [dict(e) for e in (matrix.get("exclude") or [])]
        alias = str(matrix.get("alias") or args.get("name") or job_ref)
        base = str(args.get("name") or job_ref)
        for combo in itertools.product(*values):
            chosen = dict(zip(names, combo, strict=True))
            if chosen in excluded:
                continue
            inst = dict(args)
            inst.update(chosen)
            inst.pop("name", None)
            name = base + "".join(f"-{_render(v)}" for v in combo)
            yield name, inst, alias

    def _workflow_job(
        self, job_ref: str, name: str | None, args: dict[str, Any], path: Path_
    ) -> WorkflowJob:
        wf_keys = {k: args.pop(k) for k in list(args) if k in _WORKFLOW_JOB_KEYS}
        name = str(name or wf_keys.get("name") or job_ref)
        approval = wf_keys.get("type") == "approval"
        filters = wf_keys.get("filters") or {}
        if not isinstance(filters, Mapping):
            raise self.error("filters must be a map", (*path, "filters"))
        context = wf_keys.get("context") or ()
        context = (context,) if isinstance(context, str) else tuple(map(str, context))
        requires = wf_keys.get("requires") or []
        if not isinstance(requires, list):
            raise self.error("requires must be a list of job names", (*path, "requires"))
        reqs = tuple(self._requirement(r, (*path, "requires")) for r in requires)
        if approval:
            return WorkflowJob(
                name,
                name,
                reqs,
                _branch_filter(filters, "branches"),
                _branch_filter(filters, "tags"),
                context,
                approval=True,
            )
        if job_ref not in self.job_defs:
            raise self.error(f"Cannot find a definition for job named {job_ref}", path)
        pre = wf_keys.get("pre-steps") or []
        post = wf_keys.get("post-steps") or []
        job = self._job_instance(job_ref, args, path, name, pre, post)
        return WorkflowJob(
            name=name,
            job=job.name,
            requires=reqs,
            branches=_branch_filter(filters, "branches"),
            tags=_branch_filter(filters, "tags"),
            context=context,
        )

    def _requirement(self, entry: Any, path: Path_) -> Requirement:
        if isinstance(entry, str):
            return Requirement(entry)
        if isinstance(entry, Mapping) and len(entry) == 1:
            job, statuses = next(iter(entry.items()))
            statuses = [statuses] if isinstance(statuses, str) else list(statuses or [])
            allowed = {"success", "failed", "canceled", "not_run", "unauthorized"}
            bad = [s for s in statuses if s not in allowed]
            if bad or not statuses:
                raise self.error(
                    f"requires '{job}': statuses must be among {', '.join(sorted(allowed))}", path
                )
            return Requirement(str(job), frozenset(statuses))
        raise self.error("requires entries are job names or `job: [statuses]`", path)

    def _resolve_requires(
        self,
        wf_name: str,
        wjobs: list[WorkflowJob],
        aliases: Mapping[str, list[str]],
        path: Path_,
        entries: list[Any],
    ) -> list[WorkflowJob]:
        names = {wj.name for wj in wjobs}
        resolved: list[WorkflowJob] = []
        for wj in wjobs:
            reqs: list[Requirement] = []
            for req in wj.requires:
                if req.job in names:
                    reqs.append(req)
                elif req.job in aliases:
                    reqs.extend(Requirement(n, req.statuses) for n in aliases[req.job])
                else:
                    index = next((i for i, e in enumerate(entries) if _entry_name(e) == wj.name), 0)
                    raise self.error(
                        f"Job '{wj.name}' requires '{req.job}', which is the name of 0 other "
                        f"jobs in workflow '{wf_name}'",
                        (*path, index),
                    )
            resolved.append(
                WorkflowJob(
                    wj.name, wj.job, tuple(reqs), wj.branches, wj.tags, wj.context, wj.approval
                )
            )
        return resolved

    # -- jobs ---------------------------------------------------------------------------
    def _job_instance(
        self,
        job_ref: str,
        args: Mapping[str, Any],
        call_path: Path_,
        name: str,
        pre_steps: Sequence[Any] = (),
        post_steps: Sequence[Any] = (),
    ) -> Job:
        body = self.job_defs[job_ref]
        jpath: Path_ = ("jobs", job_ref)
        unknown = sorted(set(body) - _JOB_KEYS)
        if unknown:
            raise self.error(
                f"Job '{job_ref}': extraneous key(s) not permitted: {', '.join(unknown)}", jpath
            )
        decls = body.get("parameters") or {}
        params = self._bind(decls, args, call_path, "job", job_ref)
        body = {k: v for k, v in body.items() if k != "parameters"}
        body = self._substitute(body, params, jpath)
        executor_kind, image, services, raw_exec, exec_env, exec_wd, exec_shell = self._executor(
            body, jpath
        )
        env = dict(exec_env)
        env.update(self._environment(body.get("environment"), (*jpath, "environment")))
        steps_raw = body.get("steps")
        if not isinstance(steps_raw, list) or not steps_raw:
            raise self.error(f"Job '{job_ref}' has no steps", (*jpath, "steps"))
        steps: list[Step] = []
        steps += self._steps(list(pre_steps), (*call_path, "pre-steps"), 0)
        steps += self._steps(steps_raw, (*jpath, "steps"), 0)
        steps += self._steps(list(post_steps), (*call_path, "post-steps"), 0)
        parallelism = body.get("parallelism", 1)
        if not isinstance(parallelism, int) or parallelism < 1:
            raise self.error("parallelism must be a positive integer", (*jpath, "parallelism"))
        job = Job(
            name=name,
            executor=executor_kind,
            image=image,
            steps=tuple(steps),
            environment=env,
            working_directory=str(body.get("working_directory") or exec_wd or "~/project"),
            shell=body.get("shell") or exec_shell,
            parallelism=parallelism,
            service_images=services,
            raw_executor=raw_exec,
        )
        self.jobs[name] = job
        return job

    def _executor(
        self, body: Mapping[str, Any], path: Path_
    ) -> tuple[str, str | None, tuple[str, ...], dict[str, Any], dict[str, str], Any, Any]:
        if "executor" in body:
            ref = body["executor"]
            epath = (*path, "executor")
            if isinstance(ref, Mapping):
                ename = ref.get("name")
                eargs = {k: v for k, v in ref.items() if k != "name"}
            else:
                ename, eargs = ref, {}
            if not isinstance(ename, str) or ename not in self.executors:
                raise self.error(f"Cannot find a definition for executor named {ename}", epath)
            ebody = self.executors[ename]
            if not isinstance(ebody, Mapping):
                raise self.error(f"Executor '{ename}' must be a map", ("executors", ename))
            params = self._bind(ebody.get("parameters") or {}, eargs, epath, "executor", ename)
            ebody = {k: v for k, v in ebody.items() if k != "parameters"}
            ebody = self._substitute(ebody, params, ("executors", ename))
            kind, image, services, raw = self._runtime(ebody, ("executors", ename))
            env = self._environment(ebody.get("environment"), ("executors", ename, "environment"))
            return (
                kind,
                image,
                services,
                raw,
                env,
                ebody.get("working_directory"),
                ebody.get("shell"),
            )
        kind, image, services, raw = self._runtime(body, path)
        return kind, image, services, raw, {}, None, None

    def _runtime(
        self, body: Mapping[str, Any], path: Path_
    ) -> tuple[str, str | None, tuple[str, ...], dict[str, Any]]:
        kinds = [k for k in ("docker", "machine", "macos") if k in body]
        if len(kinds) != 1:
            raise self.error(
                "A job needs exactly one executor: docker, machine, macos or executor", path
            )
        kind = kinds[0]
        raw = {kind: body[kind]}
        if kind != "docker":
            image = body[kind].get("image") if isinstance(body[kind], Mapping) else None
            return kind, (f"{kind}:{image}" if image else kind), (), raw
        images = body["docker"]
        if not isinstance(images, list) or not images:
            raise self.error("docker must be a list of images", (*path, "docker"))
        names: list[str] = []
        for i, item in enumerate(images):
            if not isinstance(item, Mapping) or not isinstance(item.get("image"), str):
                raise self.error("each docker entry needs an `image`", (*path, "docker", i))
            names.append(item["image"])
        return kind, names[0], tuple(names[1:]), raw

    def _environment(self, env: Any, path: Path_) -> dict[str, str]:
        if env is None:
            return {}
        if isinstance(env, list):  # the list-of-maps form
            merged: dict[str, Any] = {}
            for item in env:
                if not isinstance(item, Mapping):
                    raise self.error("environment must be a map", path)
                merged.update(item)
            env = merged
        if not isinstance(env, Mapping):
            raise self.error("environment must be a map of names to values", path)
        return {str(k): _render(v) for k, v in env.items()}

    # -- steps --------------------------------------------------------------------------
    def _steps(self, raw: list[Any], path: Path_, depth: int) -> list[Step]:
        if depth > _MAX_DEPTH:
            raise self.error("Commands call each other without end (recursion)", path)
        out: list[Step] = []
        for index, item in enumerate(raw):
            out.extend(self._step(item, (*path, index), depth))
        return out

    def _step(self, item: Any, path: Path_, depth: int) -> list[Step]:
        if isinstance(item, str):
            name, args = item, None
        elif isinstance(item, Mapping) and len(item) == 1:
            name, args = next(iter(item.items()))
        elif isinstance(item, Mapping):
            raise self.error(
                f"A step must have exactly one key, found: {', '.join(map(str, item))} "
                "(check the indentation under `- run:`)",
                path,
            )
        else:
            raise self.error("A step must be a name or a map", path)
        if name in ("when", "unless"):
            return self._conditional(name, args, path, depth)
        if name in BUILTIN_STEPS:
            return [self._builtin(name, args, path)]
        if name in self.commands:
            return self._invoke(name, args, path, depth)
        if "/" in str(name):
            raise self.error(
                f"Cannot find a definition for command named {name}: orb commands are not "
                "supported locally",
                path,
            )
        raise self.error(f"Cannot find a definition for command named {name}", path)

    def _builtin(self, kind: str, args: Any, path: Path_) -> Step:
        if kind in ("run", "deploy") and isinstance(args, str):
            args = {"command": args}
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise self.error(f"{kind} expects a map of arguments", path)
        args = dict(args)
        when = args.pop("when", "on_success")
        if when not in _WHEN_VALUES:
            raise self.error(
                f"when: expected one of on_success, on_fail, always, got {when!r}", (*path, kind)
            )
        allowed = _STEP_KEYS[kind] | {"name"}
        extra = sorted(set(args) - allowed)
        if extra:
            raise self.error(
                f"{kind}: extraneous key [{extra[0]}] is not permitted "
                f"(permitted: {', '.join(sorted(allowed))})",
                (*path, kind),
            )
        if kind in ("run", "deploy"):
            if not isinstance(args.get("command"), str):
                raise self.error(f"{kind}: required key [command] not found", (*path, kind))
            if "environment" in args:
                args["environment"] = self._environment(
                    args["environment"], (*path, kind, "environment")
                )
            kind = "run"
        required = {
            "save_cache": ("paths", "key"),
            "store_artifacts": ("path",),
            "store_test_results": ("path",),
            "persist_to_workspace": ("root", "paths"),
            "attach_workspace": ("at",),
        }.get(kind, ())
        for key in required:
            if key not in args:
                raise self.error(f"{kind}: required key [{key}] not found", (*path, kind))
        if kind == "restore_cache" and not (args.get("key") or args.get("keys")):
            raise self.error("restore_cache: required key [key] or [keys] not found", path)
        return Step(kind=kind, args=args, when=when)

    def _invoke(self, name: str, args: Any, path: Path_, depth: int) -> list[Step]:
        body = self.commands[name]
        cpath: Path_ = ("commands", name)
        if not isinstance(body, Mapping) or not isinstance(body.get("steps"), list):
            raise self.error(f"Command '{name}' must have a list of steps", cpath)
        if args is not None and not isinstance(args, Mapping):
            raise self.error(f"Error calling command: '{name}'\nArguments must be a map", path)
        params = self._bind(body.get("parameters") or {}, dict(args or {}), path, "command", name)
        steps = self._substitute(body["steps"], params, (*cpath, "steps"))
        return self._steps(steps, (*cpath, "steps"), depth + 1)

    def _conditional(self, which: str, args: Any, path: Path_, depth: int) -> list[Step]:
        if not isinstance(args, Mapping) or "condition" not in args or "steps" not in args:
            raise self.error(f"{which}: requires `condition` and `steps`", path)
        value = _truthy(self._logic(args["condition"], (*path, which, "condition")))
        if which == "unless":
            value = not value
        if not value:
            return []
        steps = args["steps"]
        if not isinstance(steps, list):
            raise self.error(f"{which}: steps must be a list", (*path, which, "steps"))
        return self._steps(steps, (*path, which, "steps"), depth + 1)

    def _logic(self, cond: Any, path: Path_) -> Any:
        """Evaluate a logic statement (and / or / not / equal / matches) or a literal."""
        if isinstance(cond, Mapping) and len(cond) == 1:
            op, arg = next(iter(cond.items()))
            if op == "and":
                return all(_truthy(self._logic(c, path)) for c in _as_list(arg))
            if op == "or":
                return any(_truthy(self._logic(c, path)) for c in _as_list(arg))
            if op == "not":
                return not _truthy(self._logic(arg, path))
            if op == "equal":
                items = [self._logic(c, path) for c in _as_list(arg)]
                return all(i == items[0] for i in items)
            if op == "matches":
                if not isinstance(arg, Mapping) or "pattern" not in arg or "value" not in arg:
                    raise self.error("matches: requires `pattern` and `value`", path)
                return re.fullmatch(str(arg["pattern"]), _render(arg["value"])) is not None
        return cond


def _entry_name(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping) and len(entry) == 1:
        ref, args = next(iter(entry.items()))
        return str((args or {}).get("name") or ref)
    return ""


def _branch_filter(filters: Mapping[str, Any], key: str) -> BranchFilter:
    section = filters.get(key) or {}
    if not isinstance(section, Mapping):
        return BranchFilter()

    def seq(v: Any) -> tuple[str, ...]:
        if v is None:
            return ()
        return (str(v),) if isinstance(v, str) else tuple(str(x) for x in v)

    return BranchFilter(seq(section.get("only")), seq(section.get("ignore")))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _truthy(value: Any) -> bool:
    """CircleCI's truthiness: false, null, 0, NaN, '' and empty collections are false."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == value and value != 0
    if isinstance(value, str | list | tuple | Mapping):
        return len(value) > 0
    return bool(value)


def _cycle_message(wf_name: str, names: Iterable[str]) -> str:
    return f"Cycle detected in workflow '{wf_name}': " + " -> ".join(names)


def _check_cycles(wjobs: Sequence[WorkflowJob], fail: Any) -> None:
    graph = {wj.name: [r.job for r in wj.requires] for wj in wjobs}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for up in graph.get(node, []):
            if state.get(up) == 1:
                cycle = stack[stack.index(up) :] + [up]
                raise fail(cycle)
            if state.get(up) is None:
                visit(up)
        stack.pop()
        state[node] = 2

    for name in graph:
        if state.get(name) is None:
            visit(name)
