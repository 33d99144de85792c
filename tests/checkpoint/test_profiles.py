from __future__ import annotations

import json

import pytest

from headwater.checkpoint.canonical import canonical_json
from headwater.checkpoint.profiles import (
    analysis_part,
    check_invariant,
    simulation_part,
    table_schema,
    transform_record,
    violated,
)

NAN = float("nan")
INF = float("inf")


@pytest.mark.parametrize(
    ("value", "expected", "tol", "rel", "ok"),
    [
        # no expectation: finite numbers and truthy values pass
        (1.0, None, 0.0, False, True),
        (0.0, None, 0.0, False, True),
        (-3, None, 0.0, False, True),
        (NAN, None, 0.0, False, False),
        (INF, None, 0.0, False, False),
        (-INF, None, 0.0, False, False),
        (True, None, 0.0, False, True),
        (False, None, 0.0, False, False),
        ("", None, 0.0, False, False),
        ("stable", None, 0.0, False, True),
        # absolute tolerance, inclusive edge
        (1.0, 1.0, 0.0, False, True),
        (1.0 + 1e-12, 1.0, 0.0, False, False),
        (1.5, 1.0, 0.5, False, True),
        (0.5, 1.0, 0.5, False, True),
        (1.5000001, 1.0, 0.5, False, False),
        (1.1, 1.0, 0.1, False, True),
        (0.9, 1.0, 0.1, False, True),
        (1.2, 1.0, 0.1, False, False),
        (3, 3, 0.0, False, True),
        # relative tolerance
        (110.0, 100.0, 0.1, True, True),
        (90.0, 100.0, 0.1, True, True),
        (110.5, 100.0, 0.1, True, False),
        (-110.0, -100.0, 0.1, True, True),
        (1e-12, 0.0, 0.1, True, False),
        (0.0, 0.0, 0.1, True, True),
        # NaN and infinities never pass
        (NAN, 1.0, 1e300, False, False),
        (1.0, NAN, 1e300, False, False),
        (NAN, NAN, 1e300, False, False),
        (INF, INF, 0.0, False, False),
        (INF, 1.0, 1e300, False, False),
        # non-numeric expectations compare by equality
        ("converged", "converged", 0.0, False, True),
        ("diverged", "converged", 0.0, False, False),
    ],
)
def test_check_invariant_table(value, expected, tol, rel, ok):
    record = check_invariant("inv", value, expected, tol, rel)
    assert record["ok"] is ok
    assert {"name", "value", "expected", "tol", "ok"} <= record.keys()
    canonical_json(record)  # always has a JSON form, even for NaN


def test_non_finite_values_are_recorded_as_words():
    assert check_invariant("e", NAN)["value"] == "nan"
    assert check_invariant("e", 1.0, -INF, 1.0)["expected"] == "-inf"
    assert check_invariant("e", INF, 1.0)["value"] == "inf"


def test_relative_flag_is_recorded_only_when_set():
    assert check_invariant("m", 1.0, 1.0, 0.1, rel=True)["rel"] is True
    assert "rel" not in check_invariant("m", 1.0, 1.0, 0.1)


def test_numpy_scalars_are_checked_and_recorded_as_numbers():
    np = pytest.importorskip("numpy")
    record = check_invariant("e", np.float64(1.05), np.float32(1.0), 0.1)
    assert record["ok"] is True and type(record["value"]) is float
    assert check_invariant("e", np.float64("nan"))["ok"] is False


@pytest.mark.parametrize("tol", [-0.1, NAN, INF, "0.1", None])
def test_bad_tolerance_is_rejected(tol):
    with pytest.raises(ValueError):
        check_invariant("e", 1.0, 1.0, tol)


def test_simulation_part_and_violated():
    invs = [check_invariant("energy", 1.0, 1.0, 1e-9), check_invariant("mass", NAN)]
    part = simulation_part({"solver": "rk45", "dt": 1e-3, "grid": (64, 64)}, invs)
    assert part == {"kind": "simulation", "numerics": {"solver": "rk45", "dt": 1e-3, "grid": [64, 64]},
                    "invariants": invs}
    assert violated(part["invariants"]) == ["mass"]
    assert simulation_part({}, []) == {"kind": "simulation"}


def test_transform_record_and_analysis_part():
    t1 = transform_record("filter", "dataset:cohort@3", rows_in=1000, rows_out=812)
    t2 = transform_record("join", "dataset:labs@1", columns=["id", "hba1c"])
    t3 = transform_record("select", "d", columns=12)
    assert t1 == {"op": "filter", "dataset": "dataset:cohort@3", "rows_in": 1000, "rows_out": 812}
    assert t2 == {"op": "join", "dataset": "dataset:labs@1", "columns": ["id", "hba1c"]}
    assert t3["columns"] == 12
    schema = {"hash": "0" * 64, "shape": [2, 1], "columns": ["a"], "dtypes": {"a": "int64"}}
    part = analysis_part([t1, t2], "age >= 18 AND consent", {"labs": schema})
    assert part == {"kind": "analysis", "transforms": [t1, t2], "cohort": "age >= 18 AND consent",
                    "schemas": {"labs": schema}}
    assert analysis_part([], None, {}) == {"kind": "analysis"}


def test_table_schema_of_a_pandas_frame():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"id": [1, 2, 3], "score": [0.5, 0.25, 1.0], "site": ["a", "b", "a"]})
    schema = table_schema(df)
    assert schema["shape"] == [3, 3]
    assert schema["columns"] == ["id", "score", "site"]
    assert schema["dtypes"]["id"] == "int64" and schema["dtypes"]["score"] == "float64"
    json.dumps(schema)
    assert table_schema(df.iloc[:1])["hash"] == schema["hash"]  # rows do not change a schema
    retyped = df.astype({"id": "float64"})
    renamed = df.rename(columns={"site": "centre"})
    assert table_schema(retyped)["hash"] != schema["hash"]
    assert table_schema(renamed)["hash"] != schema["hash"]


def test_table_schema_duck_typed_and_rejects_non_frames():
    class Frame:
        shape = (4, 2)
        columns = ["x", "y"]
        dtypes = ["Float64", "Utf8"]

    schema = table_schema(Frame())
    assert schema["dtypes"] == {"x": "Float64", "y": "Utf8"} and schema["shape"] == [4, 2]
    with pytest.raises(TypeError):
        table_schema([1, 2, 3])
