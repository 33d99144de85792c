"""Coordinator processes serving the shared queue: any number per store, on any hosts.

A coordinator owns a pool of local agent processes (forked, dying with it)
and one thread per agent, which loops: **claim** one item for its agent
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so coordinators never wait for
one another), build its :class:`~headwater.runtime.shared.WorkContext`,
hand it over, wait for the agent's :class:`~headwater.runtime.shared.Submission`
and **accept** it (:func:`headwater.runtime.shared.accept_many`: fencing
token, signature, bundle and artifacts checked, checkpoint and queue state
written in one transaction). Threads let the store round trips of different
agents overlap, and results that finish while another is being accepted are
accepted together, in one transaction (group commit); the decisions are all
in the store's transactions, so the threads share nothing but counters and
that batch.

The main thread keeps the rest:

* **singleton duties**: if it holds the duty lock, reap expired leases
  (every ``lease_s / 2``) and run the oversight monitors once for each run
  that ended (:meth:`headwater.runtime.fleet.Fleet.run_end`, as the
  in-process runtime does); otherwise try to take the lock. On PostgreSQL the
  lock is a session advisory lock (``pg_try_advisory_lock``) on a dedicated
  connection: when the holder dies its session ends, the server releases
  the lock, and the next coordinator to try takes it -- one coordinator
  reaps at a time, and another takes over within a second of the holder's
  death. On SQLite there is one coordinator per store, and it always holds
  the duties;
* **renewing** the leases of work still running, at half their term;
* **waking** idle agent threads: on PostgreSQL it listens for the ``NOTIFY``
  every state change sends (in the same transaction), on SQLite it polls.

A coordinator killed with SIGKILL takes its agents with it; its leases
expire and the duty holder reaps them, so the work is claimed again
elsewhere. A late result for a reaped lease is refused by its fencing
token: each task is committed exactly once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import secrets
import signal
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from headwater.errors import HeadwaterError, RunError
from headwater.runtime.shared import Outcome, Rejected, Submission, WorkContext, accept_many, execute, work_context
from headwater.store.queue import Claim, StaleLease, WorkQueue

DUTY_LOCK_KEY = 0x6877_6475_7479  # "hwduty": the advisory lock id of the singleton duties
DEFAULT_LEASE_S = 30.0
MONITORS_EVENT = "queue-monitors"
"""The event that marks a queued run's end-of-run monitors as done."""

ProgressFn = Callable[[str, dict], None]


@dataclass
class CoordinatorStats:
    """What one coordinator did; ``to_json`` is what ``headwater coordinator --json`` prints."""

    coordinator: str
    accepted: int = 0
    verdicts: int = 0
    failures: int = 0
    stale: int = 0
    rejected: int = 0
    reaped: int = 0
    duty_turns: int = 0
    held_duties: bool = False
    agents_lost: int = 0
    monitored: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return dict(self.__dict__)


class DutyLock:
    """The singleton-duty lock: a PostgreSQL session advisory lock on its own connection.

    On SQLite :meth:`try_acquire` always succeeds (one coordinator per store).
    """

    def __init__(self, store: Any, key: int = DUTY_LOCK_KEY) -> None:
        self.store, self.key = store, key
        self._conn: sa.Connection | None = None
        self.held = store.dialect != "postgresql"
        self._key = key

    def try_acquire(self) -> bool:
        if self.held:
            return True
        try:
            if self._conn is None:
                self._conn = self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                # Advisory locks are per database; stores in other schemas of it must not share one.
                schema = self._conn.scalar(sa.select(sa.func.current_schema())) or ""
                self._key = (self.key ^ zlib.crc32(schema.encode())) & 0x7FFF_FFFF_FFFF_FFFF
            self.held = bool(self._conn.scalar(sa.select(sa.func.pg_try_advisory_lock(self._key))))
        except sa.exc.DBAPIError:
            self.release()
        return self.held

    def release(self) -> None:
        """Unlock, then close the lock's session (not just return it to the pool).

        The explicit unlock makes the lock free the moment this returns; a
        closed session alone frees it only once the server has noticed."""
        if self._conn is not None:
            try:
                if self.held:
                    self._conn.scalar(sa.select(sa.func.pg_advisory_unlock(self._key)))
            except sa.exc.DBAPIError:
                pass
            try:
                self._conn.invalidate()
                self._conn.close()
            except sa.exc.DBAPIError:
                pass
            self._conn = None
        if self.store.dialect == "postgresql":
            self.held = False


# ------------------------------------------------------------------ agents


def _agent_main(conn: Connection, agent: str, root: str) -> None:
    """An agent process: WorkContexts in (as JSON), Submissions out (as JSON), until None."""
    from headwater.checkpoint.signing import load_or_create
    from headwater.runtime.agent import release_scratch
    from headwater.runtime.executors import _die_with_parent
    from headwater.spec import load_workflow
    from headwater.store.artifacts import ArtifactStore

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    key = load_or_create(Path(root) / "signing.key")
    artifacts = ArtifactStore(root)
    workflows: dict[tuple[str, str], tuple[Any, str]] = {}
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            ctx = WorkContext.from_json(msg)
            try:
                which = (ctx.source or "", ctx.workflow)
                if which not in workflows:  # loaded and hashed once per file: hashing a large spec is costly
                    if not ctx.source:
                        raise RunError(f"run {ctx.claim.run_id} records no workflow file", run_id=ctx.claim.run_id)
                    loaded = load_workflow(ctx.source, ctx.workflow)
                    workflows[which] = (loaded, loaded.spec_hash())
                wf, spec_hash = workflows[which]
                if spec_hash != ctx.spec_hash:
                    raise RunError(f"workflow {ctx.source} changed since run {ctx.claim.run_id} was submitted",
                                   run_id=ctx.claim.run_id)
                sub = execute(ctx, wf, agent, artifacts, key)
            except Exception as exc:  # the agent cannot run it: report, do not die
                sub = Submission(ctx.claim.token, agent, ctx.claim.kind, error=f"{type(exc).__name__}: {exc}")
            conn.send(sub.to_json())
    finally:
        release_scratch()


class _GroupAccept:
    """Accepts the submissions of many agent threads together (group commit).

    A thread with a result to accept queues it; if no batch is being
    applied, it applies every queued result at once
    (:func:`~headwater.runtime.shared.accept_many`: one transaction, a fixed
    number of statements), otherwise it waits for the batch in flight, whose
    applier takes its result along next time. Results that arrive while one
    transaction runs share the next one, so the store's cost is paid per
    batch, not per result, the more so the more agents a coordinator has.
    """

    def __init__(self, apply: Callable[[list[Submission]], list[Outcome]]) -> None:
        self._apply = apply
        self._cond = threading.Condition()
        self._waiting: list[list[Any]] = []
        self._busy = False

    def accept(self, sub: Submission) -> Outcome:
        slot: list[Any] = [sub, None]
        with self._cond:
            self._waiting.append(slot)
            while self._busy and slot[1] is None:
                self._cond.wait()
            if slot[1] is None:
                self._busy = True
                batch, self._waiting = self._waiting, []
            else:
                batch = []
        if batch:
            try:
                outcomes: Any = self._apply([b[0] for b in batch])
            except BaseException as exc:  # every waiter of the batch sees the failure
                outcomes = [exc] * len(batch)
            with self._cond:
                for b, out in zip(batch, outcomes):
                    b[1] = out
                self._busy = False
                self._cond.notify_all()
        if isinstance(slot[1], BaseException):
            raise slot[1]
        return slot[1]


@dataclass
class _Agent:
    id: str
    conn: Connection
    proc: Any
    claim: Claim | None = None


# ------------------------------------------------------------------ the loop


class SharedCoordinator:
    """One coordinator process's loop (see the module docstring)."""

    def __init__(self, ws: Any, *, workers: int = 2, roles: Sequence[str] | None = None,
                 runs: Sequence[str] | None = None, lease_s: float = DEFAULT_LEASE_S,
                 progress: ProgressFn | None = None, name: str | None = None) -> None:
        if workers < 1:
            raise RunError("a coordinator needs at least one agent: use --workers 1 or more")
        if lease_s <= 0:
            raise RunError(f"lease must be > 0 seconds, got {lease_s}")
        self.ws, self.store = ws, ws.store
        self.workers, self.lease_s = workers, float(lease_s)
        self.roles = list(roles) if roles else None
        self.runs = list(runs) if runs else None
        self.progress = progress or (lambda kind, data: None)
        self.id = name or f"coord-{os.getpid()}-{secrets.token_hex(3)}"
        self.queue = WorkQueue(self.store)
        self.duty = DutyLock(self.store)
        self.stats = CoordinatorStats(self.id)
        self.agents: list[_Agent] = []
        self._cache: dict = {}
        self._accepts = _GroupAccept(lambda subs: accept_many(self.store, self.queue, subs, time.time()))
        self._count = threading.Lock()
        self._next_reap = 0.0
        self._next_duty_try = 0.0

    # -- agents
    def _start_agents(self) -> None:
        ctx = mp.get_context("fork")
        for i in range(self.workers):
            parent, child = ctx.Pipe(duplex=True)
            agent_id = f"{self.id}-a{i}"
            proc = ctx.Process(target=_agent_main, args=(child, agent_id, str(self.ws.root)),
                               name=f"headwater-agent-{agent_id}", daemon=True)
            proc.start()
            child.close()
            self.agents.append(_Agent(agent_id, parent, proc))

    def _stop_agents(self) -> None:
        for a in self.agents:
            try:
                a.conn.send(None)
            except (OSError, EOFError):
                pass
        for a in self.agents:
            a.proc.join(timeout=5)
            if a.proc.is_alive():
                a.proc.kill()
                a.proc.join()
            a.conn.close()
        self.agents = []

    def _roles_of(self) -> list[str]:
        if self.roles:
            return self.roles
        return ["worker", "verifier"] + sorted(self._known_roles())

    def _known_roles(self) -> set[str]:
        from headwater.store import schema as t

        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(t.queue_task.c.role, t.queue_task.c.verifier_role).distinct()
                                .where(t.queue_task.c.state != "committed")).all()
        return {r for row in rows for r in row}

    # -- the loop
    def serve(self, *, until_done: bool = False, max_seconds: float | None = None) -> CoordinatorStats:
        """Serve until interrupted, until the runs are done (``until_done``), or ``max_seconds``.

        One thread per agent claims, hands over and accepts its work, so the
        store's round trips for different agents overlap; this thread keeps
        the duties, renews leases and wakes idle agents on notifications.
        """
        t0 = time.time()
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._error: BaseException | None = None
        self._expiry: dict[int, float] = {}
        self._start_agents()  # fork before this process opens any connection
        self._roles = self._roles_of()
        slots = [threading.Thread(target=self._slot, args=(a,), name=f"slot-{a.id}", daemon=True)
                 for a in self.agents]
        for th in slots:
            th.start()
        next_roles = next_done = t0
        try:
            while not self._stop.is_set():
                now = time.time()
                if max_seconds is not None and now - t0 >= max_seconds:
                    break
                if self.roles is None and now >= next_roles:
                    self._roles, next_roles = self._roles_of(), now + 5.0
                self._duties(now)
                self._renew(now)
                if until_done and now >= next_done:
                    next_done = now + 0.25
                    if self._done():
                        if self.duty.held:  # the runs' end-of-run monitors before leaving
                            self._monitors()
                        break
                if self.queue.wait_any(0.25):
                    with self._wake:
                        self._wake.notify_all()
        finally:
            self._stop.set()
            with self._wake:
                self._wake.notify_all()
            for th in slots:
                th.join(timeout=30)
            self._stop_agents()
            self.duty.release()
            self.queue.close()
            self.stats.seconds = round(time.time() - t0, 3)
        if self._error is not None:
            raise self._error
        return self.stats

    def _slot(self, a: _Agent) -> None:
        """One agent's loop: claim, hand over, wait for the result, accept it."""
        try:
            while not self._stop.is_set():
                now = time.time()
                claims = self.queue.claim(a.id, self._roles, now, self.lease_s, runs=self.runs)
                if not claims:
                    with self._wake:
                        self._wake.wait(timeout=0.25)
                    continue
                (c,) = claims
                try:
                    ctx = work_context(self.store, c, cache=self._cache)
                except StaleLease:
                    continue
                except HeadwaterError as exc:  # e.g. the run's spec is gone: fail the attempt, keep serving
                    self.queue.fail(c.token, a.id, time.time(), f"cannot prepare the work: {exc}")
                    continue
                self._expiry[c.token] = c.lease_expiry
                a.claim = c
                try:
                    a.conn.send(ctx.to_json())
                    while not a.conn.poll(0.25):
                        if self._stop.is_set():
                            return
                    data = a.conn.recv()
                except (EOFError, OSError):
                    self._lost(a)
                    return
                a.claim = None
                self._expiry.pop(c.token, None)
                self._accept(a, Submission.from_json(data))
        except BaseException as exc:  # handed to the main thread, which stops the coordinator
            self._error = self._error or exc
            self._stop.set()

    def _lost(self, a: _Agent) -> None:
        """Agent ``a`` died (its work crashed the process): serve on without it.

        Its lease is not renewed any more, so the duty holder reaps it and
        another agent runs the work again. With no agent left, the
        coordinator stops.
        """
        if a.claim is not None:
            self._expiry.pop(a.claim.token, None)
        with self._count:
            self.stats.agents_lost += 1
            left = self.workers - self.stats.agents_lost
        self.progress("agent-lost", {"agent": a.id, "task": a.claim.task if a.claim else None, "left": left})
        if left <= 0:
            raise RunError(f"every agent of coordinator {self.id} died, the last one ({a.id}) running "
                           f"{a.claim.task if a.claim else 'nothing'}; look at that task's code, then start "
                           "the coordinator again")

    def _done(self) -> bool:
        if self.runs is not None:
            return all(self.queue.finished(r) for r in self.runs)
        return not self.queue.active_runs()

    def _duties(self, now: float) -> None:
        if not self.duty.held:
            if now < self._next_duty_try:
                return
            self._next_duty_try = now + min(1.0, self.lease_s / 4)
            if not self.duty.try_acquire():
                return
            self.progress("duties", {"coordinator": self.id})
        self.stats.held_duties = True
        if now >= self._next_reap:
            self._next_reap = now + self.lease_s / 2
            self.stats.duty_turns += 1
            reaped = self.queue.reap(now)
            if reaped:
                self.stats.reaped += len(reaped)
                self.progress("reaped", {"count": len(reaped)})
            self._monitors()

    def _monitors(self) -> None:
        """Run the oversight monitors once for every queued run that ended (a duty).

        The same monitors the in-process runtime runs at a run's end
        (:meth:`headwater.runtime.fleet.Fleet.run_end`, bounded in time),
        over the claim keys the run published. A ``queue-monitors`` event
        marks a run done, so they run once even when the duties change hands.
        """
        from headwater.runtime.fleet import Fleet
        from headwater.runtime.guard import MONITOR_WINDOW
        from headwater.store import schema as t
        from headwater.store.records import EventRecord

        qr, ev, cv, ck = t.queue_run, t.event, t.claim_value, t.checkpoint
        done_runs = sa.select(ev.c.run_id).where(ev.c.kind == MONITORS_EVENT, ev.c.run_id.is_not(None))
        with self.store.engine.connect() as conn:
            ended = list(conn.scalars(sa.select(qr.c.run_id).where(qr.c.status != "running",
                                                                   qr.c.run_id.not_in(done_runs))))
        for run_id in ended:
            with self.store.engine.connect() as conn:
                keys = sorted(conn.scalars(sa.select(cv.c.key).distinct().join(ck, ck.c.id == cv.c.checkpoint_id)
                                           .where(ck.c.run_id == run_id, ck.c.status == "committed")))
            report = Fleet(self.store).run_end(keys, run_id=run_id, per_key=MONITOR_WINDOW)
            self.store.append_events([EventRecord(ts=time.time(), kind=MONITORS_EVENT, run_id=run_id, agent=self.id,
                                                  data={"keys": len(keys), "signals": len(report.signals),
                                                        "skipped": list(report.skipped)})])
            self.stats.monitored.append(run_id)
            self.progress("monitors", {"run": run_id, "signals": len(report.signals)})

    def _renew(self, now: float) -> None:
        for a in self.agents:
            c = a.claim
            if c is None:
                continue
            expiry = self._expiry.get(c.token)
            if expiry is None or expiry - now > self.lease_s / 2:
                continue
            try:
                self._expiry[c.token] = self.queue.renew(c.token, a.id, now, self.lease_s)
            except StaleLease:
                # Completed meanwhile, or reaped (then the result will be refused): stop renewing it.
                self._expiry.pop(c.token, None)

    def _accept(self, a: _Agent, sub: Submission) -> None:
        out = self._accepts.accept(sub)
        if isinstance(out.error, StaleLease):
            with self._count:
                self.stats.stale += 1
            return
        if isinstance(out.error, Rejected):
            with self._count:
                self.stats.rejected += 1
            self.progress("rejected", {"agent": a.id, "reason": out.error.reason})
            return
        if out.error is not None:
            raise out.error
        with self._count:
            if sub.kind == "verify" and sub.error is None:
                self.stats.verdicts += 1
            elif sub.error is not None:
                self.stats.failures += 1
            elif out.checkpoint is not None:
                self.stats.accepted += 1
        self.progress("accepted", {"agent": a.id, "kind": sub.kind, "checkpoint": out.checkpoint})


def serve(ws: Any, **options: Any) -> CoordinatorStats:
    """Build a :class:`SharedCoordinator` and serve; ``until_done``/``max_seconds`` go to :meth:`serve`."""
    until_done = options.pop("until_done", False)
    max_seconds = options.pop("max_seconds", None)
    return SharedCoordinator(ws, **options).serve(until_done=until_done, max_seconds=max_seconds)


__all__ = ["DUTY_LOCK_KEY", "CoordinatorStats", "DutyLock", "SharedCoordinator", "serve"]
