"""The scoreboard: a versioned, read-only snapshot of who works on what.

An agent that runs ahead on provisional results re-reads the scoreboard when
its recheck policy says so (:mod:`headwater.schedule.recheck`) and asks it
about the ``(task, attempt)`` inputs it built on (:meth:`Scoreboard.check`):
all committed, still pending, or flushed (an input attempt was replaced, so
the work built on it has been squashed and should be dropped).

The scheduler keeps one :class:`TaskBoard` per task up to date for the tasks
an event touched and hands out a new immutable :class:`Scoreboard` only when
its ``version`` moved, so reading an unchanged board costs nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from headwater.schedule.states import State


@dataclass(frozen=True, slots=True)
class TaskBoard:
    """One task on the scoreboard.

    ``executing`` is the number of agents running the current attempt (0 or
    1), ``verifying`` the number holding a verify lease on it, ``approvals``
    and ``rejections`` the verdicts it has, ``required`` the approvals it
    needs, ``branch`` the branch its finished attempt chose, and
    ``provisional_since`` when that attempt finished (``None`` before).
    """

    state: State
    attempt: int
    executing: int
    verifying: int
    approvals: int
    rejections: int
    required: int
    branch: str | None
    provisional_since: float | None


@dataclass(frozen=True, slots=True)
class Scoreboard:
    """A snapshot: ``version`` (bumped by every change), one entry per task, the
    speculation depth and the run's status at that version."""

    version: int
    tasks: Mapping[str, TaskBoard]
    speculation_depth: int
    status: str

    def __getitem__(self, task: str) -> TaskBoard:
        return self.tasks[task]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def check(self, assumed: Iterable[tuple[str, int]]) -> str:
        """What became of the inputs an agent built on (a lease's ``speculative``).

        ``"flushed"`` if any assumed attempt is no longer its task's current
        attempt (it was refuted or abandoned: work built on it is squashed),
        else ``"pending"`` if any is not committed yet, else ``"committed"``.
        """
        verdict = "committed"
        for task, attempt in assumed:
            board = self.tasks[task]
            if board.attempt != attempt:
                return "flushed"
            if board.state is not State.COMMITTED:
                verdict = "pending"
        return verdict

    def counts(self) -> dict[State, int]:
        """How many tasks are in each state (computed on demand)."""
        return dict(Counter(b.state for b in self.tasks.values()))
