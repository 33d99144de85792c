"""Recording checkpoints fast: bundle assembly without re-validation, and a store writer thread.

:func:`assemble_bundle` produces exactly the bytes that
:func:`headwater.checkpoint.bundle.build_bundle` followed by
``bundle_bytes`` produces (the tests hold the two to that), minus the work
that only matters for bundles of unknown origin: the coordinator builds every
part itself, so the parts it normalised once per run (environment, params,
code) are trusted, only what task code reported is walked for JSON-safety,
and the finished bundle is not validated again. Anything that is not plain
JSON falls back to ``build_bundle``, which normalises what it can (numpy
scalars) and names the field at fault for what it cannot.

:class:`StoreWriter` moves the store writes off the coordinator's loop: it
takes batches (checkpoints with task states and events, then status updates)
and writes them in order, one transaction per batch, on its own thread, so
SQLite's fsync and most of the driver's work overlap with scheduling. The
queue is bounded, so a slow store slows the run down instead of growing
memory, and :meth:`StoreWriter.drain` waits until everything handed over is
durable (the coordinator calls it before the run ends). A crash loses at
most the batches not yet written, which ``resume`` runs again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from headwater.checkpoint import bundle as B
from headwater.checkpoint.canonical import NotJSON, canonical_json, to_jsonable
from headwater.store import Store
from headwater.store.records import CheckpointRecord, EventRecord, TaskRecord


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (dict, list, tuple, str)) and len(value) == 0)


def _compact(part: dict, keep: tuple[str, ...] = ()) -> dict:
    return {k: v for k, v in part.items() if k in keep or not _empty(v)}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sorted_pairs(items: Sequence[Sequence[Any]]) -> list[list[Any]]:
    out = sorted(list(x) for x in items)
    return [x for i, x in enumerate(out) if i == 0 or x != out[i - 1]]


def assemble_bundle(
    *,
    run: str,
    workflow: str,
    task: str,
    attempt: int,
    status: str,
    parents: list[str],
    prev: str | None,
    manifest: dict,
    spec_diff: dict,
    env: dict,
    intent: dict,
    artifacts: list[dict],
    profile: dict | None = None,
    heavy: dict | None = None,
    started: float,
    finished: float,
    cache_hit: str | None = None,
    error: str | None = None,
) -> bytes:
    """The canonical bytes of the bundle ``build_bundle`` would build from these arguments.

    Trusted (already plain JSON, as the coordinator prepares them once per
    run): ``env``, ``spec_diff``, ``manifest["params"]`` and
    ``manifest["code"]``. Everything else is checked by a fast walk; when it
    is not plain, or the times are not finite, the arguments go through
    ``build_bundle`` instead (which normalises or raises
    :class:`~headwater.errors.IntegrityError` naming the field).
    """
    args = locals().copy()
    try:
        m = _compact(manifest, keep=("inputs", "outputs", "code", "seed", "params"))
        m["code"] = _compact(m["code"], keep=("task_hash",))
        if "upstream" in m:
            m["upstream"] = sorted(set(m["upstream"]))
        if "speculative" in m:
            m["speculative"] = _sorted_pairs(m["speculative"])
        plain_manifest = {k: (v if k in ("params", "code") else to_jsonable(v)) for k, v in m.items()}
        it = _compact(intent)
        if "claims" in it:
            it["claims"] = [_compact(c, keep=("key", "value")) for c in it["claims"]]
        if finished - started < 0 or finished != finished or started != started:
            raise ValueError("times")
        bundle: dict[str, Any] = {
            "v": B.VERSION,
            "run": run,
            "workflow": workflow,
            "task": task,
            "attempt": attempt,
            "status": status,
            "parents": sorted(set(parents)),
            "prev": prev,
            "manifest": plain_manifest,
            "spec_diff": spec_diff,
            "env": env,
            "intent": to_jsonable(it),
            "artifacts": [_compact(a, keep=("name", "sha256")) for a in artifacts],
            "time": {"start": _iso(started), "end": _iso(finished), "secs": round(finished - started, 3)},
        }
        if profile:
            bundle["profile"] = to_jsonable(_compact(profile, keep=("kind",)))
        if heavy:
            bundle["heavy"] = to_jsonable(_compact(heavy, keep=("triggers",)))
        if cache_hit:
            bundle["cache"] = {"hit": cache_hit}
        if error:
            bundle["error"] = error
        return canonical_json(bundle)
    except (NotJSON, TypeError, ValueError, OverflowError, OSError):
        return B.bundle_bytes(B.build_bundle(**args))


class StoreWriter:
    """Writes batches to the store, in order, on one background thread (see the module docstring)."""

    def __init__(self, store: Store, max_batches: int = 4) -> None:
        self.store = store
        self.lock = threading.Lock()
        """Held while a batch is written (agents are never forked while it is held)."""
        self._queue: queue.Queue = queue.Queue(maxsize=max_batches)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.batches = 0

    def submit(self, ckpts: list[CheckpointRecord], tasks: list[TaskRecord], events: list[EventRecord],
               status: list[tuple[str, str, str | None]]) -> None:
        """Queue one batch; the records must not be changed afterwards."""
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="headwater-store-writer", daemon=True)
            self._thread.start()
        self._queue.put((ckpts, tasks, events, status))

    def drain(self) -> None:
        """Wait until every batch handed over is written; re-raise a write error."""
        if self._thread is not None:
            self._queue.join()
        self._raise()

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    with self.lock:
                        self._write(*item)
                    self.batches += 1
            except BaseException as exc:  # handed to the coordinator's thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _write(self, ckpts, tasks, events, status) -> None:
        if ckpts or tasks or events:
            self.store.add_checkpoints(ckpts, tasks, events)
        by: dict[tuple[str, str | None], list[str]] = {}
        for cid, st, reason in status:
            by.setdefault((st, reason), []).append(cid)
        for (st, reason), ids in by.items():
            self.store.set_checkpoint_status(ids, st, reason)
