"""The shared work queue: durable task state that many coordinators serve at once.

The in-process runtime keeps a run's state in one process's memory (the pure
:class:`~headwater.schedule.Scheduler`). Here the state lives in the store,
so any number of coordinator processes, on any number of hosts, can claim
work from it, and the death of one loses nothing but the leases it held.

State (migration 0003; :mod:`headwater.store.schema`):

* ``queue_run``: one row per run served from the queue: ``version`` (grows
  with every result, failure and reap; what :meth:`WorkQueue.wait` watches),
  ``status``, ``total`` tasks and how many are ``final``, and the run's
  queue options (retry backoff, refutation budget);
* ``queue_task``: one row per task: its current ``attempt`` and ``state``
  (the names of :class:`headwater.schedule.State`, lower case), the numbers
  of :class:`~headwater.schedule.TaskDef` it was enqueued with, its edges
  (``deps``, ``dependents``, ``branches``) and ``waiting``, the number of
  inputs not yet resolved;
* ``queue_item``: what can be claimed: one ``run`` item per attempt, ``k``
  ``verify`` items per provisional attempt of a ``verify=k`` task. An item
  is ``ready``, ``leased`` (``token``, ``holder``, ``lease_expiry``),
  ``done``, or ``dropped`` (its attempt was decided without it);
* ``queue_verdict``: one row per verifier and attempt; the primary key is
  what keeps verifiers distinct, and a verifier that declined is recorded
  too (``approve`` NULL) so it is not offered the same attempt again;
* ``queue_lease``: one row per lease granted; its autoincrementing id is the
  fencing token, unique and increasing across the store.

Concurrency. Claims select ready items with ``SELECT ... FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so concurrent claimers never wait for each other
and never get the same item; on SQLite every write transaction takes the
database lock up front (``BEGIN IMMEDIATE``), which serialises them. A
result locks its item, then the task rows it changes (the task's own row
first, which serialises verdicts on one attempt), then bumps the run's
``queue_run`` version, and last, if that finished the run, the ``run`` row:
one lock order for every transaction, so no deadlocks, and the one
run-wide lock is held only for the statements just before the commit. A
batch of results (:meth:`WorkQueue.lock_items`, :meth:`WorkQueue.commit_many_in`)
takes the same order: its items in id order, then their task rows in task
order, then dependents and the version bump; two batches that reach shared
dependents in different orders can still deadlock, and the loser is run again
(:func:`retrying`). The version bump and, on PostgreSQL, the ``NOTIFY``
that wakes waiters are part of the same transaction, so a waiter never sees
a notification before the change. A checkpoint written with a result gets that version as its
``seq`` (increasing in write order, with gaps where a version counted a
verdict or a reap).

Semantics. A task is ready only when every input is committed: unlike the
in-process runtime, the shared queue does not run ahead on provisional
results. A ``verify=k`` task is provisional after its run item completes
and commits on ``k`` approvals from distinct agents other than its producer;
``reject`` rejections refute the attempt and queue a new one (up to the
run's refutation budget). A failed attempt is retried ``retries`` times,
after the core's backoff (:func:`headwater.schedule.core.backoff_delay`).
A committed branch decision readies the chosen alternative and skips the
others; a task whose inputs were all skipped is skipped, one whose input
failed for good fails. A report with a token that is no longer current
(the lease expired and was reaped, or the item was already completed or
dropped) raises :class:`StaleLease`, so each attempt is accepted at most
once and each task committed exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from headwater.errors import HeadwaterError, NotFound, RunError
from headwater.schedule import State, TaskDef
from headwater.schedule import core as _core
from headwater.schedule.graph import compile_graph
from headwater.store import schema as t
from headwater.store.queries import chunks as _chunks

CHANNEL = "headwater_queue"
"""The PostgreSQL ``NOTIFY`` channel; payload ``"<run_id>:<version>"``."""

DEFAULT_BACKOFF = (0.5, 2.0, 30.0)
"""Retry backoff ``(base, factor, cap)`` seconds, as the in-process scheduler's default."""

DEFAULT_MAX_REFUTATIONS = 3
"""Refutations of one task before it fails for good, as the in-process scheduler's default."""

SQLITE_POLL_S = 0.05
"""How often :meth:`WorkQueue.wait` looks at the version on SQLite, which has no LISTEN."""

READY, LEASED, DONE, DROPPED = "ready", "leased", "done", "dropped"
"""States of a queue item."""


def state_name(state: State) -> str:
    """A core state as stored in ``queue_task.state``."""
    return state.name.lower()


_COMMITTED, _SKIPPED, _FAILED = state_name(State.COMMITTED), state_name(State.SKIPPED), state_name(State.FAILED)
_PENDING, _READY_T, _LEASED_T = state_name(State.PENDING), state_name(State.READY), state_name(State.LEASED)
_PROVISIONAL = state_name(State.PROVISIONAL)


@dataclass(frozen=True)
class Claim:
    """One leased piece of work: run (``kind="run"``) or verify (``"verify"``) one attempt.

    ``token`` is the fencing token every later report must carry;
    ``producer`` (verify claims) is the agent whose attempt is judged.
    """

    token: int
    run_id: str
    task: str
    attempt: int
    kind: str
    role: str
    holder: str
    lease_expiry: float
    producer: str | None = None

    def to_json(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict) -> Claim:
        missing = [k for k in ("token", "run_id", "task", "attempt", "kind", "role", "holder", "lease_expiry")
                   if k not in data]
        if missing:
            raise ValueError(f"claim is missing field(s) {', '.join(missing)}")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class StaleLease(HeadwaterError):
    """A report carried a fencing token that is no longer current.

    The lease expired and was reaped (another agent may be re-running the
    work), or the item was already completed or dropped. The report is
    refused as a whole; the agent should drop the work and claim anew.
    """

    def __init__(self, token: int, run_id: str | None = None, task: str | None = None, why: str = "") -> None:
        self.token, self.run_id, self.task = token, run_id, task
        where = f"run {run_id} task {task!r} " if run_id else ""
        super().__init__(f"{where}lease token {token} is no longer current"
                         f"{': ' + why if why else ''}; drop this work and claim again")


@dataclass(frozen=True)
class _Backoff:
    """The part of the core's run state :func:`headwater.schedule.core.backoff_delay` reads."""

    backoff: tuple[float, float, float]


class WorkQueue:
    """The work queue of every run served from one store (see the module docstring)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._listener: Any = None

    @property
    def postgres(self) -> bool:
        return self.store.dialect == "postgresql"

    def close(self) -> None:
        """Release the LISTEN connection, if one was opened."""
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None

    # ------------------------------------------------------------ enqueue

    def enqueue_run(self, run_id: str, wf: Any, now: float, *,
                    backoff: tuple[float, float, float] = DEFAULT_BACKOFF,
                    max_refutations: int = DEFAULT_MAX_REFUTATIONS) -> int:
        """Put every task of ``wf`` for the already recorded run ``run_id`` on the queue.

        ``wf`` is a :class:`~headwater.spec.Workflow` or a list of
        :class:`~headwater.schedule.TaskDef`. Tasks without inputs are ready
        at once. Returns the number of tasks.
        """
        defs = list(wf) if isinstance(wf, (list, tuple)) else _task_defs(wf)
        graph = compile_graph(defs)
        base, factor, cap = backoff
        if base < 0 or factor < 1 or cap < 0 or max_refutations < 0:
            raise RunError(f"backoff must be (base >= 0, factor >= 1, cap >= 0) and max_refutations >= 0, "
                           f"got {backoff!r}, {max_refutations!r}", run_id=run_id)
        names = graph.names
        rows, items = [], []
        for i, d in enumerate(graph.defs):
            deps = [names[p] for p in graph.parents[i]]
            ctrl = graph.controller[i]
            dependents = sorted({names[c] for c, _ in graph.children[i]} | {names[a] for a in graph.alternatives[i]})
            waiting = len(deps) + (ctrl >= 0)
            rows.append({
                "run_id": run_id, "task": d.name, "attempt": 1, "state": _READY_T if not waiting else _PENDING,
                "role": d.role, "verifier_role": d.verifier_role, "verify": d.verify, "reject": d.reject,
                "retries": d.retries, "priority": d.priority, "failures": 0, "refutations": 0,
                "deps": deps, "dependents": dependents,
                "branches": list(d.branches), "waiting": waiting, "skipped_inputs": 0, "producer": None,
                "checkpoint_id": None, "decision": None, "error": None, "updated_at": now,
            })
            if not waiting:
                items.append(_run_item(run_id, d.name, 1, d.role, d.priority, now, now))
        with self.store.transaction() as conn:
            if conn.execute(sa.select(t.run.c.id).where(t.run.c.id == run_id)).first() is None:
                raise NotFound("run", run_id, hint="record the run (headwater submit) before enqueueing it")
            conn.execute(sa.insert(t.queue_run), {
                "run_id": run_id, "version": 1, "status": "running", "total": len(rows), "final": 0,
                "options": {"backoff": [float(base), float(factor), float(cap)], "max_refutations": max_refutations},
                "created_at": now, "updated_at": now,
            })
            conn.execute(sa.insert(t.queue_task), rows)
            if items:
                conn.execute(sa.insert(t.queue_item), items)
            _notify(conn, run_id, 1)
        return len(rows)

    # -------------------------------------------------------------- claim

    def claim(self, holder: str, roles: Sequence[str], now: float, lease_s: float,
              limit: int = 1, runs: Sequence[str] | None = None, share: int = 1) -> list[Claim]:
        """Lease up to ``limit`` ready items of ``roles`` to ``holder``, verifications first.

        A verify item is never offered to the producer of the attempt it
        judges, nor to an agent that already judged, declined or holds
        another verify item of that attempt.

        ``share``: how many claimers (this one included) want the ready
        items now. The claim then takes at most its fair part of those it
        sees, rounded up, so that a layer of a DAG narrower than ``limit``
        is split between idle agents instead of going to the first to ask.
        """
        if limit <= 0 or not roles:
            return []
        with self.store.transaction() as conn:
            return self.claim_in(conn, holder, roles, now, lease_s, limit, runs, share)

    def claim_in(self, conn: sa.Connection, holder: str, roles: Sequence[str], now: float, lease_s: float,
                 limit: int = 1, runs: Sequence[str] | None = None, share: int = 1) -> list[Claim]:
        """:meth:`claim` inside the caller's transaction.

        A batch of results and the reporter's next claim can so share one
        commit; the claim comes last, after the results' locks (items, tasks,
        the run's version), and takes ready items with ``SKIP LOCKED``, so it
        waits for no other claimer.
        """
        if limit <= 0 or not roles:
            return []
        qi, qv = t.queue_item, t.queue_verdict
        other = qi.alias("other")
        judged = sa.exists().where(qv.c.run_id == qi.c.run_id, qv.c.task == qi.c.task,
                                   qv.c.attempt == qi.c.attempt, qv.c.verifier == holder)
        holding = sa.exists().where(other.c.run_id == qi.c.run_id, other.c.task == qi.c.task,
                                    other.c.attempt == qi.c.attempt, other.c.kind == "verify",
                                    other.c.state == LEASED, other.c.holder == holder)
        query = (
            sa.select(qi.c.id, qi.c.run_id, qi.c.task, qi.c.attempt, qi.c.kind, qi.c.role, qi.c.producer)
            .where(qi.c.state == READY, qi.c.role.in_(list(roles)), qi.c.not_before <= now,
                   sa.or_(qi.c.kind == "run",
                          sa.and_(qi.c.producer != holder, ~judged, ~holding)))
            .order_by(qi.c.kind.desc(), qi.c.priority.desc(), qi.c.id)
            # Room to drop a second verify item of one attempt and still fill the batch.
            .limit(limit * 2 + 2)
            .with_for_update(skip_locked=True, of=qi)
        )
        if runs is not None:
            query = query.where(qi.c.run_id.in_(list(runs)))
        expiry = now + lease_s
        seen: set[tuple[str, str, int]] = set()
        chosen = []
        for row in conn.execute(query).all():
            if row.kind == "verify":
                key = (row.run_id, row.task, row.attempt)
                if key in seen:
                    continue
                seen.add(key)
            chosen.append(row)
        if not chosen:
            return []
        chosen = chosen[:min(limit, -(-len(chosen) // max(1, share)))]
        # One statement per table for the whole batch: the leases (their
        # ids are the fencing tokens), the items, the tasks now running.
        tokens = conn.execute(
            sa.insert(t.queue_lease).returning(t.queue_lease.c.token, sort_by_parameter_order=True),
            [{"item_id": row.id, "holder": holder, "granted_at": now} for row in chosen]).scalars().all()
        conn.execute(_LEASE_ITEM, [{"b_id": row.id, "b_token": token, "b_holder": holder, "b_expiry": expiry,
                                    "b_now": now} for row, token in zip(chosen, tokens)])
        running: dict[str, list[str]] = {}
        for row in chosen:
            if row.kind == "run":
                running.setdefault(row.run_id, []).append(row.task)
        for run_id, names in running.items():
            _set_tasks(conn, run_id, names, now, state=_LEASED_T)
        return [Claim(token, row.run_id, row.task, row.attempt, row.kind, row.role, holder, expiry, row.producer)
                for row, token in zip(chosen, tokens)]

    def claimable(self, roles: Sequence[str], now: float, runs: Sequence[str] | None = None) -> bool:
        """Whether an item of ``roles`` (of ``runs``, when given) is ready now: a read, no lock.

        A cheap test before :meth:`claim`, whose transaction takes the write
        lock on SQLite; a verify item the asker may not take still counts.
        """
        if not roles or (runs is not None and not runs):
            return False
        qi = t.queue_item
        query = sa.select(qi.c.id).where(qi.c.state == READY, qi.c.role.in_(list(roles)), qi.c.not_before <= now)
        if runs is not None:
            query = query.where(qi.c.run_id.in_(list(runs)))
        with self._read() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def leases(self, tokens: Sequence[int]) -> dict[int, Claim]:
        """The items these fencing tokens were granted on, by token (tokens never granted are left out).

        ``holder`` and ``lease_expiry`` are the item's now: an item already
        completed or reaped is still found under its last token, so whether a
        report is current is decided only when it is applied (:class:`StaleLease`).
        """
        qi = t.queue_item
        wanted = sorted({int(x) for x in tokens})
        out: dict[int, Claim] = {}
        with self._read() as conn:
            for chunk in _chunks(wanted):
                for row in conn.execute(sa.select(qi).where(qi.c.token.in_(chunk))):
                    out[row.token] = Claim(row.token, row.run_id, row.task, row.attempt, row.kind, row.role,
                                           row.holder, row.lease_expiry, row.producer)
        return out

    def lease(self, token: int) -> Claim | None:
        """The item fencing token ``token`` was granted on (see :meth:`leases`), or None."""
        return self.leases([token]).get(int(token))

    def renew(self, token: int, holder: str, now: float, lease_s: float) -> float:
        """Extend a lease ``holder`` still holds; returns the new expiry."""
        qi = t.queue_item
        expiry = now + lease_s
        with self.store.transaction() as conn:
            done = conn.execute(sa.update(qi).where(qi.c.token == token, qi.c.holder == holder, qi.c.state == LEASED)
                                .values(lease_expiry=expiry, updated_at=now))
            if done.rowcount != 1:
                raise self.stale(conn, token)
        return expiry

    # ------------------------------------------------------------ results

    def complete(self, token: int, holder: str, now: float, *, checkpoint_id: str | None = None,
                 approve: bool | None = None, reason: str = "", branch: str | None = None) -> None:
        """Report the work under ``token`` done.

        A run item: the attempt's result is ``checkpoint_id`` (and, for a
        branching task, the ``branch`` it chose; read from the checkpoint's
        bundle when not given). A verify item: ``approve`` is the verdict.
        """
        def run() -> None:
            with self.store.transaction() as conn:
                self.complete_in(conn, token, holder, now, checkpoint_id=checkpoint_id, approve=approve,
                                 reason=reason, branch=branch)

        retrying(run)

    def complete_in(self, conn: sa.Connection, token: int, holder: str, now: float, *,
                    checkpoint_id: str | None = None, approve: bool | None = None, reason: str = "",
                    branch: str | None = None, item: Any = None, written: bool = False,
                    after_close: Callable[[int], None] | None = None) -> None:
        """:meth:`complete` inside the caller's transaction (which also writes the checkpoint).

        ``item`` is what :meth:`lock_item` returned, when the caller locked it already;
        ``written``: the checkpoint is written in this transaction with the status it will have
        once committed (so committing it needs no status update); ``after_close`` is called with
        the run's new queue version once the task states changed and the run's ``queue_run`` row
        is locked: the caller writes the checkpoint there, with that version as its ``seq``.
        """
        item = item if item is not None else self.lock_item(conn, token, holder)
        _done(conn, item, now)
        ev = _Events(conn, item.run_id, now)
        if item.kind == "verify":
            if approve is None:
                raise ValueError(f"verify claim {token} of run {item.run_id} task {item.task!r} "
                                 "needs approve=True or False")
            conn.execute(sa.insert(t.queue_verdict), {
                "run_id": item.run_id, "task": item.task, "attempt": item.attempt, "verifier": holder,
                "approve": bool(approve), "reason": reason, "token": token, "created_at": now})
            ev.verdict(item.task, item.attempt)
        else:
            if branch is None and checkpoint_id is not None:
                branch = _branch_of(conn, checkpoint_id)
            ev.finished(item.task, item.attempt, holder, checkpoint_id, branch, written)
        version = ev.close()
        if after_close is not None:
            after_close(version)

    def fail(self, token: int, holder: str, now: float, error: str) -> None:
        """The work under ``token`` failed: retry with backoff per the task's ``retries``;
        on a verify item, the verifier declines and another takes the item."""

        def run() -> None:
            with self.store.transaction() as conn:
                self.fail_in(conn, self.lock_item(conn, token, holder), holder, now, error)

        retrying(run)

    def fail_in(self, conn: sa.Connection, item: Any, holder: str, now: float, error: str) -> None:
        """:meth:`fail` inside the caller's transaction, for the ``item`` it locked."""
        ev = _Events(conn, item.run_id, now)
        if item.kind == "verify":
            conn.execute(sa.insert(t.queue_verdict), {
                "run_id": item.run_id, "task": item.task, "attempt": item.attempt, "verifier": holder,
                "approve": None, "reason": error, "token": item.token, "created_at": now})
            _release(conn, item.id, now)
        else:
            _done(conn, item, now)
            ev.failed(item.task, item.attempt, error)
        ev.close()

    def lock_items(self, conn: sa.Connection, reports: Sequence[tuple[int, str]]
                   ) -> tuple[dict[int, Any], dict[tuple[str, str], Any]]:
        """Lock the items of many reports ``(token, holder)`` at once, then their tasks' rows.

        Returns the items still leased to their reporter, by token, and the
        ``queue_task`` rows of those items, by ``(run_id, task)``. A token
        missing from the first is stale (:meth:`stale` says why). Rows are
        locked in id, then (run, task) order, the order every result takes.
        """
        qi, qt = t.queue_item, t.queue_task
        holders = {int(token): holder for token, holder in reports}
        items: dict[int, Any] = {}
        for chunk in _chunks(sorted(holders)):
            for row in conn.execute(sa.select(qi).where(qi.c.token.in_(chunk)).order_by(qi.c.id).with_for_update()):
                if row.state == LEASED and row.holder == holders[row.token]:
                    items[row.token] = row
        names: dict[str, set[str]] = {}
        for row in items.values():
            names.setdefault(row.run_id, set()).add(row.task)
        tasks: dict[tuple[str, str], Any] = {}
        for run_id in sorted(names):
            for chunk in _chunks(sorted(names[run_id])):
                for row in conn.execute(sa.select(qt).where(qt.c.run_id == run_id, qt.c.task.in_(chunk))
                                        .order_by(qt.c.task).with_for_update()):
                    tasks[(run_id, row.task)] = row
        return items, tasks

    def commit_many_in(self, conn: sa.Connection, results: Sequence[tuple[Any, Any, str, str, str | None]],
                       now: float) -> dict[int, int]:
        """Commit many finished run items at once, inside the caller's transaction; return token -> version.

        Each result is ``(item, task, holder, checkpoint_id, decision)``, with
        ``item`` and ``task`` locked by :meth:`lock_items`; each task must need
        no verification and have no branches (anything else goes through
        :meth:`complete_in`). Their checkpoints are written by the caller as
        committed, each with its returned version as its ``seq``. Per run,
        a fixed number of statements whatever the batch size: the items done,
        the tasks committed, their dependents' counts of inputs still
        waiting, the newly ready ones and their items, and one version bump
        (with its ``NOTIFY``) covering every result.
        """
        qi, qt = t.queue_item, t.queue_task
        by_run: dict[str, list[tuple[Any, Any, str, str, str | None]]] = {}
        for r in results:
            if r[1].verify > 0 or r[1].branches:
                raise ValueError(f"task {r[1].task!r} of run {r[1].run_id} needs verification or chooses a branch; "
                                 "complete it with complete_in")
            by_run.setdefault(r[0].run_id, []).append(r)
        versions: dict[int, int] = {}
        for run_id in sorted(by_run):
            batch = by_run[run_id]
            for chunk in _chunks([item.id for item, *_ in batch]):
                conn.execute(sa.update(qi).where(qi.c.id.in_(chunk))
                             .values(state=DONE, lease_expiry=None, updated_at=now))
            conn.execute(_COMMIT_TASK, [{"b_run": run_id, "b_task": item.task, "b_producer": holder,
                                         "b_checkpoint": ck, "b_decision": decision, "b_now": now}
                                        for item, _, holder, ck, decision in batch])
            ev = _Events(conn, run_id, now)
            ev.final += len(batch)
            inputs: dict[str, int] = {}
            for _, task, *_ in batch:
                for name in task.dependents:
                    inputs[name] = inputs.get(name, 0) + 1
            ready = []
            # One statement per distinct count of inputs resolved (one or two
            # in most graphs), so the statement's shape, hence its compiled
            # form, does not change from batch to batch.
            by_count: dict[int, list[str]] = {}
            for name in sorted(inputs):
                by_count.setdefault(inputs[name], []).append(name)
            children = []
            for count, names in sorted(by_count.items()):
                for chunk in _chunks(names):
                    children += conn.execute(
                        sa.update(qt).where(qt.c.run_id == run_id, qt.c.task.in_(chunk), qt.c.state == _PENDING)
                        .values(waiting=qt.c.waiting - count, updated_at=now).returning(*qt.c)).all()
            for child in sorted(children, key=lambda c: c.task):
                if child.waiting > 0:
                    continue
                if child.deps and child.skipped_inputs >= len(child.deps):
                    ev._skip(child, "every input was skipped")
                else:
                    ready.append(child)
            if ready:
                _set_tasks(conn, run_id, [c.task for c in ready], now, state=_READY_T)
                conn.execute(sa.insert(t.queue_item), [_run_item(run_id, c.task, c.attempt, c.role, c.priority,
                                                                 now, now) for c in ready])
            version = ev.close(by=len(batch))
            for i, (item, *_) in enumerate(batch):
                versions[item.token] = version - len(batch) + 1 + i
        return versions

    def lock_item(self, conn: sa.Connection, token: int, holder: str) -> Any:
        """Lock the leased item ``token`` held by ``holder`` and return its row; raise StaleLease if it is not."""
        qi = t.queue_item
        item = conn.execute(sa.select(qi).where(qi.c.token == token).with_for_update()).first()
        if item is None or item.state != LEASED or item.holder != holder:
            raise self.stale(conn, token)
        return item

    def stale(self, conn: sa.Connection, token: int) -> StaleLease:
        qi, ql = t.queue_item, t.queue_lease
        row = conn.execute(sa.select(qi.c.run_id, qi.c.task, qi.c.state, qi.c.holder)
                           .where(qi.c.token == token)).first()
        if row is not None:
            why = {DONE: "already completed", DROPPED: "its attempt was already decided"}.get(
                row.state, f"now held by {row.holder}")
            return StaleLease(token, row.run_id, row.task, why)
        lease = conn.execute(sa.select(ql.c.item_id).where(ql.c.token == token)).first()
        if lease is None:
            return StaleLease(token, why="no such lease was ever granted")
        item = conn.execute(sa.select(qi.c.run_id, qi.c.task).where(qi.c.id == lease.item_id)).first()
        return StaleLease(token, item.run_id if item else None, item.task if item else None,
                          "the lease expired and was reaped")

    # -------------------------------------------------------------- reap

    def reap(self, now: float) -> list[Claim]:
        """Put every lease expired before ``now`` back to ready; return the leases reaped.

        Items being completed at this moment are skipped (their lock is
        held) and looked at again on the next call.
        """
        qi = t.queue_item
        expired = (qi.c.state == LEASED) & (qi.c.lease_expiry < now)
        out: list[Claim] = []
        with self.store.transaction() as conn:
            rows = conn.execute(sa.select(qi).where(expired).order_by(qi.c.id)
                                .with_for_update(skip_locked=True)).all()
            for row in rows:
                _release(conn, row.id, now)
                if row.kind == "run":
                    _set_task(conn, row.run_id, row.task, now, state=_READY_T)
                out.append(Claim(row.token, row.run_id, row.task, row.attempt, row.kind, row.role, row.holder,
                                 row.lease_expiry, row.producer))
            for run_id in sorted({row.run_id for row in rows}):
                _Events(conn, run_id, now).close()
        return out

    # ------------------------------------------------------------ reading

    def scoreboard(self, run_id: str) -> dict:
        """Every task's state, attempt, agents executing and verifying it, and approvals so far."""
        qt, qi, qv = t.queue_task, t.queue_item, t.queue_verdict
        with self._read() as conn:
            run = conn.execute(sa.select(t.queue_run).where(t.queue_run.c.run_id == run_id)).first()
            if run is None:
                raise NotFound("queued run", run_id, hint="submit it with `headwater submit`")
            tasks = {r.task: {"state": r.state, "attempt": r.attempt, "executing": 0, "verifying": 0, "approvals": 0}
                     for r in conn.execute(sa.select(qt.c.task, qt.c.state, qt.c.attempt).where(qt.c.run_id == run_id)
                                           .order_by(qt.c.task))}
            cur = sa.and_(qt.c.run_id == qi.c.run_id, qt.c.task == qi.c.task, qt.c.attempt == qi.c.attempt)
            leased = (sa.select(qi.c.task, qi.c.kind, sa.func.count()).select_from(qi.join(qt, cur))
                      .where(qi.c.run_id == run_id, qi.c.state == LEASED).group_by(qi.c.task, qi.c.kind))
            for task, kind, n in conn.execute(leased):
                tasks[task]["executing" if kind == "run" else "verifying"] = n
            vcur = sa.and_(qt.c.run_id == qv.c.run_id, qt.c.task == qv.c.task, qt.c.attempt == qv.c.attempt)
            approvals = (sa.select(qv.c.task, sa.func.count()).select_from(qv.join(qt, vcur))
                         .where(qv.c.run_id == run_id, qv.c.approve.is_(True)).group_by(qv.c.task))
            for task, n in conn.execute(approvals):
                tasks[task]["approvals"] = n
        return {"run_id": run_id, "version": run.version, "status": run.status, "total": run.total,
                "final": run.final, "tasks": tasks}

    def counts(self, run_id: str) -> dict[str, int]:
        """How many tasks of the run are in each state (a cheap progress figure)."""
        qt = t.queue_task
        with self._read() as conn:
            rows = conn.execute(sa.select(qt.c.state, sa.func.count()).where(qt.c.run_id == run_id)
                                .group_by(qt.c.state)).all()
        return {state: n for state, n in rows}

    def version(self, run_id: str) -> int:
        with self._read() as conn:
            v = conn.scalar(sa.select(t.queue_run.c.version).where(t.queue_run.c.run_id == run_id))
        if v is None:
            raise NotFound("queued run", run_id, hint="submit it with `headwater submit`")
        return int(v)

    def finished(self, run_id: str) -> bool:
        """True once every task of the run is committed, skipped or failed."""
        with self._read() as conn:
            status = conn.scalar(sa.select(t.queue_run.c.status).where(t.queue_run.c.run_id == run_id))
        if status is None:
            raise NotFound("queued run", run_id, hint="submit it with `headwater submit`")
        return status != "running"

    def active_runs(self) -> list[str]:
        """Runs with tasks still to finish, oldest first."""
        qr = t.queue_run
        with self._read() as conn:
            return list(conn.scalars(sa.select(qr.c.run_id).where(qr.c.status == "running")
                                     .order_by(qr.c.created_at)))

    def next_ready_at(self, roles: Sequence[str]) -> float | None:
        """The earliest ``not_before`` of a ready item of ``roles`` (retries waiting out their backoff)."""
        qi = t.queue_item
        with self._read() as conn:
            return conn.scalar(sa.select(sa.func.min(qi.c.not_before)).where(qi.c.state == READY,
                                                                              qi.c.role.in_(list(roles))))

    def _read(self):
        return self.store.engine.connect()

    # ------------------------------------------------------------ waiting

    def wait(self, run_id: str, after_version: int, timeout: float) -> int:
        """Block until the run's version exceeds ``after_version`` or ``timeout`` passes; return the version.

        PostgreSQL: ``LISTEN`` on a dedicated connection, so a waiter wakes
        the moment a change commits; SQLite: a short poll.
        """
        return self._wait(run_id, after_version, timeout)

    def wait_any(self, timeout: float) -> bool:
        """Block until any run changes or ``timeout`` passes; True if something changed.

        On SQLite this just sleeps for up to ``timeout`` (a coordinator's
        idle pause there); on PostgreSQL it wakes on the first notification.
        """
        if not self.postgres:
            time.sleep(max(0.0, min(timeout, SQLITE_POLL_S * 4)))
            return False
        listener = self._listen()
        for _ in listener.notifies(timeout=max(0.0, timeout), stop_after=1):
            return True
        return False

    def _wait(self, run_id: str, after_version: int, timeout: float) -> int:
        deadline = time.monotonic() + max(0.0, timeout)
        if self.postgres:
            listener = self._listen()
            current = self.version(run_id)
            while current <= after_version:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for note in listener.notifies(timeout=left, stop_after=1):
                    rid, _, v = note.payload.rpartition(":")
                    if rid == run_id:
                        current = max(current, int(v))
            return current
        while True:
            current = self.version(run_id)
            left = deadline - time.monotonic()
            if current > after_version or left <= 0:
                return current
            time.sleep(min(SQLITE_POLL_S, left))

    def _listen(self) -> Any:
        if self._listener is None:
            import psycopg

            url = self.store.engine.url.set(drivername="postgresql")
            dsn = url.render_as_string(hide_password=False)
            conn = psycopg.connect(dsn, autocommit=True)
            conn.execute(f"LISTEN {CHANNEL}")
            self._listener = conn
        return self._listener


# ------------------------------------------------------------------ helpers


RETRY_SQLSTATES = frozenset({"40P01", "40001"})
"""PostgreSQL deadlock and serialization failures: the transaction is safe to run again."""


def retrying(fn: Callable[[], Any], attempts: int = 5) -> Any:
    """Run the transaction ``fn`` again when PostgreSQL aborted it as a deadlock victim.

    The lock order (module docstring) rules out deadlocks between results
    of one run in all but one case: two failures or skips cascading at
    once over shared descendants reached in different orders. PostgreSQL
    then aborts one of them, which is safe to run again.
    """
    for i in range(attempts):
        try:
            return fn()
        except HeadwaterError as exc:
            cause = getattr(exc.__cause__, "orig", None)
            if getattr(cause, "sqlstate", None) not in RETRY_SQLSTATES or i == attempts - 1:
                raise
    return None


def _task_defs(wf: Any) -> list[TaskDef]:
    """The scheduling core's view of a workflow spec's tasks (no duration history: the queue orders
    by priority only)."""
    return [TaskDef.from_spec(s) for s in wf.tasks.values()]


def _run_item(run_id: str, task: str, attempt: int, role: str, priority: int, now: float,
              not_before: float, *, kind: str = "run", producer: str | None = None) -> dict:
    return {"run_id": run_id, "task": task, "attempt": attempt, "kind": kind, "role": role, "state": READY,
            "priority": priority, "not_before": not_before, "token": None, "holder": None, "lease_expiry": None,
            "producer": producer, "created_at": now, "updated_at": now}


def _notify(conn: sa.Connection, run_id: str, version: int) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_notify(CHANNEL, f"{run_id}:{version}")))


def _done(conn: sa.Connection, item: Any, now: float) -> None:
    qi = t.queue_item
    conn.execute(sa.update(qi).where(qi.c.id == item.id).values(state=DONE, lease_expiry=None, updated_at=now))


def _release(conn: sa.Connection, item_id: int, now: float) -> None:
    qi = t.queue_item
    conn.execute(sa.update(qi).where(qi.c.id == item_id).values(
        state=READY, token=None, holder=None, lease_expiry=None, updated_at=now))


_LEASE_ITEM = sa.update(t.queue_item).where(t.queue_item.c.id == sa.bindparam("b_id")).values(
    state=LEASED, token=sa.bindparam("b_token"), holder=sa.bindparam("b_holder"),
    lease_expiry=sa.bindparam("b_expiry"), updated_at=sa.bindparam("b_now"))
"""One claimed item leased (executed for a whole batch at once)."""

_COMMIT_TASK = sa.update(t.queue_task).where(
    t.queue_task.c.run_id == sa.bindparam("b_run"), t.queue_task.c.task == sa.bindparam("b_task")).values(
    state=_COMMITTED, error=None, producer=sa.bindparam("b_producer"), checkpoint_id=sa.bindparam("b_checkpoint"),
    decision=sa.bindparam("b_decision"), updated_at=sa.bindparam("b_now"))
"""One task committed with its result (executed for a whole batch at once)."""


def _set_tasks(conn: sa.Connection, run_id: str, tasks: Sequence[str], now: float, **values: Any) -> None:
    qt = t.queue_task
    for chunk in _chunks(list(tasks)):
        conn.execute(sa.update(qt).where(qt.c.run_id == run_id, qt.c.task.in_(chunk)).values(updated_at=now, **values))


def _set_task(conn: sa.Connection, run_id: str, task: str, now: float, **values: Any) -> None:
    qt = t.queue_task
    conn.execute(sa.update(qt).where(qt.c.run_id == run_id, qt.c.task == task).values(updated_at=now, **values))


def _branch_of(conn: sa.Connection, checkpoint_id: str) -> str | None:
    data = conn.scalar(sa.select(t.checkpoint.c.bundle).where(t.checkpoint.c.id == checkpoint_id))
    if data is None:
        return None
    return (json.loads(bytes(data)).get("manifest") or {}).get("branch")


class _Events:
    """The consequences of one result for one run, inside the caller's transaction.

    The caller has locked the queue item. Task rows are locked as they are
    read; :meth:`close` then bumps the ``queue_run`` version (sending the
    ``NOTIFY``), which locks that row, and marks the run finished (its
    ``run`` row) once every task is final. Every transaction takes its locks
    in that order (item, task rows, queue_run, run), which keeps concurrent
    coordinators free of deadlocks and holds the one run-wide lock only for
    the last statements before the commit.
    """

    def __init__(self, conn: sa.Connection, run_id: str, now: float) -> None:
        self.conn, self.run_id, self.now = conn, run_id, now
        self.final = 0
        self._options: dict | None = None

    @property
    def options(self) -> dict:
        if self._options is None:
            qr = t.queue_run
            self._options = self.conn.scalar(sa.select(qr.c.options).where(qr.c.run_id == self.run_id)) or {}
        return self._options

    def _task(self, task: str) -> Any:
        qt = t.queue_task
        return self.conn.execute(sa.select(qt).where(qt.c.run_id == self.run_id, qt.c.task == task)
                                 .with_for_update()).one()

    def _checkpoint_status(self, checkpoint_id: str | None, status: str, reason: str | None = None) -> None:
        if checkpoint_id is not None:
            ck = t.checkpoint
            self.conn.execute(sa.update(ck).where(ck.c.id == checkpoint_id)
                              .values(status=status, status_reason=reason))

    def _drop_items(self, task: str, attempt: int) -> None:
        qi = t.queue_item
        self.conn.execute(sa.update(qi).where(qi.c.run_id == self.run_id, qi.c.task == task, qi.c.attempt == attempt,
                                              qi.c.state.in_([READY, LEASED]))
                          .values(state=DROPPED, lease_expiry=None, updated_at=self.now))

    # -- events
    def finished(self, task: str, attempt: int, holder: str, checkpoint_id: str | None, branch: str | None,
                 written: bool = False) -> None:
        rec = self._task(task)
        if rec.branches and branch not in rec.branches:
            error = f"task {task!r} must choose one of {list(rec.branches)}, got {branch!r}"
            self._checkpoint_status(checkpoint_id, "failed", error)
            self.failed(task, attempt, error)
            return
        if rec.verify <= 0:
            self._commit(rec, written=written, producer=holder, checkpoint_id=checkpoint_id, decision=branch)
            return
        _set_task(self.conn, self.run_id, task, self.now, state=_PROVISIONAL, producer=holder,
                  checkpoint_id=checkpoint_id, decision=branch)
        self.conn.execute(sa.insert(t.queue_item), [
            _run_item(self.run_id, task, attempt, rec.verifier_role, rec.priority, self.now, self.now,
                      kind="verify", producer=holder)
            for _ in range(rec.verify)])

    def verdict(self, task: str, attempt: int) -> None:
        rec = self._task(task)
        if rec.attempt != attempt or rec.state != _PROVISIONAL:
            return
        qv = t.queue_verdict
        votes = self.conn.execute(sa.select(qv.c.approve, sa.func.count()).where(
            qv.c.run_id == self.run_id, qv.c.task == task, qv.c.attempt == attempt, qv.c.approve.is_not(None))
            .group_by(qv.c.approve)).all()
        tally = {bool(a): n for a, n in votes}
        if tally.get(False, 0) >= rec.reject:
            self._refute(rec)
        elif tally.get(True, 0) >= rec.verify:
            self._drop_items(task, attempt)
            self._commit(rec)

    def failed(self, task: str, attempt: int, error: str) -> None:
        rec = self._task(task)
        failures = rec.failures + 1
        if failures > rec.retries:
            _set_task(self.conn, self.run_id, task, self.now, failures=failures)
            self._fail_for_good(rec, error)
            return
        delay = _core.backoff_delay(_Backoff(tuple(self.options.get("backoff", DEFAULT_BACKOFF))), failures)
        self._requeue(rec, failures=failures, not_before=self.now + delay, error=error)

    def close(self, by: int = 1) -> int:
        """Bump the run's version by ``by`` (locking its ``queue_run`` row until the commit); return the new
        version. ``by`` > 1 makes room for one ``seq`` per checkpoint of a batch."""
        qr = t.queue_run
        values: dict[str, Any] = {"version": qr.c.version + by, "updated_at": self.now}
        if self.final:
            values["final"] = qr.c.final + self.final
        returning = [qr.c.version, qr.c.final, qr.c.total]
        if self.conn.dialect.name == "postgresql":  # the NOTIFY rides on the same statement
            returning.append(sa.func.pg_notify(CHANNEL, qr.c.run_id + ":" + sa.cast(qr.c.version, sa.String)))
        new = self.conn.execute(sa.update(qr).where(qr.c.run_id == self.run_id).values(**values)
                                .returning(*returning)).one()
        if self.final and new.final >= new.total:
            self._finish_run()
        return int(new.version)

    # -- transitions
    def _requeue(self, rec: Any, *, not_before: float, error: str | None = None, **counters: int) -> None:
        attempt = rec.attempt + 1
        _set_task(self.conn, self.run_id, rec.task, self.now, attempt=attempt, state=_READY_T, producer=None,
                  checkpoint_id=None, decision=None, error=error, **counters)
        self.conn.execute(sa.insert(t.queue_item),
                          _run_item(self.run_id, rec.task, attempt, rec.role, rec.priority, self.now, not_before))

    def _refute(self, rec: Any) -> None:
        self._drop_items(rec.task, rec.attempt)
        qv = t.queue_verdict
        reason = self.conn.scalar(sa.select(qv.c.reason).where(
            qv.c.run_id == self.run_id, qv.c.task == rec.task, qv.c.attempt == rec.attempt, qv.c.approve.is_(False))
            .order_by(qv.c.created_at).limit(1)) or ""
        why = f"attempt {rec.attempt} refuted" + (f": {reason}" if reason else "")
        self._checkpoint_status(rec.checkpoint_id, "refuted", why)
        refutations = rec.refutations + 1
        if refutations > int(self.options.get("max_refutations", DEFAULT_MAX_REFUTATIONS)):
            _set_task(self.conn, self.run_id, rec.task, self.now, refutations=refutations)
            self._fail_for_good(rec, f"refuted {refutations} times; last {why}")
            return
        self._requeue(rec, refutations=refutations, not_before=self.now, error=why)

    def _commit(self, rec: Any, *, written: bool = False, **result: Any) -> None:
        """Commit ``rec``'s attempt: a verified one, or (``result`` given) one just run that needs
        no verification. ``written``: its checkpoint was written as committed in this transaction."""
        _set_task(self.conn, self.run_id, rec.task, self.now, state=_COMMITTED, error=None, **result)
        if not written:
            self._checkpoint_status(result.get("checkpoint_id", rec.checkpoint_id), "committed")
        self.final += 1
        self._resolve(rec, _COMMITTED, result.get("decision", rec.decision))

    def _fail_for_good(self, rec: Any, error: str) -> None:
        _set_task(self.conn, self.run_id, rec.task, self.now, state=_FAILED, error=error)
        self.final += 1
        self._resolve(rec, _FAILED)

    def _skip(self, rec: Any, reason: str) -> None:
        _set_task(self.conn, self.run_id, rec.task, self.now, state=_SKIPPED, error=reason)
        self._drop_items(rec.task, rec.attempt)
        self.final += 1
        self._resolve(rec, _SKIPPED)

    def _resolve(self, rec: Any, outcome: str, decision: str | None = None) -> None:
        """``rec`` reached a final state: settle each dependent that was waiting on it."""
        qt = t.queue_task
        for name in rec.dependents:
            controlled = name in (rec.branches or [])
            if outcome == _FAILED or (controlled and (outcome == _SKIPPED or decision != name)):
                child = self._task(name)
                if child.state != _PENDING:
                    continue
                if outcome == _FAILED:
                    self._fail_for_good(child, f"input {rec.task!r} failed")
                elif outcome == _SKIPPED:
                    self._skip(child, f"its decider {rec.task!r} was skipped")
                else:
                    self._skip(child, f"branch not taken: {rec.task!r} chose {decision!r}")
                continue
            skipped = 1 if outcome == _SKIPPED and not controlled else 0
            child = self.conn.execute(
                sa.update(qt).where(qt.c.run_id == self.run_id, qt.c.task == name, qt.c.state == _PENDING)
                .values(waiting=qt.c.waiting - 1, skipped_inputs=qt.c.skipped_inputs + skipped, updated_at=self.now)
                .returning(*qt.c)).first()
            if child is None or child.waiting > 0:
                continue
            if child.deps and child.skipped_inputs >= len(child.deps):
                self._skip(child, "every input was skipped")
            else:
                _set_task(self.conn, self.run_id, name, self.now, state=_READY_T)
                self.conn.execute(sa.insert(t.queue_item), _run_item(
                    self.run_id, name, child.attempt, child.role, child.priority, self.now, self.now))

    def _finish_run(self) -> None:
        qt, qr = t.queue_task, t.queue_run
        failed = self.conn.scalar(sa.select(sa.func.count()).where(qt.c.run_id == self.run_id, qt.c.state == _FAILED))
        status = "failed" if failed else "succeeded"
        self.conn.execute(sa.update(qr).where(qr.c.run_id == self.run_id).values(status=status))
        self.conn.execute(sa.update(t.run).where(t.run.c.id == self.run_id).values(status=status,
                                                                                   finished_at=self.now))

