"""CircleCI 2.1 configs as plain Python data, written and read as ``.circleci/config.yml``.

The builders return ordinary dicts, lists and strings shaped exactly like the YAML, so what a
student prints is what CircleCI reads. :func:`write_config` lays the file out the way people
write it (sections in the conventional order, multi-line commands as ``|`` blocks, a blank line
between sections); :func:`read_config` reads it back with ruamel.yaml's round-trip loader, which
keeps comments and the line of every key. :func:`validate_config` checks a config against
CircleCI's JSON schema as vendored by check-jsonschema (``vendor.circle-ci``).

Public API (other modules rely on these signatures):

- ``write_config(cfg, path) -> Path``
- ``read_config(path) -> ruamel CommentedMap`` (a dict; lines via :func:`config_line`)
- ``config_line(cfg, path) -> int | None``
- ``validate_config(path_or_data) -> list[SchemaError]``
- ``errors_table(errors) -> pandas.DataFrame``
- ``run_steps(cfg) -> Iterator[RunStep]``
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarstring import LiteralScalarString

from helpers.errors import InputError

if TYPE_CHECKING:
    import pandas

Config = dict[str, Any]
Step = str | dict[str, Any]

#: Top-level keys in the order CircleCI's docs and most projects write them.
SECTION_ORDER = (
    "version",
    "setup",
    "parameters",
    "orbs",
    "commands",
    "executors",
    "jobs",
    "workflows",
)
_RUN_KEY_ORDER = (
    "name",
    "shell",
    "working_directory",
    "environment",
    "background",
    "no_output_timeout",
    "when",
    "command",
)

CHECKOUT = "checkout"


# --- builders ------------------------------------------------------------------------------


def parameter(
    type_: str = "string",
    *,
    default: Any = None,
    description: str | None = None,
    enum: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A parameter of a pipeline, command or job (``type``: string, boolean, integer, enum, ...)."""
    result: dict[str, Any] = {"type": type_}
    if description is not None:
        result["description"] = description
    if enum is not None:
        result["enum"] = list(enum)
    if default is not None:
        result["default"] = default
    return result


def run(
    command: str,
    *,
    name: str | None = None,
    when: str | None = None,
    environment: Mapping[str, str] | None = None,
    shell: str | None = None,
    working_directory: str | None = None,
    background: bool | None = None,
    no_output_timeout: str | None = None,
) -> dict[str, Any]:
    """A ``run`` step; ``when``: ``on_success`` (CircleCI's default), ``on_fail`` or ``always``."""
    fields = {
        "name": name,
        "shell": shell,
        "working_directory": working_directory,
        "environment": dict(environment) if environment else None,
        "background": background,
        "no_output_timeout": no_output_timeout,
        "when": when,
        "command": command,
    }
    return {"run": {key: fields[key] for key in _RUN_KEY_ORDER if fields[key] is not None}}


def checkout() -> str:
    """The ``checkout`` step: clone the commit the pipeline runs for."""
    return CHECKOUT


def invoke(command_name: str, **arguments: Any) -> Step:
    """A step that runs a reusable command, with arguments for its parameters if any."""
    return {command_name: arguments} if arguments else command_name


def command(
    steps: Iterable[Step],
    *,
    parameters: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """A reusable command (CircleCI 2.1): steps with parameters, used like a built-in step."""
    result: dict[str, Any] = {}
    if description is not None:
        result["description"] = description
    if parameters:
        result["parameters"] = dict(parameters)
    result["steps"] = list(steps)
    return result


def docker_job(
    image: str,
    steps: Iterable[Step],
    *,
    environment: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    working_directory: str | None = None,
    resource_class: str | None = None,
) -> dict[str, Any]:
    """A job whose steps run in a container made from ``image``."""
    result: dict[str, Any] = {"docker": [{"image": image}]}
    if resource_class is not None:
        result["resource_class"] = resource_class
    if parameters:
        result["parameters"] = dict(parameters)
    if environment:
        result["environment"] = dict(environment)
    if working_directory is not None:
        result["working_directory"] = working_directory
    result["steps"] = list(steps)
    return result


def workflow_job(
    name: str,
    *,
    requires: Sequence[str] | None = None,
    context: str | Sequence[str] | None = None,
    filters: Mapping[str, Any] | None = None,
    **arguments: Any,
) -> Step:
    """A job's entry in a workflow; ``requires`` makes it wait for those jobs to succeed."""
    options: dict[str, Any] = {}
    if requires:
        options["requires"] = list(requires)
    if context is not None:
        options["context"] = context if isinstance(context, str) else list(context)
    if filters is not None:
        options["filters"] = dict(filters)
    options.update(arguments)
    return {name: options} if options else name


def workflow(jobs: Iterable[Step], *, when: Any = None) -> dict[str, Any]:
    """A workflow: the jobs to run; without ``requires`` they all start at the same time."""
    result: dict[str, Any] = {}
    if when is not None:
        result["when"] = when
    result["jobs"] = list(jobs)
    return result


def config(
    *,
    jobs: Mapping[str, Any],
    workflows: Mapping[str, Any],
    commands: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    orbs: Mapping[str, str] | None = None,
    executors: Mapping[str, Any] | None = None,
    version: float = 2.1,
) -> Config:
    """A whole config, sections in the conventional order."""
    sections = {
        "version": version,
        "parameters": parameters,
        "orbs": orbs,
        "commands": commands,
        "executors": executors,
        "jobs": jobs,
        "workflows": workflows,
    }
    return {key: value for key, value in sections.items() if value is not None}


# --- writing -------------------------------------------------------------------------------


def _yaml() -> YAML:
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never fold a long command onto two lines
    yaml.preserve_quotes = True
    return yaml


def _to_commented(value: Any) -> Any:
    """A copy in ruamel's types (a read config's comments come along), multi-line strings
    as ``|`` blocks; the caller's data is left as it was."""
    if isinstance(value, Mapping):
        result = CommentedMap((key, _to_commented(item)) for key, item in value.items())
        if isinstance(value, CommentedMap):
            value.copy_attributes(result)
        return result
    if isinstance(value, (list, tuple)):
        seq = CommentedSeq(_to_commented(item) for item in value)
        if isinstance(value, CommentedSeq):
            value.copy_attributes(seq)
        return seq
    if isinstance(value, str) and "\n" in value and not isinstance(value, LiteralScalarString):
        return LiteralScalarString(value)
    return value


def config_to_yaml(cfg: Mapping[str, Any]) -> str:
    """The config as YAML text, laid out as a person writes it."""
    if not isinstance(cfg, Mapping):
        raise InputError(f"a config must be a mapping, got {type(cfg).__name__}")
    ordered = CommentedMap()
    for key in SECTION_ORDER:
        if key in cfg:
            ordered[key] = cfg[key]
    for key, value in cfg.items():
        if key not in ordered:
            ordered[key] = value
    if isinstance(cfg, CommentedMap):  # keep a read config's comments
        cfg.copy_attributes(ordered)
    buffer = io.StringIO()
    _yaml().dump(_to_commented(ordered), buffer)
    return _blank_line_between_sections(buffer.getvalue())


def _blank_line_between_sections(text: str) -> str:
    """One empty line before each top-level section (and before the comments above it)."""
    out: list[str] = []
    for line in text.splitlines():
        if line[:1].isalpha() and out:
            start = len(out)
            while start > 0 and out[start - 1].startswith("#"):
                start -= 1
            if start > 0 and out[start - 1].strip():
                out.insert(start, "")
        out.append(line)
    return "\n".join(out) + "\n"


def write_config(cfg: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``cfg`` to ``path`` (usually ``<repo>/.circleci/config.yml``); returns the path."""
    path = Path(path)
    text = config_to_yaml(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- reading -------------------------------------------------------------------------------


def _load(path: Path) -> Any:
    if not path.is_file():
        raise InputError("config file not found", file=path)
    try:
        return _yaml().load(path.read_text(encoding="utf-8"))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InputError(
            f"malformed YAML: {exc.problem or exc.context}",
            file=path,
            line=mark.line + 1 if mark else None,
        ) from None


def read_config(path: str | Path) -> CommentedMap:
    """Read a config back exactly as written: key order, values, comments.

    Returns ruamel.yaml's ``CommentedMap`` — a dict (compare with ``==``, index it) that also
    knows the line of every key; :func:`config_line` reads it. Raises
    :class:`~helpers.errors.InputError` naming the file and line or field when the file is
    missing, is not YAML, is not a mapping, or has no ``version``.
    """
    path = Path(path)
    data = _load(path)
    if not isinstance(data, CommentedMap):
        raise InputError(
            f"a config must be a mapping of sections (version, jobs, workflows, ...), "
            f"found {type(data).__name__ if data is not None else 'an empty file'}",
            file=path,
            line=1,
        )
    if "version" not in data:
        raise InputError(
            "missing `version` (CircleCI needs `version: 2.1` for commands and parameters)",
            file=path,
            line=1,
            field="version",
        )
    return data


def config_line(cfg: Any, path: Sequence[str | int]) -> int | None:
    """1-based line of the value at ``path`` (e.g. ``["jobs", "smoke_test", "steps", 1]``) in a
    config from :func:`read_config`; the deepest line found, or None for built data."""
    line: int | None = 1 if isinstance(cfg, CommentedMap) else None
    node = cfg
    for part in path:
        lc = getattr(node, "lc", None)
        try:
            child = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if lc is not None:
            try:
                position = lc.key(part) if isinstance(node, CommentedMap) else lc.item(part)
                line = position[0] + 1
            except (KeyError, IndexError, TypeError):
                pass
        node = child
    return line


# --- validating ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaError:
    """One place where a config breaks CircleCI's schema."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line is not None else ""
        return f"{where}{self.path}: {self.message}"


@functools.lru_cache(maxsize=1)
def _circleci_validator() -> Any:
    from check_jsonschema.formats import FormatOptions
    from check_jsonschema.regex_variants import RegexImplementation, RegexVariantName
    from check_jsonschema.schema_loader import BuiltinSchemaLoader

    regex = RegexImplementation(RegexVariantName.default)
    loader = BuiltinSchemaLoader("vendor.circle-ci")
    return loader.get_validator("config.yml", {}, FormatOptions(regex_impl=regex), regex, False)


def validate_config(path_or_data: str | Path | Mapping[str, Any]) -> list[SchemaError]:
    """Check a config against CircleCI's JSON schema; no errors means the schema accepts it.

    For a file, each error carries the line it points at. A missing ``version`` is reported
    here as a schema error (not raised) so a student sees every problem in one table.
    """
    from jsonschema.exceptions import best_match

    if isinstance(path_or_data, (str, Path)):
        data = _load(Path(path_or_data))
    else:
        data = path_or_data
    errors = []
    for error in _circleci_validator().iter_errors(data):
        # oneOf/anyOf errors say "not valid under any of the given schemas"; best_match
        # descends to the branch that explains it ("'on_failure' is not one of ...").
        precise = best_match([error])
        errors.append(
            SchemaError(
                path=precise.json_path,
                line=config_line(data, list(precise.absolute_path)),
                message=precise.message,
            )
        )
    return sorted(errors, key=lambda e: (e.line or 0, e.path))


def errors_table(errors: Iterable[SchemaError]) -> pandas.DataFrame:
    """Schema errors as a table for a notebook (empty, with its columns, when valid)."""
    import pandas

    columns = ["line", "path", "message"]
    return pandas.DataFrame([asdict(e) for e in errors], columns=columns)


# --- looking inside ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStep:
    """A ``run`` step found in a config, and where: ``commands.<name>`` or ``jobs.<name>``."""

    owner: str
    index: int
    name: str | None
    command: str
    when: str

    @property
    def path(self) -> list[str | int]:
        section, name = self.owner.split(".", 1)
        return [section, name, "steps", self.index]


def run_steps(cfg: Mapping[str, Any]) -> Iterator[RunStep]:
    """Every ``run`` step in the config's commands and jobs, in file order."""
    for section in ("commands", "jobs"):
        for owner, body in (cfg.get(section) or {}).items():
            for index, step in enumerate((body or {}).get("steps") or []):
                if isinstance(step, Mapping) and "run" in step:
                    body_run = step["run"]
                    if isinstance(body_run, str):
                        body_run = {"command": body_run}
                    yield RunStep(
                        owner=f"{section}.{owner}",
                        index=index,
                        name=body_run.get("name"),
                        command=str(body_run.get("command", "")),
                        when=str(body_run.get("when", "on_success")),
                    )
