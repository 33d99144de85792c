"""How agents that ran ahead learn what became of the provisional inputs they built on.

An agent given a lease on uncommitted inputs (``Lease.speculative``) waits on
those ``(task, attempt)`` inputs until each is committed or one is flushed.
Two ways to learn it:

* ``"notify"`` (the default): the coordinator tells the agent the moment the
  core commits or flushes an awaited input. No scoreboard reads at all.
* a recheck policy (``"eager"``, ``"backoff"``, ``"adaptive"``; see
  :mod:`headwater.schedule.recheck`): after each of its own steps the agent
  asks its policy when to look next, and looks then -- one counted
  scoreboard read -- and acts on what it sees. A flush of its work reaches it
  only when it looks (its cancels are deferred till then), so lazy
  rechecking costs wasted work; eager rechecking costs reads.

:class:`Rechecks` keeps one :class:`Watcher` per agent and the latency
samples: for every resolved wait, the time between the awaited change and
the agent learning of it (0 for a notification).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from headwater.schedule import Lease, RecheckInfo, RecheckPolicy, Scheduler, State, recheck_policy

MODES = ("notify", "eager", "backoff", "adaptive")
"""Values of ``RunOptions.recheck``."""

_GONE = (State.SQUASHED, State.REFUTED, State.FAILED)


class RunStats:
    """Shell-side counters and latency samples, beside the core's counters."""

    KEYS = ("rechecks", "notifications", "deferred_cancels", "stolen", "steal_requests", "backups",
            "backup_wins", "cache_hits", "checkpoints", "cancels_sent", "ran_ahead")

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(self.KEYS, 0)
        self.recheck: list[float] = []
        self.verification: list[float] = []

    def latency(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, xs in (("recheck", self.recheck), ("verification", self.verification)):
            out[f"{name}_count"] = float(len(xs))
            out[f"{name}_mean_s"] = round(statistics.fmean(xs), 6) if xs else 0.0
            out[f"{name}_max_s"] = round(max(xs), 6) if xs else 0.0
        return out


@dataclass(eq=False)
class Watcher:
    """One agent's view of the provisional inputs its work was built on.

    ``assumed`` maps the token of each of its run leases started on
    uncommitted inputs to those ``(task, attempt)`` inputs; ``deferred``
    holds the tokens of cancels that reach the agent only when it next looks.
    """

    policy: RecheckPolicy | None
    assumed: dict[int, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    deferred: list[int] = field(default_factory=list)
    checks: int = 0
    next_check: float = math.inf
    info: RecheckInfo | None = None


class Rechecks:
    """Every agent's waits on provisional inputs, resolved by notification or by policy."""

    def __init__(self, mode: str, sched: Scheduler, stats: RunStats) -> None:
        if mode not in MODES:
            raise ValueError(f"recheck must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.sched = sched
        self.stats = stats
        self.watchers: dict[str, Watcher] = {}
        self._waiting: dict[tuple[str, int], set[tuple[str, int]]] = {}
        self._resolved_at: dict[tuple[str, int], float] = {}

    def _watcher(self, agent: str) -> Watcher:
        w = self.watchers.get(agent)
        if w is None:
            w = self.watchers[agent] = Watcher(None if self.mode == "notify" else recheck_policy(self.mode))
        return w

    def assume(self, agent: str, lease: Lease) -> None:
        """``agent`` runs ``lease`` on provisional inputs and must learn what becomes of them."""
        self._watcher(agent).assumed[lease.token] = lease.speculative
        for x in lease.speculative:
            self._waiting.setdefault(x, set()).add((agent, lease.token))

    def moved(self, old: str, lease: Lease) -> None:
        """``lease`` went from agent ``old`` to ``lease.agent`` (stolen, or a backup won)."""
        w = self.watchers.get(old)
        if w is not None and lease.token in w.assumed:
            del w.assumed[lease.token]
            self.assume(lease.agent, lease)

    def lost(self, agent: str) -> None:
        self.watchers.pop(agent, None)

    def after_step(self, agent: str, now: float) -> None:
        """An agent finished a step: its policy says when it looks at the scoreboard next."""
        w = self.watchers.get(agent)
        if w is None or w.policy is None or not w.assumed:
            return
        w.next_check = min(w.next_check, w.policy.next_check(now, w.info or RecheckInfo(since=now)))

    def next_wake(self) -> float:
        """The earliest time some agent looks (``inf``: none is due to)."""
        return min((w.next_check for w in self.watchers.values()), default=math.inf)

    def observe_verification(self, latency: float) -> None:
        """A provisional-to-verified latency, for every agent's policy to learn from."""
        self.stats.verification.append(latency)
        for w in self.watchers.values():
            if w.policy is not None:
                w.policy.observe(latency)

    def due(self, now: float) -> list[tuple[str, int]]:
        """Let every agent whose time has come look; return the cancels it now receives."""
        cancels: list[tuple[str, int]] = []
        for agent, w in list(self.watchers.items()):
            if w.next_check <= now:
                cancels += [(agent, token) for token in self._look(w, now)]
        return cancels

    def _look(self, w: Watcher, now: float) -> list[int]:
        board = self.sched.scoreboard()  # the counted read
        w.checks += 1
        self.stats.counts["rechecks"] += 1
        pending: tuple[str, int] | None = None
        for token, assumed in list(w.assumed.items()):
            verdict = board.check(assumed)
            if verdict == "pending":
                pending = pending or next(x for x in assumed if board[x[0]].state is not State.COMMITTED)
                continue
            del w.assumed[token]
            changed = max((self._resolved_at.get(x, now) for x in assumed), default=now)
            self.stats.recheck.append(max(0.0, now - changed))
        cancels, w.deferred = w.deferred, []
        if pending is not None and w.policy is not None:
            w.info = RecheckInfo.from_board(board[pending[0]], now, w.checks)
            w.next_check = w.policy.next_check(now, w.info)
        else:
            w.info, w.next_check, w.checks = None, math.inf, 0
        return cancels

    def notify(self, key: tuple[str, int], now: float) -> None:
        """The core committed or flushed ``key``: settle the agents notified of it."""
        self._resolved_at[key] = now
        for agent, token in self._waiting.pop(key, ()):
            w = self.watchers.get(agent)
            if w is None or w.policy is not None or token not in w.assumed:
                continue  # a policy-driven agent learns it when it next looks
            assumed = w.assumed[token]
            states = [self.sched.attempt_state(*x) for x in assumed]
            if all(s is State.COMMITTED for s in states) or any(s in _GONE for s in states):
                del w.assumed[token]
                self.stats.counts["notifications"] += 1
                self.stats.recheck.append(0.0)

    def defer_cancel(self, agent: str, token: int, now: float) -> bool:
        """Cancel ``token`` at ``agent``'s next look, if its policy decides when it looks.

        True when deferred; False when the cancel should go out at once (the
        agent is notified, or the work was not started on provisional inputs).
        """
        w = self.watchers.get(agent)
        if w is None:
            return False
        if w.policy is None or token not in w.assumed:
            w.assumed.pop(token, None)
            return False
        del w.assumed[token]
        w.deferred.append(token)
        self.stats.counts["deferred_cancels"] += 1
        if w.next_check == math.inf:
            w.next_check = w.policy.next_check(now, w.info or RecheckInfo(since=now))
        return True
