"""Speculation depth: how many uncommitted ancestors new work may build on.

A claim that would build on a chain of ``d`` uncommitted ancestors (``d`` is
the longest such chain above the task, counting its uncommitted inputs) is
allowed when ``d <= depth``. Depth 0 means no speculation: every input must
be committed.

``speculate`` chooses the policy:

* ``0`` or ``"off"`` -- depth 0 for good;
* ``N`` (1..8) -- depth ``N`` for good;
* ``"adaptive"`` -- start at :data:`ADAPTIVE_START` and adapt to
  verification outcomes (an attempt verified, or refuted), multiplicatively
  both ways, as TCP does with losses: every refutation halves the depth at
  once (rounding down, so 1 becomes 0), and every :data:`EVERY` verified
  outcomes in a row double it (0 becomes 1), up to :data:`MAX_DEPTH`. A
  clean run reaches full depth within a few verifications, which is what
  makes speculation pay when verification is slow; a run with frequent
  refutations stops speculating after a couple of them, before it wastes
  much work. Outcomes keep being observed at depth 0, so a run whose
  verifications start passing again speculates again. The last
  :data:`WINDOW` outcomes are kept for :meth:`SpeculationDepth.refutation_rate`.
"""

from __future__ import annotations

from collections import deque

from headwater.errors import RunError

MAX_DEPTH = 8
"""Upper bound of the speculation depth, fixed or adaptive."""
WINDOW = 20
"""How many recent verification outcomes the refutation rate is over."""
EVERY = 5
"""Verified outcomes in a row that double an adaptive depth."""
ADAPTIVE_START = 2
"""The depth an adaptive run starts at."""


class SpeculationDepth:
    """The current depth limit and, when adaptive, the window it adapts on."""

    __slots__ = ("adaptive", "value", "_window", "_pending")

    def __init__(self, speculate: int | str) -> None:
        self.adaptive = False
        self._window: deque[int] = deque(maxlen=WINDOW)
        self._pending = 0
        if isinstance(speculate, bool):
            raise RunError(f"speculate must be 0, 'off', 1..{MAX_DEPTH} or 'adaptive', got {speculate!r}")
        if isinstance(speculate, str):
            word = speculate.strip().lower()
            if word == "adaptive":
                self.adaptive = True
                self.value = ADAPTIVE_START
                return
            if word == "off":
                speculate = 0
            elif word.isdigit():
                speculate = int(word)
            else:
                raise RunError(f"speculate must be 0, 'off', 1..{MAX_DEPTH} or 'adaptive', got {speculate!r}")
        if not isinstance(speculate, int) or not 0 <= speculate <= MAX_DEPTH:
            raise RunError(f"speculate must be 0, 'off', 1..{MAX_DEPTH} or 'adaptive', got {speculate!r}")
        self.value = speculate

    @property
    def off(self) -> bool:
        """True when speculation is disabled for good (fixed depth 0)."""
        return not self.adaptive and self.value == 0

    def refutation_rate(self) -> float:
        """Refutations over the outcomes in the window (0.0 when empty)."""
        return sum(self._window) / len(self._window) if self._window else 0.0

    def observe(self, refuted: bool) -> bool:
        """Record one verification outcome; return True when the depth changed."""
        if not self.adaptive:
            return False
        self._window.append(1 if refuted else 0)
        old = self.value
        if refuted:
            self._pending = 0
            self.value = old // 2
        else:
            self._pending += 1
            if self._pending >= EVERY:
                self._pending = 0
                self.value = min(MAX_DEPTH, max(1, 2 * old))
        return self.value != old
