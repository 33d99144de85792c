"""The ``headwater`` command: thin; parses, calls the library, renders with rich.

Every command that reports something takes ``--json`` for scripts. Domain
errors (:class:`~headwater.errors.HeadwaterError`) become one red line that
names what is at fault and exit status 2; a failed run exits 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from headwater.errors import HeadwaterError

app = typer.Typer(
    help="Provenance, speculative verification and fleet oversight for long scientific workflows.\n\n"
    "Start with `headwater demo`, then `headwater run examples/heat_diffusion.py`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class _State:
    home: Optional[str] = None
    store: Optional[str] = None


state = _State()


@app.callback()
def _main(
    home: Optional[str] = typer.Option(None, "--home", envvar="HEADWATER_HOME",
                                       help="Workspace directory (default ./.headwater)."),
    store: Optional[str] = typer.Option(None, "--store", envvar="HEADWATER_STORE",
                                        help="Store URL, e.g. postgresql://user@host/db (default: SQLite in the workspace)."),
) -> None:
    state.home, state.store = home, store


def _ws():
    from headwater.runtime import open_workspace

    return open_workspace(state.home, state.store)


def _emit(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def _short(ident: str | None) -> str:
    return (ident or "")[:12]


def _fmt_time(ts: float | None) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


# -- set-up and running ------------------------------------------------------
@app.command()
def init() -> None:
    """Create the workspace (.headwater/: store, artifacts, signing key).

    Example: headwater init
    """
    ws = _ws()
    console.print(f"workspace [bold]{ws.root}[/] ready\n  store     {ws.store.url}\n"
                  f"  artifacts {ws.store.artifacts.url}\n  key       {ws.key_path} (id {ws.key.key_id})")


def _parse_params(items: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HeadwaterError(f"--param {item!r}: expected NAME=VALUE")
        params[key.strip()] = value
    return params


def _parse_pools(items: list[str], workers: int | None) -> dict[str, int] | None:
    """``--pool NAME=N`` options as ``RunOptions.pools``; None when there are none."""
    if not items:
        return None
    pools: dict[str, int] = {}
    for item in items:
        name, sep, count = item.rpartition("=")
        name = name.strip()
        try:
            n = int(count)
        except ValueError:
            n = 0
        if not sep or not name or n < 1:
            raise HeadwaterError(f"--pool {item!r}: expected NAME=N with N >= 1 agents (e.g. --pool gpu=2)")
        if name in pools:
            raise HeadwaterError(f"--pool {name!r} is given twice: give each pool once, with its number of agents")
        pools[name] = n
    total = sum(pools.values())
    if workers not in (None, 0, total):
        raise HeadwaterError(f"--workers {workers} disagrees with --pool, which gives {total} agent(s): "
                             "leave out --workers (or use --workers 0 to run the pools' agents inline)")
    return pools


def _speculate(value: str) -> int | str:
    if value in ("off", "0"):
        return 0
    if value == "adaptive":
        return "adaptive"
    try:
        return int(value)
    except ValueError:
        raise HeadwaterError(f"--speculate {value!r}: expected off, a depth N, or adaptive") from None


def run_with_progress(fn, total_hint: int, quiet: bool = False):
    """Run ``fn(progress_callback)`` under a rich progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet:
        return fn(None)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[current]}"), TimeElapsedColumn(), console=err, transient=True) as bar:
        job = bar.add_task("run", total=total_hint, current="")
        finished: set[str] = set()

        def callback(kind: str, data: dict) -> None:
            if kind == "start":
                bar.update(job, description=f"run {data['run'][:12]}", total=data["total"], completed=data["done"])
            elif kind == "task":
                if data["state"] in ("committed", "failed", "skipped"):
                    finished.add(data["task"])
                    bar.update(job, completed=len(finished) + 0)
                bar.update(job, current=f"{data['task']}: {data['state']}")

        return fn(callback)


def _summary_table(summary) -> Table:
    table = Table(title=f"run {summary.run_id} · {summary.workflow} · {summary.status}", title_justify="left")
    for col in ("task", "state", "attempt", "checkpoint", "seconds", "note"):
        table.add_column(col)
    colours = {"committed": "green", "failed": "red", "skipped": "dim", "squashed": "yellow"}
    for t in summary.tasks:
        note = "cache hit" if t.cached else (t.error or "")
        table.add_row(t.name, f"[{colours.get(t.state, 'white')}]{t.state}[/]", str(t.attempt or "-"),
                      _short(t.checkpoint), "-" if t.seconds is None else f"{t.seconds:.3f}", note[:80])
    return table


@app.command()
def run(
    file: Path = typer.Argument(..., help="Workflow file: a .py defining a Workflow, or a .yaml spec."),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE, repeatable."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w",
                                          help="Local agent processes (default 2; 0 = run inline, for debugging)."),
    pool: list[str] = typer.Option([], "--pool", help="NAME=N, repeatable: N local agents in compute pool NAME "
                                   "(instead of --workers); tasks that name pools run only on their agents."),
    seed: int = typer.Option(0, "--seed", help="Run seed; each task's seed derives from it."),
    why: Optional[str] = typer.Option(None, "--why", help="Why this run differs from the last (goes into spec diffs)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every task even when a committed result matches."),
    name: Optional[str] = typer.Option(None, "--workflow", help="Which workflow, when the file defines several."),
    campaign: Optional[str] = typer.Option(None, "--campaign", help="Campaign this run belongs to (default: workflow name)."),
    speculate: str = typer.Option("off", "--speculate", help="Run-ahead on unverified results: off, N or adaptive."),
    executor: str = typer.Option("local", "--executor", help="Where agents' work runs: local processes or dask."),
    scheduler_address: Optional[str] = typer.Option(None, "--scheduler-address",
                                                    help="Dask scheduler (tcp://host:8786); default: a LocalCluster."),
    roles: list[str] = typer.Option([], "--roles", help="Roles of agent 1, 2, ... in turn, comma-separated "
                                    "(e.g. --roles worker --roles verifier); default: every agent every role."),
    predict: str = typer.Option("provisional", "--predict", help="Branch prediction: provisional or history."),
    recheck: str = typer.Option("notify", "--recheck", help="How agents that ran ahead learn about their inputs: "
                                "notify, eager, backoff or adaptive."),
    backup_stragglers: bool = typer.Option(False, "--backup-stragglers",
                                           help="Give work running far longer than expected a backup copy; first result wins."),
    log_json: bool = typer.Option(False, "--log-json", help="Also write the structured JSON-lines log to stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run a workflow with local agents, writing a signed checkpoint per task.

    Example: headwater run examples/heat_diffusion.py --param alpha=0.02 --seed 7 --why "faster diffusion"

    Example (compute pools): headwater run train.py --pool gpu-a=2 --pool gpu-b=2
    """
    from headwater.runtime import RunOptions, run_workflow
    from headwater.spec import load_workflow

    _read_environment_meanwhile(file)
    wf = load_workflow(file, name)
    ws = _ws()
    pools = _parse_pools(pool, workers)
    if workers is None:
        workers = sum(pools.values()) if pools else 2
    options = RunOptions(workers=workers, pools=pools, seed=seed, why=why, no_cache=no_cache, campaign=campaign,
                         speculate=_speculate(speculate), executor=executor, scheduler_address=scheduler_address,
                         roles=[[r.strip() for r in item.split(",") if r.strip()] for item in roles] or None,
                         predict=predict, recheck=recheck, backup_stragglers=backup_stragglers, log_json=log_json)
    summary = run_with_progress(lambda cb: run_workflow(ws, wf, _parse_params(param), options, cb),
                                len(wf.tasks), quiet=as_json)
    _finish(summary, as_json)


def _read_environment_meanwhile(file: Path) -> None:
    """Start reading the environment fingerprint and git state of ``file``'s
    project in a background thread, while the workflow module imports.

    Both are cached per process and per project directory, and the
    coordinator reads them for the same directory when the run starts; their
    slow parts are subprocesses (``uname``, ``git status``) that overlap with
    the import instead of following it.
    """
    import threading

    from headwater.checkpoint.env import fingerprint, git_state

    project = Path(file).absolute().parent

    def read() -> None:
        try:
            fingerprint(project)
            git_state(project)
        except Exception:  # the coordinator reads them again and reports what fails
            pass

    threading.Thread(target=read, name="headwater-environment", daemon=True).start()


def _finish(summary, as_json: bool) -> None:
    if as_json:
        _emit(summary.to_json())
    else:
        console.print(_summary_table(summary))
        share = 100 * summary.provenance_seconds / summary.elapsed if summary.elapsed else 0.0
        console.print(f"{summary.elapsed:.2f} s, of which provenance {summary.provenance_seconds:.3f} s "
                      f"({share:.1f}%) · inspect with: headwater checkpoints {summary.run_id[:12]}")
    raise typer.Exit(0 if summary.ok else 1)


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="Run id (or unique prefix) to continue."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Override the run's agent count."),
    pool: list[str] = typer.Option([], "--pool", help="NAME=N, repeatable: override the run's compute pools."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Continue a run whose coordinator died; finished tasks are not run again.

    Example: headwater resume 3f2a9c
    """
    from headwater.runtime import resume_run

    pools = _parse_pools(pool, workers)
    if pools and workers is None:
        workers = sum(pools.values())
    ws = _ws()
    summary = run_with_progress(lambda cb: resume_run(ws, run_id, cb, workers, pools=pools), 0, quiet=as_json)
    _finish(summary, as_json)


# -- looking at what happened ------------------------------------------------
@app.command()
def runs(
    workflow: Optional[str] = typer.Option(None, "--workflow", help="Only runs of this workflow."),
    limit: int = typer.Option(20, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List runs, newest first.

    Example: headwater runs --workflow heat-diffusion
    """
    rows = _ws().store.list_runs(workflow, limit)
    if as_json:
        return _emit([r.__dict__ for r in rows])
    table = Table(title="runs")
    for col in ("run", "workflow", "status", "started", "seed", "params", "why"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.id, r.workflow, r.status, _fmt_time(r.created_at), str(r.seed),
                      json.dumps(r.params)[:60], r.why or "")
    console.print(table)


@app.command()
def checkpoints(
    run_id: str = typer.Argument(..., help="Run id or prefix."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List a run's checkpoints in the order they were written.

    Example: headwater checkpoints 3f2a9c
    """
    store = _ws().store
    run_rec = store.get_run(run_id)
    rows = store.list_checkpoints(run_rec.id)
    if as_json:
        return _emit([{"id": c.id, "task": c.task, "attempt": c.attempt, "status": c.status,
                       "bytes": len(c.bundle), "outputs": {o.name: o.sha256 for o in c.outputs}} for c in rows])
    table = Table(title=f"checkpoints of run {run_rec.id} ({run_rec.workflow}, {run_rec.status})")
    for col in ("#", "checkpoint", "task", "attempt", "status", "outputs", "claims", "bytes", "heavy"):
        table.add_column(col)
    for c in rows:
        doc = c.doc
        table.add_row(str(c.seq), _short(c.id), c.task, str(c.attempt), c.status, ", ".join(o.name for o in c.outputs),
                      ", ".join(cl.key for cl in c.claims), str(len(c.bundle)),
                      ", ".join((doc.get("heavy") or {}).get("triggers", [])))
    console.print(table)


@app.command()
def show(
    checkpoint: str = typer.Argument(..., help="Checkpoint id or prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the bundle exactly as stored."),
) -> None:
    """Show one checkpoint bundle.

    Example: headwater show 9c1e22
    """
    ck = _ws().store.get_checkpoint(checkpoint)
    if as_json:
        return _emit({"id": ck.id, "status": ck.status, "signature": ck.signature, "bundle": ck.doc})
    doc = ck.doc
    console.print(f"[bold]checkpoint {ck.id}[/]  {doc['workflow']} / {ck.task} attempt {ck.attempt}  [{ck.status}]")
    intent = doc.get("intent", {})
    console.print(f"goal: {intent.get('goal', '')}")
    for a in intent.get("assumptions", []):
        console.print(f"  assumes: {a}")
    if intent.get("concludes"):
        console.print(f"concludes: {intent['concludes']}")
    for c in intent.get("claims", []):
        unc = f" ± {c['uncertainty']}" if c.get("uncertainty") is not None else ""
        console.print(f"  claim {c['key']} = {c['value']}{unc} {c.get('units') or ''}")
    m = doc["manifest"]
    console.print(f"seed {m['seed']} · params {json.dumps(m['params'])}")
    console.print(f"code {json.dumps(m['code'])}")
    for ref, sha in m.get("inputs", {}).items():
        console.print(f"  in  {ref} {sha[:12]}")
    for a in doc.get("artifacts", []):
        console.print(f"  out {a['name']} {a['sha256'][:12]} {a['size']} B {a['media_type']}")
    console.print(f"spec diff: {json.dumps(doc.get('spec_diff', {}))}")
    console.print(f"env: {json.dumps(doc.get('env', {}))}")
    if doc.get("profile"):
        console.print(f"profile: {json.dumps(doc['profile'])[:600]}")
    if doc.get("heavy"):
        console.print(f"heavy capture: {', '.join(doc['heavy']['triggers'])}")


@app.command()
def diff(
    a: str = typer.Argument(..., help="Checkpoint or run id."),
    b: str = typer.Argument(..., help="Checkpoint or run id."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Diff two checkpoints (params, code, environment, artifacts) or two runs.

    Example: headwater diff 3f2a9c 77b0e1
    """
    from headwater.forensics import diff as do_diff

    result = do_diff(_ws().store, a, b)
    if as_json:
        return _emit(result)
    from headwater.forensics.render import render_diff

    render_diff(console, result)


@app.command()
def verify(
    run_id: Optional[str] = typer.Argument(None, help="Run to verify (default: every run)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Recompute artifact hashes, the hash chain and signatures.

    Exits 1 and names the first broken bundle or artifact when anything changed.
    Example: headwater verify 3f2a9c
    """
    from headwater.forensics import verify_store

    ws = _ws()
    report = verify_store(ws.store, ws.key.public_hex, run_id)
    if as_json:
        _emit(report.to_json())
    elif report.ok:
        console.print(f"[green]verified[/] {report.checkpoints} checkpoints, {report.artifacts} artifacts: "
                      "hashes, chain and signatures intact")
    else:
        console.print(f"[red]verification failed[/]: {len(report.problems)} problem(s); first: {report.problems[0][1]}")
        for subject, problem in report.problems[1:10]:
            console.print(f"  {subject[:12]}: {problem}")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def reproduce(
    checkpoint: str = typer.Argument(..., help="Checkpoint id or prefix."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-run one task from its recorded inputs, params and seed; compare outputs byte for byte.

    Example: headwater reproduce 9c1e22
    """
    from headwater.forensics import reproduce as do_reproduce

    report = do_reproduce(_ws().store, checkpoint)
    if as_json:
        _emit(report.to_json())
    else:
        from headwater.forensics.render import render_reproduce

        render_reproduce(console, report)
    raise typer.Exit(0 if report.identical else 1)


@app.command()
def bisect(
    run_id: str = typer.Argument(..., help="Run id or prefix."),
    check: str = typer.Option(..., "--check", help="python:module:function, or a shell command (exit 0 = good)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Find the first checkpoint whose outputs fail a check, in O(log n) checks.

    Example: headwater bisect 3f2a9c --check python:examples.heat_diffusion:check_outputs
    """
    from headwater.forensics import bisect_run, load_check

    store = _ws().store
    report = bisect_run(store, run_id, load_check(check, store))
    if as_json:
        return _emit(report.to_json())
    from headwater.forensics.render import render_bisect

    render_bisect(console, report)


@app.command()
def lineage(
    ident: str = typer.Argument(..., help="Checkpoint id or artifact sha256 (or prefix)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show what a checkpoint or artifact came from and what it fed into.

    Example: headwater lineage 9c1e22
    """
    from headwater.forensics import lineage as do_lineage

    result = do_lineage(_ws().store, ident)
    if as_json:
        return _emit(result)
    from headwater.forensics.render import render_lineage

    render_lineage(console, result)


@app.command()
def demo(
    directory: Path = typer.Option(Path("headwater-demo"), "--dir", help="Where the demo workspace goes."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run the examples and the fleet-oversight story on the embedded store.

    Shows checkpoints, a diff, verify, reproduce and bisect; then a silent error in a
    shared claim found by the inconsistency monitor, the breaker, policies, the blast
    radius, revalidation and `rerun --affected-by`.

    Example: headwater demo
    """
    from headwater.demo import run_demo

    result = run_demo(directory, console=None if as_json else console, store_url=state.store)
    if as_json:
        _emit(result)
    raise typer.Exit(0 if result["ok"] else 1)


from headwater.commands import register_all  # noqa: E402

register_all(app)


def main() -> None:
    """Console entry point: domain errors become one clear line."""
    try:
        app()
    except HeadwaterError as exc:
        from rich.markup import escape

        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: resume with `headwater resume RUN`")
        sys.exit(130)
