"""Canonical JSON and hashing: the byte form every hash and signature is over.

Canonical JSON here is UTF-8, keys sorted, no insignificant whitespace, and no
NaN or infinity (they have no JSON form and would make hashes ambiguous).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    """Return the canonical byte form of a JSON-able value."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def hash_obj(obj: Any) -> str:
    """sha256 of an object's canonical JSON."""
    return sha256_hex(canonical_json(obj))


class NotJSON(ValueError):
    """A value has no canonical JSON form. ``path`` names it, dotted."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path or '<value>'}: {problem}")


class _Unplain(Exception):
    """Raised by the fast walk; the careful walk then finds and names the value."""


def _plain(obj: Any) -> Any:
    kind = type(obj)
    if kind is str or kind is int or kind is bool or obj is None:
        return obj
    if kind is float:
        if obj - obj != 0.0:  # NaN and the infinities
            raise _Unplain
        return obj
    if kind is dict:
        out = {}
        for key, value in obj.items():
            if type(key) is not str:
                raise _Unplain
            out[key] = _plain(value)
        return out
    if kind is list or kind is tuple:
        return [_plain(v) for v in obj]
    raise _Unplain


def _careful(obj: Any, path: str) -> Any:
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise NotJSON(path, f"{obj!r} is not a finite number")
        return float(obj)
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise NotJSON(path, f"key {key!r} is not a string")
            out[str.__str__(key)] = _careful(value, f"{path}.{key}" if path else key)
        return out
    if isinstance(obj, (list, tuple)):
        return [_careful(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "dtype"):
        if getattr(obj, "shape", None) == () and hasattr(obj, "item"):
            return _careful(obj.item(), path)
        if hasattr(obj, "tolist"):
            return _careful(obj.tolist(), path)
    raise NotJSON(path, f"a {type(obj).__name__} has no JSON form")


def to_jsonable(obj: Any, path: str = "") -> Any:
    """Return a plain deep copy of ``obj`` that :func:`canonical_json` accepts.

    Tuples become lists and numpy-like scalars and arrays (anything with a
    ``dtype``) become Python numbers and lists, so a task may record
    ``np.float64`` parameters or claim values without thinking about it.
    Everything else must already be JSON: ``None``, bools, ints, finite
    floats, strings, lists, and dicts with string keys. Anything else raises
    :class:`NotJSON` carrying the dotted ``path`` of the offending value, so a
    caller can name the field at fault.

    The copy also detaches the result from the caller's mutable objects: a
    bundle built from it keeps its hash even if the caller later mutates the
    dict it passed in. Plain values take a fast walk that tracks no path;
    only when it meets something unusual does a careful walk run, which
    converts subclasses and numpy values and names any offending field.
    """
    try:
        return _plain(obj)
    except _Unplain:
        return _careful(obj, path)
