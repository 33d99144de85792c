"""The oversight part of the store: assets, statuses, pins, policies, canaries,
trust marks, the audit log, and the lineage queries behind blast radius.

:class:`OversightStore` is mixed into :class:`~headwater.store.Store`; its
methods use the store's own transaction helpers, so the guarantees of
``docs/store.md`` hold here too. Decisions are not made here: statuses
change only through :meth:`apply_transitions`, which writes what the pure
core (:func:`headwater.oversight.transition`) returned, checking that no
one changed the status in between (compare-and-set), together with the
audit records, in one transaction.

Blast radius. :class:`IndexWalk`, what :meth:`OversightStore.blast_radius`
uses, walks the lineage index (:class:`LineageIndex`: checkpoints as
integer nodes, their followers as integer edges, derived from the tables
below and caught up by every query before it walks) inside the database.
:class:`DatabaseWalk` walks the store's own tables the same way (a
temporary table of visited checkpoints, one ``INSERT ... SELECT`` per
hop), so that Python reads the radius once, at the end. :class:`StoreEdges`
implements the pure core's :class:`~headwater.oversight.EdgeSource` for
the reference walk (``walk="hops"``) with one statement per hop of
the breadth-first walk, over the whole frontier, bound as one
parameter (a JSON array read by ``json_each`` on SQLite, a text array
``unnest``-ed on PostgreSQL), so the SQL is compiled once whatever the
frontier's size. Every lookup is index-only (migration 0002):
consumers of asset versions through ``ix_asset_use_lineage``, outputs
through the ``checkpoint_artifact`` primary key and their consumers
through ``ix_checkpoint_artifact_lineage``, claims through
``ix_claim_value_lineage`` and their consumers again through the asset-use
index (a claim's version is its producing checkpoint's id cut to
:data:`CLAIM_VERSION_LEN` characters, so no extra rows are needed), and a
checkpoint's run, task and status through ``ix_checkpoint_lineage``.
Rows are read as plain tuples from the driver.
The cost grows with the size of the radius, not of the graph.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, TypeVar

import sqlalchemy as sa

from headwater.errors import NotFound, StoreError
from headwater.oversight.engine import RANGE_PREFIX, Snapshot, range_of
from headwater.oversight.lineage import BlastRadius, CheckpointInfo, Hop, Reached, blast_radius, select_versions
from headwater.oversight.monitors import ClaimObs, RedundancyObs, VerificationObs
from headwater.oversight.policy import Dependent, Policy, Running, policy_from_doc
from headwater.oversight.refs import AssetRef, parse_ref
from headwater.oversight.routing import Pin
from headwater.oversight.status import AssetStatus, AuditRecord, Transition
from headwater.store import schema as t
from headwater.store.engine import SQLITE_BUSY_TIMEOUT_S, WRITE_OPTION
from headwater.store.queries import dialect_insert
from headwater.store.records import EventRecord

CLAIM_VERSION_LEN = 12
"""A claim version is the producing checkpoint's id cut to this many characters."""

FRONTIER_CHUNK = 50_000
"""Frontier ids per lineage query (bound as one JSON or array parameter)."""

BIG_FRONTIER = 15_000
"""From this many ids a PostgreSQL hop is planned for its own size (see StoreEdges)."""

WALK_BIG_FRONTIER = 5_000
"""From this many checkpoints in a frontier, a PostgreSQL hop of :class:`DatabaseWalk`
is planned with statistics and hash joins."""

WALK_WORK_MEM = "64MB"
"""PostgreSQL ``work_mem`` for the final read of a large radius, so that hashing
the checkpoints it joins stays in memory."""

WALKS = ("index", "database", "hops")
"""The blast-radius walks :meth:`OversightStore.blast_radius` knows."""

EXPOSURE_GRACE = 30.0
"""Seconds an admission counts for a fleet-wide cap before its task row shows
the lease; later, its coordinator is taken for dead."""

IN_CHUNK = 2000
"""Values per IN list elsewhere (well under both dialects' parameter limits)."""

PG_CAP_LOCK = 0x43A9_1E57_0B6D_22F1
"""Key of the PostgreSQL advisory lock that serialises admissions under fleet-wide caps."""

Refusal = TypeVar("Refusal")


def split_subject(subject: str) -> tuple[str, str, str]:
    """``kind:name@version`` -> ``(kind, name, version)``."""
    ref = parse_ref(subject)
    if ref.version is None:
        raise StoreError(f"{subject!r} names no version (expected KIND:NAME@VERSION)")
    return ref.kind, ref.name, ref.version


@dataclass(frozen=True)
class VersionRecord:
    """A version with a status on record."""

    kind: str
    name: str
    version: str
    status: AssetStatus
    reason: str | None
    created_at: float
    updated_at: float

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.name}@{self.version}"


@dataclass(frozen=True)
class ClaimVersion:
    """One committed value of a claim key: a version of the claim asset."""

    key: str
    version: str
    checkpoint_id: str
    value: Any
    uncertainty: float | None
    units: str | None
    created_at: float
    run_id: str
    workflow: str
    untrusted: bool


@dataclass(frozen=True)
class AssetUsage:
    """How one asset version is used across the fleet."""

    kind: str
    name: str
    version: str
    checkpoints: int
    runs: int
    workflows: int
    direction: str


@dataclass(frozen=True)
class CanaryRecord:
    id: int
    kind: str
    name: str
    version: str
    baseline: str | None
    metrics: list[str]
    status: str
    verdict: dict | None
    created_at: float
    decided_at: float | None

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.name}@{self.version}"


def _chunks(items: Sequence[str], size: int = IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _plain_rows(conn: sa.Connection, query: Any, params: dict[str, Any]) -> list[tuple]:
    """Rows as plain tuples straight from the driver: lineage rows hold strings
    and integers only, and a large radius reads hundreds of thousands of them."""
    result = conn.execute(query, params)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _audit_row(r: AuditRecord) -> dict[str, Any]:
    return {"ts": r.ts, "actor": r.actor, "action": r.action, "subject": r.subject, "reason": r.reason,
            "cause": r.cause, "policy": r.policy, "policy_version": r.policy_version, "mode": r.mode,
            "run_id": r.run_id, "task": r.task, "signal": r.signal, "data": r.data}


def _audit_record(row: sa.Row) -> AuditRecord:
    m = row._asdict()
    return AuditRecord(**m)


class StoreEdges:
    """The lineage graph as the store holds it (see the module docstring).

    On PostgreSQL the walk sets its own planning, per transaction: small
    frontiers (most hops) run a generic, prepared plan of index lookups per
    frontier id, with hash joins off, so no hop scans a whole table; a
    frontier of :data:`BIG_FRONTIER` ids or more gets a plan of its own, where
    hashing whole tables can beat that many lookups. JIT compilation and
    parallel workers, which cost more to start than these statements take,
    are off. SQLite plans these joins as index lookups by itself.
    """

    USES = t.asset_use
    """Where the versions of assets other than claims are found."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self._mode: str | None = None
        if conn.dialect.name == "postgresql":
            for setting in ("jit = off", "max_parallel_workers_per_gather = 0", "enable_mergejoin = off"):
                conn.exec_driver_sql(f"SET LOCAL {setting}")

    def versions(self, ref: AssetRef) -> list[tuple[str, str, Any]]:
        conn = self.conn
        exact = not any(c in ref.name for c in "*?[")
        if ref.kind == "claim":
            # A claim version is first seen when published (or, for claims from
            # elsewhere, when first consumed): that is its order.
            cv, au, c = t.claim_value, t.asset_use, t.checkpoint
            version = sa.func.substr(cv.c.checkpoint_id, 1, CLAIM_VERSION_LEN)
            published = sa.select(cv.c.key, version, sa.func.min(cv.c.created_at)).group_by(cv.c.key, version)
            consumed = (sa.select(au.c.name, au.c.version, sa.func.min(c.c.created_at))
                        .join(c, c.c.id == au.c.checkpoint_id)
                        .where(au.c.kind == "claim", au.c.direction == "consumed")
                        .group_by(au.c.name, au.c.version))
            if exact:
                published = published.where(sa.or_(cv.c.key == ref.name,
                                                   cv.c.key.startswith(ref.name + "/", autoescape=True)))
                consumed = consumed.where(sa.or_(au.c.name == ref.name,
                                                 au.c.name.startswith(ref.name + "/", autoescape=True)))
            first: dict[tuple[str, str], float] = {}
            for query in (published, consumed):
                for k, v, o in conn.execute(query):
                    if ref.matches_name(k):
                        first[(k, v)] = min(o, first.get((k, v), o))
            rows = [(k, v, o) for (k, v), o in first.items()]
        else:
            au = self.USES
            query = sa.select(au.c.name, au.c.version).where(au.c.kind == ref.kind).distinct()
            if exact:
                query = query.where(sa.or_(au.c.name == ref.name, au.c.name.startswith(ref.name + "/", autoescape=True)))
            if ref.version is not None:  # one version: index lookups, not a scan of every use
                query = query.where(au.c.version == ref.version)
            rows = [(n, v, None) for n, v in conn.execute(query) if ref.matches_name(n)]
        av = t.asset_version
        known = {(n, v) for n, v, _ in rows}
        for n, v in conn.execute(sa.select(av.c.name, av.c.version).where(av.c.kind == ref.kind)):
            if (n, v) not in known and ref.matches_name(n) and not v.startswith(RANGE_PREFIX):
                rows.append((n, v, None))
        return rows

    def consumers_of(self, kind: str, versions: Sequence[tuple[str, str]]) -> list[tuple[str, str, CheckpointInfo]]:
        au, c = t.asset_use, t.checkpoint
        out: list[tuple[str, str, CheckpointInfo]] = []
        by_name: dict[str, list[str]] = defaultdict(list)
        for n, v in versions:
            by_name[n].append(v)
        for name, vs in by_name.items():
            for chunk in _chunks(vs):
                query = (sa.select(au.c.name, au.c.version, c.c.id, c.c.run_id, c.c.workflow, c.c.task,
                                   c.c.status, c.c.seq)
                         .join(c, c.c.id == au.c.checkpoint_id)
                         .where(au.c.kind == kind, au.c.name == name, au.c.version.in_(chunk),
                                au.c.direction == "consumed"))
                out.extend((n, v, CheckpointInfo(*head)) for n, v, *head in _plain_rows(self.conn, query, {}))
        return out

    def _ids(self) -> Any:
        """A table of the frontier's ids, bound as one parameter ``ids``: ``json_each``
        on SQLite, ``unnest`` of a text array on PostgreSQL. One compiled statement
        per query, whatever the frontier's size."""
        if self.conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            return sa.func.unnest(sa.bindparam("ids", type_=ARRAY(sa.String))).table_valued("value") \
                .render_derived(name="ids")
        return sa.func.json_each(sa.bindparam("ids")).table_valued("value").alias("ids")

    def _bind(self, ids: Sequence[str]) -> dict[str, Any]:
        return {"ids": list(ids) if self.conn.dialect.name == "postgresql" else json.dumps(list(ids))}

    def _query(self, name: str) -> Any:
        key = (self.conn.dialect.name, name)
        if key not in _QUERIES:
            _QUERIES[key] = getattr(self, f"_build_{name}")(self._ids())
        return _QUERIES[key]

    @staticmethod
    def _build_hop(ids: Any) -> Any:
        """Outputs and their consumers, and claims and theirs, of a frontier,
        with each consumer's run, workflow, task, status and seq: one statement."""
        o, i = t.checkpoint_artifact.alias("o"), t.checkpoint_artifact.alias("i")
        cv, au = t.claim_value, t.asset_use
        c2, c3 = t.checkpoint.alias("c2"), t.checkpoint.alias("c3")
        head = lambda c: (c.c.id, c.c.run_id, c.c.workflow, c.c.task, c.c.status, c.c.seq)  # noqa: E731
        artifacts = (
            sa.select(sa.literal("a").label("edge"), o.c.checkpoint_id, o.c.sha256, *head(c2))
            .select_from(ids)
            .join(o, sa.and_(o.c.checkpoint_id == ids.c.value, o.c.direction == "out"))
            .outerjoin(i, sa.and_(i.c.sha256 == o.c.sha256, i.c.direction == "in"))
            .outerjoin(c2, c2.c.id == i.c.checkpoint_id)
        )
        version = sa.func.substr(cv.c.checkpoint_id, 1, CLAIM_VERSION_LEN)
        claims = (
            sa.select(sa.literal("c").label("edge"), cv.c.checkpoint_id, cv.c.key, *head(c3))
            .select_from(ids)
            .join(cv, cv.c.checkpoint_id == ids.c.value)
            .outerjoin(au, sa.and_(au.c.kind == "claim", au.c.name == cv.c.key,
                                   au.c.version == version, au.c.direction == "consumed"))
            .outerjoin(c3, c3.c.id == au.c.checkpoint_id)
        )
        return sa.union_all(artifacts, claims)

    @staticmethod
    def _build_details(ids: Any) -> sa.Select:
        c = t.checkpoint
        return (sa.select(c.c.id, c.c.run_id, c.c.workflow, c.c.task, c.c.status, c.c.seq)
                .select_from(ids).join(c, c.c.id == ids.c.value))

    def _plan_for(self, size: int) -> None:
        if self.conn.dialect.name != "postgresql":
            return
        mode = "big" if size >= BIG_FRONTIER else "small"
        if mode != self._mode:
            self._mode = mode
            hashing, plans = ("on", "force_custom_plan") if mode == "big" else ("off", "force_generic_plan")
            self.conn.exec_driver_sql(f"SET LOCAL enable_hashjoin = {hashing}")
            self.conn.exec_driver_sql(f"SET LOCAL plan_cache_mode = {plans}")

    def _rows(self, name: str, ids: Sequence[str]) -> list[tuple]:
        self._plan_for(len(ids))
        return _plain_rows(self.conn, self._query(name), self._bind(ids))

    def hop(self, ckpts: Sequence[str]) -> Hop:
        arts: list[tuple[str, str, str | None]] = []
        claims: list[tuple[str, str, str, str | None]] = []
        heads: dict[str, CheckpointInfo] = {}
        for chunk in _chunks(list(ckpts), FRONTIER_CHUNK):
            linked: set[tuple[str, str]] = set()
            bare: list[tuple[str, str]] = []
            for edge, producer, what, *head in self._rows("hop", chunk):
                consumer = head[0]
                if consumer is not None and consumer not in heads:
                    heads[consumer] = CheckpointInfo(*head)
                if edge == "c":
                    claims.append((producer, what, producer[:CLAIM_VERSION_LEN], consumer))
                elif consumer is not None:
                    arts.append((producer, what, consumer))
                    linked.add((producer, what))
                else:
                    bare.append((producer, what))
            arts.extend((p, s, None) for p, s in dict.fromkeys(bare) if (p, s) not in linked)
        return Hop(arts, claims, heads)

    def artifact_edges(self, ckpts: Sequence[str]) -> list[tuple[str, str, str | None]]:
        return self.hop(ckpts).artifacts

    def claim_edges(self, ckpts: Sequence[str]) -> list[tuple[str, str, str, str | None]]:
        return self.hop(ckpts).claims

    def details(self, ckpts: Sequence[str]) -> dict[str, CheckpointInfo]:
        out: dict[str, CheckpointInfo] = {}
        for chunk in _chunks(list(ckpts), FRONTIER_CHUNK):
            for row in self._rows("details", chunk):
                out[row[0]] = CheckpointInfo._make(row)
        return out


# ------------------------------------------------------- in-database walk

_WALK = sa.MetaData()

WALK_VISIT = sa.Table(
    "hw_walk_visit", _WALK,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("depth", sa.Integer(), nullable=False),
    sa.Column("prev", sa.String(), nullable=True),
    sa.Column("via", sa.String(), nullable=False),
    sa.Column("run_id", sa.String(), nullable=False),
    sa.Column("workflow", sa.String(), nullable=False),
    sa.Column("task", sa.String(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Index("ix_hw_walk_visit_depth", "depth"),
    prefixes=["TEMPORARY"],
)
"""The checkpoints the walk reached: depth, the link each was first reached by
(the parent pointer paths are rebuilt from), and what the report shows about
it, copied once, when reached."""


class DatabaseWalk:
    """The blast-radius walk run inside the database, one statement per hop.

    Same edges, same tie-breaks and so the same :class:`BlastRadius` as the
    pure core's :func:`~headwater.oversight.blast_radius` over
    :class:`StoreEdges` (the reference, kept as ``walk="hops"``), but the
    visited set and the frontier live in a temporary table of the reading
    transaction, so no checkpoint crosses to Python until the final read.
    Each hop is one ``INSERT ... SELECT`` over the frontier (``depth = d``):
    the checkpoints that consume an output of it (in the producer's run) or
    a claim it published and were not visited yet, each with its smallest
    ``(producer, label)`` link (a window function). The artifacts and claim
    versions need no table of their own: each was first reached at the
    smallest depth of a visited checkpoint that produced it, through the
    smallest such checkpoint at that depth, which the final read works out
    from the visited set. The temporary table vanishes with the transaction
    (the reader rolls back), and is dropped at the end anyway. Strings are
    compared with the ``C`` collation on PostgreSQL, so ties break by code
    point as in Python.

    A temporary table has no statistics, and planners take a table without
    them for a large one: on PostgreSQL each hop is planned for its
    frontier's size (:meth:`_plan_for`), and SQLite analyses the visited
    table before the final read, which would otherwise scan every output
    in the store.
    """

    COLUMNS = ("id", "depth", "prev", "via", "run_id", "workflow", "task", "status", "seq")
    READ = ("id", "run_id", "workflow", "task", "status", "seq", "depth", "prev", "via")
    """The final read: a :class:`CheckpointInfo` first, then the walk's own columns."""
    VISIT = WALK_VISIT

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self.size = 0
        """How many checkpoints the walk reached."""

    def _c(self, expr: Any) -> Any:
        return sa.collate(expr, "C") if self.pg else expr

    def run(self, ref: AssetRef, selected: Sequence[tuple[str, str]], max_depth: int = 10_000) -> BlastRadius:
        result = BlastRadius(str(ref), [f"{ref.kind}:{n}@{v}" for n, v in selected])
        if not selected:
            return result
        conn = self.conn
        self.VISIT.create(conn)
        seeds = conn.execute(self._query("seeds"), {"kind": ref.kind, "prefix": ref.kind + ":",
                                                    "versions": list(selected)})
        depth = 1
        hop = self._query("hop")
        size = self.size = self._inserted(seeds, 1)
        while depth < max_depth and size:
            self._plan_for(size)
            size = self._inserted(conn.execute(hop, {"depth": depth, "next": depth + 1}), depth + 1)
            self.size += size
            depth += 1
        if not self.pg:
            conn.exec_driver_sql(f"ANALYZE {self.VISIT.name}")
        self._read_into(result, max_depth)
        self.VISIT.drop(conn)
        return result

    def _query(self, name: str) -> Any:
        key = (self.conn.dialect.name, f"{type(self).__name__}_{name}")
        if key not in _QUERIES:
            _QUERIES[key] = getattr(self, f"_{name}")()
        return _QUERIES[key]

    def _inserted(self, done: sa.CursorResult, depth: int) -> int:
        """How many checkpoints a hop reached: the row count of its ``INSERT ...
        SELECT``, counted in the visited table for a driver that does not report it."""
        if done.rowcount >= 0:
            return done.rowcount
        return self.conn.scalar(self._query("reached"), {"next": depth})

    def _reached(self) -> Any:
        v = self.VISIT
        return sa.select(sa.func.count()).select_from(v).where(v.c.depth == sa.bindparam("next"))

    def _plan_for(self, size: int, analyze: bool = True) -> None:
        """On PostgreSQL, plan each hop for its frontier: index lookups per id
        for a small one (hash joins off; the temporary table has no
        statistics, so the planner would guess); for :data:`WALK_BIG_FRONTIER`
        ids or more, statistics of the visited table (``ANALYZE``), with hash
        joins allowed. SQLite plans these joins as index lookups by itself."""
        if not self.pg:
            return
        big = size >= WALK_BIG_FRONTIER
        if big and analyze:
            self.conn.exec_driver_sql(f"ANALYZE {self.VISIT.name}")
        self.conn.exec_driver_sql(f"SET LOCAL enable_hashjoin = {'on' if big else 'off'}")

    @staticmethod
    def _head(c: Any) -> tuple:
        return (c.c.run_id, c.c.workflow, c.c.task, c.c.status, c.c.seq)

    def _insert_first(self, edges: Any, depth: Any) -> Any:
        """Insert each checkpoint of ``edges`` (id, prev, via, head) once, with
        its smallest ``(prev, via)``, at ``depth``."""
        ranked = sa.select(edges, sa.func.row_number().over(
            partition_by=edges.c.id, order_by=(self._c(edges.c.prev), self._c(edges.c.via))).label("rn")
        ).subquery("ranked")
        rows = sa.select(ranked.c.id, depth, *(ranked.c[k] for k in self.COLUMNS[2:])).where(ranked.c.rn == 1)
        return sa.insert(WALK_VISIT).from_select(list(self.COLUMNS), rows)

    def _seeds(self) -> Any:
        """Depth 1: each checkpoint that consumed a selected version, linked to the
        smallest ``(name, version)`` it consumed."""
        au, c = t.asset_use, t.checkpoint
        edges = (
            sa.select(c.c.id, sa.null().label("prev"),
                      (sa.bindparam("prefix", type_=sa.String) + au.c.name + "@" + au.c.version).label("via"),
                      *self._head(c), au.c.name, au.c.version)
            .select_from(au)
            .join(c, c.c.id == au.c.checkpoint_id)
            .where(au.c.kind == sa.bindparam("kind"), au.c.direction == "consumed",
                   sa.tuple_(au.c.name, au.c.version).in_(sa.bindparam("versions", expanding=True)))
        ).subquery("edges")
        ranked = sa.select(edges, sa.func.row_number().over(
            partition_by=edges.c.id, order_by=(self._c(edges.c.name), self._c(edges.c.version))).label("rn")
        ).subquery("ranked")
        rows = sa.select(ranked.c.id, sa.literal(1), *(ranked.c[k] for k in self.COLUMNS[2:])) \
            .where(ranked.c.rn == 1)
        return sa.insert(WALK_VISIT).from_select(list(self.COLUMNS), rows)

    def _hop(self) -> Any:
        """The next frontier: checkpoints not visited yet that consume an output or
        a claim of the frontier, each with its smallest link."""
        p, o, i = WALK_VISIT.alias("p"), t.checkpoint_artifact.alias("o"), t.checkpoint_artifact.alias("i")
        cv, au, c, seen = t.claim_value, t.asset_use, t.checkpoint, WALK_VISIT.alias("seen")
        # Tested on the consuming row, before its checkpoint is looked up: most
        # consumers of a large frontier were visited already.
        def new(consumer: Any) -> Any:
            return ~sa.exists().where(seen.c.id == consumer)

        by_artifact = (
            sa.select(c.c.id, p.c.id.label("prev"), (sa.literal("artifact:") + o.c.sha256).label("via"),
                      *self._head(c))
            .select_from(p)
            .join(o, sa.and_(o.c.checkpoint_id == p.c.id, o.c.direction == "out"))
            .join(i, sa.and_(i.c.sha256 == o.c.sha256, i.c.direction == "in"))
            .join(c, sa.and_(c.c.id == i.c.checkpoint_id, c.c.run_id == p.c.run_id))
            .where(p.c.depth == sa.bindparam("depth"), new(i.c.checkpoint_id))
        )
        version = sa.func.substr(cv.c.checkpoint_id, 1, CLAIM_VERSION_LEN)
        by_claim = (
            sa.select(c.c.id, p.c.id.label("prev"), (sa.literal("claim:") + cv.c.key + "@" + version).label("via"),
                      *self._head(c))
            .select_from(p)
            .join(cv, cv.c.checkpoint_id == p.c.id)
            .join(au, sa.and_(au.c.kind == "claim", au.c.name == cv.c.key, au.c.version == version,
                              au.c.direction == "consumed"))
            .join(c, c.c.id == au.c.checkpoint_id)
            .where(p.c.depth == sa.bindparam("depth"), new(au.c.checkpoint_id))
        )
        return self._insert_first(sa.union_all(by_artifact, by_claim).subquery("edges"), sa.bindparam("next"))

    @staticmethod
    def _visited() -> Any:
        v = WALK_VISIT
        return sa.select(*(v.c[k] for k in DatabaseWalk.READ))

    @staticmethod
    def _outputs() -> Any:
        """Outputs and published claims of the visited checkpoints (depth below the limit)."""
        v, o, cv = WALK_VISIT, t.checkpoint_artifact, t.claim_value
        outputs = (sa.select(sa.literal("a"), o.c.sha256, v.c.depth, v.c.id)
                   .select_from(v).join(o, sa.and_(o.c.checkpoint_id == v.c.id, o.c.direction == "out"))
                   .where(v.c.depth < sa.bindparam("limit")))
        claims = (sa.select(sa.literal("c"), cv.c.key, v.c.depth, v.c.id)
                  .select_from(v).join(cv, cv.c.checkpoint_id == v.c.id)
                  .where(v.c.depth < sa.bindparam("limit")))
        return sa.union_all(outputs, claims)

    def _read_into(self, result: BlastRadius, max_depth: int) -> None:
        visited = _plain_rows(self.conn, self._query("visited"), {})
        self._visited_into(result, visited)
        first: dict[str, tuple[int, str]] = {}
        for label, d, producer in self._produced(visited, max_depth):
            old = first.get(label)
            if old is None or (d, producer) < old:
                first[label] = (d, producer)
        result.depths.update((k, v[0]) for k, v in first.items())
        result.producers.update((k, v[1]) for k, v in first.items())

    @staticmethod
    def _visited_into(result: BlastRadius, visited: list[tuple]) -> None:
        """Run, task, status, depth and link of each visited checkpoint (rows as
        :data:`READ`), in bulk: a large radius has tens of thousands."""
        ids = list(map(itemgetter(0), visited))
        result.info.update(zip(ids, map(CheckpointInfo._make, map(itemgetter(slice(0, 6)), visited))))
        result.depths.update(zip(ids, map(itemgetter(6), visited)))
        result.links.update(zip(ids, zip(map(itemgetter(7), visited), map(itemgetter(8), visited))))

    def _produced(self, visited: list[tuple], max_depth: int) -> Iterator[tuple[str, int, str]]:
        """``(label, depth, producer)`` of every output of the visited checkpoints
        above ``max_depth``: each is first reached with its smallest such pair."""
        self._plan_for(len(visited), analyze=False)
        for edge, what, d, producer in _plain_rows(self.conn, self._query("outputs"), {"limit": max_depth}):
            yield (f"artifact:{what}" if edge == "a" else f"claim:{what}@{producer[:CLAIM_VERSION_LEN]}"), d, producer


# ------------------------------------------------------- the lineage index

PG_LINEAGE_LOCK = 0x2B1F6C0E9A47D3B5
"""Key of the PostgreSQL advisory lock that serialises catching up the lineage index."""

LINEAGE_LOCK_WAIT_MS = 250
"""How long (ms) a SQLite reader waits for the write lock to catch up the lineage
index before it answers with :class:`DatabaseWalk` instead."""


class LineageIndex:
    """The lineage index (tables ``lineage_node``, ``lineage_edge``, ``lineage_asset``
    and ``lineage_use``, migration 0005).

    Derived from what the store holds, and append-only: checkpoints and
    their artifact links, claims and uses are written once, together, and
    never change or go away. Every checkpoint gets a node, an integer id
    numbered ``1..N`` in the order it was indexed (within a batch, in run
    order, so the nodes of a run, which a walk mostly reaches together,
    sit together), so the index is current exactly when its largest node
    id equals the number of checkpoints. A node keeps its outputs: the
    labels ``artifact:<sha256>`` and ``claim:KEY@VERSION`` of what it
    produced, as a JSON array. ``lineage_edge`` holds, per node, each
    checkpoint that follows it through an output: a consumer of the bytes
    in the producer's own run, or a consumer of the claim version in any
    run. ``lineage_asset`` numbers every asset version recorded (a few
    hundred rows where ``asset_use`` has a million), and ``lineage_use``
    lists the nodes that consumed each, so a walk's first hop and the
    choice of versions read integers only. What may change (a
    checkpoint's status, trust marks, asset statuses) is not in the
    index; the walk reads it when it answers.

    :meth:`catch_up` indexes the checkpoints written since the last call.
    An edge is found from whichever of its ends was indexed last: from
    the new child's inputs and claim uses back to their producers, and
    from the new parent's outputs and claims to consumers indexed earlier,
    so a consumer written before its producer (within a run, or a claim
    version named by hand) links up too.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def behind(self) -> int:
        """How many checkpoints of the current snapshot are not indexed yet."""
        n = t.lineage_node
        total = self.conn.scalar(sa.select(sa.func.count()).select_from(t.checkpoint))
        return total - self.conn.scalar(sa.select(sa.func.coalesce(sa.func.max(n.c.id), 0)))

    def catch_up(self) -> int:
        """Index every checkpoint not indexed yet; the number indexed. Runs in
        the caller's write transaction (on PostgreSQL under an advisory lock,
        so two readers catching up at once index each checkpoint once)."""
        conn, n = self.conn, t.lineage_node
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_LINEAGE_LOCK)))
        base = conn.scalar(sa.select(sa.func.coalesce(sa.func.max(n.c.id), 0)))
        new: dict[str, tuple[str, int, set[str]]] = {}
        for cid, run_id, seq, label in _plain_rows(conn, _query(conn, "index_new", self._new), {}):
            labels = new.setdefault(cid, (run_id, seq, set()))[2]
            if label is not None:
                labels.add(label)
        order = sorted(new, key=lambda cid: (new[cid][0], new[cid][1], cid))
        rows = [{"id": base + k, "checkpoint_id": cid, "outputs": json.dumps(sorted(new[cid][2]))}
                for k, cid in enumerate(order, 1)]
        for start in range(0, len(rows), IN_CHUNK):
            conn.execute(sa.insert(n), rows[start:start + IN_CHUNK])
        if rows:
            assets = conn.scalar(sa.select(sa.func.coalesce(sa.func.max(t.lineage_asset.c.id), 0)))
            params = {"base": base, "assets": assets}
            for name in ("edges", "assets", "uses"):
                conn.execute(_query(conn, f"index_{name}", getattr(self, f"_{name}")), params)
        return len(rows)

    @staticmethod
    def _assets() -> Any:
        """Asset versions first recorded by the new nodes (any direction, as
        :meth:`StoreEdges.versions` counts them)."""
        au, n, a = t.asset_use, t.lineage_node, t.lineage_asset
        new = (sa.select(au.c.kind, au.c.name, au.c.version).distinct()
               .select_from(n).join(au, au.c.checkpoint_id == n.c.checkpoint_id)
               .where(n.c.id > sa.bindparam("base", type_=sa.Integer),
                      ~sa.exists().where(a.c.kind == au.c.kind, a.c.name == au.c.name, a.c.version == au.c.version))
               ).subquery("new")
        rows = sa.select(sa.bindparam("assets", type_=sa.Integer) + sa.func.row_number().over(
            order_by=(new.c.kind, new.c.name, new.c.version)), new.c.kind, new.c.name, new.c.version)
        return sa.insert(a).from_select(["id", "kind", "name", "version"], rows)

    @staticmethod
    def _uses() -> Any:
        """The asset versions each new node consumed."""
        au, n, a = t.asset_use, t.lineage_node, t.lineage_asset
        rows = (sa.select(a.c.id, n.c.id).distinct()
                .select_from(n)
                .join(au, sa.and_(au.c.checkpoint_id == n.c.checkpoint_id, au.c.direction == "consumed"))
                .join(a, sa.and_(a.c.kind == au.c.kind, a.c.name == au.c.name, a.c.version == au.c.version))
                .where(n.c.id > sa.bindparam("base", type_=sa.Integer)))
        return sa.insert(t.lineage_use).from_select(["asset", "node"], rows)

    @staticmethod
    def _new() -> Any:
        """``(checkpoint, run, seq, output label or None)`` of checkpoints not indexed yet."""
        c, n, o, cv = t.checkpoint, t.lineage_node, t.checkpoint_artifact, t.claim_value
        fresh = ~sa.exists().where(n.c.checkpoint_id == c.c.id)
        artifacts = (sa.select(c.c.id, c.c.run_id, c.c.seq, sa.literal("artifact:") + o.c.sha256)
                     .select_from(c).outerjoin(o, sa.and_(o.c.checkpoint_id == c.c.id, o.c.direction == "out"))
                     .where(fresh))
        version = sa.func.substr(c.c.id, 1, CLAIM_VERSION_LEN)
        claims = (sa.select(c.c.id, c.c.run_id, c.c.seq, sa.literal("claim:") + cv.c.key + "@" + version)
                  .select_from(c).join(cv, cv.c.checkpoint_id == c.c.id).where(fresh))
        return sa.union_all(artifacts, claims)

    @staticmethod
    def _edges() -> Any:
        """Every follower edge with an end indexed after ``base``."""
        n, ca, cv, au, c = t.lineage_node, t.checkpoint_artifact, t.claim_value, t.asset_use, t.checkpoint
        base = sa.bindparam("base", type_=sa.Integer)
        np_, nc = n.alias("np"), n.alias("nc")
        o, i = ca.alias("o"), ca.alias("i")
        cp, cc = c.alias("cp"), c.alias("cc")
        claim = sa.literal("claim:") + cv.c.key + "@" + sa.func.substr(np_.c.checkpoint_id, 1, CLAIM_VERSION_LEN)
        bytes_to_new = (
            sa.select(np_.c.id, sa.literal("artifact:") + o.c.sha256, nc.c.id)
            .select_from(nc)
            .join(i, sa.and_(i.c.checkpoint_id == nc.c.checkpoint_id, i.c.direction == "in"))
            .join(o, sa.and_(o.c.sha256 == i.c.sha256, o.c.direction == "out"))
            .join(np_, np_.c.checkpoint_id == o.c.checkpoint_id)
            .join(cc, cc.c.id == nc.c.checkpoint_id)
            .join(cp, sa.and_(cp.c.id == o.c.checkpoint_id, cp.c.run_id == cc.c.run_id))
            .where(nc.c.id > base))
        bytes_from_new = (
            sa.select(np_.c.id, sa.literal("artifact:") + o.c.sha256, nc.c.id)
            .select_from(np_)
            .join(o, sa.and_(o.c.checkpoint_id == np_.c.checkpoint_id, o.c.direction == "out"))
            .join(i, sa.and_(i.c.sha256 == o.c.sha256, i.c.direction == "in"))
            .join(nc, sa.and_(nc.c.checkpoint_id == i.c.checkpoint_id, nc.c.id <= base))
            .join(cp, cp.c.id == np_.c.checkpoint_id)
            .join(cc, sa.and_(cc.c.id == nc.c.checkpoint_id, cc.c.run_id == cp.c.run_id))
            .where(np_.c.id > base))
        claims_to_new = (
            sa.select(np_.c.id, claim, nc.c.id)
            .select_from(nc)
            .join(au, sa.and_(au.c.checkpoint_id == nc.c.checkpoint_id, au.c.kind == "claim",
                              au.c.direction == "consumed"))
            .join(cv, sa.and_(cv.c.key == au.c.name,
                              sa.func.substr(cv.c.checkpoint_id, 1, CLAIM_VERSION_LEN) == au.c.version))
            .join(np_, np_.c.checkpoint_id == cv.c.checkpoint_id)
            .where(nc.c.id > base))
        claims_from_new = (
            sa.select(np_.c.id, claim, nc.c.id)
            .select_from(np_)
            .join(cv, cv.c.checkpoint_id == np_.c.checkpoint_id)
            .join(au, sa.and_(au.c.kind == "claim", au.c.name == cv.c.key,
                              au.c.version == sa.func.substr(np_.c.checkpoint_id, 1, CLAIM_VERSION_LEN),
                              au.c.direction == "consumed"))
            .join(nc, sa.and_(nc.c.checkpoint_id == au.c.checkpoint_id, nc.c.id <= base))
            .where(np_.c.id > base))
        rows = sa.union(bytes_to_new, bytes_from_new, claims_to_new, claims_from_new)
        return sa.insert(t.lineage_edge).from_select(["parent", "via", "child"], rows)


INDEX_VISIT = sa.Table(
    "hw_lineage_visit", _WALK,
    sa.Column("node", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("depth", sa.Integer(), nullable=False),
    sa.Column("prev", sa.Integer(), nullable=True),
    sa.Column("via", sa.String(), nullable=False),
    sa.Index("ix_hw_lineage_visit_depth", "depth"),
    prefixes=["TEMPORARY"],
)
"""The nodes :class:`IndexWalk` reached: depth and first link (the node it was
reached from and the label in between), integers but for the label."""


class IndexEdges(StoreEdges):
    """:class:`StoreEdges` that finds asset versions in the lineage index, where
    each is one row, rather than among every use of them."""

    USES = t.lineage_asset


class IndexWalk(DatabaseWalk):
    """:class:`DatabaseWalk` over the lineage index (:class:`LineageIndex`), which
    must be current in the reading snapshot.

    The same hops, tie-breaks and :class:`BlastRadius`, over integers: the
    first hop reads the nodes that used the selected versions from
    ``lineage_use`` alone, each next hop follows ``lineage_edge`` (one
    index range per visited node, instead of some ten lookups over text
    keys through four tables), and a visited node keeps only its depth and
    its link (the node it was reached from, as an integer, and the label in
    between); the checkpoint ids a hop breaks ties on are looked up for
    the edges that reach new nodes only. The final read takes, per visited
    node, its checkpoint id and outputs (the node's JSON array) and its
    checkpoint's run, task and status as they are now, and hands them to
    the :class:`BlastRadius` as columns (:meth:`BlastRadius.fill`), which
    counts from them and builds its dictionaries only when they are read.
    """

    VISIT = INDEX_VISIT
    FILLED = ["node", "depth", "prev", "via"]
    _mode: str | None = None
    """The PostgreSQL join plan set for the walk's transaction: ``lookups`` or ``hashing``."""

    def _plan_for(self, size: int, analyze: bool = True) -> None:
        """On PostgreSQL, index lookups whatever the frontier's size: over integer
        keys they beat hashing whole tables even for the largest radius, and
        the visited table needs no statistics (``ANALYZE``) for that. The
        final read of a large radius may hash (see :meth:`_read_into`)."""
        if self.pg and self._mode != "lookups":
            self._mode = "lookups"
            self.conn.exec_driver_sql("SET LOCAL enable_hashjoin = off")

    def _seeds(self) -> Any:
        a, u = t.lineage_asset, t.lineage_use
        edges = (
            sa.select(u.c.node, sa.cast(sa.null(), sa.Integer).label("prev"),
                      (sa.bindparam("prefix", type_=sa.String) + a.c.name + "@" + a.c.version).label("via"),
                      a.c.name, a.c.version)
            .select_from(a)
            .join(u, u.c.asset == a.c.id)
            .where(a.c.kind == sa.bindparam("kind"),
                   sa.tuple_(a.c.name, a.c.version).in_(sa.bindparam("versions", expanding=True)))
        ).subquery("edges")
        ranked = sa.select(edges, sa.func.row_number().over(
            partition_by=edges.c.node, order_by=(self._c(edges.c.name), self._c(edges.c.version))).label("rn")
        ).subquery("ranked")
        rows = sa.select(ranked.c.node, sa.literal(1), ranked.c.prev, ranked.c.via).where(ranked.c.rn == 1)
        return sa.insert(INDEX_VISIT).from_select(self.FILLED, rows)

    def _hop(self) -> Any:
        """The nodes that follow the frontier and were not reached yet, each with its
        smallest link; the checkpoint ids ties break on are looked up only for
        those edges."""
        p, seen, e, n = INDEX_VISIT.alias("p"), INDEX_VISIT.alias("seen"), t.lineage_edge, t.lineage_node
        fresh = (
            sa.select(e.c.child.label("node"), p.c.node.label("prev"), e.c.via)
            .select_from(p).join(e, e.c.parent == p.c.node)
            .where(p.c.depth == sa.bindparam("depth"), ~sa.exists().where(seen.c.node == e.c.child))
        ).cte("fresh").prefix_with("MATERIALIZED", dialect="postgresql")
        edges = sa.select(fresh, n.c.checkpoint_id.label("prev_id")).join(n, n.c.id == fresh.c.prev).subquery("edges")
        ranked = sa.select(edges, sa.func.row_number().over(
            partition_by=edges.c.node, order_by=(self._c(edges.c.prev_id), self._c(edges.c.via))).label("rn")
        ).subquery("ranked")
        rows = sa.select(ranked.c.node, sa.bindparam("next"), ranked.c.prev, ranked.c.via).where(ranked.c.rn == 1)
        return sa.insert(INDEX_VISIT).from_select(self.FILLED, rows)

    @staticmethod
    def _visited() -> Any:
        v, c, n = INDEX_VISIT, t.checkpoint, t.lineage_node
        return (sa.select(n.c.checkpoint_id, *DatabaseWalk._head(c), v.c.depth, v.c.node, v.c.prev, v.c.via,
                          n.c.outputs)
                .select_from(v).join(n, n.c.id == v.c.node).join(c, c.c.id == n.c.checkpoint_id))

    def _read_into(self, result: BlastRadius, max_depth: int) -> None:
        """One read of the radius, handed to ``result`` as columns (:meth:`BlastRadius.fill`),
        in the order the index numbered the checkpoints. On PostgreSQL a large
        radius is read with hash joins, which beat as many index lookups, in
        memory (:data:`WALK_WORK_MEM`)."""
        if self.pg and self.size >= WALK_BIG_FRONTIER:
            self._mode = "hashing"
            self.conn.exec_driver_sql("SET LOCAL enable_hashjoin = on")
            self.conn.exec_driver_sql(f"SET LOCAL work_mem = '{WALK_WORK_MEM}'")
        rows = _plain_rows(self.conn, self._query("visited"), {})
        rows.sort(key=itemgetter(7))
        ids, run_ids, workflows, tasks, statuses, seqs, depths, nodes, prevs, vias, outputs = _columns(rows, 11)
        id_of: dict[int | None, str | None] = dict(zip(nodes, ids))
        id_of[None] = None
        if depths and max(depths) >= max_depth:
            outputs = tuple(o if d < max_depth else "[]" for o, d in zip(outputs, depths))
        labels = json.loads("[" + ",".join(outputs) + "]")
        result.fill(Reached(ids, run_ids, workflows, tasks, statuses, seqs, depths,
                            list(map(id_of.__getitem__, prevs)), vias, labels))


def _columns(rows: list[tuple], width: int) -> list[Any]:
    """``rows`` as ``width`` columns (tuples), empty ones for no rows."""
    return list(zip(*rows)) if rows else [()] * width


def _query(conn: sa.Connection, name: str, build: Any) -> Any:
    """The statement ``build()`` returns, built once per dialect."""
    key = (conn.dialect.name, name)
    if key not in _QUERIES:
        _QUERIES[key] = build()
    return _QUERIES[key]


_QUERIES: dict[tuple[str, str], sa.Select] = {}
"""The lineage statements, built once per dialect (SQLAlchemy then caches their SQL)."""


class OversightStore:
    """Store methods for oversight; see the module docstring. Mixed into ``Store``."""

    transaction: Any
    _read: Any

    # ------------------------------------------------------------ assets

    def register_asset(self, kind: str, name: str, **data: Any) -> dict:
        """Create the asset row if missing and merge ``data`` into it; returns the data."""
        a = t.asset
        now = time.time()
        with self.transaction() as conn:
            current = conn.scalar(sa.select(a.c.data).where(a.c.kind == kind, a.c.name == name))
            if current is None:
                conn.execute(sa.insert(a), {"kind": kind, "name": name, "created_at": now, "data": dict(data)})
                return dict(data)
            merged = {**current, **data}
            if merged != current:
                conn.execute(sa.update(a).where(a.c.kind == kind, a.c.name == name).values(data=merged))
            return merged

    def asset_data(self, kind: str, name: str) -> dict:
        a = t.asset
        with self._read() as conn:
            return dict(conn.scalar(sa.select(a.c.data).where(a.c.kind == kind, a.c.name == name)) or {})

    def version_records(self, kind: str | None = None, name: str | None = None,
                        statuses: Iterable[AssetStatus] | None = None) -> list[VersionRecord]:
        """Versions with a status on record (every other version is trusted)."""
        av = t.asset_version
        query = sa.select(av).order_by(av.c.kind, av.c.name, av.c.created_at, av.c.version)
        if kind is not None:
            query = query.where(av.c.kind == kind)
        if name is not None:
            query = query.where(av.c.name == name)
        if statuses is not None:
            query = query.where(av.c.status.in_([s.label for s in statuses]))
        with self._read() as conn:
            return [VersionRecord(r.kind, r.name, r.version, AssetStatus.parse(r.status), r.reason,
                                  r.created_at, r.updated_at) for r in conn.execute(query)]

    def version_status(self, subject: str) -> AssetStatus | None:
        """The status on record for ``kind:name@version``, or None (trusted, unregistered)."""
        kind, name, version = split_subject(subject)
        av = t.asset_version
        with self._read() as conn:
            s = conn.scalar(sa.select(av.c.status).where(av.c.kind == kind, av.c.name == name,
                                                         av.c.version == version))
        return None if s is None else AssetStatus.parse(s)

    def statuses_of(self, subjects: Sequence[str]) -> dict[str, AssetStatus | None]:
        """The status on record of each ``kind:name@version`` (None: no row)."""
        av = t.asset_version
        out: dict[str, AssetStatus | None] = dict.fromkeys(subjects)
        by: dict[tuple[str, str], list[str]] = defaultdict(list)
        for subject in subjects:
            kind, name, version = split_subject(subject)
            by[(kind, name)].append(version)
        with self._read() as conn:
            for (kind, name), versions in by.items():
                for chunk in _chunks(versions):
                    query = sa.select(av.c.version, av.c.status).where(
                        av.c.kind == kind, av.c.name == name, av.c.version.in_(chunk))
                    for version, status in conn.execute(query):
                        out[f"{kind}:{name}@{version}"] = AssetStatus.parse(status)
        return out

    def apply_transitions(self, transitions: Sequence[Transition], extra: Sequence[AuditRecord] = ()) -> None:
        """Write status changes and their audit records in one transaction.

        Each transition's ``old`` must still be the status on record (None:
        no row); otherwise nothing is written and StoreError says which
        version changed meanwhile.
        """
        av, a = t.asset_version, t.asset
        with self.transaction() as conn:
            for tr in transitions:
                kind, name, version = split_subject(tr.subject)
                where = (av.c.kind == kind, av.c.name == name, av.c.version == version)
                current = conn.scalar(sa.select(av.c.status).where(*where))
                expected = None if tr.old is None else tr.old.label
                if current != expected:
                    raise StoreError(
                        f"{tr.subject} changed meanwhile (now {current or 'unregistered'}, expected "
                        f"{expected or 'unregistered'}); try again")
                now = tr.record.ts
                stmt = _insert(conn, a).on_conflict_do_nothing(index_elements=["kind", "name"])
                conn.execute(stmt, {"kind": kind, "name": name, "created_at": now, "data": {}})
                if current is None:
                    conn.execute(sa.insert(av), {"kind": kind, "name": name, "version": version,
                                                 "status": tr.new.label, "reason": tr.record.reason,
                                                 "created_at": now, "updated_at": now})
                elif tr.changed:
                    conn.execute(sa.update(av).where(*where).values(status=tr.new.label, reason=tr.record.reason,
                                                                    updated_at=now))
            rows = [_audit_row(tr.record) for tr in transitions] + [_audit_row(r) for r in extra]
            if rows:
                conn.execute(sa.insert(t.audit), rows)

    def known_versions(self, ref: AssetRef) -> list[tuple[str, str, Any]]:
        """``(name, version, order)`` of every version of the assets ``ref`` names."""
        with self._read() as conn:
            return StoreEdges(conn).versions(ref)

    def asset_usage(self) -> list[AssetUsage]:
        """Every asset version in use, with how many checkpoints, runs and workflows use it."""
        au, c = t.asset_use, t.checkpoint
        query = (
            sa.select(au.c.kind, au.c.name, au.c.version, sa.func.count(sa.distinct(au.c.checkpoint_id)),
                      sa.func.count(sa.distinct(c.c.run_id)), sa.func.count(sa.distinct(c.c.workflow)))
            .join(c, c.c.id == au.c.checkpoint_id)
            .where(au.c.direction == "consumed")
            .group_by(au.c.kind, au.c.name, au.c.version)
        )
        cv = t.claim_value
        version = sa.func.substr(cv.c.checkpoint_id, 1, CLAIM_VERSION_LEN)
        produced = (
            sa.select(cv.c.key, version, sa.func.count(), sa.func.count(sa.distinct(c.c.run_id)),
                      sa.func.count(sa.distinct(c.c.workflow)))
            .join(c, c.c.id == cv.c.checkpoint_id)
            .where(c.c.status == "committed")
            .group_by(cv.c.key, version)
        )
        with self._read() as conn:
            rows = [AssetUsage(k, n, v, ck, r, w, "consumed") for k, n, v, ck, r, w in conn.execute(query)]
            rows += [AssetUsage("claim", k, v, ck, r, w, "produced") for k, v, ck, r, w in conn.execute(produced)]
        return sorted(rows, key=lambda u: (u.kind, u.name, u.version, u.direction))

    def asset_dependents(self) -> dict[str, set[str]]:
        """``kind:name`` -> the workflows with a checkpoint that consumed it."""
        au, c = t.asset_use, t.checkpoint
        query = (
            sa.select(au.c.kind, au.c.name, c.c.workflow).distinct()
            .join(c, c.c.id == au.c.checkpoint_id).where(au.c.direction == "consumed")
        )
        out: dict[str, set[str]] = defaultdict(set)
        with self._read() as conn:
            for kind, name, wf in conn.execute(query):
                out[f"{kind}:{name}"].add(wf)
        return dict(out)

    def run_tags(self) -> dict[str, list[str]]:
        """run id -> its tags (the workflow's tags when it started)."""
        r = t.run
        with self._read() as conn:
            return {i: list(tags or []) for i, tags in conn.execute(sa.select(r.c.id, r.c.tags))}

    def workflow_count(self) -> int:
        with self._read() as conn:
            return int(conn.scalar(sa.select(sa.func.count(sa.distinct(t.run.c.workflow)))) or 0)

    # -------------------------------------------------------------- pins

    def set_pin(self, pin: Pin, now: float | None = None) -> None:
        """Pin ``kind:name`` to a version for a scope (replacing that scope's pin)."""
        p = t.asset_pin
        row = {"kind": pin.kind, "name": pin.name, "scope": pin.scope, "version": pin.version,
               "reason": pin.reason, "created_at": now or time.time()}
        with self.transaction() as conn:
            stmt = _insert(conn, p)
            conn.execute(stmt.on_conflict_do_update(index_elements=["kind", "name", "scope"],
                                                    set_={"version": stmt.excluded.version,
                                                          "reason": stmt.excluded.reason,
                                                          "created_at": stmt.excluded.created_at}), row)

    def remove_pin(self, kind: str, name: str, scope: str = "*") -> bool:
        p = t.asset_pin
        with self.transaction() as conn:
            return conn.execute(sa.delete(p).where(p.c.kind == kind, p.c.name == name, p.c.scope == scope)).rowcount > 0

    def pins(self) -> list[Pin]:
        p = t.asset_pin
        with self._read() as conn:
            return [Pin(r.kind, r.name, r.version, r.scope, r.reason or "")
                    for r in conn.execute(sa.select(p).order_by(p.c.kind, p.c.name, p.c.scope))]

    # ---------------------------------------------------------- policies

    def put_policy(self, policy: Policy, now: float | None = None) -> Policy:
        """Store a policy; a changed body is a new version, the same body only
        changes the rollout (mode, share) of the current version. Older
        versions are deactivated. Returns the policy with its version."""
        p = t.policy
        now = now or time.time()
        digest = policy.digest()
        with self.transaction() as conn:
            latest = conn.execute(sa.select(p).where(p.c.name == policy.name)
                                  .order_by(p.c.version.desc()).limit(1)).first()
            if latest is not None and latest.digest == digest:
                version = latest.version
                conn.execute(sa.update(p).where(p.c.name == policy.name, p.c.version == version)
                             .values(mode=policy.mode.label, share=policy.share, active=True, updated_at=now))
            else:
                version = (latest.version if latest is not None else 0) + 1
                conn.execute(sa.update(p).where(p.c.name == policy.name).values(active=False, updated_at=now))
                conn.execute(sa.insert(p), {"name": policy.name, "version": version, "mode": policy.mode.label,
                                            "share": policy.share, "body": policy.body(), "digest": digest,
                                            "active": True, "created_at": now, "updated_at": now})
        return policy.with_rollout(policy.mode, policy.share, version)

    def retire_policy(self, name: str) -> bool:
        p = t.policy
        with self.transaction() as conn:
            return conn.execute(sa.update(p).where(p.c.name == name, p.c.active.is_(True))
                                .values(active=False, updated_at=time.time())).rowcount > 0

    def policies(self, active: bool = True, name: str | None = None) -> list[Policy]:
        """Active policies (or every version, ``active=False``), by name and version."""
        p = t.policy
        query = sa.select(p).order_by(p.c.name, p.c.version)
        if active:
            query = query.where(p.c.active.is_(True))
        if name is not None:
            query = query.where(p.c.name == name)
        with self._read() as conn:
            rows = list(conn.execute(query))
        return [policy_from_doc({**r.body, "mode": r.mode, "share": r.share, "version": r.version},
                                source=f"stored policy {r.name} v{r.version}") for r in rows]

    # ------------------------------------------------------------- audit

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        with self.transaction() as conn:
            conn.execute(sa.insert(t.audit), [_audit_row(r) for r in records])

    def audit_log(self, *, subject: str | None = None, run_id: str | None = None,
                  actor: str | None = None, since: float | None = None,
                  limit: int | None = None) -> list[AuditRecord]:
        """Audit records, oldest first; ``subject`` may be ``kind:name`` (every
        version) or ``kind:name@version``; with ``limit``, the latest ones."""
        a = t.audit
        query = sa.select(a)
        if subject is not None:
            if "@" in subject:
                query = query.where(a.c.subject == subject)
            else:
                query = query.where(sa.or_(a.c.subject == subject,
                                           a.c.subject.startswith(subject + "@", autoescape=True)))
        if run_id is not None:
            query = query.where(a.c.run_id == run_id)
        if actor is not None:
            query = query.where(a.c.actor.startswith(actor, autoescape=True))
        if since is not None:
            query = query.where(a.c.ts >= since)
        query = query.order_by(a.c.id.desc()).limit(limit) if limit else query.order_by(a.c.id)
        with self._read() as conn:
            rows = [_audit_record(r) for r in conn.execute(query)]
        return rows[::-1] if limit else rows

    def signal_sources(self, subject: str) -> set[str]:
        """The actors that flagged ``subject`` so far (for the breaker)."""
        a = t.audit
        query = sa.select(a.c.actor).distinct().where(a.c.subject == subject, a.c.action.startswith("flag"))
        with self._read() as conn:
            return set(conn.scalars(query))

    # ------------------------------------------------------------- marks

    def mark_checkpoints(self, ids: Sequence[str], mark: str, reason: str, now: float | None = None) -> None:
        """Mark checkpoints (``untrusted``: sandboxed results, never served)."""
        if not ids:
            return
        m = t.checkpoint_mark
        rows = [{"checkpoint_id": i, "mark": mark, "reason": reason, "created_at": now or time.time()}
                for i in dict.fromkeys(ids)]
        with self.transaction() as conn:
            conn.execute(_insert(conn, m).on_conflict_do_nothing(index_elements=["checkpoint_id"]), rows)

    def marks(self, ids: Sequence[str] | None = None) -> dict[str, tuple[str, str | None]]:
        """checkpoint id -> (mark, reason), for ``ids`` or for every marked one."""
        m = t.checkpoint_mark
        out: dict[str, tuple[str, str | None]] = {}
        with self._read() as conn:
            if ids is None:
                for cid, mark, reason in conn.execute(sa.select(m.c.checkpoint_id, m.c.mark, m.c.reason)):
                    out[cid] = (mark, reason)
            else:
                for chunk in _chunks(list(ids)):
                    query = sa.select(m.c.checkpoint_id, m.c.mark, m.c.reason).where(m.c.checkpoint_id.in_(chunk))
                    for cid, mark, reason in conn.execute(query):
                        out[cid] = (mark, reason)
        return out

    # ----------------------------------------------------------- canaries

    def add_canary(self, kind: str, name: str, version: str, baseline: str | None,
                   metrics: Sequence[str], now: float | None = None) -> int:
        c = t.canary
        with self.transaction() as conn:
            res = conn.execute(sa.insert(c).returning(c.c.id), {
                "kind": kind, "name": name, "version": version, "baseline": baseline,
                "metrics": list(metrics), "status": "running", "verdict": None,
                "created_at": now or time.time(), "decided_at": None})
            return int(res.scalar_one())

    def canaries(self, *, status: str | None = None, subject: str | None = None) -> list[CanaryRecord]:
        c = t.canary
        query = sa.select(c).order_by(c.c.id)
        if status is not None:
            query = query.where(c.c.status == status)
        if subject is not None:
            kind, name, version = split_subject(subject)
            query = query.where(c.c.kind == kind, c.c.name == name, c.c.version == version)
        with self._read() as conn:
            return [CanaryRecord(r.id, r.kind, r.name, r.version, r.baseline, list(r.metrics), r.status,
                                 r.verdict, r.created_at, r.decided_at) for r in conn.execute(query)]

    def decide_canary(self, canary_id: int, status: str, verdict: dict, now: float | None = None) -> None:
        c = t.canary
        with self.transaction() as conn:
            n = conn.execute(sa.update(c).where(c.c.id == canary_id).values(
                status=status, verdict=verdict, decided_at=now or time.time())).rowcount
            if not n:
                raise NotFound("canary", str(canary_id))

    # ----------------------------------------------------------- snapshot

    def oversight_snapshot(self) -> Snapshot:
        """Non-trusted statuses, pins, active policies and gated assets, in one snapshot."""
        av, a, p = t.asset_version, t.asset, t.policy
        with self._read() as conn:
            statuses: dict[str, AssetStatus] = {}
            ranges = []
            for k, n, v, s in conn.execute(sa.select(av.c.kind, av.c.name, av.c.version, av.c.status)
                                           .where(av.c.status != "trusted")):
                rng = range_of(v)
                if rng is None:
                    statuses[f"{k}:{n}@{v}"] = AssetStatus.parse(s)
                else:
                    ranges.append((k, n, rng, AssetStatus.parse(s)))
            pins = tuple(Pin(r.kind, r.name, r.version, r.scope, r.reason or "")
                         for r in conn.execute(sa.select(t.asset_pin)))
            policies = tuple(
                policy_from_doc({**r.body, "mode": r.mode, "share": r.share, "version": r.version})
                for r in conn.execute(sa.select(p).where(p.c.active.is_(True)).order_by(p.c.name))
            )
            gated = frozenset(f"{k}:{n}" for k, n, d in conn.execute(sa.select(a.c.kind, a.c.name, a.c.data))
                              if (d or {}).get("gated"))
            known: dict[str, frozenset[str]] = {}
            for key in gated:
                kind, _, name = key.partition(":")
                query = sa.select(av.c.name, av.c.version).where(
                    av.c.kind == kind, sa.or_(av.c.name == name, av.c.name.startswith(name + "/", autoescape=True)))
                known[key] = frozenset(f"{n}@{v}" for n, v in conn.execute(query))
        return Snapshot(statuses, pins, policies, gated, tuple(ranges), known)

    # ----------------------------------------------------------- lineage

    def blast_radius(self, ref: AssetRef | str, *, walk: str = "index") -> BlastRadius:
        """Everything built on the versions ``ref`` selects, with linking paths.

        ``walk="index"`` first indexes the checkpoints written since the last
        query (:class:`LineageIndex`), then walks the index inside the
        database (:class:`IndexWalk`), in a snapshot where the index is
        current, so the answer is never stale. Should writers keep the index
        behind, or a SQLite writer hold the lock it needs, it answers with
        ``walk="database"``: the same walk over the store's own tables
        (:class:`DatabaseWalk`). ``walk="hops"`` runs the pure core's walk
        with one query per hop (:class:`StoreEdges`), the reference both
        must agree with.
        """
        if isinstance(ref, str):
            ref = parse_ref(ref)
        if walk not in WALKS:
            raise StoreError(f"unknown blast-radius walk {walk!r}; use one of: {', '.join(WALKS)}")
        for _ in range(3 if walk == "index" else 0):
            with self._read() as conn:
                if not LineageIndex(conn).behind():
                    return IndexWalk(conn).run(ref, select_versions(IndexEdges(conn), ref))
            if self.catch_up_lineage() is None:
                break
        with self._read() as conn:
            edges = StoreEdges(conn)
            if walk == "hops":
                return blast_radius(edges, ref)
            return DatabaseWalk(conn).run(ref, select_versions(edges, ref))

    def catch_up_lineage(self) -> int | None:
        """Index the checkpoints written since the lineage index was last caught
        up; how many, or None when SQLite's write lock stayed taken for
        :data:`LINEAGE_LOCK_WAIT_MS` (a writer holds it; try again later)."""
        with self._errors(), self.engine.connect() as conn:
            raw = conn.connection.driver_connection if self.dialect == "sqlite" else None
            if raw is not None:
                raw.execute(f"PRAGMA busy_timeout = {LINEAGE_LOCK_WAIT_MS}")
            try:
                conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    return LineageIndex(conn).catch_up()
            except sa.exc.OperationalError as exc:
                if raw is not None and "locked" in str(exc.orig):
                    return None
                raise
            finally:
                if raw is not None:
                    raw.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")

    def claim_versions(self, key: str, *, committed: bool = True) -> list[ClaimVersion]:
        """Every value published under ``key`` by committed checkpoints, oldest first,
        each flagged ``untrusted`` when its checkpoint was sandboxed."""
        cv, c, m = t.claim_value, t.checkpoint, t.checkpoint_mark
        query = (
            sa.select(cv.c.key, cv.c.checkpoint_id, cv.c.value, cv.c.uncertainty, cv.c.units, c.c.created_at,
                      c.c.run_id, c.c.workflow, m.c.mark)
            .join(c, c.c.id == cv.c.checkpoint_id)
            .outerjoin(m, m.c.checkpoint_id == cv.c.checkpoint_id)
            .where(cv.c.key == key)
            .order_by(c.c.created_at, cv.c.id)
        )
        if committed:
            query = query.where(c.c.status == "committed")
        with self._read() as conn:
            return [ClaimVersion(k, cid[:CLAIM_VERSION_LEN], cid, v, u, units, ts, run, wf, mark is not None)
                    for k, cid, v, u, units, ts, run, wf, mark in conn.execute(query)]

    def lineage_assets(self, checkpoint_ids: Sequence[str]) -> dict[str, frozenset[str]]:
        """checkpoint -> every ``kind:name@version`` consumed by it or an ancestor in its run."""
        c, au = t.checkpoint, t.asset_use
        wanted = list(dict.fromkeys(checkpoint_ids))
        with self._read() as conn:
            runs = set()
            for chunk in _chunks(wanted):
                runs.update(conn.scalars(sa.select(c.c.run_id).where(c.c.id.in_(chunk))))
            parents: dict[str, list[str]] = {}
            direct: dict[str, set[str]] = defaultdict(set)
            for chunk in _chunks(sorted(runs)):
                for cid, ps in conn.execute(sa.select(c.c.id, c.c.parents).where(c.c.run_id.in_(chunk))):
                    parents[cid] = list(ps or [])
                query = (sa.select(au.c.checkpoint_id, au.c.kind, au.c.name, au.c.version)
                         .join(c, c.c.id == au.c.checkpoint_id)
                         .where(c.c.run_id.in_(chunk), au.c.direction == "consumed"))
                for cid, kind, name, version in conn.execute(query):
                    direct[cid].add(f"{kind}:{name}@{version}")
        memo: dict[str, frozenset[str]] = {}

        def closure(cid: str) -> frozenset[str]:
            stack, order = [cid], []
            while stack:
                x = stack.pop()
                if x in memo or x in order:
                    continue
                order.append(x)
                stack.extend(p for p in parents.get(x, []) if p not in memo)
            for x in reversed(order):
                acc = set(direct.get(x, ()))
                for p in parents.get(x, []):
                    acc |= memo.get(p, frozenset())
                memo[x] = frozenset(acc)
            return memo[cid]

        return {cid: closure(cid) for cid in wanted}

    def claim_observations(self, keys: Iterable[str] | None = None, *,
                           per_key: int | None = None) -> list[ClaimObs]:
        """Committed, trusted numeric claims (the latest per run and key, and of
        those the newest ``per_key`` per key) with their lineage's asset
        versions: the inconsistency monitor's input."""
        cv, c, m = t.claim_value, t.checkpoint, t.checkpoint_mark
        query = (
            sa.select(cv.c.key, cv.c.value, cv.c.uncertainty, cv.c.checkpoint_id, c.c.run_id, c.c.workflow,
                      c.c.created_at)
            .join(c, c.c.id == cv.c.checkpoint_id)
            .outerjoin(m, m.c.checkpoint_id == cv.c.checkpoint_id)
            .where(c.c.status == "committed", m.c.mark.is_(None))
            .order_by(c.c.created_at, cv.c.id)
        )
        if keys is not None:
            query = query.where(cv.c.key.in_(list(keys)))
        with self._read() as conn:
            rows = list(conn.execute(query))
        latest: dict[tuple[str, str], Any] = {}
        for r in rows:
            if isinstance(r.value, (int, float)) and not isinstance(r.value, bool):
                latest.pop((r.key, r.run_id), None)
                latest[(r.key, r.run_id)] = r
        if per_key is not None:
            kept: dict[str, int] = defaultdict(int)
            newest_first = []
            for k, r in reversed(list(latest.items())):
                if kept[k[0]] < per_key:
                    kept[k[0]] += 1
                    newest_first.append((k, r))
            latest = dict(reversed(newest_first))
        lineage = self.lineage_assets([r.checkpoint_id for r in latest.values()])
        return [ClaimObs(r.key, float(r.value), r.uncertainty, r.checkpoint_id, r.run_id, r.workflow,
                         lineage.get(r.checkpoint_id, frozenset()))
                for r in latest.values()]

    def verdict_count(self) -> int:
        """How many checkpoints are committed or refuted: the size of what the
        fleet-wide monitors read."""
        c = t.checkpoint
        with self._read() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(c)
                                   .where(c.c.status.in_(["committed", "refuted"]))) or 0)

    def verification_observations(self) -> list[VerificationObs]:
        """Committed and refuted checkpoints with their lineage's asset versions."""
        c = t.checkpoint
        query = sa.select(c.c.id, c.c.workflow, c.c.status).where(c.c.status.in_(["committed", "refuted"]))
        with self._read() as conn:
            rows = list(conn.execute(query))
        lineage = self.lineage_assets([r.id for r in rows])
        return [VerificationObs(r.id, r.workflow, r.status == "refuted", lineage.get(r.id, frozenset()))
                for r in rows]

    def redundancy_observations(self) -> list[RedundancyObs]:
        """Redundant calls recorded by the runtime (``redundancy`` events)."""
        e = t.event
        with self._read() as conn:
            rows = list(conn.scalars(sa.select(e.c.data).where(e.c.kind == "redundancy").order_by(e.c.id)))
        return [RedundancyObs(d["asset"], d["primary"], d["secondary"], bool(d["agree"]), d.get("detail", ""))
                for d in rows]

    def record_redundancy(self, run_id: str, task: str, checks: Sequence[dict], now: float | None = None) -> None:
        """Store redundant-call results as ``redundancy`` events."""
        e = t.event
        now = now or time.time()
        rows = [{"ts": now, "kind": "redundancy", "run_id": run_id, "task": task, "attempt": None,
                 "agent": None, "data": dict(c)} for c in checks]
        if rows:
            with self.transaction() as conn:
                conn.execute(sa.insert(e), rows)

    # ---------------------------------------------------- fleet throttles

    def admit_exposure(self, run_id: str, task: str, attempt: int, fencing: int, assets: Iterable[str], now: float,
                       refuse: Callable[[list[Running]], Refusal | None]) -> tuple[Refusal | None, list[Running]]:
        """Admit a task under fleet-wide caps, atomically with every other admission.

        In one write transaction, which admissions to capped work take in
        turn (on PostgreSQL under an advisory lock, :data:`PG_CAP_LOCK`; on
        SQLite the write lock, which ``BEGIN IMMEDIATE`` takes up front):
        read the tasks running now in the other runs
        (:meth:`running_exposures`, ``exclude_run=run_id``), ask
        ``refuse(running)`` -- the caller's decision; None admits -- and,
        if admitted, record it as an ``exposure`` event, which
        :meth:`running_exposures` counts while the task runs, before the next
        admission may read. Two coordinators racing for a cap's
        last slot cannot both take it. Returns what ``refuse`` returned and
        the running tasks it was given.
        """
        with self.transaction() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_CAP_LOCK)))
            running = _running_exposures(conn, now, run_id)
            refused = refuse(running)
            if refused is None:
                conn.execute(sa.insert(t.event), _exposure_row(run_id, task, attempt, fencing, assets, now))
            return refused, running

    def running_exposures(self, now: float, *, exclude_run: str | None = None) -> list[Running]:
        """Tasks of running runs that are running now, with the capped assets they
        were admitted as using: what fleet-wide throttles and quotas count.

        A task's latest ``exposure`` counts while its ``task_instance`` row
        still holds that lease (same fencing token, unexpired), or has not
        been written since the admission (coordinators write task rows in
        batches, a few tens of milliseconds apart) for less than
        :data:`EXPOSURE_GRACE` seconds.
        """
        with self._read() as conn:
            return _running_exposures(conn, now, exclude_run)

    def events_of_kind(self, kind: str) -> list[EventRecord]:
        e = t.event
        with self._read() as conn:
            return [EventRecord(**r._asdict()) for r in conn.execute(sa.select(e).where(e.c.kind == kind).order_by(e.c.id))]


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    return dialect_insert(conn, table)


def _exposure_row(run_id: str, task: str, attempt: int, fencing: int, assets: Iterable[str],
                  now: float | None) -> dict[str, Any]:
    return {"ts": now or time.time(), "kind": "exposure", "run_id": run_id, "task": task, "attempt": attempt,
            "agent": None, "data": {"assets": sorted(assets), "fencing": fencing}}


def _running_exposures(conn: sa.Connection, now: float, exclude_run: str | None) -> list[Running]:
    """:meth:`OversightStore.running_exposures` on ``conn``."""
    e, ti, r = t.event, t.task_instance, t.run
    query = (
        sa.select(e.c.id, e.c.ts, e.c.run_id, e.c.task, e.c.data, r.c.workflow, r.c.tags, r.c.campaign,
                  ti.c.state, ti.c.fencing, ti.c.lease_expiry, ti.c.updated_at)
        .join(r, r.c.id == e.c.run_id)
        .outerjoin(ti, sa.and_(ti.c.run_id == e.c.run_id, ti.c.task == e.c.task))
        .where(e.c.kind == "exposure", r.c.status == "running")
        .order_by(e.c.id)
    )
    if exclude_run is not None:
        query = query.where(e.c.run_id != exclude_run)
    latest = {(row.run_id, row.task): row for row in conn.execute(query)}
    out = []
    for row in latest.values():
        unwritten = (row.updated_at is None or row.updated_at < row.ts) and now - row.ts < EXPOSURE_GRACE
        leased = row.state == "leased" and row.fencing == row.data.get("fencing") \
            and (row.lease_expiry is None or row.lease_expiry > now)
        if unwritten or leased:
            dep = Dependent(row.run_id, row.workflow, row.task, frozenset(row.tags or ()), row.campaign)
            out.append(Running(dep, frozenset(row.data.get("assets", ()))))
    return out
