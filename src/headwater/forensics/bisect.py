"""``headwater bisect RUN --check ...``: find the first checkpoint that is wrong.

The run's committed checkpoints, in the order they were written, form a chain
in which a stage made wrong makes every later stage wrong too. Bisection finds
the first failing one with O(log n) checks. A check is either
``python:module:function`` — called with an
:class:`~headwater.runtime.agent.OutputsView` (``.task``, ``.load(name)``,
``.path(name)``) and returning truthy for good — or a shell command, run with
the checkpoint's outputs materialised in a directory named by
``$HEADWATER_OUTPUTS`` (one file per output name) and ``$HEADWATER_CHECKPOINT``
and ``$HEADWATER_TASK`` set; exit status 0 means good.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from headwater.errors import HeadwaterError, RunError
from headwater.runtime.agent import OutputsView
from headwater.store import Store
from headwater.store.records import CheckpointRecord

Check = Callable[[CheckpointRecord], bool]


@dataclass
class BisectReport:
    run: str
    chain: list[str]  # checkpoint ids in order
    checks: list[dict] = field(default_factory=list)  # {"index", "checkpoint", "task", "good"} in the order made
    first_bad: dict | None = None

    def to_json(self) -> dict:
        return self.__dict__.copy()


def load_check(spec: str, store: Store) -> Check:
    """Turn ``python:module:function`` or a shell command into a check."""
    if spec.startswith("python:"):
        target = spec[len("python:"):]
        module_name, _, func_name = target.rpartition(":")
        if not module_name or not func_name:
            raise HeadwaterError(f"--check {spec!r}: expected python:module:function")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            func = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            raise HeadwaterError(f"--check {spec!r}: cannot load {target}: {exc}") from exc
        return lambda ck: bool(func(OutputsView(ck.task, ck.outputs, store.artifacts)))

    def shell(ck: CheckpointRecord) -> bool:
        with tempfile.TemporaryDirectory(prefix="hw-bisect-") as tmp:
            for out in ck.outputs:
                store.artifacts.materialize(out.sha256, Path(tmp) / out.name)
            env = dict(os.environ, HEADWATER_OUTPUTS=tmp, HEADWATER_CHECKPOINT=ck.id, HEADWATER_TASK=ck.task)
            return subprocess.run(spec, shell=True, env=env, capture_output=True).returncode == 0

    return shell


def bisect_run(store: Store, run_id: str, check: Check) -> BisectReport:
    """Binary search for the first failing committed checkpoint of a run."""
    run = store.get_run(run_id)
    chain = [c for c in store.list_checkpoints(run.id) if c.status == "committed"]
    if not chain:
        raise RunError(f"run {run.id} has no committed checkpoints to bisect", run_id=run.id)
    report = BisectReport(run=run.id, chain=[c.id for c in chain])
    verdicts: dict[int, bool] = {}

    def good(i: int) -> bool:
        if i not in verdicts:
            verdicts[i] = bool(check(chain[i]))
            report.checks.append({"index": i, "checkpoint": chain[i].id, "task": chain[i].task, "good": verdicts[i]})
        return verdicts[i]

    lo, hi = 0, len(chain) - 1
    if good(hi):
        return report
    while lo < hi:
        mid = (lo + hi) // 2
        if good(mid):
            lo = mid + 1
        else:
            hi = mid
    report.first_bad = {"index": lo, "checkpoint": chain[lo].id, "task": chain[lo].task}
    return report
