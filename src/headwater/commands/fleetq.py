"""``headwater submit``, ``headwater coordinator`` and ``headwater queue status``: the shared queue.

``submit`` records a run and puts its tasks on the store's shared queue;
any number of ``coordinator`` processes (on PostgreSQL, on any hosts) then
serve it with their local agents. See docs/distributed.md.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

STORE_HELP = "Store URL (default: --store before the command, $HEADWATER_STORE, or SQLite in the workspace)."


def _workspace(store: str | None):
    from headwater.cli import _ws, state

    if store:
        state.store = store
    return _ws()


def queue_status(queue: Any, run_id: str) -> dict[str, Any]:
    """A queued run's scoreboard summed up (what ``queue status --json`` prints)."""
    board = queue.scoreboard(run_id)
    tasks = board["tasks"]
    return {
        "run": run_id, "status": board["status"], "version": board["version"], "total": board["total"],
        "final": board["final"], "tasks_by_state": dict(Counter(r["state"] for r in tasks.values())),
        "executing": sum(r["executing"] for r in tasks.values()),
        "verifying": sum(r["verifying"] for r in tasks.values()),
        "tasks": tasks,
    }


def render_queue_status(data: dict[str, Any]) -> Table:
    """The table ``queue status`` and ``status`` print for a queued run."""
    head = Table(title=f"run {data['run']}: {data['status']} ({data['final']}/{data['total']} final)",
                 title_justify="left")
    states = data["tasks_by_state"]
    for s in states:
        head.add_column(s, justify="right")
    head.add_column("executing", justify="right")
    head.add_column("verifying", justify="right")
    head.add_row(*[str(v) for v in states.values()], str(data["executing"]), str(data["verifying"]))
    return head


def register(app: typer.Typer) -> None:
    queue_app = typer.Typer(help="The shared work queue (see `headwater submit`, `headwater coordinator`).\n\n"
                                 "Example: headwater queue status 3f2a9c0d1e2b4a5f", no_args_is_help=True)
    app.add_typer(queue_app, name="queue")

    @app.command()
    def submit(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Workflow file (.py or .yaml)."),
        param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE, repeatable."),
        seed: int = typer.Option(0, "--seed", help="Run seed; each task's seed derives from it."),
        name: Optional[str] = typer.Option(None, "--workflow", help="Which workflow, when the file defines several."),
        campaign: Optional[str] = typer.Option(None, "--campaign", help="Campaign (default: workflow name)."),
        why: Optional[str] = typer.Option(None, "--why", help="Why this run differs from the last."),
        store: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print the run id and task count as JSON."),
    ) -> None:
        """Put a run of a workflow on the shared queue and print its run id.

        Coordinators (`headwater coordinator`) serve it. Example:
        headwater submit sweep.py --param n=100 --store postgresql://hw@db/hw
        """
        from headwater.cli import _emit, _parse_params, console
        from headwater.runtime.shared import submit_run
        from headwater.spec import load_workflow
        from headwater.store.queue import WorkQueue

        ws = _workspace(store)
        wf = load_workflow(file.absolute(), name)
        queue = WorkQueue(ws.store)
        run_id = submit_run(ws.store, wf, _parse_params(param), seed=seed, campaign=campaign, why=why, queue=queue)
        if as_json:
            _emit({"run": run_id, "workflow": wf.name, "tasks": len(wf.tasks)})
        else:
            console.print(run_id)

    @app.command()
    def coordinator(
        store: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
        workers: int = typer.Option(2, "--workers", "-w", help="Local agent processes."),
        role: list[str] = typer.Option([], "--role", help="Serve only these roles (repeatable; default: all)."),
        run: list[str] = typer.Option([], "--run", help="Serve only these runs (repeatable; default: all)."),
        until_done: bool = typer.Option(False, "--until-done", help="Stop once the runs served are finished."),
        lease: float = typer.Option(30.0, "--lease", help="Lease term in seconds; a dead agent's work is "
                                                          "claimed again about this long after it died."),
        name: Optional[str] = typer.Option(None, "--name", help="Coordinator id (default: from host pid)."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Serve the shared queue with local agents; several may run at once on PostgreSQL.

        Example: headwater coordinator --store postgresql://hw@db/hw --workers 8 --until-done
        """
        from headwater.cli import _emit, console, err
        from headwater.runtime.coordinators import SharedCoordinator

        ws = _workspace(store)
        done = Counter()

        def progress(kind: str, data: dict) -> None:
            done[kind] += 1
            if kind in ("duties", "rejected") and not as_json:
                err.print(f"[dim]{kind}[/] {json.dumps(data)}")

        coord = SharedCoordinator(ws, workers=workers, roles=role or None, runs=run or None, lease_s=lease,
                                  progress=progress, name=name)
        if not as_json:
            err.print(f"coordinator [bold]{coord.id}[/] serving {ws.store!r} with {workers} agent(s)")
        try:
            stats = coord.serve(until_done=until_done)
        except KeyboardInterrupt:
            stats = coord.stats
        if as_json:
            _emit(stats.to_json())
            return
        table = Table(title=f"coordinator {stats.coordinator}", title_justify="left")
        for col in ("accepted", "verdicts", "failures", "stale", "rejected", "reaped", "duties", "seconds"):
            table.add_column(col, justify="right")
        table.add_row(str(stats.accepted), str(stats.verdicts), str(stats.failures), str(stats.stale),
                      str(stats.rejected), str(stats.reaped), "yes" if stats.held_duties else "no",
                      f"{stats.seconds:.1f}")
        console.print(table)

    @queue_app.command("status")
    def status(
        run_id: str = typer.Argument(..., help="Run id."),
        store: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print the scoreboard as JSON."),
    ) -> None:
        """Show a queued run's scoreboard: tasks by state, agents executing and verifying.

        Example: headwater queue status 3f2a9c0d1e2b4a5f --json
        """
        from headwater.cli import _emit, console
        from headwater.store.queue import WorkQueue

        data = queue_status(WorkQueue(_workspace(store).store), run_id)
        if as_json:
            _emit(data)
            return
        console.print(render_queue_status(data))
