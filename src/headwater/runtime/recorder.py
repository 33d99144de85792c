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

:class:`StoreWriter` moves signing and the store writes off the coordinator's
loop: it takes batches (checkpoints with task states and events, then status
updates), signs the checkpoints and writes each batch in one transaction, in
order, in a child process, so Ed25519, SQLite's fsync and the driver's work
overlap with scheduling; blobs for the artifact store (heavy captures) go
the same way, ahead of the batches that name them. :meth:`StoreWriter.drain`
waits until everything handed over is durable (the coordinator calls it
before the run ends). A crash loses at most the batches not yet written,
which ``resume`` runs again.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import queue
import signal
import threading
from collections.abc import Sequence
from typing import Any

from headwater.checkpoint import bundle as B
from headwater.checkpoint.bundle import _compact, _empty, _iso
from headwater.checkpoint.canonical import NotJSON, to_jsonable
from headwater.checkpoint.signing import SigningKey
from headwater.errors import StoreError
from headwater.store import Store
from headwater.store.records import CheckpointRecord, EventRecord, TaskRecord


def _sorted_pairs(items: Sequence[Sequence[Any]]) -> list[list[Any]]:
    out = sorted(list(x) for x in items)
    return [x for i, x in enumerate(out) if i == 0 or x != out[i - 1]]


_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
"""The encoder behind :func:`canonical_json`, built once."""


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

    Trusted (already plain JSON, normalised and compacted, as the coordinator
    prepares them once per run): ``env``, ``spec_diff``,
    ``manifest["params"]`` and ``manifest["code"]``. Everything else is
    checked by a fast walk; when it is not plain, or the times are not
    finite, the arguments go through ``build_bundle`` instead (which
    normalises or raises :class:`~headwater.errors.IntegrityError` naming the
    field).
    """
    args = locals().copy()
    try:
        if finished - started < 0 or finished != finished or started != started:
            raise ValueError("times")
        m = {}
        for key, value in manifest.items():
            if key in ("params", "code"):
                m[key] = value
            elif key in ("inputs", "outputs", "seed") or not _empty(value):
                if key == "upstream":
                    value = sorted(set(value))
                elif key == "speculative":
                    value = _sorted_pairs(value)
                m[key] = to_jsonable(value)
        it = _compact(intent)
        if "claims" in it:
            it["claims"] = [_compact(c, keep=("key", "value")) for c in it["claims"]]
        bundle: dict[str, Any] = {
            "v": B.VERSION,
            "run": run,
            "workflow": workflow,
            "task": task,
            "attempt": attempt,
            "status": status,
            "parents": sorted(set(parents)),
            "prev": prev,
            "manifest": m,
            "spec_diff": spec_diff,
            "env": env,
            "intent": to_jsonable(it),
            "artifacts": to_jsonable([_compact(a, keep=("name", "sha256")) for a in artifacts]),
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
        return _encode(bundle).encode("utf-8")
    except (NotJSON, TypeError, ValueError, OverflowError, OSError):
        return B.bundle_bytes(B.build_bundle(**args))


class StoreWriter:
    """Signs and writes batches in order, off the coordinator's thread (see the module docstring).

    By default the work happens in a child process forked when the writer is
    created (so before any thread exists in the coordinator): Ed25519 signing
    and the database driver's per-row work hold Python's GIL, and in a thread
    they would compete with the scheduling loop for it. The child opens its
    own connection to the same store and signs with the same key; it is
    killed with its parent, so a crash loses at most the batches not yet
    written. An in-memory SQLite store cannot be shared with a child, so
    there (or with ``process=False``) a thread does the work instead.

    Checkpoints handed over with an empty ``signature`` are signed before
    they are written. At most ``max_batches`` batches are in flight; past
    that :meth:`submit` waits, so a slow store slows the run down instead of
    growing memory.
    """

    def __init__(self, store: Store, key: SigningKey, *, max_batches: int = 4, process: bool = True) -> None:
        self.store = store
        self.key = key
        self.max_batches = max_batches
        self.batches = 0
        self._acked = 0
        self._error: BaseException | None = None
        memory = store.dialect == "sqlite" and (":memory:" in store.url or store.url.rstrip("/") in ("sqlite:", "sqlite+pysqlite:"))
        self._proc = None
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue | None = None
        if process and not memory:
            ctx = mp.get_context("fork")
            self._conn, child = ctx.Pipe(duplex=True)
            self._proc = ctx.Process(target=_writer_main, args=(child, store.url, str(store.root), key),
                                     name="headwater-store-writer", daemon=True)
            self._proc.start()
            child.close()
        else:
            self._queue = queue.Queue(maxsize=max_batches)
            self._thread = threading.Thread(target=self._work, name="headwater-store-writer", daemon=True)
            self._thread.start()

    def submit(self, ckpts: list[CheckpointRecord], tasks: list[TaskRecord], events: list[EventRecord],
               status: list[tuple[str, str, str | None]]) -> None:
        """Queue one batch; the records must not be changed afterwards (but for their signature)."""
        self._send_item((ckpts, tasks, events, status))

    def put_blobs(self, blobs: list[tuple[bytes, str, str]]) -> None:
        """Queue ``(data, media type, name)`` for the artifact store, ahead of
        the batches submitted after it (so they are durable before any
        checkpoint that names them by hash is). The heavy captures of a
        triggered checkpoint travel this way: their fsyncs then happen beside
        the coordinator's loop instead of in it."""
        self._send_item(("blobs", blobs))

    def _send_item(self, item: Any) -> None:
        self._raise()
        self.batches += 1
        if self._queue is not None:
            self._queue.put(item)
            return
        self._acks(block=False)
        while self.batches - 1 - self._acked >= self.max_batches:
            self._acks(block=True)
        try:
            self._conn.send(item)
        except (OSError, EOFError) as exc:
            raise StoreError(f"the store writer process died ({exc}); resume the run to continue") from None

    def _acks(self, block: bool) -> None:
        try:
            while block or self._conn.poll():
                reply = self._conn.recv()
                block = False
                if isinstance(reply, BaseException):
                    self._error = self._error or reply
                self._acked += 1
        except (OSError, EOFError):
            self._error = self._error or StoreError("the store writer process died; resume the run to continue")
            self._acked = self.batches

    def drain(self) -> None:
        """Wait until every batch handed over is written; re-raise a write error."""
        if self._queue is not None:
            self._queue.join()
        else:
            while self._acked < self.batches:
                self._acks(block=True)
        self._raise()

    def close(self) -> None:
        """Write what is queued, then stop."""
        try:
            self.drain()
        finally:
            if self._queue is not None and self._thread is not None:
                self._queue.put(None)
                self._thread.join()
                self._thread = None
            if self._proc is not None:
                try:
                    self._conn.send(None)
                except (OSError, EOFError):
                    pass
                self._proc.join(timeout=10)
                if self._proc.is_alive():
                    self._proc.kill()
                    self._proc.join()
                self._conn.close()
                self._proc = None

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    _write_item(self.store, self.key, item)
            except BaseException as exc:  # handed to the coordinator's thread
                self._error = exc
            finally:
                self._queue.task_done()


def _write_item(store: Store, key: SigningKey, item: tuple) -> None:
    """One item handed to the writer: blobs for the artifact store, or a batch."""
    if item[0] == "blobs":
        for data, media_type, name in item[1]:
            store.artifacts.put_bytes(data, media_type, name)
    else:
        _write(store, key, *item)


def _write(store: Store, key: SigningKey, ckpts, tasks, events, status) -> None:
    for ck in ckpts:
        if not ck.signature:
            ck.signature = key.sign(ck.bundle)
    if ckpts or tasks or events:
        store.add_checkpoints(ckpts, tasks, events)
    by: dict[tuple[str, str | None], list[str]] = {}
    for cid, st, reason in status:
        by.setdefault((st, reason), []).append(cid)
    for (st, reason), ids in by.items():
        store.set_checkpoint_status(ids, st, reason)


def _writer_main(conn, url: str, root: str, key: SigningKey) -> None:
    """The store writer process: batches in, one acknowledgement (or the error) out per batch."""
    from headwater.runtime.executors import _die_with_parent
    from headwater.store import open_store

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = open_store(url, root=root)
    failed = False
    try:
        while True:
            try:
                batch = conn.recv()
            except (EOFError, OSError):
                return
            if batch is None:
                return
            reply: Any = True
            if not failed:
                try:
                    _write_item(store, key, batch)
                except BaseException as exc:
                    failed = True
                    reply = exc if _picklable(exc) else StoreError(f"{type(exc).__name__}: {exc}")
            conn.send(reply)
    finally:
        store.close()


def _picklable(exc: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return False
    return True
