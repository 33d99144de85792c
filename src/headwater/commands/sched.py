"""``headwater status``: a run's scoreboard, live, from the store.

Everything shown is read from the store, so it works from any terminal and
for a run whose coordinator is on another host: the ``task_instance`` rows
(each task's current state, attempt, agent and lease), the checkpoint
statuses (committed, provisional, squashed, refuted, failed), and the latest
``counters`` event the coordinator writes about once a second (the core's
counters -- speculative claims, squashed attempts, scoreboard reads -- and
the recheck and verification latencies).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from headwater.store import Store

STATES = ("pending", "ready", "leased", "provisional", "verified", "committed", "skipped", "failed")


def run_status(store: Store, run_id: str) -> dict[str, Any]:
    """The status of one run as plain data (what ``--json`` prints)."""
    run = store.get_run(run_id)
    rows = store.get_tasks(run.id)
    by_state = Counter(r.state for r in rows)
    checkpoints = Counter(c.status for c in store.list_checkpoints(run.id))
    snapshots = store.list_events(run_id=run.id, kind="counters", limit=1)
    latest = snapshots[-1].data if snapshots else {}
    counters = latest.get("counters", {})
    return {
        "run": run.id, "workflow": run.workflow, "status": run.status,
        "tasks": len(store.get_spec(run.spec_hash).get("tasks", {})),
        "tasks_by_state": {s: by_state.get(s, 0) for s in STATES if by_state.get(s) or s in ("committed", "leased")},
        "checkpoints_by_status": dict(checkpoints),
        "speculative": counters.get("speculative_claims", 0),
        "squashed": counters.get("squashed", checkpoints.get("squashed", 0)),
        "scoreboard_reads": counters.get("scoreboard_reads", 0),
        "speculation_depth": latest.get("speculation_depth"),
        "counters": counters,
        "latency": latest.get("latency", {}),
        "running": [{"task": r.task, "attempt": r.attempt, "agent": r.agent} for r in rows if r.state == "leased"],
    }


def _render(data: dict[str, Any]) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_row(f"[bold]run {data['run']}[/]", data["workflow"], f"[bold]{data['status']}[/]",
                 f"depth {data['speculation_depth'] if data['speculation_depth'] is not None else '-'}")
    states = Table(title="tasks by state", title_justify="left")
    for s in data["tasks_by_state"]:
        states.add_column(s, justify="right")
    states.add_row(*[str(v) for v in data["tasks_by_state"].values()])
    spec = Table(title="speculation and verification", title_justify="left")
    for col in ("speculative claims", "squashed", "refuted", "scoreboard reads", "rechecks", "notifications",
                "stolen", "backups", "verification mean s", "recheck mean s"):
        spec.add_column(col, justify="right")
    c, lat = data["counters"], data["latency"]
    spec.add_row(str(data["speculative"]), str(data["squashed"]), str(c.get("refuted", 0)),
                 str(data["scoreboard_reads"]), str(c.get("rechecks", 0)), str(c.get("notifications", 0)),
                 str(c.get("stolen", 0)), str(c.get("backups", 0)),
                 f"{lat.get('verification_mean_s', 0.0):.3f}", f"{lat.get('recheck_mean_s', 0.0):.3f}")
    parts: list[Any] = [head, states, spec]
    if data["running"]:
        running = Table(title="running", title_justify="left")
        for col in ("task", "attempt", "agent"):
            running.add_column(col)
        for r in data["running"][:20]:
            running.add_row(r["task"], str(r["attempt"]), r["agent"] or "")
        parts.append(running)
    return Group(*parts)


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        run_id: str = typer.Argument(..., help="Run id or unique prefix."),
        as_json: bool = typer.Option(False, "--json", help="Print counters and states as JSON, once."),
        once: bool = typer.Option(False, "--once", help="Show the scoreboard once instead of following the run."),
        interval: float = typer.Option(0.5, "--interval", help="Seconds between refreshes."),
    ) -> None:
        """Show a run's scoreboard: tasks by state, speculative and squashed work, rechecks, latencies.

        Follows a running run live until it ends (Ctrl-C to stop watching).
        Example: headwater status 3f2a9c --json
        """
        from headwater.cli import _ws, console

        store = _ws().store
        run = store.get_run(run_id)
        if (run.options or {}).get("executor") == "queue":
            from headwater.commands.fleetq import queue_status, render_queue_status
            from headwater.store.queue import WorkQueue

            queue = WorkQueue(store)

            def fetch(previous: dict | None) -> dict:
                if previous is not None:  # woken by the queue's notification, or after ``interval``
                    queue.wait(run.id, previous["version"], max(interval, 0.05))
                return queue_status(queue, run.id)

            _show(fetch, render_queue_status, as_json, once)
            return

        def poll(previous: dict | None) -> dict:
            if previous is not None:
                time.sleep(max(interval, 0.05))
            return run_status(store, run.id)

        _show(poll, _render, as_json, once)


def _show(fetch: Callable[[dict | None], dict], render: Callable[[dict], Any], as_json: bool, once: bool) -> None:
    """Print a run's status once (as JSON or a table), or follow it live while it runs.

    ``fetch(None)`` reads the status now; ``fetch(previous)`` waits for the
    next change (or a refresh interval) and reads it again.
    """
    from headwater.cli import console

    data = fetch(None)
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    if once or data["status"] != "running":
        console.print(render(data))
        return
    with Live(render(data), console=console, refresh_per_second=4) as live:
        while data["status"] == "running":
            data = fetch(data)
            live.update(render(data))
