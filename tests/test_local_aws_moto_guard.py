"""The CloudFormation extension refuses a moto it was not written against, loudly."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from helpers.services import cfn_fidelity
from helpers.services.cfn_fidelity import MotoIncompatible, check_moto_internals

REPO = Path(__file__).resolve().parents[1]


def test_pinned_moto_is_the_one_the_extension_targets() -> None:
    pins = re.findall(r'"moto(?:\[[^\]]*\])?([^"]*)"', (REPO / "pyproject.toml").read_text())
    assert pins == [f"=={cfn_fidelity.SUPPORTED_MOTO_VERSION}"]
    check_moto_internals()  # the installed moto passes


def test_another_moto_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real_version = metadata.version
    monkeypatch.setattr(
        metadata, "version", lambda name: "5.3.0" if name == "moto" else real_version(name)
    )
    with pytest.raises(MotoIncompatible, match=r"moto 5\.3\.0 is installed"):
        check_moto_internals()


def test_a_missing_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.cloudformation.parsing import ResourceMap

    monkeypatch.delattr(ResourceMap, "_delete_resource")
    with pytest.raises(MotoIncompatible, match=r"ResourceMap\._delete_resource is missing"):
        check_moto_internals()


def test_dependency_order_follows_refs_getatt_sub_and_depends_on() -> None:
    resources = {
        "Instance": {"Type": "T", "Properties": {"Groups": [{"Ref": "Group"}]}},
        "Record": {"Type": "T", "Properties": {"Ip": {"Fn::GetAtt": ["Instance", "PublicIp"]}}},
        "Note": {"Type": "T", "Properties": {"Text": {"Fn::Sub": "${Record} ${!Literal}"}}},
        "Group": {"Type": "T", "Properties": {}},
        "Last": {"Type": "T", "DependsOn": "Note"},
    }
    assert cfn_fidelity.dependency_order(resources) == [
        "Group",
        "Instance",
        "Record",
        "Note",
        "Last",
    ]


def test_event_clock_never_repeats_or_goes_back() -> None:
    clock = cfn_fidelity.EventClock()
    moments = [clock.now() for _ in range(200)]
    assert all(a < b for a, b in zip(moments, moments[1:], strict=False))
