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
    dict it passed in.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
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
            out[key] = to_jsonable(value, f"{path}.{key}" if path else key)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "dtype"):
        if getattr(obj, "shape", None) == () and hasattr(obj, "item"):
            return to_jsonable(obj.item(), path)
        if hasattr(obj, "tolist"):
            return to_jsonable(obj.tolist(), path)
    raise NotJSON(path, f"a {type(obj).__name__} has no JSON form")
