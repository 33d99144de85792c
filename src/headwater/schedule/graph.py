"""The static shape of one run: task definitions compiled into index arrays.

:func:`compile_graph` checks a list of :class:`TaskDef` (names unique, deps
and branch alternatives known, no cycles, sane numbers) and turns it into a
:class:`Graph`, where tasks are integers in declaration order and every
relation is a tuple of integers, so the scheduler's hot paths never hash a
task name.

Two kinds of edge leave a task:

* a *data* edge ``dep -> task`` for every name in ``task.deps``;
* a *control* edge ``decider -> alternative`` for every name in
  ``decider.branches``. It carries the decision, not outputs. When an
  alternative also lists its decider among its deps (workflow specs do), that
  dep is folded into the control edge, so a predicted decision can let the
  alternative start before the decider has finished.

An alternative belongs to one decider. The topological order breaks ties by
declaration order, and the critical path of a task is its
``expected_duration`` plus the longest critical path among its children
(both edge kinds), so ordering by it favours the work that keeps the longest
remaining chain moving.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from headwater.errors import RunError
from headwater.schedule.states import TaskDef


@dataclass(frozen=True, slots=True)
class Graph:
    """A run's tasks as index arrays; see the module docstring.

    ``parents[i]`` are the data parents of task ``i`` (deduplicated, decider
    folded out), ``controller[i]`` its decider or ``-1``, ``children[p]``
    pairs ``(child, position of p in parents[child])``, ``alternatives[d]``
    the alternatives of decider ``d`` in declared order, ``topo`` the tasks
    in topological order and ``position[i]`` the place of ``i`` in it.
    ``keys[i]`` is the ready-queue key: higher priority first, then longer
    critical path, then declaration order.
    """

    names: tuple[str, ...]
    index: dict[str, int]
    defs: tuple[TaskDef, ...]
    parents: tuple[tuple[int, ...], ...]
    controller: tuple[int, ...]
    children: tuple[tuple[tuple[int, int], ...], ...]
    alternatives: tuple[tuple[int, ...], ...]
    topo: tuple[int, ...]
    position: tuple[int, ...]
    critical: tuple[float, ...]
    keys: tuple[tuple[int, float, int], ...]


def _check_def(d: TaskDef) -> None:
    if not isinstance(d.name, str) or not d.name:
        raise RunError(f"task name must be a non-empty string, got {d.name!r}")
    if d.verify < 0:
        raise RunError(f"verify must be >= 0, got {d.verify}", task=d.name)
    if d.reject < 1:
        raise RunError(f"reject must be >= 1, got {d.reject}", task=d.name)
    if d.retries < 0:
        raise RunError(f"retries must be >= 0, got {d.retries}", task=d.name)
    if not (d.expected_duration >= 0 and math.isfinite(d.expected_duration)):
        raise RunError(f"expected_duration must be finite and >= 0, got {d.expected_duration}", task=d.name)


def compile_graph(tasks: Iterable[TaskDef]) -> Graph:
    """Check ``tasks`` and compile them; raises :class:`RunError` naming the task at fault."""
    defs = tuple(tasks)
    index: dict[str, int] = {}
    for i, d in enumerate(defs):
        _check_def(d)
        if d.name in index:
            raise RunError(f"task {d.name!r} is declared twice", task=d.name)
        index[d.name] = i
    n = len(defs)

    controller = [-1] * n
    alternatives: list[tuple[int, ...]] = []
    for i, d in enumerate(defs):
        alts: list[int] = []
        for b in d.branches:
            a = index.get(b)
            if a is None:
                raise RunError(f"branch {b!r} is not a task of this run", task=d.name)
            if a == i:
                raise RunError("a task cannot be its own branch alternative", task=d.name)
            if a in alts:
                raise RunError(f"branch {b!r} is listed twice", task=d.name)
            if controller[a] != -1:
                raise RunError(
                    f"task {b!r} is an alternative of both {defs[controller[a]].name!r} and {d.name!r}",
                    task=b,
                )
            controller[a] = i
            alts.append(a)
        alternatives.append(tuple(alts))

    parents: list[tuple[int, ...]] = []
    kids: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for i, d in enumerate(defs):
        ps: list[int] = []
        for dep in d.deps:
            p = index.get(dep)
            if p is None:
                raise RunError(f"unknown dependency {dep!r}", task=d.name)
            if p == i:
                raise RunError("a task cannot depend on itself", task=d.name)
            if p == controller[i] or p in ps:
                continue
            kids[p].append((i, len(ps)))
            ps.append(p)
        parents.append(tuple(ps))

    indegree = [len(parents[i]) + (controller[i] >= 0) for i in range(n)]
    heap = [i for i in range(n) if indegree[i] == 0]
    heapq.heapify(heap)
    topo: list[int] = []
    while heap:
        i = heapq.heappop(heap)
        topo.append(i)
        for c in [c for c, _ in kids[i]] + list(alternatives[i]):
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(heap, c)
    if len(topo) < n:
        stuck = min(i for i in range(n) if indegree[i] > 0)
        raise RunError("dependency cycle through this task", task=defs[stuck].name)

    position = [0] * n
    for pos, i in enumerate(topo):
        position[i] = pos
    critical = [0.0] * n
    for i in reversed(topo):
        below = [critical[c] for c, _ in kids[i]] + [critical[a] for a in alternatives[i]]
        critical[i] = defs[i].expected_duration + max(below, default=0.0)

    return Graph(
        names=tuple(d.name for d in defs),
        index=index,
        defs=defs,
        parents=tuple(parents),
        controller=tuple(controller),
        children=tuple(tuple(k) for k in kids),
        alternatives=tuple(alternatives),
        topo=tuple(topo),
        position=tuple(position),
        critical=tuple(critical),
        keys=tuple((-d.priority, -critical[i], i) for i, d in enumerate(defs)),
    )
