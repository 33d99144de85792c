"""Speculation depth: how many uncommitted ancestors new work may build on.

A claim that would build on a chain of ``d`` uncommitted ancestors (``d`` is
the longest such chain above the task, counting its uncommitted inputs) is
allowed when ``d <= depth``. Depth 0 means no speculation: every input must
be committed.

``speculate`` chooses the policy:

* ``0`` or ``"off"`` -- depth 0 for good;
* ``N`` (1..8) -- depth ``N`` for good;
* ``"adaptive"`` -- start at 1 and adapt, additive increase and
  multiplicative decrease, to the refutation rate: every verification outcome
  (an attempt verified, or refuted) enters a window of the last
  :data:`WINDOW` outcomes, and after every :data:`EVERY` outcomes the rate of
  refutations in the window is compared with two thresholds. At or above
  :data:`HIGH` the depth is halved (rounding down, so 1 becomes 0); at or
  below :data:`LOW` it grows by one, up to :data:`MAX_DEPTH`. Between the two
  it stays. Outcomes keep being observed at depth 0, so a run whose
  verifications start passing again speculates again.
"""

from __future__ import annotations

from collections import deque

from headwater.errors import RunError

MAX_DEPTH = 8
"""Upper bound of the speculation depth, fixed or adaptive."""
WINDOW = 20
"""How many recent verification outcomes the adaptive rule looks at."""
EVERY = 5
"""The adaptive rule re-decides after this many new outcomes."""
HIGH = 0.25
"""A refutation rate at or above this halves the depth."""
LOW = 0.05
"""A refutation rate at or below this deepens by one."""
ADAPTIVE_START = 1
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
        self._pending += 1
        if self._pending < EVERY:
            return False
        self._pending = 0
        rate = self.refutation_rate()
        old = self.value
        if rate >= HIGH:
            self.value = old // 2
        elif rate <= LOW:
            self.value = min(MAX_DEPTH, old + 1)
        return self.value != old
