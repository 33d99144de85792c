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
