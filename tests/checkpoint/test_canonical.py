from __future__ import annotations

import enum

import pytest

from headwater.checkpoint.canonical import NotJSON, canonical_json, to_jsonable


class Colour(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def test_plain_values_are_deep_copied():
    value = {"a": [1, 2.5, {"b": None}], "c": (True, "x")}
    out = to_jsonable(value)
    assert out == {"a": [1, 2.5, {"b": None}], "c": [True, "x"]}
    value["a"][2]["b"] = 1
    assert out["a"][2]["b"] is None


def test_subclasses_become_plain_values_with_their_json_form():
    out = to_jsonable({"colour": Colour.RED, "level": Level.HIGH})
    assert type(out["colour"]) is str and type(out["level"]) is int
    assert canonical_json(out) == canonical_json({"colour": Colour.RED, "level": Level.HIGH})


def test_numpy_values_become_python_values():
    np = pytest.importorskip("numpy")
    out = to_jsonable({"x": np.float32(0.5), "n": np.int64(3), "v": np.arange(3), "ok": np.bool_(True)})
    assert out == {"x": 0.5, "n": 3, "v": [0, 1, 2], "ok": True}
    assert [type(out[k]) for k in ("x", "n", "ok")] == [float, int, bool]


@pytest.mark.parametrize(
    ("value", "path", "problem"),
    [
        ({"a": {"b": [1, float("nan")]}}, "a.b[1]", "finite"),
        ({"a": [{"c": float("-inf")}]}, "a[0].c", "finite"),
        ({"a": {1: "x"}}, "a", "key 1"),
        ({"a": {"s": {1, 2}}}, "a.s", "set"),
        ({"a": object()}, "a", "object"),
    ],
)
def test_offending_value_is_named_by_path(value, path, problem):
    with pytest.raises(NotJSON) as info:
        to_jsonable(value)
    assert info.value.path == path and problem in info.value.problem


def test_root_path_prefixes_the_reported_path():
    with pytest.raises(NotJSON) as info:
        to_jsonable({"alpha": float("nan")}, "manifest.params")
    assert info.value.path == "manifest.params.alpha"
