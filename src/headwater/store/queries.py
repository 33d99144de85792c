"""The multi-statement pieces of the store, as functions over one Connection.

:class:`~headwater.store.store.Store` owns transactions; the functions here
run inside whatever transaction the caller holds and never commit. They are
kept apart from the ``Store`` class because they are the part of the store
that carries the performance and concurrency reasoning:

* :func:`next_seqs` locks the runs a batch writes to and hands out per-run
  sequence numbers;
* :func:`write_checkpoints` turns a batch of records into one ``executemany``
  per table;
* :func:`attach_details` loads inputs, outputs, claims and asset uses for any
  number of checkpoints in four queries (no query per checkpoint);
* :func:`resolve` implements "exact id or unique prefix".

Dialect differences appear only where SQL itself differs: ``ON CONFLICT``
comes from the dialect's own ``insert`` (:func:`dialect_insert`), and prefix
matching is an index range on SQLite (whose ``LIKE`` ignores ASCII case) and
``LIKE`` on PostgreSQL.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from headwater.errors import NotFound, StoreError
from headwater.store import schema as t
from headwater.store.records import (
    ArtifactRecord,
    AssetUse,
    CheckpointRecord,
    ClaimRecord,
    EventRecord,
    RunRecord,
    TaskRecord,
)

MIN_PREFIX = 4
"""Shortest id prefix accepted where an id or a unique prefix is."""

CHUNK = 500
"""IN lists are cut to this many parameters (SQLite caps bound parameters)."""


def dialect_insert(conn: sa.Connection, table: sa.Table) -> Any:
    """``INSERT`` for ``table`` with the dialect's ``on_conflict_*`` methods."""
    return (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(table)


_UPSERTS: dict[tuple[str, str], Any] = {}
"""Upsert statements built once per (dialect, purpose): building one walks
every column and costs more than executing it on the write path."""


_INSERTS = {table: sa.insert(table)
            for table in (t.checkpoint, t.checkpoint_artifact, t.claim_value, t.asset_use, t.event)}
"""Plain inserts of the write path, built once (so :func:`insert_many` finds them again)."""


def _task_upsert(conn: sa.Connection) -> Any:
    key = (conn.dialect.name, "task_instance")
    if key not in _UPSERTS:
        stmt = dialect_insert(conn, t.task_instance)
        _UPSERTS[key] = stmt.on_conflict_do_update(
            index_elements=["run_id", "task"],
            set_={c.name: stmt.excluded[c.name] for c in t.task_instance.columns
                  if c.name not in ("run_id", "task")},
        )
    return _UPSERTS[key]


def _artifact_insert(conn: sa.Connection) -> Any:
    key = (conn.dialect.name, "artifact")
    if key not in _UPSERTS:
        _UPSERTS[key] = dialect_insert(conn, t.artifact).on_conflict_do_nothing(index_elements=["sha256"])
    return _UPSERTS[key]


_DRIVER: dict[tuple[Any, tuple[str, ...]], tuple[str, Any, tuple[int, ...]] | None] = {}
"""Per (statement, column names): its SQL as SQLite's driver takes it, a
function from a row to its parameters in order, and which of those are JSON;
None where that does not apply."""


def insert_many(conn: sa.Connection, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """``conn.execute(stmt, rows)`` for the write path's big batches.

    On SQLite the statement is compiled once per set of columns and the rows
    go to the driver's ``executemany`` as tuples: SQLAlchemy's per-row
    parameter processing cost as much as the insert itself and as signing
    the bundle. The only conversion it did that the driver does not is
    JSON, done here with the same ``json.dumps``. PostgreSQL keeps
    SQLAlchemy's batched ``INSERT ... VALUES`` (insertmanyvalues).
    """
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(stmt, rows)
        return
    names = tuple(rows[0])
    key = (stmt, names)
    if key not in _DRIVER:
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(names))
        order = tuple(compiled.positiontup or ())
        table = stmt.table
        ok = set(order) == set(names) and all(isinstance(table.c[n].type, _DRIVER_TYPES) for n in names)
        json_at = tuple(i for i, n in enumerate(order) if isinstance(table.c[n].type, sa.JSON))
        _DRIVER[key] = (compiled.string, operator.itemgetter(*order), json_at) if ok else None
    plan = _DRIVER[key]
    if plan is None or any(len(r) != len(names) for r in rows):
        conn.execute(stmt, rows)
        return
    sql, values, json_at = plan
    params = [values(r) for r in rows]
    if json_at:
        dumps = json.dumps
        for i, p in enumerate(params):
            p = list(p)
            for j in json_at:
                p[j] = dumps(p[j])
            params[i] = tuple(p)
    conn.exec_driver_sql(sql, params)


_DRIVER_TYPES = (sa.String, sa.Integer, sa.Float, sa.LargeBinary, sa.Boolean, sa.JSON)
"""Column types whose values SQLite's driver stores as SQLAlchemy would (JSON
once dumped): anything else goes through SQLAlchemy."""


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check(value: str, allowed: frozenset[str], what: str) -> None:
    """Raise StoreError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise StoreError(f"invalid {what} {value!r}; expected one of {sorted(allowed)}")


def row_of(record: Any) -> dict[str, Any]:
    """A dataclass record as a column -> value mapping."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


def run_record(row: sa.Row) -> RunRecord:
    return RunRecord(**row._asdict())


def checkpoint_record(row: sa.Row) -> CheckpointRecord:
    m = row._asdict()
    m["bundle"] = bytes(m["bundle"])
    m["cache_valid"] = bool(m["cache_valid"])
    return CheckpointRecord(**m)


# ------------------------------------------------------------------- writes


def upsert_tasks(conn: sa.Connection, tasks: Iterable[TaskRecord]) -> None:
    """Insert or replace task states keyed by (run_id, task); the last of a key wins."""
    # One row per key: PostgreSQL refuses to update the same row twice in one
    # INSERT ... ON CONFLICT statement.
    rows = list({(x.run_id, x.task): row_of(x) for x in tasks}.values())
    if not rows:
        return
    insert_many(conn, _task_upsert(conn), rows)


def insert_events(conn: sa.Connection, events: Iterable[EventRecord]) -> None:
    rows = [
        {"ts": e.ts, "kind": e.kind, "run_id": e.run_id, "task": e.task,
         "attempt": e.attempt, "agent": e.agent, "data": e.data}
        for e in events
    ]
    insert_many(conn, _INSERTS[t.event], rows)


def next_seqs(conn: sa.Connection, ckpts: Sequence[CheckpointRecord]) -> list[int]:
    """The ``seq`` of each checkpoint of a batch, in list order, per run.

    Reads each run of the batch with its highest ``seq`` so far, after
    locking the run rows (``SELECT ... FOR UPDATE`` on PostgreSQL; on
    SQLite the transaction already holds the database write lock), so
    concurrent batches for one run take turns and ``seq`` is gap-free and
    strictly increasing. Unknown runs are refused before anything is
    written; ids already stored are refused by the primary key (see
    :meth:`Store.add_checkpoints`).
    """
    c, r = t.checkpoint, t.run
    run_ids = sorted({x.run_id for x in ckpts})
    if conn.dialect.name == "postgresql":
        # Lock first, then read: a subquery in the locking statement would
        # be evaluated on the snapshot taken before the lock was granted.
        locked = list(conn.scalars(sa.select(r.c.id).where(r.c.id.in_(run_ids)).with_for_update()))
        run_ids = sorted(locked)
    top = sa.select(sa.func.max(c.c.seq)).where(c.c.run_id == r.c.id).scalar_subquery()
    last = dict(conn.execute(sa.select(r.c.id, top).where(r.c.id.in_(run_ids))).all())
    for x in ckpts:
        if x.run_id not in last:
            raise NotFound("run", x.run_id, hint=f"checkpoint {x.id} belongs to it")
    seqs = []
    for x in ckpts:
        last[x.run_id] = (last.get(x.run_id) or 0) + 1
        seqs.append(last[x.run_id])
    return seqs


def write_checkpoints(
    conn: sa.Connection, ckpts: Sequence[CheckpointRecord], seqs: Sequence[int]
) -> None:
    """Insert checkpoints and their child rows: one ``executemany`` per table.

    Artifact rows are deduplicated within the batch and inserted with
    ``ON CONFLICT DO NOTHING`` (content-addressed: a known hash is kept as
    is). Links keep each list's order in ``pos``.
    """
    if not ckpts:
        return
    rows, links, claims, uses = [], [], [], []
    artifacts: dict[str, ArtifactRecord] = {}
    for x, seq in zip(ckpts, seqs):
        rows.append({
            "id": x.id, "run_id": x.run_id, "workflow": x.workflow, "task": x.task,
            "attempt": x.attempt, "status": x.status, "bundle": bytes(x.bundle),
            "signature": x.signature, "key_id": x.key_id, "parents": list(x.parents),
            "prev": x.prev, "cache_key": x.cache_key, "env_fp": x.env_fp,
            "created_at": x.created_at, "seq": seq, "cache_valid": x.cache_valid,
            "status_reason": x.status_reason,
        })
        for direction, items in (("in", x.inputs), ("out", x.outputs)):
            for pos, a in enumerate(items):
                artifacts.setdefault(a.sha256, a)
                links.append({"checkpoint_id": x.id, "direction": direction, "pos": pos,
                              "name": a.name, "sha256": a.sha256})
        claims.extend(
            {"checkpoint_id": x.id, "key": k.key, "value": _json_value(k, x.id),
             "uncertainty": k.uncertainty, "units": k.units, "created_at": x.created_at}
            for k in x.claims
        )
        uses.extend(
            {"checkpoint_id": x.id, "kind": u.kind, "name": u.name,
             "version": u.version, "direction": u.direction}
            for u in x.uses
        )
    insert_many(conn, _INSERTS[t.checkpoint], rows)
    insert_many(conn, _artifact_insert(conn), [
        {"sha256": a.sha256, "size": a.size, "media_type": a.media_type, "uri": a.uri}
        for a in artifacts.values()
    ])
    for table, batch in ((t.checkpoint_artifact, links), (t.claim_value, claims), (t.asset_use, uses)):
        insert_many(conn, _INSERTS[table], batch)


def _json_value(claim: ClaimRecord, checkpoint_id: str) -> Any:
    """A claim's value, checked to have a JSON form (claim values are ``Any``).

    NaN and infinities are refused as in canonical JSON: PostgreSQL's
    ``json`` type rejects them, and a value must read back the same on
    both dialects.
    """
    try:
        json.dumps(claim.value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"claim {claim.key!r} of checkpoint {checkpoint_id} has no JSON form: {exc}"
        ) from exc
    return claim.value


# -------------------------------------------------------------------- reads


def attach_details(
    conn: sa.Connection, records: list[CheckpointRecord], ids: Sequence[str] | sa.Select
) -> None:
    """Fill inputs, outputs, claims and uses of ``records``: one query per kind.

    ``ids`` selects the checkpoints: a short list, or the SELECT that produced
    ``records``, used as a subquery so there is no limit on how many.
    """
    by_id = {r.id: r for r in records}
    link, art = t.checkpoint_artifact, t.artifact
    query = (
        sa.select(link.c.checkpoint_id, link.c.direction, link.c.name, art.c.sha256,
                  art.c.size, art.c.media_type, art.c.uri)
        .join(art, art.c.sha256 == link.c.sha256)
        .where(link.c.checkpoint_id.in_(ids))
        .order_by(link.c.checkpoint_id, link.c.direction, link.c.pos)
    )
    for cid, direction, name, sha, size, media_type, uri in conn.execute(query):
        rec = by_id[cid]
        target = rec.inputs if direction == "in" else rec.outputs
        target.append(ArtifactRecord(sha, size, media_type, uri, name))
    cv = t.claim_value
    query = (
        sa.select(cv.c.checkpoint_id, cv.c.key, cv.c.value, cv.c.uncertainty, cv.c.units)
        .where(cv.c.checkpoint_id.in_(ids))
        .order_by(cv.c.id)
    )
    for cid, key, value, unc, units in conn.execute(query):
        by_id[cid].claims.append(ClaimRecord(key, value, unc, units))
    au = t.asset_use
    query = (
        sa.select(au.c.checkpoint_id, au.c.kind, au.c.name, au.c.version, au.c.direction)
        .where(au.c.checkpoint_id.in_(ids))
        .order_by(au.c.id)
    )
    for cid, kind, name, version, direction in conn.execute(query):
        by_id[cid].uses.append(AssetUse(kind, name, version, direction))


def resolve(conn: sa.Connection, table: sa.Table, ident: str, kind: str) -> sa.Row:
    """The row whose ``id`` is ``ident``, or the only one whose id starts with it.

    Prefixes shorter than :data:`MIN_PREFIX` are not tried (NotFound); an
    ambiguous prefix is a StoreError listing up to ten candidates.
    """
    col = table.c.id
    row = conn.execute(sa.select(table).where(col == ident)).first()
    if row is not None:
        return row
    if len(ident) < MIN_PREFIX:
        raise NotFound(kind, ident, hint=f"id prefixes need at least {MIN_PREFIX} characters")
    if conn.dialect.name == "sqlite":
        # Binary collation orders by code point, so this range is exactly
        # "starts with ident" and is answered from the primary key index.
        match = sa.and_(col >= ident, col < ident + "\U0010ffff")
    else:
        match = col.startswith(ident, autoescape=True)
    rows = conn.execute(sa.select(table).where(match).order_by(col).limit(11)).all()
    if not rows:
        raise NotFound(kind, ident)
    if len(rows) > 1:
        shown = ", ".join(r.id for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
        raise StoreError(f"{kind} prefix {ident!r} is ambiguous: it matches {shown}")
    return rows[0]
