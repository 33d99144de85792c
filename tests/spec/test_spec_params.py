"""Resolving run parameters: CLI strings coerced, defaults filled, errors named."""

from __future__ import annotations

import pathlib

import pytest

from headwater.errors import SpecError
from headwater.spec import Workflow


def workflow() -> Workflow:
    wf = Workflow("w")
    wf.source_file = "/specs/flow.py"
    wf.param("n", "int", default=3)
    wf.param("alpha", "float", default=0.5)
    wf.param("flag", "bool", default=False)
    wf.param("label", "str")
    wf.param("data", "path", default="in.csv")
    return wf


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("n", "3", 3),
        ("n", " -2 ", -2),
        ("n", 7, 7),
        ("alpha", "0.5", 0.5),
        ("alpha", "1e-3", 0.001),
        ("alpha", "3", 3.0),
        ("alpha", 2, 2.0),
        ("alpha", 0.25, 0.25),
        ("flag", "true", True),
        ("flag", "TRUE", True),
        ("flag", "yes", True),
        ("flag", "1", True),
        ("flag", "false", False),
        ("flag", "No", False),
        ("flag", "0", False),
        ("flag", True, True),
        ("label", "3", "3"),
        ("label", "", ""),
        ("data", "out/x.csv", "out/x.csv"),
        ("data", pathlib.Path("out/x.csv"), "out/x.csv"),
    ],
)
def test_values_are_coerced_to_the_declared_type(name, given, expected):
    values = workflow().resolve_params({"label": "l", name: given})
    assert values[name] == expected
    assert type(values[name]) is type(expected)


@pytest.mark.parametrize(
    ("name", "given", "expected_type"),
    [
        ("n", "3.5", "int"),
        ("n", "three", "int"),
        ("n", 3.0, "int"),
        ("n", True, "int"),
        ("alpha", "abc", "float"),
        ("alpha", "nan", "finite float"),
        ("alpha", "inf", "finite float"),
        ("flag", "maybe", "bool"),
        ("flag", 1, "bool"),
        ("label", 3, "str"),
        ("data", 3, "path"),
    ],
)
def test_uncoercible_values_name_the_param_type_and_value(name, given, expected_type):
    with pytest.raises(SpecError) as info:
        workflow().resolve_params({"label": "l", name: given})
    err = info.value
    assert err.field == f"params.{name}"
    assert err.file == "/specs/flow.py"
    assert f"expected {expected_type}" in str(err)
    assert repr(given) in str(err)


def test_defaults_fill_in_and_order_follows_declaration():
    values = workflow().resolve_params({"label": "run-1"})
    assert values == {"n": 3, "alpha": 0.5, "flag": False, "label": "run-1", "data": "in.csv"}
    assert list(values) == ["n", "alpha", "flag", "label", "data"]


def test_missing_required_param():
    with pytest.raises(SpecError) as info:
        workflow().resolve_params({"n": "4"})
    assert info.value.field == "params.label"
    assert "required" in str(info.value) and "(str)" in str(info.value)


def test_unknown_param_suggests_the_closest():
    with pytest.raises(SpecError) as info:
        workflow().resolve_params({"label": "l", "alpah": "1"})
    assert info.value.field == "params.alpah"
    assert "did you mean 'alpha'?" in str(info.value)


def test_resolving_does_not_change_the_spec():
    wf = workflow()
    before = wf.describe()
    wf.resolve_params({"label": "l", "n": "9"})
    assert wf.describe() == before
