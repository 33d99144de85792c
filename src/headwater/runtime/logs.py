"""Structured run logs: one JSON object per line, per coordinator event.

Every line carries ``ts`` (unix seconds), ``run``, ``task``, ``attempt``,
``agent`` and ``event`` (``null`` where they do not apply) plus the event's
own fields. Lines go to ``<workspace>/logs/<run>.jsonl`` and, when asked, to
standard error, so a run can be followed with ``tail -f`` or shipped to any
log system. The file is appended to (a resumed run continues its log) and
flushed with every store batch, so it is never far behind the store.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any


_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode
_text = json.encoder.encode_basestring_ascii
_BASE = frozenset({"ts", "run", "task", "attempt", "agent", "event"})


def _field(value: Any) -> str | None:
    kind = type(value)
    if kind is str:
        return _text(value)
    if value is None:
        return "null"
    if kind is int:
        return str(value)
    return None


def _line(ts: float, event: str, run: str, task: str | None, attempt: int | None, agent: str | None,
          data: dict[str, Any] | None) -> str:
    """One event as JSON: the common fields spliced as text (a coordinator writes
    several lines per task), the event's own fields through the encoder; any
    other shape goes through the encoder whole, with the same result."""
    parts = (_field(run), _field(task), _field(attempt), _field(agent), _field(event))
    if None not in parts and ts - ts == 0 and (not data or _BASE.isdisjoint(data)):
        head = '{"ts":%r,"run":%s,"task":%s,"attempt":%s,"agent":%s,"event":%s' % (round(ts, 6), *parts)
        return head + "," + _encode(data)[1:] if data else head + "}"
    record = {"ts": round(ts, 6), "run": run, "task": task, "attempt": attempt, "agent": agent, "event": event}
    for key, value in (data or {}).items():
        record.setdefault(key, value)
    return _encode(record)


class RunLog:
    """Writes JSON lines to a file, to standard error, to both, or nowhere."""

    def __init__(self, path: Path | None, stderr: bool = False) -> None:
        self.path = path
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._stderr = stderr
        self.lines = 0

    def write(self, ts: float, event: str, run: str, task: str | None = None, attempt: int | None = None,
              agent: str | None = None, data: dict[str, Any] | None = None) -> None:
        """Write one event as a JSON line."""
        if self._file is None and not self._stderr:
            return
        line = _line(ts, event, run, task, attempt, agent, data) + "\n"
        if self._file is not None:
            self._file.write(line)
        if self._stderr:
            sys.stderr.write(line)
        self.lines += 1

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
        if self._stderr:
            sys.stderr.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def log_path(root: Path, run_id: str) -> Path:
    """Where a run's JSON lines go inside a workspace."""
    return root / "logs" / f"{run_id}.jsonl"
