"""Domain profiles: what simulation and analysis checkpoints add to a bundle.

The two kinds of workflow fail in different places, so their bundles lean
different ways. A simulation goes wrong in its numerics: the profile records
the numerical settings (solver, tolerances, time step, grid, RNG strategy)
and a handful of scalar invariants with their pass/fail verdicts
(conservation, stability), and a violated invariant fires a heavy capture.
A data analysis goes wrong in its data: the profile records the transforms
applied since the last checkpoint with row and column counts, the cohort
definition as text, and the schema of each table (shape, columns, dtypes and
a hash of columns+dtypes, so a schema drift shows up as a changed hash).

Everything here is pure and returns small JSON-able dicts for
:func:`headwater.checkpoint.bundle.build_bundle`'s ``profile`` argument.
pandas is never imported: :func:`table_schema` reads ``shape``,
``columns`` and ``dtypes``, which pandas and polars frames both have.
"""

from __future__ import annotations

import math
from typing import Any

from headwater.checkpoint.canonical import hash_obj, to_jsonable


def _plain_number(x: Any) -> Any:
    """Python scalars from numpy-like ones; everything else unchanged."""
    if hasattr(x, "dtype") and getattr(x, "shape", None) == () and hasattr(x, "item"):
        return x.item()
    return x


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _recordable(x: Any) -> Any:
    """Non-finite floats as the strings ``"nan"``, ``"inf"``, ``"-inf"``.

    A check that failed because a value went to NaN must still be recorded;
    canonical JSON has no NaN, so the record names it in words.
    """
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if x != x else ("inf" if x > 0 else "-inf")
    return x


def check_invariant(
    name: str,
    value: Any,
    expected: Any = None,
    tol: float = 0.0,
    rel: bool = False,
) -> dict[str, Any]:
    """Check one invariant and return its record for the bundle.

    Without ``expected`` a number must be finite and anything else truthy
    (so a residual of ``0.0`` passes and ``False`` fails). With a numeric
    ``expected`` the value must lie within ``tol`` of it, absolute by
    default or relative to ``|expected|`` with ``rel=True``; the bound is
    inclusive, allowing for the rounding of the subtraction itself (``1.1``
    is within ``0.1`` of ``1.0``). A non-numeric ``expected`` must be equal.
    NaN is never ok, on either side, and neither is an infinite value or
    expectation: a numeric check cannot vouch for a blown-up quantity.

    Returns ``{"name", "value", "expected", "tol", "ok"}`` (plus ``"rel":
    true`` for a relative tolerance), with non-finite numbers spelled as
    strings so the record always has a JSON form.
    """
    if not _is_number(tol) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"invariant {name!r}: tol must be a finite number >= 0, got {tol!r}")
    value = _plain_number(value)
    expected = _plain_number(expected)
    if expected is None:
        ok = math.isfinite(value) if _is_number(value) else bool(value)
    elif _is_number(value) and _is_number(expected):
        if not (math.isfinite(value) and math.isfinite(expected)):
            ok = False
        else:
            bound = tol * abs(expected) if rel else tol
            diff = abs(value - expected)
            ok = diff <= bound or math.isclose(diff, bound, rel_tol=1e-9, abs_tol=0.0)
    else:
        ok = bool(value == expected)
    record: dict[str, Any] = {
        "name": name,
        "value": _recordable(value),
        "expected": _recordable(expected),
        "tol": tol,
        "ok": ok,
    }
    if rel:
        record["rel"] = True
    return record


def violated(invariants: list[dict[str, Any]]) -> list[str]:
    """Names of the invariants whose record says ``ok`` is false."""
    return [inv["name"] for inv in invariants if not inv.get("ok")]


def simulation_part(numerics: dict[str, Any], invariants: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``profile`` of a simulation checkpoint.

    ``numerics`` holds the settings a rerun needs to match (solver,
    tolerances, time step, grid size, RNG strategy); ``invariants`` are
    :func:`check_invariant` records.
    """
    part: dict[str, Any] = {"kind": "simulation"}
    if numerics:
        part["numerics"] = to_jsonable(numerics, "numerics")
    if invariants:
        part["invariants"] = to_jsonable(list(invariants), "invariants")
    return part


def analysis_part(
    transforms: list[dict[str, Any]],
    cohort: str | None,
    schemas: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The ``profile`` of a data-analysis checkpoint.

    ``transforms`` are :func:`transform_record` entries in the order
    applied, ``cohort`` is the selection as text (a query or criteria),
    and ``schemas`` maps table names to :func:`table_schema` results.
    """
    part: dict[str, Any] = {"kind": "analysis"}
    if transforms:
        part["transforms"] = to_jsonable(list(transforms), "transforms")
    if cohort:
        part["cohort"] = cohort
    if schemas:
        part["schemas"] = to_jsonable(dict(schemas), "schemas")
    return part


def transform_record(
    op: str,
    dataset: str,
    rows_in: int | None = None,
    rows_out: int | None = None,
    columns: int | list[str] | None = None,
) -> dict[str, Any]:
    """One transform (filter, join, feature step) with its row counts.

    ``columns`` is a count or the list of resulting column names; a count
    keeps wide tables from bloating the bundle, since :func:`table_schema`
    already records the names once per table.
    """
    record: dict[str, Any] = {"op": op, "dataset": dataset}
    if rows_in is not None:
        record["rows_in"] = int(rows_in)
    if rows_out is not None:
        record["rows_out"] = int(rows_out)
    if columns is not None:
        record["columns"] = int(columns) if _is_number(_plain_number(columns)) else [str(c) for c in columns]
    return record


def table_schema(df: Any) -> dict[str, Any]:
    """Shape, columns, dtypes and a schema hash of a data frame.

    Works on anything with ``shape``, ``columns`` and ``dtypes`` in column
    order (pandas and polars frames). Column names and dtypes are recorded
    as strings. The hash covers columns and dtypes only, not the shape:
    adding rows does not change a schema, renaming or retyping a column does.
    """
    try:
        shape = [int(n) for n in df.shape]
        columns = [str(c) for c in df.columns]
        dtypes = [str(t) for t in df.dtypes]
    except AttributeError:
        raise TypeError(f"table_schema needs a data frame, got {type(df).__name__}") from None
    pairs = [[c, t] for c, t in zip(columns, dtypes)]
    return {
        "hash": hash_obj(pairs),
        "shape": shape,
        "columns": columns,
        "dtypes": dict(pairs),
    }
