"""How ``ctx.save`` turns Python objects into artifact bytes, and back.

Every encoding is byte-deterministic for equal values, because reproduction
compares output hashes: numpy arrays as ``.npy`` (no pickle), pandas
DataFrames as CSV with ``\\n`` line ends (their shape, columns and dtypes go
into the analysis profile), JSON-able values as canonical JSON, text as UTF-8,
bytes as they are, and a :class:`pathlib.Path` as the file's own bytes.
"""

from __future__ import annotations

import io
import json
import mimetypes
from pathlib import Path
from typing import Any

from headwater.checkpoint.canonical import canonical_json

NPY = "application/x-npy"
CSV = "text/csv"
JSON = "application/json"
TEXT = "text/plain"
BINARY = "application/octet-stream"


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "to_csv") and hasattr(obj, "dtypes")


def _is_ndarray(obj: Any) -> bool:
    return type(obj).__name__ == "ndarray" and hasattr(obj, "dtype")


def encode(obj: Any) -> tuple[bytes, str]:
    """Return ``(data, media_type)`` for an object given to ``ctx.save``."""
    if isinstance(obj, Path):
        media = mimetypes.guess_type(obj.name)[0] or BINARY
        return obj.read_bytes(), media
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj), BINARY
    if isinstance(obj, str):
        return obj.encode("utf-8"), TEXT
    if _is_ndarray(obj):
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, obj, allow_pickle=False)
        return buf.getvalue(), NPY
    if _is_dataframe(obj):
        return obj.to_csv(index=False, lineterminator="\n").encode("utf-8"), CSV
    try:
        return canonical_json(_plain(obj)), JSON
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"ctx.save cannot store a {type(obj).__name__}: save a numpy array, a pandas "
            "DataFrame, a JSON-able value, str, bytes, or a pathlib.Path to a file"
        ) from exc


def _plain(obj: Any) -> Any:
    """Turn numpy scalars and tuples into JSON-able plain values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and type(obj).__module__ == "numpy":
        return obj.item()
    return obj


def decode(data: bytes, media_type: str) -> Any:
    """Inverse of :func:`encode` for the media types it produces."""
    if media_type == NPY:
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if media_type == CSV:
        import pandas as pd

        return pd.read_csv(io.BytesIO(data))
    if media_type == JSON:
        return json.loads(data)
    if media_type.startswith("text/"):
        return data.decode("utf-8")
    return data


def plain(obj: Any) -> Any:
    """Public form of the JSON-able conversion used for claims and settings."""
    return _plain(obj)
