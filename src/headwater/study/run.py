"""One call for the whole study: sweep, summarize, write the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from headwater.study.analysis import summarize
from headwater.study.report import require_plots, write_report
from headwater.study.sweep import base_params, default_workers, plan, run_sweep

DEFAULT_REPLICATES = 5
QUICK_REPLICATES = 4


def run_study(out: str | Path, *, quick: bool = False, replicates: int | None = None, seed: int = 0,
              workers: int | None = None, plots: bool = True,
              progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the default sweep (or the ``quick`` one) and write the report to ``out``.

    Returns the summary written to ``out/summary.json``. With ``plots``,
    matplotlib must be installed (checked before anything runs).
    """
    if plots:
        require_plots()
    if replicates is None:
        replicates = QUICK_REPLICATES if quick else DEFAULT_REPLICATES
    if replicates < 1:
        raise ValueError("replicates must be at least 1")
    workers = default_workers() if workers is None else max(1, workers)
    base = base_params(quick)
    regimes = plan(quick)
    started = time.perf_counter()
    sweep = run_sweep(regimes, base=base, replicates=replicates, seed=seed, workers=workers, progress=progress)
    summaries = summarize(sweep)
    meta = {"quick": quick, "seed": seed, "replicates": replicates, "workers": workers,
            "seconds": time.perf_counter() - started, "regimes": len(regimes), "base": base.as_dict()}
    summary = write_report(Path(out), sweep, summaries, meta, plots=plots)
    summary["meta"]["seconds"] = time.perf_counter() - started
    return summary
