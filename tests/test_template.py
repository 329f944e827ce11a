"""Template helpers: builders, short-form YAML out, lossless read back, cfn-lint as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import template as cfn
from helpers.errors import InputError


def _instance_template() -> dict:
    return cfn.template(
        description="test",
        parameters={"ImageId": cfn.ssm_ami_parameter(), "KeyName": cfn.key_pair_parameter("k")},
        resources={
            "Ec2Instance": cfn.ec2_instance(
                image_id=cfn.ref("ImageId"),
                key_name=cfn.ref("KeyName"),
                security_groups=[cfn.ref("InstanceSecurityGroup")],
                tags={"Name": cfn.sub("${AWS::StackName}-instance")},
            ),
            "InstanceSecurityGroup": cfn.ssh_security_group("10.0.0.0/8"),
        },
        outputs={"PublicIp": cfn.output(cfn.get_att("Ec2Instance", "PublicIp"))},
    )


def test_builders_make_cloudformation_shapes() -> None:
    group = cfn.ssh_security_group("203.0.113.0/24")
    assert group["Type"] == "AWS::EC2::SecurityGroup"
    assert group["Properties"]["SecurityGroupIngress"] == [
        {"IpProtocol": "tcp", "FromPort": "22", "ToPort": "22", "CidrIp": "203.0.113.0/24"}
    ]
    ami = cfn.ssm_ami_parameter()
    assert ami["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert ami["Default"] == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
    assert cfn.get_att("A", "B") == {"Fn::GetAtt": ["A", "B"]}
    assert list(_instance_template()) == ["Description", "Parameters", "Resources", "Outputs"]


def test_written_yaml_uses_short_forms_and_reads_back_identical(tmp_path: Path) -> None:
    tpl = _instance_template()
    path = cfn.write_template(tpl, tmp_path / "sub" / "template.yml")
    text = path.read_text()
    assert "- !Ref InstanceSecurityGroup\n" in text
    assert "Value: !GetAtt Ec2Instance.PublicIp\n" in text
    assert "Value: !Sub ${AWS::StackName}-instance\n" in text
    assert "Ref:" not in text and "Fn::" not in text
    assert text.index("Parameters:") < text.index("Resources:") < text.index("Outputs:")
    assert cfn.read_template(path) == tpl


def test_sections_are_written_in_conventional_order(tmp_path: Path) -> None:
    tpl = {"Outputs": {}, "Resources": {"G": cfn.ssh_security_group()}, "Description": "d"}
    text = cfn.write_template(tpl, tmp_path / "t.yml").read_text()
    assert text.index("Description") < text.index("Resources") < text.index("Outputs")


@pytest.mark.parametrize(
    "value",
    ["a: b", "#not a comment", "", "true", "22", "- x", "${A}: ${B}", "it's", "x\ny\n", " pad"],
)
def test_awkward_strings_in_tags_and_values_round_trip(tmp_path: Path, value: str) -> None:
    tpl = {"Resources": {"R": {"Type": "AWS::SNS::Topic", "Properties": {"A": cfn.sub(value)}}}}
    tpl["Outputs"] = {"O": {"Value": value}}
    path = cfn.write_template(tpl, tmp_path / "t.yml")
    assert cfn.read_template(path) == tpl


def test_multi_line_strings_are_literal_blocks(tmp_path: Path) -> None:
    script = "#!/bin/bash\nyum install -y httpd\n"
    tpl = {"Resources": {"R": {"Type": "AWS::EC2::Instance", "Properties": {"UserData": script}}}}
    text = cfn.write_template(tpl, tmp_path / "t.yml").read_text()
    assert "UserData: |\n" in text
    assert cfn.read_template(tmp_path / "t.yml") == tpl


def test_read_template_knows_lines(tmp_path: Path) -> None:
    path = cfn.write_template(_instance_template(), tmp_path / "t.yml")
    lines = path.read_text().splitlines()
    tpl = cfn.read_template(path)
    line = cfn.template_line(tpl, ["Resources", "InstanceSecurityGroup"])
    assert lines[line - 1].strip() == "InstanceSecurityGroup:"
    assert cfn.template_line(_instance_template(), ["Resources"]) is None


def test_lint_clean_template_has_no_errors(tmp_path: Path) -> None:
    path = cfn.write_template(_instance_template(), tmp_path / "t.yml")
    assert [f for f in cfn.lint_template(path) if f.severity == "error"] == []


def test_lint_reports_findings_as_data_with_lines(tmp_path: Path) -> None:
    tpl = _instance_template()
    props = tpl["Resources"]["Ec2Instance"]["Properties"]
    props["ImageID"] = props.pop("ImageId")
    path = cfn.write_template(tpl, tmp_path / "t.yml")
    findings = cfn.lint_template(path)
    typo = [f for f in findings if f.rule == "E3002"]
    assert typo, findings
    assert typo[0].severity == "error"
    assert path.read_text().splitlines()[typo[0].line - 1].strip().startswith("ImageID:")
    assert typo[0].column > 1 and "ImageID" in typo[0].message
    table = cfn.findings_table(findings)
    assert list(table.columns) == ["rule", "severity", "line", "column", "message"]
    assert "E3002" in set(table["rule"])
    assert list(cfn.findings_table([]).columns) == list(table.columns)


def test_lint_reports_unparsable_template_as_e0000(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("Resources:\n  R: [unclosed\n")
    findings = cfn.lint_template(path)
    assert [f.rule for f in findings] == ["E0000"]


# --- bad input ------------------------------------------------------------------------------


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    for call in (cfn.read_template, cfn.lint_template):
        with pytest.raises(InputError) as info:
            call(missing)
        assert info.value.file == str(missing)
        assert str(missing) in str(info.value)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("Resources:\n  R:\n    Type: [AWS::SNS::Topic\n  Q: 1\n")
    with pytest.raises(InputError) as info:
        cfn.read_template(path)
    assert info.value.file == str(path)
    assert info.value.line == 4
    assert "malformed YAML" in str(info.value)


def test_template_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("- Resources\n- Outputs\n")
    with pytest.raises(InputError) as info:
        cfn.read_template(path)
    assert info.value.file == str(path) and info.value.line == 1
    assert "must be a mapping" in str(info.value) and "a list" in str(info.value)
    with pytest.raises(InputError):
        cfn.write_template(["not", "a", "template"], tmp_path / "x.yml")  # type: ignore[arg-type]


def test_unknown_intrinsic_tag_names_line_and_tag(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text(
        "Resources:\n  G:\n    Type: AWS::EC2::SecurityGroup\n"
        "    Properties:\n      GroupDescription: !Subb x-${AWS::StackName}\n"
    )
    with pytest.raises(InputError) as info:
        cfn.read_template(path)
    assert info.value.line == 5
    assert info.value.field == "!Subb"
    assert f"{path}:5: !Subb: unknown intrinsic function tag !Subb" in str(info.value)


def test_known_tags_include_conditions_and_getazs(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text(
        "Conditions:\n  C: !Equals [!Ref AWS::Region, us-east-1]\n"
        "Resources:\n  T:\n    Type: AWS::SNS::Topic\n    Condition: C\n"
        "    Properties:\n      TopicName: !Select [0, !GetAZs '']\n"
    )
    tpl = cfn.read_template(path)
    assert tpl["Conditions"]["C"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}
