"""The store: one contract over SQLite (WAL) and PostgreSQL, in SQLAlchemy Core.

Every query is built from the tables in :mod:`headwater.store.schema`.
Connection setup per dialect lives in :mod:`headwater.store.engine`; the
multi-statement pieces (sequence numbers, batched writes, bulk loading,
prefix lookup) in :mod:`headwater.store.queries`. ``docs/store.md`` is the
user-facing statement of the contract; each method's docstring states its
part.

Transactions. Every write goes through :meth:`Store.transaction`, which
yields a connection inside one transaction and commits on success or rolls
back on any exception. On SQLite it begins with ``BEGIN IMMEDIATE``: the
write lock is taken up front, so a transaction that reads (the highest
``seq`` of a run, say) and then writes can never be refused half-way because
another process wrote in between; concurrent writers queue on the 30 s busy
timeout instead. Reads use a deferred ``BEGIN``, which in WAL mode is a
consistent snapshot that never blocks writers. On PostgreSQL write
transactions are READ COMMITTED, and the one read-then-write that matters
(assigning ``seq``) locks the run rows first; reads run at REPEATABLE READ,
so a method's several queries see one snapshot there too. Database errors leave as
:class:`~headwater.errors.StoreError` naming the store (password masked),
with the driver's error chained; unknown ids are
:class:`~headwater.errors.NotFound`.

Batching. :meth:`Store.add_checkpoints` writes a whole batch (checkpoints,
artifacts, links, claims, asset uses, task states, events) in one
transaction with one ``executemany`` per table: with ``synchronous=FULL`` the
cost is one fsync per batch, not per row, which is what makes thousands of
checkpoints per second possible on SQLite.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from headwater.errors import NotFound, StoreError
from headwater.store import migrate as _migrate
from headwater.store import queries as q
from headwater.store import schema as t
from headwater.store.artifacts import ArtifactStore
from headwater.store.assets import OversightStore
from headwater.store.engine import WRITE_OPTION, create_engine, mask_url, normalise_url
from headwater.store.records import (
    CHECKPOINT_STATUSES,
    RUN_STATUSES,
    USE_DIRECTIONS,
    CheckpointRecord,
    ClaimRecord,
    EventRecord,
    RunRecord,
    TaskRecord,
)


def open_store(url: str | None = None, *, root: str | os.PathLike[str] = ".headwater") -> Store:
    """Open (creating and migrating when needed) the store at ``url``.

    ``url`` None means ``$HEADWATER_STORE``, or failing that the SQLite file
    ``<root>/store.db``. ``root`` is created; it holds the artifact objects
    (and the signing key) for every kind of store, PostgreSQL included.
    """
    root_path = Path(root).resolve()
    if url is None:
        url = os.environ.get("HEADWATER_STORE") or None
    if url is None:
        url = f"sqlite:///{root_path / 'store.db'}"
    url = normalise_url(url)
    root_path.mkdir(parents=True, exist_ok=True)
    store = Store(url, root=root_path)
    try:
        store.ensure_migrated()
    except BaseException:
        store.close()
        raise
    return store


class Store(OversightStore):
    """Runs, specs, task states, checkpoints, environments and events; and,
    from :class:`~headwater.store.assets.OversightStore`, shared assets,
    statuses, pins, policies, canaries, the audit log and blast radius.

    Build one with :func:`open_store`. A ``Store`` may be shared between
    threads (connections come from the engine's pool), and several processes
    may open the same database at once.
    """

    def __init__(self, url: str, *, root: str | os.PathLike[str]) -> None:
        self.url = url
        self.root = Path(root)
        self.engine = create_engine(url)
        self.dialect: str = self.engine.dialect.name
        self.artifacts = ArtifactStore(self.root)

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r}, root={str(self.root)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection. The store may not be used afterwards."""
        self.engine.dispose()

    # ------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A connection inside one write transaction: commit on success, else roll back."""
        with self._errors(), self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """A connection for reading, inside one snapshot (rolled back at the end).

        A method that reads with several queries (a list, then its details)
        must not see a writer's commit in between. SQLite's deferred
        transaction is one WAL snapshot already; PostgreSQL needs REPEATABLE
        READ for that, which a read-only transaction gets without any risk
        of serialization failures.
        """
        with self._errors(), self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.OperationalError as exc:
            server = "" if self.dialect == "sqlite" else ", and that the server is running"
            raise StoreError(
                f"store {mask_url(self.url)} failed: {exc.orig}. Check that the database "
                f"is reachable and not locked by a stuck process{server}"
            ) from exc
        except sa.exc.StatementError as exc:
            # Constraint violations, and values the driver cannot bind.
            raise StoreError(f"store {mask_url(self.url)} refused the operation: {exc.orig}") from exc

    # -------------------------------------------------------- migrations

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (a no-op when already there)."""
        try:
            with self.transaction() as conn:
                _migrate.upgrade(conn)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"migrating store {mask_url(self.url)} failed: {exc}") from exc

    def ensure_migrated(self) -> None:
        """:meth:`migrate`, unless one read of ``alembic_version`` shows head already.

        This is also the first connection to the database, so connection
        problems surface here, with a message saying what to check.
        """
        try:
            with self.engine.connect() as conn:
                current = _migrate.current_revision(conn)
        except sa.exc.DBAPIError as exc:
            if self.dialect == "sqlite":
                what = "that the directory exists and is writable"
            else:
                what = (
                    "that the server is running and reachable, the database exists, and "
                    "the user and password are right (set with --store or HEADWATER_STORE)"
                )
            message = f"cannot open store {mask_url(self.url)}: {exc.orig}. Check {what}"
            raise StoreError(message) from exc
        if current != _migrate.HEAD_REVISION:
            self.migrate()

    # ------------------------------------------------------------- specs

    def put_spec(self, workflow: str, spec_hash: str, spec: dict) -> None:
        """Record a spec version; storing a known ``spec_hash`` again does nothing."""
        row = {"spec_hash": spec_hash, "workflow": workflow, "spec": spec, "created_at": time.time()}
        with self.transaction() as conn:
            stmt = q.dialect_insert(conn, t.workflow_spec)
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["spec_hash"]), row)

    def get_spec(self, spec_hash: str) -> dict:
        """The spec stored under ``spec_hash``; NotFound otherwise."""
        s = t.workflow_spec
        with self._read() as conn:
            spec = conn.scalar(sa.select(s.c.spec).where(s.c.spec_hash == spec_hash))
        if spec is None:
            raise NotFound("spec", spec_hash)
        return spec

    def list_specs(self, workflow: str) -> list[tuple[str, float]]:
        """``(spec_hash, created_at)`` of a workflow's spec versions, oldest first."""
        s = t.workflow_spec
        query = (
            sa.select(s.c.spec_hash, s.c.created_at)
            .where(s.c.workflow == workflow)
            .order_by(s.c.created_at, s.c.spec_hash)
        )
        with self._read() as conn:
            return [(h, c) for h, c in conn.execute(query)]

    # -------------------------------------------------------------- runs

    def create_run(self, run: RunRecord) -> None:
        """Insert a new run (and its campaign, if new). A known id is an error."""
        q.check(run.status, RUN_STATUSES, "run status")
        with self.transaction() as conn:
            self._ensure_campaign(conn, run.campaign, run.created_at)
            if conn.scalar(sa.select(t.run.c.id).where(t.run.c.id == run.id)) is not None:
                raise StoreError(f"run {run.id!r} already exists")
            conn.execute(sa.insert(t.run), q.row_of(run))

    def get_run(self, id_or_prefix: str) -> RunRecord:
        """The run with this id, or the only run whose id starts with it (>= 4 chars).

        NotFound when there is none; StoreError listing the candidates when
        the prefix is ambiguous.
        """
        with self._read() as conn:
            return q.run_record(q.resolve(conn, t.run, id_or_prefix, "run"))

    def list_runs(self, workflow: str | None = None, limit: int = 50) -> list[RunRecord]:
        """The newest ``limit`` runs (of ``workflow``, if given), newest first."""
        r = t.run
        query = sa.select(r).order_by(r.c.created_at.desc(), r.c.id.desc()).limit(limit)
        if workflow is not None:
            query = query.where(r.c.workflow == workflow)
        with self._read() as conn:
            return [q.run_record(row) for row in conn.execute(query)]

    def set_run_status(self, run_id: str, status: str, finished_at: float | None = None) -> None:
        """Set a run's status. ``finished_at`` is stored when given, cleared when
        the run goes back to ``running``, and otherwise left as it was."""
        q.check(status, RUN_STATUSES, "run status")
        values: dict[str, Any] = {"status": status}
        if finished_at is not None:
            values["finished_at"] = finished_at
        elif status == "running":
            values["finished_at"] = None
        self.update_run(run_id, **values)

    def update_run(self, run_id: str, **fields_: Any) -> None:
        """Change any fields of a run but its id, e.g. ``options`` or ``tags``."""
        allowed = {f.name for f in fields(RunRecord)} - {"id"}
        unknown = sorted(set(fields_) - allowed)
        if unknown:
            raise StoreError(f"update_run: unknown run field(s) {unknown}; known: {sorted(allowed)}")
        if "status" in fields_:
            q.check(fields_["status"], RUN_STATUSES, "run status")
        r = t.run
        with self.transaction() as conn:
            if "campaign" in fields_:
                self._ensure_campaign(conn, fields_["campaign"], time.time())
            if fields_:
                result = conn.execute(sa.update(r).where(r.c.id == run_id).values(**fields_))
                found = result.rowcount > 0
            else:
                found = conn.scalar(sa.select(r.c.id).where(r.c.id == run_id)) is not None
            if not found:
                raise NotFound("run", run_id)

    @staticmethod
    def _ensure_campaign(conn: sa.Connection, name: str, created_at: float) -> None:
        stmt = q.dialect_insert(conn, t.campaign).on_conflict_do_nothing(index_elements=["name"])
        conn.execute(stmt, {"name": name, "created_at": created_at})

    # ---------------------------------------------------- task instances

    def save_tasks(self, tasks: Sequence[TaskRecord]) -> None:
        """Insert or replace the current state of tasks, keyed by (run_id, task).

        When one key appears several times, the last record wins.
        """
        with self.transaction() as conn:
            q.upsert_tasks(conn, tasks)

    def get_tasks(self, run_id: str) -> list[TaskRecord]:
        """The current state of every task of a run, by task name."""
        ti = t.task_instance
        query = sa.select(ti).where(ti.c.run_id == run_id).order_by(ti.c.task)
        with self._read() as conn:
            return [TaskRecord(**row._asdict()) for row in conn.execute(query)]

    # ------------------------------------------------------- checkpoints

    def add_checkpoints(
        self,
        ckpts: Sequence[CheckpointRecord],
        tasks: Sequence[TaskRecord] = (),
        events: Sequence[EventRecord] = (),
    ) -> None:
        """Store a batch of checkpoints, with task states and events, atomically.

        In one transaction: the checkpoint rows, each given the next ``seq``
        of its run in list order; artifact rows (kept as they are if already
        known); input (``in``) and output (``out``) links in list order;
        claims; asset uses; the task upserts; the events. Any bad row (an id
        already stored or repeated in the batch, an unknown run, an invalid
        status, a claim value with no JSON form) rolls everything back. On
        success each record's ``seq`` is set.
        """
        ids = [c.id for c in ckpts]
        if len(set(ids)) != len(ids):
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            raise StoreError(f"checkpoint(s) repeated in one batch: {repeated}")
        for c in ckpts:
            q.check(c.status, CHECKPOINT_STATUSES, f"status of checkpoint {c.id}")
            for use in c.uses:
                q.check(use.direction, USE_DIRECTIONS, f"asset use direction in checkpoint {c.id}")
        try:
            with self.transaction() as conn:
                seqs = q.next_seqs(conn, ckpts) if ckpts else []
                q.write_checkpoints(conn, ckpts, seqs)
                q.upsert_tasks(conn, tasks)
                q.insert_events(conn, events)
        except StoreError as exc:
            stored = self._existing_ids(ids) if isinstance(exc.__cause__, sa.exc.IntegrityError) else []
            if stored:
                raise StoreError(f"checkpoint(s) already stored: {stored}") from exc
            raise
        for c, seq in zip(ckpts, seqs):
            c.seq = seq

    def _existing_ids(self, ids: Sequence[str]) -> list[str]:
        c = t.checkpoint
        with self._read() as conn:
            return sorted(i for chunk in q.chunks(list(ids)) for i in conn.scalars(sa.select(c.c.id).where(c.c.id.in_(chunk))))

    def get_checkpoint(self, id_or_prefix: str) -> CheckpointRecord:
        """One checkpoint with inputs, outputs, claims and uses; prefixes as for runs."""
        with self._read() as conn:
            record = q.checkpoint_record(q.resolve(conn, t.checkpoint, id_or_prefix, "checkpoint"))
            q.attach_details(conn, [record], [record.id])
        return record

    def list_checkpoints(
        self,
        run_id: str | None = None,
        *,
        workflow: str | None = None,
        task: str | None = None,
        status: str | Iterable[str] | None = None,
    ) -> list[CheckpointRecord]:
        """Checkpoints matching every filter given, with their details loaded.

        Ordered by ``seq`` for one run, by ``created_at`` otherwise. Inputs,
        outputs, claims and uses are loaded with one query each, whatever
        the number of checkpoints. ``status`` may be one status or several.
        """
        c = t.checkpoint
        conds = []
        if run_id is not None:
            conds.append(c.c.run_id == run_id)
        if workflow is not None:
            conds.append(c.c.workflow == workflow)
        if task is not None:
            conds.append(c.c.task == task)
        if isinstance(status, str):
            conds.append(c.c.status == status)
        elif status is not None:
            conds.append(c.c.status.in_(list(status)))
        order = [c.c.seq] if run_id is not None else [c.c.created_at, c.c.run_id, c.c.seq]
        with self._read() as conn:
            rows = conn.execute(sa.select(c).where(*conds).order_by(*order))
            records = [q.checkpoint_record(row) for row in rows]
            if records:
                q.attach_details(conn, records, sa.select(c.c.id).where(*conds))
        return records

    def set_checkpoint_status(self, ids: Sequence[str], status: str, reason: str | None = None) -> None:
        """Set ``status`` and ``status_reason`` of checkpoints: of all of them, or,
        if any id is unknown, of none (NotFound names the first unknown id)."""
        q.check(status, CHECKPOINT_STATUSES, "checkpoint status")
        wanted = list(dict.fromkeys(ids))
        c = t.checkpoint
        with self.transaction() as conn:
            changed = 0
            for chunk in q.chunks(wanted):
                update = sa.update(c).where(c.c.id.in_(chunk))
                changed += conn.execute(update.values(status=status, status_reason=reason)).rowcount
            if changed != len(wanted):
                known = {
                    i for chunk in q.chunks(wanted)
                    for i in conn.scalars(sa.select(c.c.id).where(c.c.id.in_(chunk)))
                }
                missing = [i for i in wanted if i not in known]
                raise NotFound(
                    "checkpoint", missing[0],
                    hint=f"{len(missing)} of {len(wanted)} ids unknown; nothing changed",
                )

    def latest_checkpoint(
        self,
        workflow: str,
        task: str,
        *,
        exclude_run: str | None = None,
        status: str | None = "committed",
    ) -> CheckpointRecord | None:
        """The newest checkpoint of ``workflow``/``task`` with ``status``
        (None: any status), optionally ignoring one run; None if there is none."""
        c = t.checkpoint
        query = sa.select(c).where(c.c.workflow == workflow, c.c.task == task)
        if status is not None:
            query = query.where(c.c.status == status)
        if exclude_run is not None:
            query = query.where(c.c.run_id != exclude_run)
        return self._first(query.order_by(c.c.created_at.desc(), c.c.seq.desc()).limit(1))

    def latest_checkpoints(
        self, workflow: str, *, exclude_run: str | None = None, status: str = "committed"
    ) -> dict[str, CheckpointRecord]:
        """:meth:`latest_checkpoint` for every task of ``workflow`` at once:
        task -> its newest checkpoint with ``status``, in one query (a
        window function, on both dialects) plus one per detail table."""
        c = t.checkpoint
        newest = sa.func.row_number().over(
            partition_by=c.c.task, order_by=(c.c.created_at.desc(), c.c.seq.desc())
        ).label("rank")
        inner = sa.select(c, newest).where(c.c.workflow == workflow, c.c.status == status)
        if exclude_run is not None:
            inner = inner.where(c.c.run_id != exclude_run)
        ranked = inner.subquery()
        query = sa.select(*[ranked.c[col.name] for col in c.columns]).where(ranked.c.rank == 1)
        with self._read() as conn:
            records = [q.checkpoint_record(row) for row in conn.execute(query)]
            q.attach_details(conn, records, [r.id for r in records])
        return {r.task: r for r in records}

    def find_cached(self, cache_key: str) -> CheckpointRecord | None:
        """The newest committed, still cache-valid checkpoint with ``cache_key``."""
        c = t.checkpoint
        query = (
            sa.select(c)
            .where(c.c.cache_key == cache_key, c.c.status == "committed", c.c.cache_valid.is_(True))
            .order_by(c.c.created_at.desc(), c.c.seq.desc())
            .limit(1)
        )
        return self._first(query)

    def find_cached_many(self, cache_keys: Iterable[str]) -> dict[str, CheckpointRecord]:
        """:meth:`find_cached` for many keys at once: key -> its checkpoint, for
        the keys that have one. One query per :data:`~headwater.store.queries.CHUNK`
        keys plus one per detail table, in one snapshot."""
        c = t.checkpoint
        wanted = list(dict.fromkeys(cache_keys))
        found: dict[str, CheckpointRecord] = {}
        with self._read() as conn:
            for chunk in q.chunks(wanted):
                query = (
                    sa.select(c)
                    .where(c.c.cache_key.in_(chunk), c.c.status == "committed", c.c.cache_valid.is_(True))
                    .order_by(c.c.created_at.desc(), c.c.seq.desc())
                )
                for row in conn.execute(query):
                    if row.cache_key not in found:
                        found[row.cache_key] = q.checkpoint_record(row)
            records = list(found.values())
            for start in range(0, len(records), q.CHUNK):
                part = records[start : start + q.CHUNK]
                q.attach_details(conn, part, [r.id for r in part])
        return found

    def _first(self, query: sa.Select) -> CheckpointRecord | None:
        with self._read() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            record = q.checkpoint_record(row)
            q.attach_details(conn, [record], [record.id])
        return record

    def invalidate_cache(self, ids: Sequence[str], reason: str) -> int:
        """Stop :meth:`find_cached` from returning these checkpoints.

        Returns how many were cache-valid before. Each one invalidated gets a
        ``cache_invalidated`` event (``data``: checkpoint id and ``reason``);
        unknown or already invalid ids are skipped.
        """
        c = t.checkpoint
        now = time.time()
        with self.transaction() as conn:
            hit = []
            for chunk in q.chunks(list(dict.fromkeys(ids))):
                hit.extend(conn.execute(
                    sa.select(c.c.id, c.c.run_id, c.c.task, c.c.attempt)
                    .where(c.c.id.in_(chunk), c.c.cache_valid.is_(True))
                ).all())
            for chunk in q.chunks([h.id for h in hit]):
                conn.execute(sa.update(c).where(c.c.id.in_(chunk)).values(cache_valid=False))
            q.insert_events(conn, [
                EventRecord(ts=now, kind="cache_invalidated", run_id=h.run_id, task=h.task,
                            attempt=h.attempt, data={"checkpoint": h.id, "reason": reason})
                for h in hit
            ])
        return len(hit)

    def checkpoints_with_artifact(self, sha256: str) -> dict[str, list[str]]:
        """``{"produced_by": [ids], "consumed_by": [ids]}``, each in ``created_at`` order."""
        link, c = t.checkpoint_artifact, t.checkpoint
        query = (
            sa.select(link.c.checkpoint_id, link.c.direction)
            .join(c, c.c.id == link.c.checkpoint_id)
            .where(link.c.sha256 == sha256)
            .order_by(c.c.created_at, c.c.run_id, c.c.seq)
        )
        out: dict[str, list[str]] = {"produced_by": [], "consumed_by": []}
        with self._read() as conn:
            for cid, direction in conn.execute(query):
                target = out["produced_by" if direction == "out" else "consumed_by"]
                if cid not in target:
                    target.append(cid)
        return out

    def campaign_has_checkpoints(self, campaign: str) -> bool:
        """Whether any run of ``campaign`` has a checkpoint."""
        c = t.checkpoint
        query = (
            sa.select(c.c.id)
            .join(t.run, t.run.c.id == c.c.run_id)
            .where(t.run.c.campaign == campaign)
            .limit(1)
        )
        with self._read() as conn:
            return conn.scalar(query) is not None

    def claims(self, key: str | None = None) -> list[tuple[str, ClaimRecord]]:
        """``(checkpoint_id, claim)`` published by committed checkpoints, oldest first."""
        cv, c = t.claim_value, t.checkpoint
        query = (
            sa.select(cv.c.checkpoint_id, cv.c.key, cv.c.value, cv.c.uncertainty, cv.c.units)
            .join(c, c.c.id == cv.c.checkpoint_id)
            .where(c.c.status == "committed")
            .order_by(c.c.created_at, cv.c.id)
        )
        if key is not None:
            query = query.where(cv.c.key == key)
        with self._read() as conn:
            return [(cid, ClaimRecord(k, v, u, units)) for cid, k, v, u, units in conn.execute(query)]

    # ------------------------------------------------------ environments

    def put_env(self, fingerprint: str, summary: dict, packages: dict) -> None:
        """Store an environment snapshot once per fingerprint (later puts do nothing)."""
        row = {"fingerprint": fingerprint, "summary": summary, "packages": packages}
        with self.transaction() as conn:
            stmt = q.dialect_insert(conn, t.env_snapshot)
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["fingerprint"]), row)

    def get_env(self, fingerprint: str) -> tuple[dict, dict] | None:
        """``(summary, packages)`` for a fingerprint, or None."""
        e = t.env_snapshot
        query = sa.select(e.c.summary, e.c.packages).where(e.c.fingerprint == fingerprint)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else (row.summary, row.packages)

    # ------------------------------------------------------------ events

    def append_events(self, events: Sequence[EventRecord]) -> None:
        """Append events to the log, in order, in one transaction."""
        with self.transaction() as conn:
            q.insert_events(conn, events)

    def list_events(
        self, run_id: str | None = None, kind: str | None = None, limit: int | None = None
    ) -> list[EventRecord]:
        """Events in the order they were appended; with ``limit``, the latest
        ``limit`` of them (still oldest first)."""
        e = t.event
        query = sa.select(e)
        if run_id is not None:
            query = query.where(e.c.run_id == run_id)
        if kind is not None:
            query = query.where(e.c.kind == kind)
        if limit is not None:
            query = query.order_by(e.c.id.desc()).limit(limit)
        else:
            query = query.order_by(e.c.id)
        with self._read() as conn:
            records = [EventRecord(**row._asdict()) for row in conn.execute(query)]
        return records[::-1] if limit is not None else records
