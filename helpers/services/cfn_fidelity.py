"""CloudFormation as the lab teaches it, on top of moto 5.2.5 (the one place moto is extended).

moto answers CloudFormation's API but records only stack-level events, never rolls back (a
failing resource leaves the stack in REVIEW_IN_PROGRESS and the next ``deploy`` makes a second
stack of the same name), does not page DescribeStackEvents and leaves DeletionTime empty. The
lab's chart and lessons need what AWS does, so :func:`install` replaces a handful of moto's
methods (never its files):

- resources are created one by one in dependency order (Ref, Fn::GetAtt, Fn::Sub, DependsOn),
  each with CREATE_IN_PROGRESS → CREATE_IN_PROGRESS "Resource creation Initiated" →
  CREATE_COMPLETE events, and deleted in the reverse order with DELETE_* events;
- a resource that fails gets CREATE_FAILED with AWS's reason, the stack goes
  ROLLBACK_IN_PROGRESS, what was created is deleted, and the stack ends ROLLBACK_COMPLETE —
  which, as on AWS, cannot be updated until it is deleted;
- a resource that fails during an UPDATE gets UPDATE_FAILED (CREATE_FAILED if the update
  added it) with AWS's reason; the stack goes UPDATE_ROLLBACK_IN_PROGRESS "The following
  resource(s) failed to update: [X]. ", each resource the update changed gets its old
  properties back (UPDATE_IN_PROGRESS → UPDATE_COMPLETE on its old physical id), what the
  update created is deleted in UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS, and the stack
  ends UPDATE_ROLLBACK_COMPLETE, still updatable (:class:`_Update`). A changed create-only
  property (the resource schema's, from cfn-lint) replaces the resource — new one first, the
  old one deleted in the cleanup — as AWS does; other changes are made in place where this
  module knows how (:data:`IN_PLACE`), else by a replacement;
- a change set for a new stack reuses a stack left in REVIEW_IN_PROGRESS (never two live stacks
  with one name); a template AWS would reject is rejected with AWS's ValidationError text;
- parameters of AWS-specific types (``AWS::EC2::KeyPair::KeyName``, ``AWS::EC2::Image::Id``,
  their ``List<…>`` and ``AWS::SSM::Parameter::Value<…>`` forms…) are checked against what exists
  as AWS checks them: not by the API call (CreateStack, CreateChangeSet and ExecuteChangeSet all
  succeed) but as the stack's first step — CREATE_IN_PROGRESS, then ROLLBACK_IN_PROGRESS
  "Parameter validation failed: parameter value X for parameter name P does not exist. Rollback
  requested by user.", then ROLLBACK_COMPLETE, with no resource event at all (see
  :func:`invalid_parameters`);
- DescribeStackEvents pages, newest first, with NextToken (100 events a page: what AWS
  returns in practice; its docs only promise pages of at most 1 MB);
- deleted stacks get a DeletionTime;
- reading a stack never creates anything: moto's ResourceMap makes a resource the first time
  anything looks it up, so an output such as ``!Ref Ec2Instance`` of a stack whose instance
  failed (or was deleted) would call RunInstances again from DescribeStacks — failing with a
  500 each time, or leaving a stray instance. Lookups create only inside a stack operation
  (:func:`_building`); outputs and exports are shown only for a stack whose resources exist.

Event times come from one clock that never repeats a value, and each resource takes a short
real pause (``ROLLBACK_LAB_CFN_STEP_SECONDS``, default 0.2 s) so a chart shows bars with
lengths, not a pile of identical instants. All work still ends before ExecuteChangeSet or
DeleteStack returns: the aws CLI's deploy waiter polls first at once and then only every 30 s,
so a backend that finished in time lets ``deploy`` return at once.

:func:`check_moto_internals` fails loudly (``MotoIncompatible``) when the pinned moto version or
any internal this module relies on changes; :func:`install` calls it first.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from types import SimpleNamespace
from typing import Any, NoReturn

SUPPORTED_MOTO_VERSION = "5.2.5"
STEP_SECONDS_ENV = "ROLLBACK_LAB_CFN_STEP_SECONDS"
DEFAULT_STEP_SECONDS = 0.2
EVENTS_PAGE_SIZE = 100
# How much longer than the base step a resource type takes (an instance boots, a group does not).
TYPE_WEIGHTS = {"AWS::EC2::Instance": 2.0}
# AWS's service names in a legacy resource handler's failure reason.
SERVICE_NAMES = {
    "AWS::EC2::": "AmazonEC2",
    "AWS::S3::": "Amazon S3",
    "AWS::IAM::": "AmazonIdentityManagement",
    "AWS::SSM::": "AWSSimpleSystemsManagement",
}
TOP_LEVEL_KEYS = {
    "AWSTemplateFormatVersion",
    "Description",
    "Metadata",
    "Parameters",
    "Rules",
    "Mappings",
    "Conditions",
    "Transform",
    "Resources",
    "Outputs",
}
PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}
UPDATABLE_STATUSES = {
    "CREATE_COMPLETE",
    "UPDATE_COMPLETE",
    "UPDATE_ROLLBACK_COMPLETE",
    "IMPORT_COMPLETE",
    "IMPORT_ROLLBACK_COMPLETE",
}
LAB_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
AMI_HINT = (
    " [rollback-lab: this local AWS knows only the AMIs bundled with moto, not every AMI of the"
    " real AWS. Take the image id from the SSM public parameter, as AWS recommends: declare"
    " `Parameters: LatestAmiId: {Type: 'AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>',"
    f" Default: '{LAB_AMI_PARAMETER}'}}` and use `ImageId: !Ref LatestAmiId`, or look one up"
    f" with `aws ssm get-parameter --name {LAB_AMI_PARAMETER} --query Parameter.Value`.]"
)


class MotoIncompatible(RuntimeError):
    """The installed moto is not the one this extension was written and tested against."""


# --- guard ---------------------------------------------------------------------------------

REQUIRED_INTERNALS: dict[str, tuple[str, ...]] = {
    "moto.cloudformation.models:Stack": (
        "_add_stack_event",
        "create_resources",
        "delete",
        "_parse_template",
        "_create_resource_map",
        "_create_output_map",
        "outputs",
        "exports",
        "stack_resources",
    ),
    "moto.cloudformation.models:CloudFormationBackend": (
        "create_stack",
        "create_change_set",
        "execute_change_set",
        "delete_stack",
        "update_stack",
        "describe_stack_events",
        "_resolve_update_parameters",
    ),
    "moto.cloudformation.models:ChangeSet": ("diff", "_parse_template"),
    "moto.cloudformation.models:Event": ("sendToSns",),
    "moto.cloudformation.parsing:ResourceMap": (
        "__getitem__",
        "load",
        "build_resource_diff",
        "_delete_resource",
        "parse_ssm_parameter",
    ),
    "moto.cloudformation.responses:CloudFormationResponse": (
        "describe_stack_events",
        "_get_param",
        "_validate_different_update",
    ),
    "moto.cloudformation.parsing:": ("get_model_map", "clean_json"),
    "moto.ec2.exceptions:InvalidKeyPairNameError": ("__init__",),
    "moto.ec2.models:EC2Backend": (
        "describe_key_pairs",
        "describe_images",
        "get_instance",
        "get_security_group_from_id",
        "get_security_group_from_name",
        "get_subnet",
        "get_vpc",
        "get_volume",
        "describe_availability_zones",
        "authorize_security_group_ingress",
        "revoke_security_group_ingress",
        "create_tags",
        "delete_tags",
        "modify_instance_attribute",
    ),
    "moto.ssm.models:SimpleSystemManagerBackend": ("get_parameter",),
    "moto.ec2.models.core:TaggedEC2Resource": (),
}


def _resolve(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    module = __import__(module_name, fromlist=["_"])
    return getattr(module, attr) if attr else module


def check_moto_internals() -> None:
    """Raise :class:`MotoIncompatible` naming what changed, or return quietly."""
    problems = []
    try:
        installed = metadata.version("moto")
    except metadata.PackageNotFoundError:
        installed = "not installed"
    if installed != SUPPORTED_MOTO_VERSION:
        problems.append(
            f"moto {installed} is installed, this extension targets moto {SUPPORTED_MOTO_VERSION}"
        )
    for path, names in REQUIRED_INTERNALS.items():
        try:
            owner = _resolve(path)
        except (ImportError, AttributeError) as exc:
            problems.append(f"{path} is missing ({exc})")
            continue
        problems.extend(f"{path}.{name} is missing" for name in names if not hasattr(owner, name))
    from moto.cloudformation.models import Event

    probe = Event("s", "n", "l", "p", "t", "CREATE_COMPLETE", None, None)
    problems.extend(
        f"moto.cloudformation.models:Event no longer sets {name}"
        for name in ("timestamp", "event_id", "resource_status")
        if not hasattr(probe, name)
    )
    from moto.cloudformation.parsing import ResourceMap

    resource_map = ResourceMap("s", "n", {}, {}, "us-east-1", "123456789012", {}, {})
    problems.extend(
        f"moto.cloudformation.parsing:ResourceMap no longer sets {name}"
        for name in ("_parsed_resources", "_resource_json_map", "resolved_parameters")
        if not isinstance(getattr(resource_map, name, None), dict)
    )
    if problems:
        raise MotoIncompatible(
            "helpers/services/cfn_fidelity.py cannot extend this moto: "
            + "; ".join(problems)
            + ". Pin moto back or update the extension (and its tests)."
        )


# --- the event clock -------------------------------------------------------------------------


class EventClock:
    """UTC now, but never the same instant twice and never backwards (1 ms apart at least)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dt.datetime | None = None

    def now(self) -> dt.datetime:
        from moto.core.utils import utcnow

        with self._lock:
            moment = utcnow()
            if self._last is not None and moment < self._last + dt.timedelta(milliseconds=1):
                moment = self._last + dt.timedelta(milliseconds=1)
            self._last = moment
            return moment


CLOCK = EventClock()
# CloudFormation works on one stack operation at a time here; reads never wait for it.
_OPERATIONS = threading.RLock()
_installed = False


def _step_seconds(resource_type: str) -> float:
    try:
        base = float(os.environ.get(STEP_SECONDS_ENV, DEFAULT_STEP_SECONDS))
    except ValueError:
        base = DEFAULT_STEP_SECONDS
    return max(base, 0.0) * TYPE_WEIGHTS.get(resource_type, 1.0)


def _pause(resource_type: str, fraction: float = 1.0) -> None:
    seconds = _step_seconds(resource_type) * fraction
    if seconds:
        time.sleep(seconds)


# --- events ------------------------------------------------------------------------------------


def emit(
    stack: Any,
    status: str,
    reason: str | None = None,
    *,
    logical_id: str | None = None,
    physical_id: str | None = None,
    resource_type: str | None = None,
) -> Any:
    """Record one event (stack-level when ``logical_id`` is None) with a clock timestamp."""
    from moto.cloudformation.models import Event

    resource_event = logical_id is not None
    event = Event(
        stack_id=stack.stack_id,
        stack_name=stack.name,
        logical_resource_id=logical_id if resource_event else stack.name,
        physical_resource_id=(physical_id or "") if resource_event else stack.stack_id,
        resource_type=resource_type if resource_event else "AWS::CloudFormation::Stack",
        resource_status=status,
        resource_status_reason=reason,
        resource_properties=None,
    )
    event.timestamp = CLOCK.now()
    event.sendToSns(stack.account_id, stack.region_name, stack.notification_arns)
    stack.events.append(event)
    return event


def _stack_event(
    self: Any,
    resource_status: str,
    resource_status_reason: str | None = None,
    resource_properties: str | None = None,
) -> None:
    """Replaces ``Stack._add_stack_event`` so moto's own stack events use the clock too."""
    emit(self, resource_status, resource_status_reason)


def failure_reason(exc: BaseException, resource_type: str) -> str:
    """The ResourceStatusReason AWS gives a legacy resource handler's failed API call."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    service = next(
        (name for prefix, name in SERVICE_NAMES.items() if resource_type.startswith(prefix)), None
    )
    if code and service and code != "UnspecifiedErrorCode":
        reason = (
            f"{message} (Service: {service}; Status Code: 400; Error Code: {code}; "
            f"Request ID: {uuid.uuid4()}; Proxy: null)"
        )
    else:
        reason = f'Resource handler returned message: "{message}"'
    if code == "InvalidAMIID.NotFound":
        reason += AMI_HINT
    return reason


# --- templates -----------------------------------------------------------------------------------


def _template_error(message: str) -> Exception:
    from moto.cloudformation.exceptions import ValidationError

    return ValidationError(message=f"Template format error: {message}")


def parse_template_body(body: str | Mapping[str, Any]) -> dict[str, Any]:
    """Parse as CloudFormation does (YAML with short-form tags, or JSON), AWS's errors."""
    if isinstance(body, Mapping):
        return dict(body)
    import yaml
    from moto.cloudformation.utils import yaml_tag_constructor

    if not body or not str(body).strip():
        from moto.cloudformation.exceptions import ValidationError

        raise ValidationError(message="Template body cannot be empty")
    text = str(body)
    if text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _template_error(
                f"JSON not well-formed. (line {exc.lineno},  column {exc.colno})"
            ) from None
    else:
        yaml.add_multi_constructor("", yaml_tag_constructor)
        try:
            parsed = yaml.load(text, Loader=yaml.Loader)  # noqa: S506 (moto's own loader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise _template_error(f"YAML not well-formed.{where}") from None
    if not isinstance(parsed, dict):
        raise _template_error("Template is not a JSON object or YAML mapping.")
    return parsed


def references(node: Any) -> set[str]:
    """Names a template fragment refers to through Ref, Fn::GetAtt and Fn::Sub."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) and value else value
                if isinstance(target, str):
                    found.add(target.split(".", 1)[0])
            elif key == "Fn::Sub":
                text, variables = (value[0], value[1]) if isinstance(value, list) else (value, {})
                local = set(variables) if isinstance(variables, dict) else set()
                if isinstance(text, str):
                    for name in re.findall(r"\$\{(?!!)([^}]+)\}", text):
                        name = name.split(".", 1)[0].strip()
                        if name not in local:
                            found.add(name)
                found |= references(variables)
            else:
                found |= references(value)
    return found


def _depends_on(resource: Mapping[str, Any]) -> list[str]:
    depends = resource.get("DependsOn", [])
    return [depends] if isinstance(depends, str) else list(depends or [])


def dependency_order(resources: Mapping[str, Any]) -> list[str]:
    """Template order, except that a resource comes after everything it refers to."""
    names = list(resources)
    needs = {
        name: (references(body.get("Properties", {})) | set(_depends_on(body))) & set(names)
        for name, body in resources.items()
        if isinstance(body, dict)
    }
    ordered: list[str] = []
    placed: set[str] = set()
    while len(ordered) < len(names):
        ready = [n for n in names if n not in placed and needs.get(n, set()) <= placed]
        if not ready:
            stuck = sorted(n for n in names if n not in placed)
            raise _template_error(f"Circular dependency between resources: [{', '.join(stuck)}]")
        ordered.append(ready[0])
        placed.add(ready[0])
    return ordered


def _known_resource_type(resource_type: str, region: str) -> bool:
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    if resource_type.startswith("Custom::") or resource_type in NULL_MODELS:
        return True
    if resource_type in get_model_map() or resource_type == "AWS::CloudFormation::CustomResource":
        return True
    try:  # cfn-lint carries AWS's published resource schemas for every region
        from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

        PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, resource_type)
        return True
    except Exception:  # noqa: BLE001 (cfn-lint raises its own not-found types)
        return False


def validate_template(template: Mapping[str, Any], region: str) -> None:
    """Reject what CloudFormation rejects before creating anything, with its messages."""
    unknown_keys = sorted(set(template) - TOP_LEVEL_KEYS)
    if unknown_keys:
        raise _template_error(
            f"Invalid template property or properties [{', '.join(unknown_keys)}]"
        )
    resources = template.get("Resources")
    if not resources or not isinstance(resources, dict):
        raise _template_error("At least one Resources member must be defined.")
    for name, body in resources.items():
        if not isinstance(body, dict) or not isinstance(body.get("Type"), str):
            raise _template_error(
                f"[/Resources/{name}] Every Resources object must contain a Type member."
            )
    unrecognized = sorted(
        {
            body["Type"]
            for body in resources.values()
            if not _known_resource_type(body["Type"], region)
        }
    )
    if unrecognized:
        raise _template_error(f"Unrecognized resource types: [{', '.join(unrecognized)}]")
    declared = set(resources) | set(template.get("Parameters") or {}) | PSEUDO_PARAMETERS
    unresolved = sorted(
        {
            ref
            for body in resources.values()
            for ref in references(body.get("Properties", {})) | set(_depends_on(body))
            if ref not in declared
        }
    )
    if unresolved:
        raise _template_error(
            f"Unresolved resource dependencies [{', '.join(unresolved)}] in the Resources block "
            "of the template"
        )
    dependency_order(resources)


_ORIGINAL_PARSE_SSM_PARAMETER: Any = None


def _ssm_parameter_value(self: Any, value: str, value_type: str) -> Any:
    """Replaces ``ResourceMap.parse_ssm_parameter`` (an AttributeError, so HTTP 500, when the
    parameter is missing) with AWS's ValidationError at CreateStack / CreateChangeSet."""
    from moto.cloudformation.exceptions import ValidationError
    from moto.ssm.models import ssm_backends

    if value_type == "AWS::SSM::Parameter::Name":
        return value  # the name itself; that it exists is checked with the other AWS types
    backend = ssm_backends[self._account_id][self._region_name]
    if not isinstance(value, str) or backend.get_parameter(value) is None:
        raise ValidationError(
            message=f"Unable to fetch parameters [{value}] from parameter store for this account."
        )
    return _ORIGINAL_PARSE_SSM_PARAMETER(self, value, value_type)


# --- AWS-specific parameter types -------------------------------------------------------------

# What CloudFormation looks up for a parameter of an AWS-specific type (AWS's parameter-types
# page: "CloudFormation validates the values against existing values in the account"). Each
# lookup answers "does this exist?" from moto's EC2 or SSM backend of the stack's account/region.
EC2_LOOKUPS: dict[str, Callable[[Any, str], Any]] = {
    "AWS::EC2::KeyPair::KeyName": lambda ec2, v: ec2.describe_key_pairs([v]),
    "AWS::EC2::Image::Id": lambda ec2, v: [
        i for i in ec2.describe_images(ami_ids=[v]) if i.id == v
    ],
    "AWS::EC2::Instance::Id": lambda ec2, v: ec2.get_instance(v),
    "AWS::EC2::SecurityGroup::Id": lambda ec2, v: ec2.get_security_group_from_id(v),
    "AWS::EC2::SecurityGroup::GroupName": lambda ec2, v: ec2.get_security_group_from_name(v),
    "AWS::EC2::Subnet::Id": lambda ec2, v: ec2.get_subnet(v),
    "AWS::EC2::VPC::Id": lambda ec2, v: ec2.get_vpc(v),
    "AWS::EC2::Volume::Id": lambda ec2, v: ec2.get_volume(v),
    "AWS::EC2::AvailabilityZone::Name": lambda ec2, v: ec2.describe_availability_zones(
        zone_names=[v]
    ),
}
SSM_PARAMETER_NAME = "AWS::SSM::Parameter::Name"
_SSM_VALUE = re.compile(r"AWS::SSM::Parameter::Value<(.+)>")
_LIST = re.compile(r"List<(.+)>")


def element_type(declared: str) -> tuple[str, bool]:
    """(type of each value, whether it is a list) of a parameter's declared Type; an SSM
    ``Value<T>`` parameter is checked as T, on the value it resolved to."""
    inner = declared.strip()
    ssm = _SSM_VALUE.fullmatch(inner)
    if ssm:
        inner = ssm.group(1).strip()
    listed = _LIST.fullmatch(inner)
    return (listed.group(1).strip(), True) if listed else (inner, False)


def _exists(resource_type: str, value: str, account_id: str, region: str) -> bool | None:
    """Whether ``value`` names an existing ``resource_type``; None for a type AWS does not check
    (String, Number, …) or this local AWS cannot."""
    if resource_type == SSM_PARAMETER_NAME:
        from moto.ssm.models import ssm_backends

        return bool(value) and ssm_backends[account_id][region].get_parameter(value) is not None
    lookup = EC2_LOOKUPS.get(resource_type)
    if lookup is None:
        return None
    if not value:
        return False  # AWS: "parameter value  for parameter name KeyName does not exist"
    from moto.ec2.models import ec2_backends

    try:
        return bool(lookup(ec2_backends[account_id][region], value))
    except Exception:  # noqa: BLE001 (moto's not-found errors differ per type: all mean "no")
        return False


def _values(value: Any, is_list: bool) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    text = "" if value is None else str(value)
    return [v.strip() for v in text.split(",")] if is_list else [text]


def invalid_parameters(
    template: Mapping[str, Any], resolved: Mapping[str, Any], account_id: str, region: str
) -> list[tuple[str, str]]:
    """(parameter name, value) of each AWS-typed parameter whose value does not exist, in the
    template's order; for a list, its first missing element (as AWS reports it). A NoEcho
    parameter's value is shown as ``****``, as DescribeStacks shows it."""
    problems = []
    for name, slot in (template.get("Parameters") or {}).items():
        if not isinstance(slot, dict) or name not in resolved:
            continue
        resource_type, is_list = element_type(str(slot.get("Type", "String")))
        for value in _values(resolved[name], is_list):
            if _exists(resource_type, value, account_id, region) is False:
                problems.append((name, "****" if slot.get("NoEcho") else value))
                break
    return problems


def parameter_validation_reason(problems: Iterable[tuple[str, str]]) -> str:
    """AWS's ResourceStatusReason for failed parameter validation (without the create path's
    " Rollback requested by user." suffix)."""
    return "Parameter validation failed: " + ", ".join(
        f"parameter value {value} for parameter name {name} does not exist"
        for name, value in problems
    )


def _stack_parameter_problems(stack: Any) -> list[tuple[str, str]]:
    return invalid_parameters(
        stack.template_dict,
        stack.resource_map.resolved_parameters,
        stack.account_id,
        stack.region_name,
    )


def _refuse_parameters_on_create(stack: Any, problems: list[tuple[str, str]]) -> None:
    """AWS's events: the stack goes straight from CREATE_IN_PROGRESS to a rollback that has
    nothing to delete; no resource is touched."""
    _pause("AWS::CloudFormation::Stack", 0.5)
    stack.status = "ROLLBACK_IN_PROGRESS"
    stack.status_reason = parameter_validation_reason(problems) + ". Rollback requested by user."
    emit(stack, "ROLLBACK_IN_PROGRESS", stack.status_reason)
    _pause("AWS::CloudFormation::Stack")
    stack.status = "ROLLBACK_COMPLETE"
    stack.status_reason = None
    emit(stack, "ROLLBACK_COMPLETE")


def _refuse_parameters_on_update(stack: Any, problems: list[tuple[str, str]]) -> None:
    """AWS's events for an update whose parameters fail: the stack keeps what it had."""
    _pause("AWS::CloudFormation::Stack", 0.5)
    stack.status = "UPDATE_ROLLBACK_IN_PROGRESS"
    emit(stack, "UPDATE_ROLLBACK_IN_PROGRESS", parameter_validation_reason(problems))
    _pause("AWS::CloudFormation::Stack", 0.5)
    emit(stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
    stack.status = "UPDATE_ROLLBACK_COMPLETE"
    stack.status_reason = None
    emit(stack, "UPDATE_ROLLBACK_COMPLETE")


# --- resources ---------------------------------------------------------------------------


def _physical_id(resource: Any, logical_id: str) -> str:
    value = getattr(resource, "physical_resource_id", None)
    if value is None and isinstance(resource, str):
        value = resource
    return str(value) if value is not None else logical_id


class _DeleteFailed(Exception):
    def __init__(self, logical_id: str) -> None:
        super().__init__(logical_id)
        self.logical_id = logical_id


def _delete_physical(
    stack: Any, resource_map: Any, logical_id: str, resource: Any, body: Mapping[str, Any]
) -> Exception | None:
    """Delete one physical resource with its events; the error when it could not be."""
    resource_type = body["Type"]
    physical = _physical_id(resource, logical_id)
    if body.get("DeletionPolicy") == "Retain":
        emit(stack, "DELETE_SKIPPED", logical_id=logical_id, physical_id=physical,
             resource_type=resource_type)  # fmt: skip
        return None
    emit(stack, "DELETE_IN_PROGRESS", logical_id=logical_id, physical_id=physical,
         resource_type=resource_type)  # fmt: skip
    try:
        if resource is not None and not isinstance(resource, str):
            resource_map._delete_resource(resource, body)
    except Exception as exc:  # noqa: BLE001 (any backend error is a failed delete, as on AWS)
        emit(stack, "DELETE_FAILED", failure_reason(exc, resource_type), logical_id=logical_id,
             physical_id=physical, resource_type=resource_type)  # fmt: skip
        return exc
    _pause(resource_type)
    emit(stack, "DELETE_COMPLETE", logical_id=logical_id, physical_id=physical,
         resource_type=resource_type)  # fmt: skip
    return None


def _delete_resource(stack: Any, logical_id: str) -> None:
    resource_map = stack.resource_map
    body = resource_map._resource_json_map[logical_id]
    resource = resource_map._parsed_resources.get(logical_id)
    error = _delete_physical(stack, resource_map, logical_id, resource, body)
    if error is not None:
        raise _DeleteFailed(logical_id) from error
    resource_map._parsed_resources.pop(logical_id, None)


def _live_resources(stack: Any) -> list[str]:
    """Resources that exist now, in the order they were (or would have been) created."""
    resource_map = stack.resource_map
    declared = resource_map._resource_json_map
    created = [n for n in getattr(stack, "lab_created", []) if n in declared]
    others = [n for n in dependency_order(declared) if n not in created] if declared else []
    return [n for n in created + others if resource_map._parsed_resources.get(n) is not None]


def _tag_ec2_resource(stack: Any, logical_id: str, resource: Any, resource_map: Any = None) -> None:
    """What moto's ResourceMap.create does: CloudFormation's aws:cloudformation:* tags."""
    from moto.ec2 import models as ec2_models
    from moto.ec2.models.core import TaggedEC2Resource

    if isinstance(resource, TaggedEC2Resource):
        tags = dict(
            (resource_map or stack.resource_map).tags,
            **{"aws:cloudformation:logical-id": logical_id},
        )
        backend = ec2_models.ec2_backends[stack.account_id][stack.region_name]
        backend.create_tags([resource.physical_resource_id], tags)


def _security_group_ids(stack: Any) -> set[str]:
    from moto.ec2 import models as ec2_models

    backend = ec2_models.ec2_backends[stack.account_id][stack.region_name]
    return {group.id for group in backend.describe_security_groups()}


def _discard_half_made_group(stack: Any, logical_id: str, body: Any, before: set[str]) -> None:
    """moto makes a security group, then fails on a bad rule and keeps it; AWS keeps nothing
    of a resource that failed to create. Only a group new since ``before`` and named as this
    resource's is removed."""
    from moto.ec2 import models as ec2_models

    backend = ec2_models.ec2_backends[stack.account_id][stack.region_name]
    properties = body.get("Properties") or {}
    given_name = properties.get("GroupName") if isinstance(properties, dict) else None
    for group in backend.describe_security_groups():
        ours = group.name == given_name or group.name.startswith(f"{stack.name}-{logical_id}-")
        if group.id not in before and ours:
            backend.delete_security_group(group_id=group.id)


# --- reads never create ----------------------------------------------------------------------

# A stack in one of these has no outputs or exports (as on AWS): its resources do not all exist.
OUTPUTLESS_STATUSES = {
    "CREATE_PENDING",  # moto's, before creation starts
    "REVIEW_IN_PROGRESS",
    "CREATE_IN_PROGRESS",
    "CREATE_FAILED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE",
    "DELETE_COMPLETE",
}
_BUILDER = threading.local()
_ORIGINAL_GETITEM: Any = None


class ResourceAbsent(KeyError):
    """A template's resource that does not exist now: not created yet, failed, or deleted."""


@contextmanager
def _building() -> Iterator[None]:
    """Let this thread's ResourceMap lookups create resources — only stack operations may."""
    depth = getattr(_BUILDER, "depth", 0)
    _BUILDER.depth = depth + 1
    try:
        yield
    finally:
        _BUILDER.depth = depth


def _resource_lookup(self: Any, key: str) -> Any:
    """Replaces ``ResourceMap.__getitem__``, which creates whatever it is asked for: outside
    :func:`_building` it only looks (a KeyError, so ``in`` and ``.get`` keep working)."""
    parsed = self._parsed_resources
    if key in parsed:
        return parsed[key]
    if getattr(_BUILDER, "depth", 0):
        return _ORIGINAL_GETITEM(self, key)
    raise ResourceAbsent(key)


def _evaluated(stack: Any, value: Any) -> tuple[bool, Any]:
    """(True, value) with Ref/GetAtt/Sub… resolved; (False, None) when it cannot be now."""
    from moto.cloudformation.parsing import clean_json

    try:
        return True, clean_json(value, stack.resource_map)
    except Exception:  # noqa: BLE001 (a read must answer: what cannot be resolved is left out)
        return False, None


def _stack_exports(self: Any) -> list[Any]:
    """Replaces ``Stack.exports``: only a stack whose resources exist exports anything."""
    from moto.cloudformation.parsing import Export

    if self.status in OUTPUTLESS_STATUSES:
        return []
    found = []
    for body in (self.template_dict.get("Outputs") or {}).values():
        if not isinstance(body, dict) or not body.get("Export"):
            continue
        named, name = _evaluated(self, body["Export"].get("Name"))
        valued, value = _evaluated(self, body.get("Value"))
        if named and valued:
            found.append(Export(self.stack_id, name, value))
    return found


def _stack_outputs(self: Any) -> list[dict[str, Any]] | None:
    """Replaces ``Stack.outputs``: none while creating or once rolled back or deleted (as on
    AWS), and never by creating what an output refers to."""
    if self.status in OUTPUTLESS_STATUSES:
        return None
    exports = _stack_exports(self)
    outputs = []
    for key, body in (self.template_dict.get("Outputs") or {}).items():
        condition = body.get("Condition") if isinstance(body, dict) else None
        if condition and not self.resource_map.lazy_condition_map.get(condition):
            continue
        if not isinstance(body, dict) or "Value" not in body:
            continue
        resolved, value = _evaluated(self, body["Value"])
        if not resolved:
            continue
        described, description = _evaluated(self, body.get("Description"))
        outputs.append(
            {
                "OutputKey": key,
                "OutputValue": value,
                "Description": description if described else None,
                "ExportName": next((e.name for e in exports if e.value == value), None),
            }
        )
    return outputs or None


def _stack_resources(self: Any) -> list[Any]:
    """Replaces ``Stack.stack_resources`` (moto iterates its lazy map, creating every resource
    not there — after a rollback, all of them again): the resources that exist."""
    resource_map = self.resource_map
    existing = (resource_map._parsed_resources.get(n) for n in resource_map._resource_json_map)
    return [r for r in existing if r is not None and not isinstance(r, (str, dict, list))]


def _register_exports(backend: Any, stack: Any) -> None:
    for export in stack.exports:
        backend.exports[export.name] = export


def create_resources(stack: Any) -> None:
    """Replaces ``Stack.create_resources``: one resource at a time, rollback on failure."""
    stack.status = "CREATE_IN_PROGRESS"
    resource_map = stack.resource_map
    template = stack.template_dict
    resource_map._template = template
    resource_map._resource_json_map = template["Resources"]
    resource_map.tags.update(
        {"aws:cloudformation:stack-name": stack.name, "aws:cloudformation:stack-id": stack.stack_id}
    )
    stack.description = template.get("Description")
    created: list[str] = []
    stack.lab_created = created
    problems = _stack_parameter_problems(stack)
    if problems:
        _refuse_parameters_on_create(stack, problems)
        return
    for logical_id in dependency_order(template["Resources"]):
        body = template["Resources"][logical_id]
        condition = body.get("Condition")
        if condition and not resource_map.lazy_condition_map[condition]:
            continue
        resource_type = body["Type"]
        emit(
            stack,
            "CREATE_IN_PROGRESS",
            logical_id=logical_id,
            physical_id="",
            resource_type=resource_type,
        )
        groups_before = (
            _security_group_ids(stack) if resource_type == "AWS::EC2::SecurityGroup" else None
        )
        try:
            with _building():
                resource = resource_map[logical_id]
            _tag_ec2_resource(stack, logical_id, resource)
        except Exception as exc:  # noqa: BLE001 (any backend error fails the resource, as on AWS)
            if groups_before is not None:
                _discard_half_made_group(stack, logical_id, body, groups_before)
            _pause(resource_type, 0.5)  # AWS takes a moment to call the service and fail
            emit(
                stack,
                "CREATE_FAILED",
                failure_reason(exc, resource_type),
                logical_id=logical_id,
                physical_id="",
                resource_type=resource_type,
            )
            _roll_back(stack, logical_id, resource_type)
            return
        created.append(logical_id)
        physical = _physical_id(resource, logical_id)
        emit(
            stack,
            "CREATE_IN_PROGRESS",
            "Resource creation Initiated",
            logical_id=logical_id,
            physical_id=physical,
            resource_type=resource_type,
        )
        _pause(resource_type)
        emit(
            stack,
            "CREATE_COMPLETE",
            logical_id=logical_id,
            physical_id=physical,
            resource_type=resource_type,
        )
    stack.status = "CREATE_COMPLETE"
    stack.status_reason = None
    emit(stack, "CREATE_COMPLETE")


def _roll_back(stack: Any, failed: str, failed_type: str) -> None:
    reason = f"The following resource(s) failed to create: [{failed}]. Rollback requested by user."
    stack.status = "ROLLBACK_IN_PROGRESS"
    stack.status_reason = reason
    emit(stack, "ROLLBACK_IN_PROGRESS", reason)
    # The failed resource is cleaned up first: everything created before it may be its dependency.
    emit(stack, "DELETE_COMPLETE", logical_id=failed, physical_id="", resource_type=failed_type)
    stack.resource_map._parsed_resources.pop(failed, None)
    try:
        _delete_live_resources(stack, failed_status="ROLLBACK_FAILED")
    except _DeleteFailed:
        return
    stack.status = "ROLLBACK_COMPLETE"
    stack.status_reason = None
    emit(stack, "ROLLBACK_COMPLETE")


def delete_stack_resources(self: Any) -> None:
    """Replaces ``Stack.delete``: reverse creation order, DELETE_* per resource."""
    self.status = "DELETE_IN_PROGRESS"
    emit(self, "DELETE_IN_PROGRESS", "User Initiated")
    _delete_live_resources(self, failed_status="DELETE_FAILED")
    self.status = "DELETE_COMPLETE"
    self.status_reason = None
    self.deletion_time = emit(self, "DELETE_COMPLETE").timestamp


def _delete_live_resources(stack: Any, *, failed_status: str) -> None:
    """Delete what the stack holds in reverse creation order, as a delete and a rollback do;
    when a resource cannot go, the stack ends in ``failed_status`` naming it, and this re-raises."""
    try:
        for logical_id in reversed(_live_resources(stack)):
            _delete_resource(stack, logical_id)
    except _DeleteFailed as exc:
        stack.status = failed_status
        stack.status_reason = f"The following resource(s) failed to delete: [{exc.logical_id}]. "
        emit(stack, failed_status, stack.status_reason)
        raise


# --- backend operations ------------------------------------------------------------------------


def _live_stack(backend: Any, name_or_id: str) -> Any | None:
    for stack in backend.stacks.values():
        if name_or_id in (stack.name, stack.stack_id):
            return stack
    return None


def _refuse_update(stack: Any) -> None:
    from moto.cloudformation.exceptions import ValidationError

    if stack.status not in UPDATABLE_STATUSES:
        raise ValidationError(
            stack.stack_id,
            message=f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.",
        )


def _unchanged(stack: Any, template: dict[str, Any], parameters: Mapping[str, Any]) -> bool:
    """Same template, and each parameter given as before (or as its resolved value)."""
    if stack.template_dict != template:
        return False
    given, resolved = stack.parameters or {}, stack.stack_parameters
    return all(value in (given.get(key), resolved.get(key)) for key, value in parameters.items())


def _mark_empty(change_set: Any) -> None:
    change_set.status = "FAILED"
    change_set.execution_status = "UNAVAILABLE"
    change_set.status_reason = (
        "The submitted information didn't contain changes. Submit different information to "
        "create a change set."
    )


def _validate_different_update(
    self: Any, incoming_params: Any, stack_body: str, old_stack: Any
) -> None:
    """Replaces the response's check: a stack's state is refused first, as AWS does, and an
    unchanged change set is created FAILED (by the backend) instead of raising."""
    _refuse_update(old_stack)
    if self._get_param("ChangeSetName"):
        return
    _ORIGINAL_VALIDATE_DIFFERENT_UPDATE(self, incoming_params, stack_body, old_stack)


_ORIGINAL_VALIDATE_DIFFERENT_UPDATE: Any = None


def _loaded_resource_map(
    stack_name: str,
    template: dict[str, Any],
    parameters: Any,
    *,
    account_id: str,
    region: str,
    exports: Any,
) -> Any:
    """A ResourceMap with parameters and conditions resolved as creation resolves them; it
    creates nothing (resources are made only when looked up)."""
    from moto.cloudformation.parsing import ResourceMap

    resource_map = ResourceMap(
        "dry-run",
        stack_name,
        dict(parameters or {}),
        {},
        region_name=region,
        account_id=account_id,
        template=template,
        cross_stack_resources=exports,
    )
    resource_map.load()
    return resource_map


def _dry_load(backend: Any, stack_name: str, template: dict[str, Any], parameters: Any) -> None:
    """Resolve parameters and conditions the way creation will, to fail at CreateChangeSet."""
    _loaded_resource_map(
        stack_name,
        template,
        parameters,
        account_id=backend.account_id,
        region=backend.region_name,
        exports=backend.exports,
    )


def _originals() -> dict[str, Any]:
    from moto.cloudformation.models import CloudFormationBackend

    return {
        "create_stack": CloudFormationBackend.create_stack,
        "create_change_set": CloudFormationBackend.create_change_set,
    }


def _patched_backend_methods(original: Mapping[str, Any]) -> dict[str, Any]:
    from moto.cloudformation.exceptions import AlreadyExistsException, ValidationError
    from moto.cloudformation.models import ChangeSet
    from moto.cloudformation.utils import generate_changeset_id, validate_create_change_set

    def create_stack(self: Any, name: str, template: str, parameters: Any, **kwargs: Any) -> Any:
        with _OPERATIONS:
            validate_template(parse_template_body(template), self.region_name)
            if _live_stack(self, name) is not None:
                raise AlreadyExistsException(f"Stack [{name}] already exists")
            stack = original["create_stack"](self, name, template, parameters, **kwargs)
            _register_exports(self, stack)
            return stack

    def create_change_set(
        self: Any,
        stack_name: str,
        change_set_name: str,
        template: str,
        parameters: Any,
        description: str,
        change_set_type: str,
        notification_arns: list[str] | None = None,
        tags: dict[str, str] | None = None,
        role_arn: str | None = None,
    ) -> tuple[str, str]:
        with _OPERATIONS:
            template_dict = parse_template_body(template)
            validate_template(template_dict, self.region_name)
            live = _live_stack(self, stack_name)
            if change_set_type == "UPDATE":
                if live is None:
                    raise ValidationError(stack_name)
                _refuse_update(live)
            else:
                if live is not None and live.status != "REVIEW_IN_PROGRESS":
                    raise AlreadyExistsException(f"Stack [{stack_name}] already exists")
                _dry_load(self, stack_name, template_dict, parameters)
            if change_set_type == "UPDATE" or live is None:
                change_set_id, stack_id = original["create_change_set"](
                    self,
                    stack_name,
                    change_set_name,
                    template,
                    parameters,
                    description,
                    change_set_type,
                    notification_arns,
                    tags,
                    role_arn,
                )
                if live is not None and _unchanged(live, template_dict, parameters):
                    _mark_empty(self.change_sets[change_set_id])
                return change_set_id, stack_id
            # A new change set for a stack still in review: AWS keeps that stack (same id).
            validate_create_change_set(change_set_name)
            change_set_id = generate_changeset_id(
                change_set_name, self.region_name, self.account_id
            )
            change_set = ChangeSet(
                change_set_type=change_set_type,
                change_set_id=change_set_id,
                change_set_name=change_set_name,
                stack=live,
                template=template,
                parameters=parameters,
                description=description,
                notification_arns=notification_arns,
                tags=tags,
                role_arn=role_arn,
            )
            change_set.status = "CREATE_COMPLETE"
            change_set.execution_status = "AVAILABLE"
            self.change_sets[change_set_id] = change_set
            return change_set_id, live.stack_id

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        with _OPERATIONS:
            change_set = self.change_sets.get(change_set_name) or next(
                (
                    cs
                    for cs in self.change_sets.values()
                    if cs.change_set_name == change_set_name
                    and (stack_name is None or stack_name in (cs.stack_name, cs.stack_id))
                ),
                None,
            )
            if change_set is None:
                raise ValidationError(message=f"ChangeSet [{change_set_name}] does not exist")
            if change_set.execution_status != "AVAILABLE":
                raise ValidationError(
                    message=f"ChangeSet [{change_set.change_set_id}] cannot be executed in its "
                    f"current status of [{change_set.execution_status}]"
                )
            stack = self.stacks.get(change_set.stack_id)
            if stack is None:  # its stack was deleted meanwhile, and its change sets with it
                raise ValidationError(message=f"ChangeSet [{change_set_name}] does not exist")
            change_set.execution_status = "EXECUTE_IN_PROGRESS"
            if change_set.change_set_type == "CREATE":
                ok = _execute_create(self, stack, change_set)
            else:
                ok = _execute_update(stack, change_set)
            change_set.execution_status = "EXECUTE_COMPLETE" if ok else "EXECUTE_FAILED"

    def update_stack(
        self: Any,
        name: str,
        template: str,
        role_arn: str | None,
        parameters: list[dict[str, Any]],
        tags: dict[str, str] | None,
    ) -> Any:
        with _OPERATIONS:
            template_dict = parse_template_body(template)
            validate_template(template_dict, self.region_name)
            stack = self.get_stack(name)
            _refuse_update(stack)
            resolved = self._resolve_update_parameters(instance=stack, incoming_params=parameters)
            update = SimpleNamespace(
                template=template, template_dict=template_dict, parameters=resolved
            )
            if _execute_update(stack, update):
                stack.role_arn = role_arn
                if tags is not None:
                    stack.tags = tags
            return stack

    def delete_stack(self: Any, name_or_stack_id: str) -> None:
        with _OPERATIONS:
            stack = _live_stack(self, name_or_stack_id)
            if stack is None:
                return  # as on AWS: deleting a stack that is not there is not an error
            exports = stack.exports  # while they can still be read
            try:
                stack.delete()
            except _DeleteFailed:
                return  # stays listed, DELETE_FAILED, as on AWS
            self.stacks.pop(stack.stack_id, None)
            self.deleted_stacks[stack.stack_id] = stack
            for change_set_id, change_set in list(self.change_sets.items()):
                if change_set.stack_id == stack.stack_id:
                    del self.change_sets[change_set_id]
            for export in exports:
                self.exports.pop(export.name, None)

    return {
        "create_stack": create_stack,
        "create_change_set": create_change_set,
        "execute_change_set": execute_change_set,
        "update_stack": update_stack,
        "delete_stack": delete_stack,
    }


def _execute_create(backend: Any, stack: Any, change_set: Any) -> bool:
    stack.template = change_set.template
    stack._parse_template()
    stack.parameters = dict(change_set.parameters or {})
    stack.cross_stack_resources = backend.exports
    if change_set.tags:
        stack.tags = dict(change_set.tags)
    stack.resource_map = stack._create_resource_map()
    stack.output_map = stack._create_output_map()
    emit(stack, "CREATE_IN_PROGRESS", "User Initiated")
    create_resources(stack)
    _register_exports(backend, stack)
    return stack.status == "CREATE_COMPLETE"


def _update_parameter_problems(stack: Any, change_set: Any) -> list[tuple[str, str]]:
    """The change set's parameters, resolved as the update will resolve them, then checked."""
    try:
        resource_map = _loaded_resource_map(
            stack.name,
            change_set.template_dict,
            change_set.parameters,
            account_id=stack.account_id,
            region=stack.region_name,
            exports=stack.cross_stack_resources,
        )
    except Exception:  # noqa: BLE001 (moto's own update reports what cannot be resolved)
        return []
    return invalid_parameters(
        change_set.template_dict,
        resource_map.resolved_parameters,
        stack.account_id,
        stack.region_name,
    )


def _execute_update(stack: Any, change_set: Any) -> bool:
    """An update as CloudFormation runs it: each added, changed or replaced resource with its
    events; on a failure the update is rolled back (see :class:`_Update`)."""
    stack.status = "UPDATE_IN_PROGRESS"
    emit(stack, "UPDATE_IN_PROGRESS", "User Initiated")
    problems = _update_parameter_problems(stack, change_set)
    if problems:
        _refuse_parameters_on_update(stack, problems)
        return False
    update = _Update(stack, change_set.template_dict)
    try:
        update.new_map = _new_resource_map(stack, change_set.template_dict, change_set.parameters)
        update.forward()
    except _ResourceFailed as failure:
        update.roll_back(failure)
        return False
    except Exception as exc:  # noqa: BLE001 (a template moto cannot load: nothing was touched)
        update.roll_back(_ResourceFailed("", "update", failure_reason(exc, "")))
        return False
    update.finish(change_set.template, change_set.parameters)
    return True


# --- updates -----------------------------------------------------------------------------------

REPLACING_REASON = (
    "Requested update requires the creation of a new physical resource; hence creating one."
)


class _ResourceFailed(Exception):
    def __init__(self, logical_id: str, verb: str, reason: str) -> None:
        super().__init__(reason)
        self.logical_id, self.verb, self.reason = logical_id, verb, reason


def _create_only_properties(resource_type: str) -> frozenset[str]:
    """Top-level properties whose change makes AWS replace the resource (the resource schema's
    createOnlyProperties, as cfn-lint ships them)."""
    return _CREATE_ONLY.setdefault(resource_type, _schema_create_only(resource_type))


_CREATE_ONLY: dict[str, frozenset[str]] = {}


def _schema_create_only(resource_type: str) -> frozenset[str]:
    try:
        from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    except Exception:  # noqa: BLE001 (no schema: nothing known to force a replacement)
        return frozenset()
    return frozenset(
        path.split("/")[2]
        for path in schema.get("createOnlyProperties", [])
        if path.startswith("/properties/")
    )


def _tag_map(properties: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in properties.get("Tags") or [] if isinstance(t, dict)}


def _retag(backend: Any, resource_id: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    before, after = _tag_map(old), _tag_map(new)
    gone = {k: v for k, v in before.items() if k not in after}
    if gone:
        backend.delete_tags([resource_id], gone)
    if after:
        backend.create_tags([resource_id], after)


def _update_group(backend: Any, group: Any, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """A security group's rules and tags change in place (AWS keeps the group id)."""
    if old.get("Tags") != new.get("Tags"):
        _retag(backend, group.id, old, new)
    if old.get("SecurityGroupIngress") == new.get("SecurityGroupIngress"):
        return
    rule_ids = [rule.id for rule in group.ingress_rules]
    if rule_ids:
        backend.revoke_security_group_ingress(
            group.id, None, None, None, [], security_rule_ids=rule_ids, vpc_id=group.vpc_id
        )
    for rule in new.get("SecurityGroupIngress") or []:  # as moto's own create_from_... does
        source = {
            key: rule[prop]
            for key, prop in (("GroupId", "SourceSecurityGroupId"),
                              ("GroupName", "SourceSecurityGroupName"))
            if rule.get(prop)
        }  # fmt: skip
        backend.authorize_security_group_ingress(
            group_name_or_id=group.id,
            ip_protocol=rule["IpProtocol"],
            from_port=rule["FromPort"],
            to_port=rule["ToPort"],
            ip_ranges=rule.get("CidrIp", []),
            source_groups=[source] if source else [],
            vpc_id=group.vpc_id,
        )


def _update_instance(
    backend: Any, instance: Any, old: Mapping[str, Any], new: Mapping[str, Any]
) -> None:
    """An instance's tags and type change in place (AWS stops and starts it: same id)."""
    if old.get("Tags") != new.get("Tags"):
        _retag(backend, instance.id, old, new)
    if old.get("InstanceType") != new.get("InstanceType"):
        backend.modify_instance_attribute(instance.id, "instance_type", new.get("InstanceType"))


# What this local AWS can change without replacing the resource, and which properties it can
# change that way. Any other change replaces the resource (see the report in _update_mode).
IN_PLACE: dict[str, tuple[frozenset[str], Callable[..., None]]] = {
    "AWS::EC2::SecurityGroup": (frozenset({"SecurityGroupIngress", "Tags"}), _update_group),
    "AWS::EC2::Instance": (frozenset({"Tags", "InstanceType"}), _update_instance),
}


def _update_mode(resource_type: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """ "replace" when AWS would replace the resource — or when it would not but this local AWS
    cannot change that property in place (then the physical id changes where AWS keeps it) —
    else "in-place"."""
    changed = {key for key in set(old) | set(new) if old.get(key) != new.get(key)}
    if changed & _create_only_properties(resource_type):
        return "replace"
    handled, _ = IN_PLACE.get(resource_type, (frozenset(), None))
    return "in-place" if changed <= handled else "replace"


def _new_resource_map(stack: Any, template: dict[str, Any], parameters: Any) -> Any:
    """The update's own ResourceMap: the stack's map stays as it was, the rollback's target."""
    from moto.cloudformation.parsing import ResourceMap

    old = stack.resource_map
    tags = {k: v for k, v in old.tags.items() if k != "aws:cloudformation:logical-id"}
    resource_map = ResourceMap(
        stack.stack_id,
        stack.name,
        dict(parameters or {}),
        tags,
        region_name=stack.region_name,
        account_id=stack.account_id,
        template=template,
        cross_stack_resources=stack.cross_stack_resources,
    )
    resource_map.load()
    resource_map._resource_json_map = template["Resources"]
    return resource_map


def _resolved_properties(resource_map: Any, body: Mapping[str, Any]) -> Any:
    from moto.cloudformation.parsing import clean_json

    return clean_json(body.get("Properties") or {}, resource_map)


def _ec2_backend(stack: Any) -> Any:
    from moto.ec2 import models as ec2_models

    return ec2_models.ec2_backends[stack.account_id][stack.region_name]


class _Update:
    """One stack update, step by step, remembering what it did so that a rollback undoes
    exactly that: resources changed in place get their old properties back, resources it
    created (new ones, and the new physical resource of a replacement) are deleted in the
    cleanup, newest first. The stack's own ResourceMap is only swapped for the new one when
    every resource succeeded."""

    def __init__(self, stack: Any, template: dict[str, Any]) -> None:
        self.stack = stack
        self.old_map = stack.resource_map
        self.template = template
        self.new_map: Any = None
        self.old_live = {
            name: self.old_map._parsed_resources[name] for name in _live_resources(stack)
        }
        self.old_props = {
            name: _resolved_properties(self.old_map, self.old_map._resource_json_map[name])
            for name in self.old_live
        }
        self.new_props: dict[str, Any] = {}
        self.made: list[tuple[str, Any]] = []  # (logical id, resource this update created)
        self.replaced: dict[str, Any] = {}  # logical id → its old resource, kept until cleanup
        self.changed_in_place: list[str] = []
        self.created_names: list[str] = []

    # forward ----------------------------------------------------------------------------------

    def forward(self) -> None:
        resources = self.template["Resources"]
        for name, resource in self.old_live.items():
            if name in resources and resources[name]["Type"] == self._old_type(name):
                self.new_map._parsed_resources[name] = resource
        for name in dependency_order(resources):
            body = resources[name]
            condition = body.get("Condition")
            if condition and not self.new_map.lazy_condition_map[condition]:
                self.new_map._parsed_resources.pop(name, None)
                continue
            if name not in self.new_map._parsed_resources:
                self._create(name, body["Type"])
                continue
            new_props = _resolved_properties(self.new_map, body)
            if new_props == self.old_props[name]:
                continue
            self.new_props[name] = new_props
            if _update_mode(body["Type"], self.old_props[name], new_props) == "replace":
                self._replace(name, body["Type"])
            else:
                self._change_in_place(name, body["Type"], new_props)

    def _old_type(self, name: str) -> str:
        return self.old_map._resource_json_map[name]["Type"]

    def _build(self, name: str, resource_type: str) -> Any:
        """Create the resource ``name`` of the new template (moto's lazy map does the work)."""
        groups = (
            _security_group_ids(self.stack) if resource_type.endswith("SecurityGroup") else None
        )
        try:
            with _building():
                resource = self.new_map[name]
            _tag_ec2_resource(self.stack, name, resource, self.new_map)
        except Exception:
            if groups is not None:
                _discard_half_made_group(self.stack, name, self.template["Resources"][name], groups)
            raise
        self.made.append((name, resource))
        return resource

    def _create(self, name: str, resource_type: str) -> None:
        emit(self.stack, "CREATE_IN_PROGRESS", logical_id=name, physical_id="",
             resource_type=resource_type)  # fmt: skip
        try:
            resource = self._build(name, resource_type)
        except Exception as exc:  # noqa: BLE001 (any backend error fails the resource)
            self._fail(name, resource_type, "create", "", exc)
        self.created_names.append(name)
        self._complete(name, resource_type, "CREATE", _physical_id(resource, name))

    def _replace(self, name: str, resource_type: str) -> None:
        old = self.new_map._parsed_resources.pop(name)
        old_physical = _physical_id(old, name)
        emit(self.stack, "UPDATE_IN_PROGRESS", REPLACING_REASON, logical_id=name,
             physical_id=old_physical, resource_type=resource_type)  # fmt: skip
        try:
            resource = self._build(name, resource_type)
        except Exception as exc:  # noqa: BLE001
            self.new_map._parsed_resources[name] = old
            self._fail(name, resource_type, "update", old_physical, exc)
        self.replaced[name] = old
        self._complete(name, resource_type, "UPDATE", _physical_id(resource, name))

    def _change_in_place(self, name: str, resource_type: str, new_props: Any) -> None:
        resource = self.new_map._parsed_resources[name]
        physical = _physical_id(resource, name)
        emit(self.stack, "UPDATE_IN_PROGRESS", logical_id=name, physical_id=physical,
             resource_type=resource_type)  # fmt: skip
        self.changed_in_place.append(name)  # before: a half-made change is rolled back too
        _, apply = IN_PLACE[resource_type]
        try:
            apply(_ec2_backend(self.stack), resource, self.old_props[name], new_props)
        except Exception as exc:  # noqa: BLE001
            self._fail(name, resource_type, "update", physical, exc)
        _pause(resource_type)
        emit(self.stack, "UPDATE_COMPLETE", logical_id=name, physical_id=physical,
             resource_type=resource_type)  # fmt: skip

    def _complete(self, name: str, resource_type: str, verb: str, physical: str) -> None:
        emit(self.stack, f"{verb}_IN_PROGRESS", "Resource creation Initiated", logical_id=name,
             physical_id=physical, resource_type=resource_type)  # fmt: skip
        _pause(resource_type)
        emit(self.stack, f"{verb}_COMPLETE", logical_id=name, physical_id=physical,
             resource_type=resource_type)  # fmt: skip

    def _fail(
        self, name: str, resource_type: str, verb: str, physical: str, exc: Exception
    ) -> NoReturn:
        _pause(resource_type, 0.5)  # AWS takes a moment to call the service and fail
        reason = failure_reason(exc, resource_type)
        emit(self.stack, f"{verb.upper()}_FAILED", reason, logical_id=name,
             physical_id=physical, resource_type=resource_type)  # fmt: skip
        raise _ResourceFailed(name, verb, reason) from exc

    # done -------------------------------------------------------------------------------------

    def finish(self, template_body: str, parameters: Any) -> None:
        stack = self.stack
        resources = self.template["Resources"]
        kept = self.new_map._parsed_resources
        stale = [
            (name, self.replaced.get(name, resource), self.old_map._resource_json_map[name])
            for name, resource in self.old_live.items()
            if name in self.replaced or kept.get(name) is not resource
        ]
        stack.resource_map = self.new_map
        stack.template = template_body
        stack._parse_template()
        stack.parameters = dict(parameters or {})
        stack.output_map = stack._create_output_map()
        stack.lab_created = [n for n in dependency_order(resources) if kept.get(n) is not None]
        all_deleted = True
        if stale:
            stack.status = "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"
            emit(stack, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
            order = dependency_order(self.old_map._resource_json_map)
            for name, resource, body in sorted(
                stale, key=lambda s: order.index(s[0]), reverse=True
            ):
                all_deleted &= _delete_physical(stack, self.old_map, name, resource, body) is None
        stack.status = "UPDATE_COMPLETE"
        stack.status_reason = None
        emit(
            stack,
            "UPDATE_COMPLETE",
            None
            if all_deleted
            else "Update successful. One or more resources could not be deleted.",
        )

    def roll_back(self, failure: _ResourceFailed) -> None:
        stack = self.stack
        stack.status = "UPDATE_ROLLBACK_IN_PROGRESS"
        stack.status_reason = (
            f"The following resource(s) failed to {failure.verb}: [{failure.logical_id}]. "
            if failure.logical_id
            else failure.reason
        )
        emit(stack, "UPDATE_ROLLBACK_IN_PROGRESS", stack.status_reason)
        touched = set(self.replaced) | set(self.changed_in_place)
        if failure.verb == "update" and failure.logical_id:
            touched.add(failure.logical_id)
        for name in dependency_order(self.old_map._resource_json_map):
            if name in touched and not self._put_back(name):
                return
        stack.status = "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"
        emit(stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
        if failure.verb == "create":  # nothing of it exists: AWS only records its end
            _pause(self.template["Resources"][failure.logical_id]["Type"], 0.5)
            emit(stack, "DELETE_COMPLETE", logical_id=failure.logical_id, physical_id="",
                 resource_type=self.template["Resources"][failure.logical_id]["Type"])  # fmt: skip
        for name, resource in reversed(self.made):
            _delete_physical(stack, self.new_map, name, resource, self.template["Resources"][name])
        stack.status = "UPDATE_ROLLBACK_COMPLETE"
        stack.status_reason = None
        emit(stack, "UPDATE_ROLLBACK_COMPLETE")

    def _put_back(self, name: str) -> bool:
        """The resource as it was before the update: its old physical resource (a replacement
        is simply dropped in the cleanup) with its old properties."""
        stack = self.stack
        resource = self.old_live[name]
        resource_type = self._old_type(name)
        physical = _physical_id(resource, name)
        emit(stack, "UPDATE_IN_PROGRESS", logical_id=name, physical_id=physical,
             resource_type=resource_type)  # fmt: skip
        try:
            if name in self.changed_in_place:
                _, apply = IN_PLACE[resource_type]
                apply(_ec2_backend(stack), resource, self.new_props[name], self.old_props[name])
        except Exception as exc:  # noqa: BLE001
            emit(stack, "UPDATE_FAILED", failure_reason(exc, resource_type), logical_id=name,
                 physical_id=physical, resource_type=resource_type)  # fmt: skip
            stack.status = "UPDATE_ROLLBACK_FAILED"
            stack.status_reason = f"The following resource(s) failed to update: [{name}]. "
            emit(stack, "UPDATE_ROLLBACK_FAILED", stack.status_reason)
            return False
        _pause(resource_type)
        emit(stack, "UPDATE_COMPLETE", logical_id=name, physical_id=physical,
             resource_type=resource_type)  # fmt: skip
        return True


# --- API surface -------------------------------------------------------------------------------


def _encode_token(stack_id: str, end: int) -> str:
    raw = json.dumps({"stack": stack_id, "end": end}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str, stack_id: str) -> int:
    from moto.cloudformation.exceptions import ValidationError

    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        if data["stack"] != stack_id:
            raise ValueError("token of another stack")
        return int(data["end"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ValidationError(message="Invalid NextToken") from None


def describe_stack_events_paged(self: Any) -> Any:
    """Replaces the response handler: newest first, 100 a page, NextToken as AWS."""
    from moto.core.responses import ActionResult

    stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
    events = stack.events  # oldest first; only ever appended to, so indexes are stable
    token = self._get_param("NextToken")
    end = _decode_token(token, stack.stack_id) if token else len(events)
    end = max(0, min(end, len(events)))
    start = max(0, end - EVENTS_PAGE_SIZE)
    page = events[start:end][::-1]
    result: dict[str, Any] = {"StackEvents": page}
    if start > 0:
        result["NextToken"] = _encode_token(stack.stack_id, start)
    return ActionResult(result)


def _aws_key_pair_message(self: Any, key: Iterable[str] | str) -> None:
    """AWS's wording ("The key pair 'x' does not exist"), not moto's set repr."""
    from moto.ec2.exceptions import EC2ClientError

    names = [key] if isinstance(key, str) else sorted(str(k) for k in key)
    EC2ClientError.__init__(
        self, "InvalidKeyPair.NotFound", f"The key pair '{', '.join(names)}' does not exist"
    )


def install() -> None:
    """Extend moto in this process (idempotent). Raises MotoIncompatible on a changed moto."""
    global _installed, _ORIGINAL_VALIDATE_DIFFERENT_UPDATE, _ORIGINAL_GETITEM
    global _ORIGINAL_PARSE_SSM_PARAMETER
    if _installed:
        return
    check_moto_internals()
    from moto.cloudformation.models import CloudFormationBackend, Stack
    from moto.cloudformation.parsing import ResourceMap
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.ec2.exceptions import InvalidKeyPairNameError

    for name, method in _patched_backend_methods(_originals()).items():
        setattr(CloudFormationBackend, name, method)
    Stack._add_stack_event = _stack_event
    Stack.create_resources = create_resources
    Stack.delete = delete_stack_resources
    Stack.deletion_time = None
    Stack.status_reason = None
    Stack.outputs = property(_stack_outputs)
    Stack.exports = property(_stack_exports)
    Stack.stack_resources = property(_stack_resources)
    _ORIGINAL_GETITEM = ResourceMap.__getitem__
    ResourceMap.__getitem__ = _resource_lookup
    _ORIGINAL_PARSE_SSM_PARAMETER = ResourceMap.parse_ssm_parameter
    ResourceMap.parse_ssm_parameter = _ssm_parameter_value
    CloudFormationResponse.describe_stack_events = describe_stack_events_paged
    _ORIGINAL_VALIDATE_DIFFERENT_UPDATE = CloudFormationResponse._validate_different_update
    CloudFormationResponse._validate_different_update = _validate_different_update
    InvalidKeyPairNameError.__init__ = _aws_key_pair_message
    _installed = True
