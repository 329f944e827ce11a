"""The lab's rules for template.yml: what works in the exercise but should not be copied.

The template comes from :func:`helpers.template.read_template` (cfn-lint's decoder: it knows
CloudFormation's short-form tags and keeps the line of every value). The key-pair rule asks
the configured AWS (the local one through ``AWS_ENDPOINT_URL``) and says so, instead of
guessing, when no AWS answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from helpers.checks.findings import Finding

FILE = "template.yml"
WORLD = ("0.0.0.0/0", "::/0")
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
SSM_AMI_HINT = (
    "take the AMI from an SSM public parameter: a parameter of type "
    "`AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>` with Default "
    "`/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64`, used as `!Ref`"
)
# Resource types -> the path from Properties to where an instance's settings live.
INSTANCE_SETTINGS: dict[str, tuple[str, ...]] = {
    "AWS::EC2::Instance": (),
    "AWS::EC2::LaunchTemplate": ("LaunchTemplateData",),
    "AWS::AutoScaling::LaunchConfiguration": (),
}
KeyPairLookup = Callable[[str], bool]  # name -> exists; raises AwsUnreachable


def node_line(node: Any) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def ssh_open_to_world(template: Mapping[str, Any], file: str = FILE) -> Iterator[Finding]:
    for logical_id, rule in _ingress_rules(template):
        for field in ("CidrIp", "CidrIpv6"):
            cidr, line = _resolve(template, rule.get(field))
            if cidr in WORLD and _covers_port(rule, 22):
                yield Finding(
                    "ssh-open-to-world",
                    "warning",
                    file,
                    line or node_line(rule),
                    f"`{logical_id}` opens SSH (port 22) to the whole internet ({cidr})",
                    "allow only your own address (`CidrIp: <your-ip>/32`), or use SSM Session "
                    "Manager instead of SSH",
                )


def hardcoded_ami(template: Mapping[str, Any], file: str = FILE) -> Iterator[Finding]:
    for logical_id, settings in _instance_settings(template):
        value, line = _resolve(template, settings.get("ImageId"))
        if isinstance(value, str) and AMI_ID.match(value):
            yield Finding(
                "hardcoded-ami",
                "warning",
                file,
                line or node_line(settings),
                f"`{logical_id}` uses the hard-coded AMI `{value}`: AMI ids differ per region "
                "and old ones are withdrawn, so the stack fails to create one day",
                SSM_AMI_HINT,
            )


def key_pair_missing(
    template: Mapping[str, Any], exists: KeyPairLookup, file: str = FILE
) -> Iterator[Finding]:
    """Each literal ``KeyName`` must name a key pair of the configured AWS account and region."""
    from helpers.checks.aws import AwsUnreachable

    checked: dict[str, bool] = {}
    for logical_id, settings in _instance_settings(template):
        name, line = _resolve(template, settings.get("KeyName"))
        if not isinstance(name, str) or not name:
            continue
        if name not in checked:
            try:
                checked[name] = exists(name)
            except AwsUnreachable as exc:
                yield Finding(
                    "key-pair-not-checked",
                    "info",
                    file,
                    line,
                    f"whether the key pair `{name}` exists was not checked: {exc}",
                    "start the local services (`rollback-lab up`) or configure AWS credentials",
                )
                return
        if not checked[name]:
            yield Finding(
                "key-pair-missing",
                "error",
                file,
                line or node_line(settings),
                f"`{logical_id}` uses the key pair `{name}`, which does not exist in the "
                "configured AWS: the instance fails to create and the stack rolls back",
                f"create it (`aws ec2 create-key-pair --key-name {name}`) or use an existing "
                "key pair's name (`aws ec2 describe-key-pairs`)",
            )


def template_findings(
    template: Mapping[str, Any], exists: KeyPairLookup | None, file: str = FILE
) -> list[Finding]:
    findings = [*ssh_open_to_world(template, file), *hardcoded_ami(template, file)]
    if exists is not None:
        findings.extend(key_pair_missing(template, exists, file))
    return findings


# ---- helpers --------------------------------------------------------------------------------


def _resources(template: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    resources = template.get("Resources")
    if not isinstance(resources, Mapping):
        return
    for logical_id, resource in resources.items():
        if isinstance(resource, Mapping) and isinstance(resource.get("Properties"), Mapping):
            yield str(logical_id), str(resource.get("Type")), resource["Properties"]


def _ingress_rules(template: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for logical_id, kind, props in _resources(template):
        if kind == "AWS::EC2::SecurityGroupIngress":
            yield logical_id, props
        elif kind == "AWS::EC2::SecurityGroup":
            rules = props.get("SecurityGroupIngress")
            for rule in rules if isinstance(rules, list) else []:
                if isinstance(rule, Mapping):
                    yield logical_id, rule


def _instance_settings(template: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for logical_id, kind, props in _resources(template):
        if kind not in INSTANCE_SETTINGS:
            continue
        settings: Any = props
        for key in INSTANCE_SETTINGS[kind]:
            settings = settings.get(key) if isinstance(settings, Mapping) else None
        if isinstance(settings, Mapping):
            yield logical_id, settings


def _resolve(template: Mapping[str, Any], value: Any) -> tuple[Any, int | None]:
    """A literal, or the Default of the parameter a ``!Ref`` names; with the line it is on."""
    if isinstance(value, Mapping) and set(value) == {"Ref"}:
        params = template.get("Parameters")
        param = params.get(value["Ref"]) if isinstance(params, Mapping) else None
        if isinstance(param, Mapping) and "Default" in param:
            if str(param.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
                return None, None  # resolved by AWS from SSM: not hard-coded
            return param["Default"], node_line(param["Default"]) or node_line(param)
        return None, None
    if isinstance(value, (str, int)):
        return str(value), node_line(value)
    return None, None


def _covers_port(rule: Mapping[str, Any], port: int) -> bool:
    protocol = str(rule.get("IpProtocol", "")).lower()
    if protocol in ("-1", "all"):
        return True
    if protocol not in ("tcp", "6"):
        return False
    try:
        low = int(str(rule.get("FromPort")))
        high = int(str(rule.get("ToPort")))
    except ValueError:
        return False
    if low == -1 and high == -1:
        return True
    return low <= port <= high
