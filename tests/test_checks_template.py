"""`rollback-lab check` on template.yml: cfn-lint's findings and the lab's template rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from helpers import exercise
from helpers import template as cfn
from helpers.checks import check_template
from helpers.checks.aws import AwsUnreachable
from helpers.checks.template_rules import template_findings

SG_ONLY = textwrap.dedent(
    """\
    Resources:
      InstanceSecurityGroup:
        Type: AWS::EC2::SecurityGroup
        Properties:
          GroupDescription: Enable SSH access via port 22
          SecurityGroupIngress:
            - IpProtocol: tcp
              FromPort: '22'
              ToPort: '22'
              CidrIp: 203.0.113.7/32
    """
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.yml"
    path.write_text(text, encoding="utf-8")
    return path


def rules(tmp_path: Path, text: str, exists=None) -> list:
    return template_findings(cfn.read_template(write(tmp_path, text)), exists)


def line_of(text: str, snippet: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if snippet in line)


def test_the_exercise_template_opens_ssh_and_hard_codes_its_ami(tmp_path):
    path = cfn.write_template(exercise.example_template(), tmp_path / "template.yml")
    text = path.read_text()
    findings = check_template(path)  # no key-pair lookup: AWS not asked
    by_rule = {f.rule: f for f in findings}
    assert set(by_rule) == {"ssh-open-to-world", "hardcoded-ami"}
    assert by_rule["ssh-open-to-world"].line == line_of(text, "0.0.0.0/0")
    assert by_rule["hardcoded-ami"].line == line_of(text, exercise.EXAMPLE_AMI)
    assert "AWS::SSM::Parameter::Value" in by_rule["hardcoded-ami"].hint
    assert all(f.severity == "warning" for f in findings)
    assert findings.exit_code() == 0


def test_the_lab_template_takes_its_ami_from_ssm(tmp_path):
    path = cfn.write_template(exercise.lab_template(ssh_cidr="203.0.113.7/32"), tmp_path / "t.yml")
    assert check_template(path) == []


def test_ssh_from_one_address_is_fine(tmp_path):
    assert rules(tmp_path, SG_ONLY) == []


@pytest.mark.parametrize(
    ("rule", "flagged"),
    [
        ("IpProtocol: tcp\n          FromPort: '22'\n          ToPort: '22'", True),
        ("IpProtocol: tcp\n          FromPort: 0\n          ToPort: 1024", True),
        ("IpProtocol: '-1'", True),
        ("IpProtocol: tcp\n          FromPort: '80'\n          ToPort: '80'", False),
        ("IpProtocol: udp\n          FromPort: '22'\n          ToPort: '22'", False),
    ],
)
def test_ports_and_protocols_open_to_the_world(tmp_path, rule, flagged):
    text = SG_ONLY.replace(
        "IpProtocol: tcp\n          FromPort: '22'\n          ToPort: '22'", rule
    ).replace("203.0.113.7/32", "0.0.0.0/0")
    found = [f.rule for f in rules(tmp_path, text)]
    assert found == (["ssh-open-to-world"] if flagged else [])


def test_ssh_open_through_a_parameter_default_or_an_ingress_resource(tmp_path):
    text = textwrap.dedent(
        """\
        Parameters:
          SshCidr:
            Type: String
            Default: 0.0.0.0/0
        Resources:
          Group:
            Type: AWS::EC2::SecurityGroup
            Properties:
              GroupDescription: ssh
          Ingress:
            Type: AWS::EC2::SecurityGroupIngress
            Properties:
              GroupId: !GetAtt Group.GroupId
              IpProtocol: tcp
              FromPort: 22
              ToPort: 22
              CidrIpv6: ::/0
          Ingress4:
            Type: AWS::EC2::SecurityGroupIngress
            Properties:
              GroupId: !GetAtt Group.GroupId
              IpProtocol: tcp
              FromPort: 22
              ToPort: 22
              CidrIp: !Ref SshCidr
        """
    )
    found = rules(tmp_path, text)
    assert [(f.rule, f.line) for f in found] == [
        ("ssh-open-to-world", line_of(text, "::/0")),
        ("ssh-open-to-world", line_of(text, "Default: 0.0.0.0/0")),
    ]


def test_hard_coded_ami_through_a_string_parameter(tmp_path):
    text = textwrap.dedent(
        """\
        Parameters:
          Ami:
            Type: AWS::EC2::Image::Id
            Default: ami-0abcdef1234567890
        Resources:
          Instance:
            Type: AWS::EC2::Instance
            Properties:
              ImageId: !Ref Ami
        """
    )
    (finding,) = rules(tmp_path, text)
    assert finding.rule == "hardcoded-ami"
    assert finding.line == line_of(text, "ami-0abcdef1234567890")


def test_key_pair_rule_reports_a_missing_key_and_asks_once_per_name(tmp_path):
    asked: list[str] = []

    def exists(name: str) -> bool:
        asked.append(name)
        return name == "present"

    text = textwrap.dedent(
        """\
        Resources:
          A:
            Type: AWS::EC2::Instance
            Properties:
              KeyName: udacity
          B:
            Type: AWS::EC2::Instance
            Properties:
              KeyName: udacity
          C:
            Type: AWS::EC2::Instance
            Properties:
              KeyName: present
        """
    )
    found = rules(tmp_path, text, exists)
    assert [(f.rule, f.severity, f.line) for f in found] == [
        ("key-pair-missing", "error", 5),
        ("key-pair-missing", "error", 9),
    ]
    assert asked == ["udacity", "present"]


def test_key_pair_rule_notes_that_it_could_not_ask(tmp_path):
    def unreachable(name: str) -> bool:
        raise AwsUnreachable("cannot connect to http://127.0.0.1:1/")

    path = cfn.write_template(exercise.example_template(), tmp_path / "template.yml")
    found = check_template(path, unreachable)
    note = next(f for f in found if f.rule == "key-pair-not-checked")
    assert note.severity == "info"
    assert "udacity" in note.message and "127.0.0.1:1" in note.message
    assert found.exit_code() == 0


def test_cfn_lint_findings_are_findings(tmp_path):
    text = SG_ONLY.replace("GroupDescription:", "GroupDescriptionn:")
    findings = check_template(write(tmp_path, text))
    lint = [f for f in findings if f.rule.startswith("cfn-lint:")]
    assert lint and lint[0].severity == "error"
    assert {f.line for f in lint} & {line_of(text, "Properties:"), line_of(text, "Descriptionn")}
    assert findings.exit_code() == 1


def test_unreadable_template_is_a_finding_naming_its_line(tmp_path):
    findings = check_template(write(tmp_path, "Resources:\n  A: [\n"))
    (finding,) = findings
    assert finding.rule == "unreadable" and finding.line is not None
