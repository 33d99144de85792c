"""Shared helpers for the scheduling-core tests.

:func:`audit` recomputes, from scratch, everything the scheduler maintains
incrementally (edge codes, counters, derived states, depth buckets, lease
tables, dependents) and fails on any difference, so every test that calls it
also checks the incremental bookkeeping behind the behaviour it tests.
"""

from __future__ import annotations

from collections import Counter

from headwater.schedule import FINAL_STATES, LIVE_STATES, Lease, Scheduler, State, TaskDef
from headwater.schedule import core as C
from headwater.schedule import records as RC


def T(name: str, *deps: str, **kw) -> TaskDef:
    """A TaskDef with positional deps."""
    return TaskDef(name, deps=tuple(deps), **kw)


def R(name: str, *deps: str, **kw) -> TaskDef:
    """A TaskDef whose role is its own name, so a test can claim exactly it with :func:`take`."""
    return TaskDef(name, deps=tuple(deps), role=name, **kw)


def take(s: Scheduler, task: str, agent: str = "w", now: float = 0.0) -> Lease:
    """Claim ``task`` (declared with :func:`R`) for ``agent``; fail if it is not claimable."""
    leases = s.claim(agent, [task], now)
    assert leases, f"{task} is not claimable: {s.state_of(task).name}"
    return leases[0]


def kinds(actions) -> list[str]:
    """The action class names, in order."""
    return [type(a).__name__ for a in actions]


def of(actions, cls) -> list:
    """The actions of one class."""
    return [a for a in actions if isinstance(a, cls)]


def claim_all(s: Scheduler, agent: str = "w", now: float = 0.0, roles=("worker",)) -> dict[str, Lease]:
    """Everything ``agent`` can claim now, by task name."""
    return {lease.task: lease for lease in s.claim(agent, roles, now, limit=1_000_000)}


def verify_all(s: Scheduler, agent: str, now: float = 0.0, roles=("verifier",)) -> dict[str, Lease]:
    """Every verify lease ``agent`` can take now, by task name."""
    return {lease.task: lease for lease in s.claim_verification(agent, roles, now, limit=1_000_000)}


def audit(s: Scheduler) -> None:
    """Check the scheduler's incremental state against a recomputation."""
    st = s._st
    tasks = st.tasks
    for rec in tasks:
        assert rec.published == RC.data_code(rec), rec.name
        for a in rec.alternatives:
            assert tasks[a].ctrl_code == RC.control_code(rec, tasks[a]), (rec.name, tasks[a].name)
    for rec in tasks:
        exp = RC.TaskRecord(idx=-1, name="", defn=rec.defn, key=rec.key, parents=(), controller=-1,
                           children=(), alternatives=(), n_parents=0)
        exp.n_wait = 0
        for p in rec.parents:
            RC.apply_edge(exp, tasks[p].published, 1)
        if rec.controller >= 0:
            RC.apply_edge(exp, rec.ctrl_code, 1)
        got = (rec.n_wait, rec.n_fail, rec.n_skip, rec.n_reject, rec.dh_ok, rec.dh_sk)
        assert got == (exp.n_wait, exp.n_fail, exp.n_skip, exp.n_reject, exp.dh_ok, exp.dh_sk), rec.name
        assert not rec.queued
        if rec.state in LIVE_STATES:
            assert not (rec.n_wait or rec.n_fail or rec.n_reject), f"live {rec.name} on unavailable input"
            assert not (rec.n_parents and rec.n_skip == rec.n_parents)
            assert rec.bucket == 0
        elif rec.state is not State.COMMITTED and rec.error is None:
            assert rec.state is C.derive(st, rec), (rec.name, rec.state, C.derive(st, rec))
        if rec.state is State.VERIFIED:
            assert rec.dh_ok, f"{rec.name} verified with committed inputs but not committed"
        if rec.bucket:
            assert rec.idx in st.deep[rec.bucket]
    for b, members in st.deep.items():
        for i in members:
            assert tasks[i].bucket == b
    assert st.n_final == sum(r.state in FINAL_STATES for r in tasks)
    assert st.n_failed == sum(r.state is State.FAILED for r in tasks)
    # leases
    held = Counter()
    for token, lr in st.leases.items():
        rec = tasks[lr.task]
        assert lr.lease.token == token and lr.lease.attempt == rec.attempt, rec.name
        held[lr.lease.agent] += 1
        assert token in st.by_agent[lr.lease.agent]
        if lr.lease.kind == "run":
            assert rec.state is State.LEASED and rec.run_token == token, rec.name
        else:
            assert rec.state is State.PROVISIONAL and rec.verifying.get(token) == lr.lease.agent, rec.name
            assert lr.lease.agent != rec.producer
    assert held == Counter({a: len(t) for a, t in st.by_agent.items()})
    for rec in tasks:
        if rec.state is State.LEASED:
            assert rec.run_token in st.leases
        else:
            assert rec.run_token == 0
        for token in rec.verifying:
            assert token in st.leases
        assert len(rec.approvals) < max(rec.defn.verify, 1) or rec.state is not State.PROVISIONAL
        assert rec.producer not in rec.approvals
        # every live attempt is registered with each input it was built on
        if rec.state in LIVE_STATES:
            for i, a in rec.inputs:
                src = tasks[i]
                assert src.attempt == a, f"{rec.name} built on replaced {src.name}#{a}"
                if src.state is not State.COMMITTED:
                    assert (rec.idx, rec.attempt) in src.dependents, (rec.name, src.name)
