"""Random interleavings of every event over random DAGs, checked after each step.

A hypothesis ``RuleBasedStateMachine`` builds a run (a random DAG with up to
two deciders, random roles, quorums, retries and priorities, a random
speculation and prediction mode), then lets several agents with different
roles claim, finish (with random, sometimes undeclared, branches), fail,
verify, approve, reject, renew, crash and let leases expire, and reports
results on revoked tokens. After every step it checks the safety properties
and, through :func:`~tests.schedule.helpers.audit`, the incremental
bookkeeping. At the end it drives the run to completion (fresh agents
finish and approve everything) and checks that it ends properly.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from headwater.schedule import (
    FINAL_STATES,
    Cancel,
    Commit,
    RunFinished,
    Scheduler,
    Squash,
    State,
    TaskDef,
)

from .helpers import audit

AGENTS = {"ag1": ("a",), "ag2": ("b", "v"), "ag3": ("a", "b", "v"), "ag4": ("v",), "ag5": ("a", "b")}
FINISHERS = ("fin1", "fin2", "fin3")
ALL_ROLES = ("a", "b", "v")


@st.composite
def runs(draw) -> list[TaskDef]:
    n = draw(st.integers(3, 9))
    names = [f"t{i}" for i in range(n)]
    deps = [set(draw(st.lists(st.integers(0, i - 1), max_size=3))) if i else set() for i in range(n)]
    branches: dict[int, tuple[int, ...]] = {}
    taken: set[int] = set()
    for _ in range(draw(st.integers(0, 2))):
        d = draw(st.integers(0, n - 3))
        free = [j for j in range(d + 1, n) if j not in taken]
        if d in branches or len(free) < 2:
            continue
        alts = tuple(draw(st.lists(st.sampled_from(free), min_size=2, max_size=2, unique=True)))
        branches[d] = alts
        taken.update(alts)
        for a in alts:
            if draw(st.booleans()):
                deps[a].add(d)
    return [
        TaskDef(
            names[i],
            deps=tuple(names[j] for j in sorted(deps[i])),
            role=draw(st.sampled_from(["a", "b"])),
            priority=draw(st.integers(0, 2)),
            retries=draw(st.integers(0, 2)),
            verify=draw(st.integers(0, 2)),
            reject=draw(st.integers(1, 2)),
            verifier_role=draw(st.sampled_from(["v", "v", "a"])),
            branches=tuple(names[j] for j in branches.get(i, ())),
            expected_duration=draw(st.sampled_from([0.5, 1.0, 4.0])),
        )
        for i in range(n)
    ]


class SchedulerMachine(RuleBasedStateMachine):
    @initialize(
        defs=runs(),
        speculate=st.sampled_from([0, 1, 2, "adaptive"]),
        predict=st.sampled_from(["provisional", "history"]),
        data=st.data(),
    )
    def build(self, defs, speculate, predict, data):
        self.defs = {d.name: d for d in defs}
        self.decider = {b: d.name for d in defs for b in d.branches}
        self.s = Scheduler(defs, speculate=speculate, predict=predict, lease_ttl=20.0,
                           backoff=(0.5, 2.0, 4.0), max_refutations=2, max_lost=2)
        self.now = 0.0
        self.run_tokens: dict[int, object] = {}
        self.verify_tokens: dict[int, object] = {}
        self.revoked: set[int] = set()
        self.producer: dict[tuple[str, int], str] = {}
        self.built_on: dict[tuple[str, int], tuple[tuple[str, int], ...]] = {}
        self.commits: Counter[str] = Counter()
        self.committed: dict[str, int] = {}
        self.squashed: set[tuple[str, int]] = set()
        self.finished_reports = 0
        for d in defs:
            for b in d.branches:
                if data.draw(st.booleans()):
                    self.apply(self.s.note_history(d.name, b, data.draw(st.integers(0, 5))))

    # -- bookkeeping --------------------------------------------------------------
    def apply(self, actions):
        s = self.s
        for act in actions:
            if isinstance(act, Commit):
                assert self.commits[act.task] == 0, f"{act.task} committed twice"
                assert (act.task, act.attempt) not in self.squashed
                self.commits[act.task] += 1
                self.committed[act.task] = act.attempt
                for inp in self.built_on.get((act.task, act.attempt), ()):
                    assert s.attempt_state(*inp) is State.COMMITTED, f"{act.task} committed on {inp}"
            elif isinstance(act, Squash):
                assert self.committed.get(act.task) != act.attempt
                self.squashed.add((act.task, act.attempt))
            elif isinstance(act, Cancel):
                self.revoke(act.token)
            elif isinstance(act, RunFinished):
                self.finished_reports += 1
                assert self.finished_reports == 1
                assert act.status == s.status

    def revoke(self, token):
        self.run_tokens.pop(token, None)
        self.verify_tokens.pop(token, None)
        self.revoked.add(token)

    def take_leases(self, leases, agent):
        for lease in leases:
            key = (lease.task, lease.attempt)
            if lease.kind == "run":
                self.run_tokens[lease.token] = lease
                self.producer[key] = agent
                self.built_on[key] = lease.speculative
                for inp in lease.speculative:
                    assert self.s.attempt_of(inp[0]) == inp[1], f"{key} built on replaced {inp}"
                    assert inp not in self.squashed
            else:
                self.verify_tokens[lease.token] = lease
                assert self.producer[key] != agent, "producer asked to verify its own work"

    def report(self, call, token, *args, **kw):
        before = self.s.counters["stale_results"]
        self.revoke(token)
        actions = call(token, self.now, *args, **kw)
        assert self.s.counters["stale_results"] == before, "a live lease was treated as stale"
        self.apply(actions)

    # -- the rule ---------------------------------------------------------------
    # One rule, with the event drawn from a weighted list: hypothesis switches
    # whole rules off at random in some examples, which would leave many runs
    # without results or votes; a drawn event keeps every example mixed.
    @rule(
        agent=st.sampled_from(sorted(AGENTS)),
        event=st.sampled_from(
            ["claim"] * 3 + ["verify"] * 2 + ["report"] * 4 + ["vote"] * 4
            + ["late", "renew", "tick", "tick", "long tick", "crash"]
        ),
        data=st.data(),
    )
    def step(self, agent, event, data):
        if event == "report" and self.run_tokens:
            self.report_run(data.draw(st.sampled_from(sorted(self.run_tokens))), data)
        elif event == "vote" and self.verify_tokens:
            self.vote(data.draw(st.sampled_from(sorted(self.verify_tokens))), data)
        elif event in ("claim", "report"):
            self.take_leases(self.s.claim(agent, AGENTS[agent], self.now, data.draw(st.integers(1, 3))), agent)
        elif event in ("verify", "vote"):
            self.take_leases(self.s.claim_verification(agent, AGENTS[agent], self.now, 2), agent)
        elif event == "late" and self.revoked:
            self.late_report(data.draw(st.sampled_from(sorted(self.revoked))))
        elif event == "renew" and (self.run_tokens or self.verify_tokens):
            token = data.draw(st.sampled_from(sorted([*self.run_tokens, *self.verify_tokens])))
            assert self.s.renew(token, self.now) is True
        elif event == "crash":
            self.apply(self.s.agent_lost(agent, self.now))
        elif event in ("tick", "long tick"):
            self.now += 25.0 if event == "long tick" else 2.0
            self.apply(self.s.expire(self.now))
            deadline = self.s.next_deadline()
            assert deadline is None or deadline > self.now or self.s.claim("nobody", (), self.now) == []

    def report_run(self, token, data):
        outcome = data.draw(st.sampled_from(["ok", "ok", "ok", "ok", "ok", "odd branch", "fail"]))
        if outcome == "fail":
            self.report(self.s.failed, token, "boom")
            return
        branches = self.defs[self.run_tokens[token].task].branches
        if outcome == "odd branch":
            branch = data.draw(st.sampled_from([None, "bogus"] if branches else ["bogus"]))
        else:
            branch = data.draw(st.sampled_from(branches)) if branches else None
        self.report(self.s.finished, token, branch=branch)

    def vote(self, token, data):
        vote = data.draw(st.sampled_from(["approve", "approve", "approve", "reject", "reject", "decline"]))
        if vote == "decline":
            self.report(self.s.failed, token, "declined")
        else:
            self.report(self.s.verdict, token, vote == "approve", "random")

    def late_report(self, token):
        before = self.s.counters["stale_results"]
        assert self.s.finished(token, self.now) == []
        assert self.s.verdict(token, self.now, True) == []
        assert self.s.renew(token, self.now) is False
        assert self.s.counters["stale_results"] == before + 2

    # -- invariants ---------------------------------------------------------------
    @invariant()
    def consistent(self):
        if not hasattr(self, "s"):
            return
        s = self.s
        audit(s)
        for task, attempt in self.committed.items():
            assert s.state_of(task) is State.COMMITTED and s.attempt_of(task) == attempt
            d = self.defs[task]
            for dep in d.deps:
                assert s.state_of(dep) in (State.COMMITTED, State.SKIPPED), f"{task} committed before {dep}"
            if task in self.decider:
                decider = self.decider[task]
                assert s.state_of(decider) is State.COMMITTED and s.scoreboard()[decider].branch == task
        for (task, attempt) in self.squashed:
            assert s.attempt_state(task, attempt) is State.SQUASHED
        board = s.scoreboard()
        assert board.version >= 0 and board.status == s.status
        for name, entry in board.tasks.items():
            assert entry.state is s.state_of(name)
        assert (s.status == "running") != s.done

    def teardown(self):
        if not hasattr(self, "s"):
            return
        s = self.s
        for _ in range(300):
            if s.done:
                break
            self.now += 100.0
            self.apply(s.expire(self.now))
            for agent in FINISHERS:
                leases = s.claim(agent, ALL_ROLES, self.now, limit=100)
                self.take_leases(leases, agent)
                for lease in leases:
                    if lease.token in self.revoked:  # cancelled by an earlier report in this loop
                        continue
                    branches = self.defs[lease.task].branches
                    self.report(s.finished, lease.token, branch=branches[0] if branches else None)
                verifications = s.claim_verification(agent, ALL_ROLES, self.now, limit=100)
                self.take_leases(verifications, agent)
                for lease in verifications:
                    if lease.token not in self.revoked:
                        self.report(s.verdict, lease.token, True)
                self.consistent()
        assert s.done, {n: s.state_of(n).name for n in self.defs}
        assert all(s.state_of(n) in FINAL_STATES for n in self.defs)
        assert s.status in ("succeeded", "failed")
        assert (s.status == "failed") == any(s.state_of(n) is State.FAILED for n in self.defs)
        assert self.finished_reports == 1
        assert s.next_deadline() is None


SchedulerMachine.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSchedulerMachine = SchedulerMachine.TestCase
