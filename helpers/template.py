"""CloudFormation templates as plain Python data, written and read as short-form YAML.

The builders return ordinary dicts and lists (troposphere's idea without its classes), so a
student can print a template and see exactly what will be written. Intrinsic functions are the
long-form dicts CloudFormation's JSON uses (``{"Ref": "X"}``); :func:`write_template` turns them
into the short-form tags a person types (``!Ref X``). Reading uses cfn-lint's own decoder and
linting uses cfn-lint as a library, so the kit never has its own idea of CloudFormation's YAML.

Public API (other modules rely on these signatures):

- ``write_template(tpl, path) -> Path``
- ``read_template(path) -> dict`` (cfn-lint nodes: plain dict/list/str API, plus ``start_mark``)
- ``template_line(tpl, path) -> int | None``
- ``lint_template(path, regions=("us-east-1",)) -> list[Finding]``
- ``findings_table(findings) -> pandas.DataFrame``
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from cfn_flip.yaml_dumper import Dumper as _CfnFlipDumper
from cfn_tools._config import config as _cfn_flip_config
from cfn_tools.literal import LiteralString
from cfn_tools.odict import ODict

from helpers.errors import InputError

if TYPE_CHECKING:
    import pandas

Template = dict[str, Any]

#: The SSM public parameter AWS keeps pointing at the newest Amazon Linux 2023 AMI (moto has it).
AL2023_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
#: A parameter of this type is resolved by CloudFormation from SSM when the stack is deployed.
SSM_AMI_PARAMETER_TYPE = "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"

# Conventional order of a template's top-level sections.
_SECTION_ORDER = (
    "AWSTemplateFormatVersion",
    "Description",
    "Metadata",
    "Transform",
    "Parameters",
    "Rules",
    "Mappings",
    "Conditions",
    "Resources",
    "Outputs",
)


# --- intrinsic functions -------------------------------------------------------------------


def ref(name: str) -> dict[str, str]:
    """``!Ref name``: a parameter's value or a resource's id."""
    return {"Ref": name}


def get_att(resource: str, attribute: str) -> dict[str, list[str]]:
    """``!GetAtt resource.attribute``: an attribute the resource only has once it exists."""
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str) -> dict[str, str]:
    """``!Sub text``: a string with ``${Name}`` placeholders filled in at deploy time."""
    return {"Fn::Sub": text}


# --- sections ------------------------------------------------------------------------------


def template(
    resources: Mapping[str, Any],
    *,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    format_version: str | None = None,
) -> Template:
    """A whole template, its sections in the order people write them."""
    sections: dict[str, Any] = {
        "AWSTemplateFormatVersion": format_version,
        "Description": description,
        "Parameters": dict(parameters) if parameters else None,
        "Resources": dict(resources),
        "Outputs": dict(outputs) if outputs else None,
    }
    return {key: value for key, value in sections.items() if value is not None}


def parameter(
    type_: str = "String",
    *,
    default: Any = None,
    description: str | None = None,
    allowed_values: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """A template parameter: a value chosen when the stack is deployed, not when it is written."""
    result: dict[str, Any] = {"Type": type_}
    if description is not None:
        result["Description"] = description
    if default is not None:
        result["Default"] = default
    if allowed_values is not None:
        result["AllowedValues"] = list(allowed_values)
    return result


def ssm_ami_parameter(
    ssm_path: str = AL2023_AMI_PARAMETER,
    *,
    description: str = "AMI id, looked up in SSM when the stack is deployed",
) -> dict[str, Any]:
    """An AMI parameter resolved from an SSM public parameter, so no AMI id goes stale."""
    return parameter(SSM_AMI_PARAMETER_TYPE, default=ssm_path, description=description)


def key_pair_parameter(
    default: str = "udacity", *, description: str = "Name of an existing EC2 key pair"
) -> dict[str, Any]:
    """A key pair parameter; CloudFormation checks that the key pair exists before creating."""
    return parameter("AWS::EC2::KeyPair::KeyName", default=default, description=description)


def output(value: Any, *, description: str | None = None) -> dict[str, Any]:
    """A stack output: a value shown after deployment (an id, an address)."""
    result: dict[str, Any] = {}
    if description is not None:
        result["Description"] = description
    result["Value"] = value
    return result


# --- resources -----------------------------------------------------------------------------


def ec2_instance(
    *,
    image_id: Any,
    key_name: Any = None,
    security_groups: Iterable[Any] = (),
    instance_type: Any = None,
    tags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``AWS::EC2::Instance`` resource (a virtual machine)."""
    properties: dict[str, Any] = {}
    groups = list(security_groups)
    if groups:
        properties["SecurityGroups"] = groups
    if instance_type is not None:
        properties["InstanceType"] = instance_type
    if key_name is not None:
        properties["KeyName"] = key_name
    properties["ImageId"] = image_id
    if tags:
        properties["Tags"] = [{"Key": key, "Value": value} for key, value in tags.items()]
    return {"Type": "AWS::EC2::Instance", "Properties": properties}


def ssh_ingress(cidr: str = "0.0.0.0/0", *, port: int = 22) -> dict[str, str]:
    """An ingress rule letting SSH (TCP ``port``) in from ``cidr``; ports as strings, as the
    course writes them."""
    return {"IpProtocol": "tcp", "FromPort": str(port), "ToPort": str(port), "CidrIp": cidr}


def security_group(description: str, ingress: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """An ``AWS::EC2::SecurityGroup`` resource: a firewall around the instance."""
    return {
        "Type": "AWS::EC2::SecurityGroup",
        "Properties": {
            "GroupDescription": description,
            "SecurityGroupIngress": [dict(rule) for rule in ingress],
        },
    }


def ssh_security_group(
    cidr: str = "0.0.0.0/0", *, description: str = "Enable SSH access via port 22"
) -> dict[str, Any]:
    """A security group that lets SSH in from ``cidr`` and nothing else."""
    return security_group(description, [ssh_ingress(cidr)])


# --- writing -------------------------------------------------------------------------------


class _Dumper(_CfnFlipDumper):
    """cfn-flip's short-form dumper, writing ``!Ref Name`` rather than ``!Ref 'Name'``.

    PyYAML quotes every scalar with an unresolvable tag; a plain scalar is just as exact
    (the tag decides the type), and it is what a person types.
    """

    def choose_scalar_style(self) -> str:
        style = super().choose_scalar_style()
        event = self.event
        if (
            style == "'"
            and event.tag
            and event.tag.startswith("!")
            and not event.style
            and self.analysis is not None
            and not self.analysis.multiline
            and self.analysis.allow_block_plain
            and not self.flow_level
        ):
            return ""
        return style


def _to_dumpable(value: Any) -> Any:
    # cfn-flip's dumper keeps key order only for its ODict; node subclasses from cfn-lint's
    # decoder become plain types so the dumper recognises them.
    if isinstance(value, Mapping):
        return ODict((str(key), _to_dumpable(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_to_dumpable(item) for item in value]
    if isinstance(value, str):
        return LiteralString(str(value)) if "\n" in value else str(value)
    return value


def template_to_yaml(tpl: Mapping[str, Any]) -> str:
    """The template as short-form YAML text, sections in conventional order."""
    if not isinstance(tpl, Mapping):
        raise InputError(f"a template must be a mapping, got {type(tpl).__name__}")
    ordered = {key: tpl[key] for key in _SECTION_ORDER if key in tpl}
    ordered.update({key: value for key, value in tpl.items() if key not in ordered})
    return yaml.dump(
        _to_dumpable(ordered),
        Dumper=_Dumper,
        default_flow_style=False,
        allow_unicode=True,
        sort_keys=False,
        width=_cfn_flip_config.max_col_width,
    )


def write_template(tpl: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``tpl`` as ``template.yml``-style YAML; returns the path written."""
    path = Path(path)
    text = template_to_yaml(tpl)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- reading -------------------------------------------------------------------------------


def _known_tags() -> frozenset[str]:
    from cfnlint.helpers import FUNCTION_RULES, FUNCTIONS_ALL

    names = {name.removeprefix("Fn::") for name in FUNCTIONS_ALL | FUNCTION_RULES}
    return frozenset(name for name in names if "[" not in name)


def _check_tags(text: str, path: Path) -> None:
    """Reject ``!Tags`` CloudFormation does not know; YAML loaders accept any tag silently."""
    known = _known_tags()
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, yaml.TagToken):
            handle, suffix = token.value
            if handle == "!" and suffix not in known:
                raise InputError(
                    f"unknown intrinsic function tag !{suffix}; "
                    f"known short forms: {', '.join('!' + t for t in sorted(known))}",
                    file=path,
                    line=token.start_mark.line + 1,
                    field=f"!{suffix}",
                )


def read_template(path: str | Path) -> Template:
    """Read a YAML template back, exactly as written (key order, types, intrinsic functions).

    Returns cfn-lint's decoded nodes: they behave as dict/list/str (compare them with ``==``,
    index them, print them) and carry ``start_mark.line`` (0-based) for line numbers, which
    :func:`template_line` reads. Bad input raises :class:`~helpers.errors.InputError` naming
    the file and line.
    """
    from cfnlint.decode.cfn_yaml import CfnParseError, loads

    path = Path(path)
    if not path.is_file():
        raise InputError("template file not found", file=path)
    text = path.read_text(encoding="utf-8")
    try:
        _check_tags(text, path)
        data = loads(text, str(path))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InputError(
            f"malformed YAML: {exc.problem or exc.context}",
            file=path,
            line=mark.line + 1 if mark else None,
        ) from None
    except CfnParseError as exc:
        first = exc.matches[0]
        raise InputError(first.message, file=path, line=first.linenumber) from None
    if not isinstance(data, dict):
        line = data.start_mark.line + 1 if hasattr(data, "start_mark") else 1
        raise InputError(
            f"a template must be a mapping of sections (Resources, ...), found {_yaml_kind(data)}",
            file=path,
            line=line,
        )
    return data


def _yaml_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def template_line(tpl: Any, path: Sequence[str | int]) -> int | None:
    """1-based line of the entry at ``path`` (e.g. ``["Resources", "Ec2Instance"]``: the line of
    its key) in a template from :func:`read_template`; the deepest line found, or None for data
    that was built rather than read."""
    line = _mark_line(tpl)
    node = tpl
    for part in path:
        try:
            child = node[part]
        except (KeyError, IndexError, TypeError):
            break
        key = next((k for k in node if k == part), None) if isinstance(node, dict) else None
        line = _mark_line(key) or _mark_line(child) or line
        node = child
    return line


def _mark_line(node: Any) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def to_plain(tpl: Any) -> Any:
    """The template as plain dicts, lists and strings (e.g. to print as JSON)."""
    return json.loads(json.dumps(tpl, default=str))


# --- linting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One cfn-lint finding, as data."""

    rule: str
    severity: str
    line: int
    column: int
    message: str
    file: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}:{self.column}: {self.rule} [{self.severity}] {self.message}"
        )


def lint_template(path: str | Path, regions: Sequence[str] = ("us-east-1",)) -> list[Finding]:
    """Run cfn-lint on a template file; its findings (errors, warnings, informational).

    A template cfn-lint cannot parse comes back as its rule E0000 finding, as cfn-lint
    reports it; only a missing file raises :class:`~helpers.errors.InputError`.
    """
    from cfnlint.api import ManualArgs, lint_file

    path = Path(path)
    if not path.is_file():
        raise InputError("template file not found", file=path)
    matches = lint_file(path, ManualArgs(regions=list(regions)))
    return [
        Finding(
            rule=match.rule.id,
            severity=match.rule.severity,
            line=match.linenumber,
            column=match.columnnumber,
            message=match.message,
            file=str(path),
        )
        for match in matches
    ]


def findings_table(findings: Iterable[Finding]) -> pandas.DataFrame:
    """Findings as a table for a notebook (an empty table, with its columns, when clean)."""
    import pandas

    columns = ["rule", "severity", "line", "column", "message"]
    rows = [{key: asdict(f)[key] for key in columns} for f in findings]
    return pandas.DataFrame(rows, columns=columns)
