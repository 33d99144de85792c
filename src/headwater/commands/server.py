"""HTTP commands: ``serve`` (the API), ``agent`` (a remote agent) and
``token`` (create, list, revoke API tokens).

``serve`` and ``token`` act on the store (``--store``/``HEADWATER_STORE``);
``agent`` talks only HTTP to a server, so it needs no store at all.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table


def _cli():
    from headwater import cli

    return cli


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        store: Optional[str] = typer.Option(None, "--store", help="Store URL (default: the global --store, "
                                            "$HEADWATER_STORE, or SQLite in the workspace)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: every one)."),
        port: int = typer.Option(8765, "--port"),
        max_body: int = typer.Option(64 << 20, "--max-body", help="Largest request body in bytes (413 above)."),
        log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
        verify_workers: int = typer.Option(0, "--verify-workers", min=0, help="Processes that check bundle "
                                           "signatures beside the server (0: in the server itself)."),
    ) -> None:
        """Serve the HTTP API: work for remote agents; runs, checkpoints and assets for people.

        Every request needs a token from `headwater token create`. Metrics at /metrics,
        the OpenAPI schema at /openapi.json.
        Example: headwater serve --store postgresql://hw@db-host/headwater --host 0.0.0.0 --port 8765
        """
        try:
            import uvicorn

            from headwater.server import create_app
        except ModuleNotFoundError as exc:
            from headwater.errors import OptionalDependency

            raise OptionalDependency("headwater serve", "server") from exc
        cli = _cli()
        if store:
            cli.state.store = store
        ws = cli._ws()
        app = create_app(ws.store, max_body=max_body, verify_workers=verify_workers)
        cli.err.print(f"serving {ws.store!r} on http://{host}:{port} (API /v1, docs /docs)")
        try:
            uvicorn.run(app, host=host, port=port, log_level=log_level)
        finally:
            ws.close()

    @app.command()
    def agent(
        server: str = typer.Option(..., "--server", envvar="HEADWATER_SERVER", help="API base URL, http://host:8765."),
        token: str = typer.Option(..., "--token", envvar="HEADWATER_TOKEN", help="An agent token."),
        role: list[str] = typer.Option([], "--role", help="Roles to claim for, repeatable (default: the token's)."),
        workflow: list[Path] = typer.Option([], "--workflow", help="Workflow file whose tasks this agent runs; "
                                            "repeatable (default: each run's recorded source, when present)."),
        name: Optional[str] = typer.Option(None, "--name", help="Agent name (default: host-pid)."),
        batch: int = typer.Option(16, "--batch", help="Items claimed (and results submitted) per request."),
        lease: float = typer.Option(60.0, "--lease", help="Lease seconds; renewed while a task runs."),
        cache: Path = typer.Option(Path(".headwater-agent"), "--cache", help="Local artifact cache and agent key."),
        once: bool = typer.Option(False, "--once", help="Run one claimed batch and exit."),
        until_idle: Optional[float] = typer.Option(None, "--until-idle", help="Exit after this many seconds "
                                                   "without work (default: run until SIGTERM)."),
        wait: float = typer.Option(5.0, "--wait", min=0.0, max=10.0, help="Seconds the server holds a claim "
                                   "open when no work is ready (0: poll instead)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Run a remote agent: claim work over HTTP, run it, submit signed bundles.

        Example: headwater agent --server http://coord:8765 --token hw_... --role worker --workflow wf.py
        """
        try:
            from headwater.runtime.remote import AgentOptions, run_agent
        except ModuleNotFoundError as exc:
            from headwater.errors import OptionalDependency

            raise OptionalDependency("headwater agent", "server") from exc
        cli = _cli()
        options = AgentOptions(server=server, token=token, roles=list(role), workflows=list(workflow), name=name,
                               batch=batch, lease_s=lease, cache=cache, once=once, until_idle=until_idle,
                               wait_s=wait)
        stats = run_agent(options)
        if as_json:
            return cli._emit(stats.to_json())
        cli.console.print(f"agent {stats.agent}: {stats.ran} run, {stats.verified} verified, "
                          f"{stats.accepted} accepted, {stats.refused} refused in {stats.seconds:.2f} s")

    tok = typer.Typer(help="API tokens: create (the secret is printed once), list, revoke.\n\n"
                      "Example: headwater token create --role worker --role verifier --scope workflow:heat",
                      no_args_is_help=True)
    app.add_typer(tok, name="token")

    def _tokens():
        from headwater.store.tokens import Tokens

        return Tokens(_cli()._ws().store)

    @tok.command("create")
    def token_create(
        role: list[str] = typer.Option([], "--role", help="Task role the token may claim for; repeatable."),
        scope: Optional[str] = typer.Option(None, "--scope", help="workflow:NAME or campaign:NAME (default: all)."),
        operator: bool = typer.Option(False, "--operator", help="May also flag assets and apply policies."),
        label: Optional[str] = typer.Option(None, "--label", help="Who or what the token is for."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Create a token; its secret is shown only now (the store keeps a hash).

        Example: headwater token create --role worker --role verifier --scope campaign:survey --label host-b
        """
        cli = _cli()
        record, secret = _tokens().create(role, time.time(), kind="operator" if operator else "agent",
                                          scope=scope, label=label)
        if as_json:
            return cli._emit({**record.to_json(), "secret": secret})
        cli.console.print(f"token {record.id} ({record.kind}; roles {', '.join(record.roles) or '-'}; "
                          f"scope {record.scope})\n{secret}\n[dim]store it now: it cannot be shown again[/]")

    @tok.command("list")
    def token_list(as_json: bool = typer.Option(False, "--json")) -> None:
        """List tokens (never their secrets).

        Example: headwater token list
        """
        cli = _cli()
        rows = _tokens().list()
        if as_json:
            return cli._emit([r.to_json() for r in rows])
        table = Table(title="API tokens", title_justify="left")
        for col in ("id", "kind", "roles", "scope", "label", "created", "revoked"):
            table.add_column(col, no_wrap=col == "id")
        for r in rows:
            table.add_row(r.id, r.kind, ", ".join(r.roles), str(r.scope), r.label or "",
                          cli._fmt_time(r.created_at), cli._fmt_time(r.revoked_at))
        cli.console.print(table)

    @tok.command("revoke")
    def token_revoke(
        token_id: str = typer.Argument(..., help="Token id (from token list)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Revoke a token at once: its next request gets 401.

        Example: headwater token revoke 3f2a9c1b0d4e
        """
        cli = _cli()
        record = _tokens().revoke(token_id, time.time())
        if as_json:
            return cli._emit(record.to_json())
        cli.console.print(f"token {record.id} revoked at {cli._fmt_time(record.revoked_at)}")
