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
        record = {"ts": round(ts, 6), "run": run, "task": task, "attempt": attempt, "agent": agent, "event": event}
        if data:
            for key, value in data.items():
                record.setdefault(key, value)
        line = _encode(record) + "\n"
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
