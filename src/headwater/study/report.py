"""The study's report directory: ``report.md``, ``summary.json``, ``replicates.json`` and plots.

Plots need matplotlib (the ``study`` extra); it is imported only here, and
:func:`require_plots` raises :class:`~headwater.errors.OptionalDependency`
when it is missing, so a run can fail before it starts rather than after.

* ``cascade_sizes.png`` -- how many results each planted error corrupted,
  per strategy, in the baseline regime (the share of errors whose cascade
  is at least a given size);
* ``regime_map.png`` -- concentration of the shared core against the
  predictive power of global signals: the reduction in corrupted results
  still standing that infrastructure oversight adds to per-workflow
  oversight, its interval and its extra compute;
* ``sweeps.png`` -- the same margin and cost along every other axis.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from headwater.errors import OptionalDependency
from headwater.study.analysis import fmt, summarize_regime
from headwater.study.params import STRATEGIES

AXES = {
    "change": "Rate of asset change",
    "cost": "Cost of global signals",
    "bespoke": "Share of bespoke assets",
    "length": "Workflow length",
    "errors": "Where the errors are",
    "risk": "Risks oversight adds",
}


def map_cells(regimes: list[dict[str, Any]]) -> dict[tuple[float, float], dict[str, Any]]:
    """The regime map: ``(zipf, signal)`` -> regime, with the baseline as the cell at the defaults
    when the map's grid has that row and column."""
    cells = {(r["changes"]["zipf"], r["changes"]["signal"]): r for r in regimes if r["axis"] == "map"}
    zipfs, sigs = {z for z, _ in cells}, {g for _, g in cells}
    for r in regimes:
        if r["axis"] == "baseline":
            key = (r["changes"].get("zipf"), r["changes"].get("signal"))
            if key[0] in zipfs and key[1] in sigs:
                cells[key] = r
    return cells


def require_plots():
    """matplotlib's pyplot (Agg backend), or :class:`OptionalDependency` naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise OptionalDependency("headwater study plots", "study") from None
    return plt


def pooled(sweep: list[dict[str, Any]], name: str, keep) -> dict[str, Any] | None:
    """One summary over the replicates of every regime ``keep(summary)`` selects."""
    reps = [rep for reg in sweep if keep(reg) for rep in reg["replicates"]]
    if not reps:
        return None
    return summarize_regime({"name": name, "axis": "pooled", "label": name, "changes": {}, "replicates": reps})


def _num(x: float, digits: int = 0) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def headline(s: dict[str, Any]) -> list[str]:
    """The baseline's findings in plain sentences."""
    inf = s["infra"]
    pw, both, none, alone = (s["strategies"][k] for k in ("per-workflow", "both", "none", "infrastructure"))
    return [
        f"Without oversight, {_num(none['corrupt']['value'], 1)} results per replicate were corrupted and "
        f"{_num(none['cascades']['value'], 1)} planted errors cascaded into two or more workflows.",
        f"Per-workflow oversight alone left {_num(pw['standing']['value'], 1)} corrupted results standing "
        f"(it contained {fmt(pw['contained'])} of them) at {fmt(pw['overhead'])} extra compute.",
        f"Adding infrastructure oversight (both vs per-workflow) cut corrupted results still standing at the end "
        f"by {fmt(inf['standing'])} and corrupted results ever committed by {fmt(inf['corrupt'])}; "
        f"it stopped {fmt(inf['stopped'])} of the cascades per-workflow oversight let stand, "
        f"at {fmt(inf['cost'])} extra compute (of the fleet's work), "
        f"a change of {inf['delay']['value']:+.0f} stage-hours of delay and "
        f"{_num(inf['false_alarms']['value'], 1)} false alarms per replicate.",
        f"Infrastructure oversight alone (vs none) cut standing corrupted results by {fmt(inf['alone_standing'])} "
        f"and committed ones by {fmt(inf['alone_corrupt'])}, at {fmt(inf['alone_cost'])} extra compute; "
        f"it identified {_num(100 * alone['detected']['share'])}% of shared-asset errors within the period "
        f"(median {_num(alone['detected']['median_hours'])} h), per-workflow oversight "
        f"{_num(100 * pw['detected']['share'])}% (median {_num(pw['detected']['median_hours'])} h), "
        f"both {_num(100 * both['detected']['share'])}% (median {_num(both['detected']['median_hours'])} h).",
    ]


def strategy_table(s: dict[str, Any]) -> list[str]:
    rows = ["| strategy | corrupted committed | still standing | contained vs none | cascades | cascades stopped "
            "| corrupted claims consumed | shared errors found (median h) | extra compute | delay (stage-h) "
            "| false alarms |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in STRATEGIES:
        x = s["strategies"][name]
        d = x["detected"]
        rows.append(
            f"| {name} | {fmt(x['corrupt'], pct=False, digits=1)} | {fmt(x['standing'], pct=False, digits=1)} "
            f"| {fmt(x['contained'])} | {fmt(x['cascades'], pct=False, digits=1)} | {fmt(x['stopped'])} "
            f"| {fmt(x['consumed_corrupt'], pct=False, digits=1)} "
            f"| {_num(100 * d['share'])}% ({_num(d['median_hours'])}) | {fmt(x['overhead'])} "
            f"| {_num(x['delay']['value'])} | {_num(x['false_alarms']['value'], 1)} |")
    return rows


def margin_table(summaries: list[dict[str, Any]]) -> list[str]:
    rows = ["| regime | top-5 reach | standing cut (both vs per-workflow) | committed cut | cascades stopped "
            "| extra compute | alone: standing cut vs none | false alarms | verdict |",
            "|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        i = s["infra"]
        rows.append(f"| {s['label']} | {100 * s['top5_reach']:.0f}% | {fmt(i['standing'])} | {fmt(i['corrupt'])} "
                    f"| {fmt(i['stopped'])} | {fmt(i['cost'])} | {fmt(i['alone_standing'])} "
                    f"| {_num(i['false_alarms']['value'], 1)} | {i['verdict']} |")
    return rows


def write_report(out: Path, sweep: list[dict[str, Any]], summaries: list[dict[str, Any]], meta: dict[str, Any],
                 plots: bool = True) -> dict[str, Any]:
    """Write the report directory; return the JSON summary (also written to ``summary.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    by_name = {s["name"]: s for s in summaries}
    base = by_name["baseline"]
    grid = {id(r) for r in map_cells(sweep).values()}
    concentrated = pooled(sweep, "top-5 reach > 50%", lambda r: id(r) in grid and _reach(r) > 0.5)
    spread = pooled(sweep, "top-5 reach <= 50%", lambda r: id(r) in grid and _reach(r) <= 0.5)
    summary = {"meta": meta, "baseline": base, "concentrated": concentrated, "spread": spread,
               "regimes": summaries}
    (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=1, allow_nan=False))
    (out / "replicates.json").write_text(json.dumps(jsonable(sweep), allow_nan=False))
    figures = []
    if plots:
        figures = make_plots(out, summaries)
    lines = [
        "# Cascade study: infrastructure-level vs per-workflow oversight", "",
        f"`headwater study{' --quick' if meta['quick'] else ''} --seed {meta['seed']} "
        f"--replicates {meta['replicates']}`: {len(summaries)} regimes x {meta['replicates']} replicates x "
        f"4 strategies, {meta['seconds']:.0f} s on {meta['workers']} worker(s). "
        f"Each replicate is one fleet of {meta['base']['n_workflows']} workflows of {meta['base']['stages']} stages "
        f"over {meta['base']['horizon_days']:g} days, played under every strategy with the same errors. "
        "Intervals are 95% percentile bootstrap intervals over replicates. The model and its assumptions are "
        "in docs/study.md.", "",
        "## Baseline", "",
        *[f"- {x}" for x in headline(base)], "",
        *strategy_table(base), "",
    ]
    if concentrated is not None and spread is not None:
        ci, sp = concentrated["infra"], spread["infra"]
        lines += [
            "## Concentration", "",
            f"- In fleets where the top 5 shared assets are each used by more than half of the workflows "
            f"(regime-map cells, {concentrated['replicates']} replicates), infrastructure oversight added to "
            f"per-workflow oversight cut standing corrupted results by {fmt(ci['standing'])}, stopped "
            f"{fmt(ci['stopped'])} of the cascades per-workflow oversight let stand, at {fmt(ci['cost'])} extra "
            "compute.",
            f"- Where they reach at most half ({spread['replicates']} replicates): standing cut "
            f"{fmt(sp['standing'])}, cascades stopped {fmt(sp['stopped'])}, extra compute {fmt(sp['cost'])}.", "",
        ]
    cells = map_cells(summaries)
    lines += ["## Regime map: concentration x predictive power of global signals", "",
              *map_table(summaries), "", *margin_table(sorted(cells.values(), key=lambda s: (
                  s["changes"]["zipf"], s["changes"]["signal"]))), ""]
    for axis, title in AXES.items():
        rows = _axis_rows(summaries, axis)
        if len(rows) > 1:
            lines += [f"## {title}", "", *margin_table(rows), ""]
    if figures:
        lines += ["## Figures", "", *[f"![{f}]({f})" for f in figures], ""]
    lines += ["## Reading the numbers", "",
              "- *Corrupted committed*: results (a stage of a workflow) committed at least once with a planted "
              "error in them, counted once each however often they were re-run. *Still standing*: their last "
              "committed version is corrupted and not retracted at the end.",
              "- *Cascade*: a planted error whose corrupted results reached two or more workflows. *Stopped*: "
              "its corrupted results stand in fewer than two workflows at the end.",
              "- *Extra compute*: verification, monitors, canaries, redundant calls, squashed and re-run work, "
              "as a share of the compute the fleet needs without oversight. *Delay*: stage-hours paused by "
              "throttles or held by owners investigating.",
              "- *Verdict*: `wins` when the interval of the standing cut lies above zero, `loses` below.", ""]
    (out / "report.md").write_text("\n".join(lines))
    return summary


def _axis_rows(summaries: list[dict[str, Any]], axis: str) -> list[dict[str, Any]]:
    """The regimes of one axis, after the regime they are compared with."""
    rows = [s for s in summaries if s["axis"] == axis]
    by_name = {s["name"]: s for s in summaries}
    refs = [by_name[n] for n in dict.fromkeys(s["reference"] for s in rows) if n in by_name]
    return refs + rows


def _reach(regime: dict[str, Any]) -> float:
    reps = regime["replicates"]
    return sum(r["top5_reach"] for r in reps) / len(reps) if reps else 0.0


def jsonable(x: Any) -> Any:
    """``x`` with NaN as None and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def map_table(summaries: list[dict[str, Any]]) -> list[str]:
    cells = map_cells(summaries)
    if not cells:
        return []
    zipfs = sorted({z for z, _ in cells})
    sigs = sorted({g for _, g in cells})
    rows = ["| zipf (top-5 reach) | " + " | ".join(f"signal {g:g}" for g in sigs) + " |",
            "|---|" + "---|" * len(sigs)]
    for z in zipfs:
        reach = [cells[(z, g)]["top5_reach"] for g in sigs if (z, g) in cells]
        row = f"| {z:g} ({100 * sum(reach) / len(reach):.0f}%) |"
        for g in sigs:
            s = cells.get((z, g))
            if s is None:
                row += " |"
                continue
            i = s["infra"]
            row += f" {fmt(i['standing'])}, +{_num(100 * i['cost']['value'])}% compute |"
        rows.append(row)
    return ["Each cell: cut in corrupted results standing at the end, both vs per-workflow (95% CI), and the "
            "extra compute it costs.", "", *rows]


def make_plots(out: Path, summaries: list[dict[str, Any]]) -> list[str]:
    """Draw the three figures; return their file names."""
    plt = require_plots()
    files = []
    base = next(s for s in summaries if s["name"] == "baseline")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in STRATEGIES:
        sizes = sorted(base["cascade_sizes"][name])
        if not sizes:
            continue
        xs = sorted(set(sizes))
        ys = [sum(1 for v in sizes if v >= x) / len(sizes) for x in xs]
        ax.step(xs, ys, where="post", label=name)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("results corrupted by one planted error (cascade size)")
    ax.set_ylabel("share of planted errors with at least this size")
    ax.set_title("Cascade sizes per strategy (baseline)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "cascade_sizes.png", dpi=120)
    plt.close(fig)
    files.append("cascade_sizes.png")

    cells = map_cells(summaries)
    if cells:
        zipfs = sorted({z for z, _ in cells})
        sigs = sorted({g for _, g in cells})
        grid = [[cells[(z, g)]["infra"]["standing"]["value"] if (z, g) in cells else math.nan for g in sigs]
                for z in zipfs]
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        im = ax.imshow([[100 * v for v in row] for row in grid], origin="lower", cmap="RdYlGn", vmin=-50, vmax=50,
                       aspect="auto")
        for i, z in enumerate(zipfs):
            for j, g in enumerate(sigs):
                s = cells.get((z, g))
                if s is None:
                    continue
                st, cost = s["infra"]["standing"], s["infra"]["cost"]
                ax.text(j, i, f"{100 * st['value']:.0f}%\n[{_num(100 * st['lo'])}, {_num(100 * st['hi'])}]\n"
                              f"+{100 * cost['value']:.0f}% compute", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(sigs)), [f"{g:g}" for g in sigs])
        reach = {z: sum(cells[(z, g)]["top5_reach"] for g in sigs if (z, g) in cells) /
                 sum(1 for g in sigs if (z, g) in cells) for z in zipfs}
        ax.set_yticks(range(len(zipfs)), [f"{z:g} ({100 * reach[z]:.0f}%)" for z in zipfs])
        ax.set_xlabel("predictive power of global signals (median error shift, in claim sd)")
        ax.set_ylabel("concentration: zipf exponent (top-5 reach)")
        ax.set_title("Where infrastructure oversight wins\n(cut in standing corrupted results, both vs per-workflow)")
        fig.colorbar(im, ax=ax, label="% cut (red: worse)")
        fig.tight_layout()
        fig.savefig(out / "regime_map.png", dpi=120)
        plt.close(fig)
        files.append("regime_map.png")

    axes = [(a, t) for a, t in AXES.items() if any(s["axis"] == a for s in summaries)]
    if axes:
        ncols = min(3, len(axes))
        nrows = -(-len(axes) // ncols)
        fig, panels = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 4.2 * nrows), squeeze=False)
        flat = [ax for row in panels for ax in row]
        for ax in flat[len(axes):]:
            ax.set_visible(False)
        for ax, (axis, title) in zip(flat, axes):
            rows = _axis_rows(summaries, axis)
            xs = range(len(rows))
            val = [100 * r["infra"]["standing"]["value"] for r in rows]
            lo = [100 * (r["infra"]["standing"]["value"] - r["infra"]["standing"]["lo"]) for r in rows]
            hi = [100 * (r["infra"]["standing"]["hi"] - r["infra"]["standing"]["value"]) for r in rows]
            cost = [100 * r["infra"]["cost"]["value"] for r in rows]
            ax.errorbar(xs, val, yerr=[lo, hi], fmt="o", label="standing cut")
            ax.plot(xs, cost, "s", color="grey", label="extra compute")
            ax.axhline(0, color="black", lw=0.5)
            ax.set_xticks(list(xs), [r["label"] for r in rows], rotation=60, ha="right", fontsize=7)
            ax.set_title(title, fontsize=9)
            ax.set_ylabel("% (both vs per-workflow)")
        flat[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "sweeps.png", dpi=120)
        plt.close(fig)
        files.append("sweeps.png")
    return files
