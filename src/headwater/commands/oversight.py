"""Fleet oversight commands: assets, flag, clear, blast-radius, pin, canary,
policy, monitors, audit and rerun.

Each command opens the workspace, calls one method of
:class:`~headwater.runtime.fleet.Fleet` (or the store, or
:func:`~headwater.runtime.rerun.rerun_affected`) and renders the result as a
table, or as JSON with ``--json``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

STATUS_COLOURS = {"trusted": "green", "suspect": "yellow", "degraded": "red", "revalidating": "cyan",
                  "retracted": "magenta"}


def _cli():
    from headwater import cli

    return cli


def _fleet():
    from headwater.runtime.fleet import Fleet

    ws = _cli()._ws()
    return ws, Fleet(ws.store)


def _status(label: str) -> str:
    return f"[{STATUS_COLOURS.get(label, 'white')}]{label}[/]"


def _node(label: str) -> str:
    kind, _, rest = label.partition(":")
    if kind == "ckpt":
        return f"ckpt {rest[:12]}"
    if kind == "artifact":
        return f"artifact {rest[:12]}"
    return label


def _path(path) -> str:
    """A linking path, with each claim shown by key after the checkpoint that published it."""
    out: list[str] = []
    prev = ""
    for label in path:
        if label.startswith("claim:") and prev.startswith("ckpt:") and label.endswith("@" + prev[5:17]):
            out.append(label.rpartition("@")[0])
        else:
            out.append(_node(label))
        prev = label
    return " -> ".join(out)


def _outcome(outcome, as_json: bool, title: str) -> None:
    cli = _cli()
    if as_json:
        return cli._emit(outcome.to_json())
    for note in outcome.notes:
        cli.console.print(f"  {note}")
    if outcome.transitions or outcome.tainted:
        table = Table(title=title, title_justify="left")
        for col in ("version", "from", "to", "by", "why"):
            table.add_column(col)
        for t in list(outcome.transitions) + list(outcome.tainted):
            table.add_row(t.subject, t.old.label if t.old is not None else "-", _status(t.new.label),
                          t.record.actor, t.record.reason[:90])
        cli.console.print(table)
    for subject, counts in outcome.radius.items():
        cli.console.print(f"  contained {subject}: {counts['checkpoints']} checkpoints in {counts['runs']} runs "
                          f"of {counts['workflows']} workflows; {len(outcome.tainted)} claims tainted; "
                          f"{outcome.invalidated} cache entries invalidated")


def render_radius(console, radius, paths: int = 5) -> None:
    """The blast radius as a summary, a table per workflow and a few linking paths."""
    c = radius.counts()
    console.print(f"[bold]blast radius of {radius.selector}[/] ({', '.join(radius.seeds) or 'no known version'})")
    console.print(f"  {c['workflows']} workflows, {c['runs']} runs, {c['checkpoints']} checkpoints "
                  f"({c['committed']} committed), {c['artifacts']} artifacts, {c['claims']} claims")
    if not radius.checkpoints:
        return
    table = Table(title="affected, by workflow", title_justify="left")
    for col in ("workflow", "runs", "checkpoints", "claims", "nearest path"):
        table.add_column(col)
    claims_by = defaultdict(int)
    for h in radius.claims.values():
        claims_by[h.workflow or ""] += 1
    per_wf = defaultdict(list)
    for h in radius.checkpoints.values():
        per_wf[h.workflow or ""].append(h)
    for wf, hits in sorted(per_wf.items()):
        nearest = min(hits, key=lambda h: (h.depth, h.seq or 0))
        table.add_row(wf, str(len({h.run_id for h in hits})), str(len(hits)), str(claims_by.get(wf, 0)),
                      _path(nearest.path) + f" ({nearest.task})")
    console.print(table)
    deepest = sorted(radius.claims.values(), key=lambda h: -h.depth)[:paths]
    for h in deepest:
        console.print(f"  {h.id}: [dim]{_path(h.path)}[/]")


def register(app: typer.Typer) -> None:  # noqa: C901 - one command per nested function
    @app.command()
    def assets(
        kind: Optional[str] = typer.Option(None, "--kind", help="Only this kind: claim, lib, dataset, model, compute."),
        all_: bool = typer.Option(False, "--all", help="Also list versions only produced, never consumed."),
        register: list[str] = typer.Option([], "--register", help="KIND:NAME[@VERSION] to register by hand; repeatable."),
        description: str = typer.Option("", "--description", help="With --register: what the asset is."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """List shared assets and their versions: status, and who uses them; register them by hand.

        A version registered while its asset has an open breaker or a gate starts under a canary.
        Example: headwater assets --register dataset:survey@2024-06 --description "field survey"
        """
        cli = _cli()
        ws, fleet = _fleet()
        for ref in register:
            out = fleet.register(ref, **({"description": description} if description else {}))
            if not as_json:
                for t in out.transitions:
                    cli.console.print(f"registered {t.subject}: {_status(t.new.label)}")
                for note in out.notes:
                    cli.console.print(note)
        usage = ws.store.asset_usage()
        records = {r.ref: r for r in ws.store.version_records()}
        rows: dict[str, dict] = {}
        for u in usage:
            if kind and u.kind != kind:
                continue
            ref = f"{u.kind}:{u.name}@{u.version}"
            row = rows.setdefault(ref, {"asset": f"{u.kind}:{u.name}", "version": u.version, "status": "trusted",
                                        "reason": None, "consumers": 0, "runs": 0, "workflows": 0,
                                        "produced_by": 0})
            if u.direction == "consumed":
                row.update(consumers=u.checkpoints, runs=u.runs, workflows=u.workflows)
            else:
                row["produced_by"] = u.workflows
        for ref, r in records.items():
            if kind and r.kind != kind:
                continue
            row = rows.setdefault(ref, {"asset": f"{r.kind}:{r.name}", "version": r.version, "consumers": 0,
                                        "runs": 0, "workflows": 0, "produced_by": 0})
            row.update(status=r.status.label, reason=r.reason, registered=True)
        out = [r for r in rows.values() if all_ or r["consumers"] or r.get("registered")]
        out.sort(key=lambda r: (r["asset"], r["version"]))
        if as_json:
            return cli._emit(out)
        table = Table(title="shared assets", title_justify="left")
        for col in ("asset", "version", "status", "used by", "reason"):
            table.add_column(col)
        for r in out:
            used = f"{r['consumers']} ckpts / {r['runs']} runs / {r['workflows']} wf" if r["consumers"] else "-"
            table.add_row(r["asset"], r["version"], _status(r["status"]), used, (r.get("reason") or "")[:70])
        cli.console.print(table)

    @app.command()
    def flag(
        asset: str = typer.Argument(..., help="KIND:NAME, KIND:NAME@VERSION or KIND:NAME@RANGE (>=1.2,<1.4)."),
        reason: str = typer.Option(..., "--reason", "-r", help="Why (goes into the audit log)."),
        introduced: Optional[str] = typer.Option(None, "--introduced", help="First affected version (OSV)."),
        fixed: Optional[str] = typer.Option(None, "--fixed", help="First fixed version (OSV)."),
        trip: bool = typer.Option(False, "--trip", help="Open the breaker at once: degraded, not just suspect."),
        retract: bool = typer.Option(False, "--retract", help="Withdraw the versions for good."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Mark asset versions suspect (or degraded with --trip, retracted with --retract).

        A bare asset or a range also covers versions first seen later.
        Degraded and retracted versions taint the claims built on them and void their cache entries.
        Example: headwater flag lib:scipy --introduced 1.11 --fixed 1.11.2 --reason "wrong ODE step size" --trip
        """
        _, fleet = _fleet()
        if retract:
            outcome = fleet.change(asset, "retract", reason, introduced=introduced, fixed=fixed)
        else:
            outcome = fleet.flag(asset, reason, trip=trip, introduced=introduced, fixed=fixed)
        _outcome(outcome, as_json, f"flagged {asset}")

    @app.command()
    def clear(
        asset: str = typer.Argument(..., help="KIND:NAME or KIND:NAME@VERSION."),
        reason: str = typer.Option("cleared", "--reason", "-r"),
        force: bool = typer.Option(False, "--force", help="Also trust degraded or revalidating versions without a canary."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Dismiss a suspicion: suspect versions go back to trusted.

        Degraded versions need a canary (headwater canary start) or --force.
        Example: headwater clear claim:g@3f2a9c1b0d4e --reason "false alarm: units checked"
        """
        from headwater.oversight import AssetStatus, OversightError, parse_ref

        ws, fleet = _fleet()
        event = "clear"
        if force:
            try:
                subjects = fleet.subjects(parse_ref(asset))
            except ValueError as exc:
                raise OversightError(str(exc), subject=asset) from None
            statuses = ws.store.statuses_of(subjects) if subjects else {}
            if any(s not in (None, AssetStatus.TRUSTED, AssetStatus.SUSPECT) for s in statuses.values()):
                event = "override"
        _outcome(fleet.change(asset, event, reason), as_json, f"cleared {asset}")

    @app.command("blast-radius")
    def blast_radius(
        asset: str = typer.Argument(..., help="KIND:NAME, KIND:NAME@VERSION or KIND:NAME@RANGE."),
        introduced: Optional[str] = typer.Option(None, "--introduced"),
        fixed: Optional[str] = typer.Option(None, "--fixed"),
        paths: int = typer.Option(5, "--paths", help="How many linking paths to print."),
        ids: bool = typer.Option(False, "--ids", help="Print only the affected checkpoint ids (for export --ids-from)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Everything built on an asset version: workflows, runs, checkpoints, claims, artifacts, with paths.

        Example: headwater blast-radius claim:g@3f2a9c1b0d4e
        """
        cli = _cli()
        _, fleet = _fleet()
        radius = fleet.blast_radius(asset, introduced=introduced, fixed=fixed)
        if ids:
            for cid in sorted(radius.checkpoints):
                cli.console.print(cid)
            return
        if as_json:
            return cli._emit(radius.to_json())
        render_radius(cli.console, radius, paths)

    @app.command()
    def pin(
        asset: Optional[str] = typer.Argument(None, help="KIND:NAME@VERSION to pin (none: list pins)."),
        scope: str = typer.Option("*", "--scope", help="Who is pinned: * (everyone), TAG, or !TAG (all but TAG)."),
        reason: str = typer.Option("", "--reason", "-r"),
        remove: bool = typer.Option(False, "--remove", help="Remove the pin of this asset and scope."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Hold dependents on one version of an asset (a version-scoped freeze); list pins.

        Example: headwater pin lib:integrate/rk4@1.1 --scope '!canary' --reason "freeze during the campaign"
        """
        cli = _cli()
        ws, fleet = _fleet()
        if asset is not None:
            if remove:
                done = fleet.unpin(asset, scope=scope)
                cli.console.print(f"{'removed' if done else 'no'} pin on {asset} ({scope})")
            else:
                p = fleet.pin(asset, scope=scope, reason=reason)
                cli.console.print(f"pinned {p.kind}:{p.name} to {p.version} for {p.scope}")
            if not as_json:
                return
        pins = ws.store.pins()
        if as_json:
            return cli._emit([p.__dict__ for p in pins])
        table = Table(title="pins", title_justify="left")
        for col in ("asset", "version", "scope", "reason"):
            table.add_column(col)
        for p in pins:
            table.add_row(f"{p.kind}:{p.name}", p.version, p.scope, p.reason)
        cli.console.print(table)

    canary = typer.Typer(help="Canary-gated versions: start a canary, judge it, list canaries, gate an asset.\n\n"
                              "Example: headwater canary start claim:g@5d820e2d217b --metric tower.height:tolerance:rtol=0.01",
                         no_args_is_help=True)
    app.add_typer(canary, name="canary")

    @canary.command("start")
    def canary_start(
        asset: str = typer.Argument(..., help="KIND:NAME@VERSION: the candidate version."),
        metric: list[str] = typer.Option([], "--metric", "-m",
                                         help="KEY[:tolerance|mannwhitney][:rtol=R][:atol=A][:alpha=P][:advisory]; repeatable."),
        baseline: Optional[str] = typer.Option(None, "--baseline", help="Version to compare with (default: last known-good)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Put a version behind a canary: only workflows tagged canary use it until it passes.

        Example: headwater canary start lib:integrate/rk4@1.2 --metric tower.height:tolerance:rtol=0.001
        """
        cli = _cli()
        _, fleet = _fleet()
        rec = fleet.canary_start(asset, metric, baseline=baseline)
        if as_json:
            return cli._emit(rec.__dict__)
        cli.console.print(f"canary {rec.id}: {rec.ref} revalidating against {rec.baseline or 'no baseline'}; "
                          f"metrics: {', '.join(rec.metrics) or 'every claim both sides publish'}")

    @canary.command("verdict")
    def canary_verdict(
        asset: Optional[str] = typer.Argument(None, help="Only canaries of this asset."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Judge running canaries: pass promotes the version, fail retracts it.

        Example: headwater canary verdict claim:g
        """
        cli = _cli()
        _, fleet = _fleet()
        results = fleet.evaluate_canaries(asset)
        if as_json:
            return cli._emit([{"canary": c.id, "version": c.ref, **v.to_json()} for c, v in results])
        if not results:
            cli.console.print("no running canary")
        for c, v in results:
            colour = {"pass": "green", "fail": "red"}.get(v.outcome, "yellow")
            cli.console.print(f"canary {c.id} {c.ref}: [{colour}]{v.outcome}[/] - {v.reason}")
            for r in v.results:
                cli.console.print(f"    {r.outcome:<12} {r.detail}")

    @canary.command("list")
    def canary_list(as_json: bool = typer.Option(False, "--json")) -> None:
        """List canaries and their verdicts.

        Example: headwater canary list
        """
        cli = _cli()
        ws, _ = _fleet()
        rows = ws.store.canaries()
        if as_json:
            return cli._emit([r.__dict__ for r in rows])
        table = Table(title="canaries", title_justify="left")
        for col in ("id", "version", "baseline", "status", "metrics", "verdict"):
            table.add_column(col)
        for r in rows:
            table.add_row(str(r.id), r.ref, r.baseline or "-", r.status, ", ".join(r.metrics) or "(auto)",
                          (r.verdict or {}).get("reason", "")[:60])
        cli.console.print(table)

    @canary.command("gate")
    def canary_gate(
        asset: str = typer.Argument(..., help="KIND:NAME whose new versions start under a canary."),
        off: bool = typer.Option(False, "--off", help="Stop gating."),
        metric: list[str] = typer.Option([], "--metric", "-m", help="Tracked scalar for its canaries; repeatable."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Gate an asset: every new version starts revalidating, behind a canary.

        Example: headwater canary gate lib:integrate --metric tower.height:tolerance:rtol=0.001
        """
        _, fleet = _fleet()
        data = fleet.gate(asset, not off, metric)
        if as_json:
            return _cli()._emit({"asset": asset, **data})
        _cli().console.print(f"{asset}: new versions {'start under a canary' if not off else 'are trusted at once'}")

    policy = typer.Typer(help="Oversight policies: apply (shadow, staged, enforced), list, show, retire.\n\n"
                              "Example: headwater policy apply examples/fleet/policy.yaml --mode shadow",
                         no_args_is_help=True)
    app.add_typer(policy, name="policy")

    @policy.command("apply")
    def policy_apply(
        file: Path = typer.Argument(..., help="A YAML/JSON policy file, or a .py file defining Policy objects."),
        mode: Optional[str] = typer.Option(None, "--mode", help="shadow | staged | enforced (default: the file's)."),
        share: Optional[float] = typer.Option(None, "--share", help="For staged: the share of dependent workflows."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Store policies and roll them out; changed rules make a new version.

        Example: headwater policy apply examples/fleet/policy.yaml --mode staged --share 0.25
        """
        from headwater.runtime.fleet import load_policies

        cli = _cli()
        _, fleet = _fleet()
        stored = [fleet.apply_policy(p, mode=mode, share=share) for p in load_policies(file)]
        if as_json:
            return cli._emit([p.to_doc() for p in stored])
        for p in stored:
            cli.console.print(f"policy {p.name} v{p.version}: {p.mode.label}"
                              + (f" (share {p.share:g})" if p.mode.label == "staged" else "")
                              + f", {len(p.rules)} rule(s)")

    @policy.command("list")
    def policy_list(
        all_: bool = typer.Option(False, "--all", help="Every version, not only the active ones."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """List policies with their version and rollout.

        Example: headwater policy list --all
        """
        cli = _cli()
        ws, _ = _fleet()
        rows = ws.store.policies(active=not all_)
        if as_json:
            return cli._emit([p.to_doc() for p in rows])
        table = Table(title="policies", title_justify="left")
        for col in ("policy", "version", "mode", "share", "rules"):
            table.add_column(col)
        for p in rows:
            rules = "; ".join(f"{r.name or 'rule'}: {', '.join(map(str, r.do))}" for r in p.rules)
            table.add_row(p.name, str(p.version), p.mode.label, f"{p.share:g}", rules[:90])
        cli.console.print(table)

    @policy.command("show")
    def policy_show(name: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
        """Show one policy's active version as YAML.

        Example: headwater policy show shared-claims
        """
        import yaml

        cli = _cli()
        ws, _ = _fleet()
        found = ws.store.policies(name=name)
        if not found:
            from headwater.oversight import OversightError

            raise OversightError(f"no active policy {name!r}", subject=name)
        if as_json:
            return cli._emit(found[-1].to_doc())
        cli.console.print(yaml.safe_dump(found[-1].to_doc(), sort_keys=False))

    @policy.command("retire")
    def policy_retire(name: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
        """Deactivate a policy (its versions stay in the history).

        Example: headwater policy retire shared-claims
        """
        _, fleet = _fleet()
        done = fleet.retire_policy(name)
        if as_json:
            return _cli()._emit({"policy": name, "retired": done})
        _cli().console.print(f"policy {name} {'retired' if done else 'was not active'}")

    monitors = typer.Typer(help="Fleet monitors: inconsistency, output shift, verification clusters, redundancy; "
                                "concentration and coverage reports.\n\nExample: headwater monitors run",
                           no_args_is_help=True)
    app.add_typer(monitors, name="monitors")

    @monitors.command("run")
    def monitors_run(
        dry_run: bool = typer.Option(False, "--dry-run", help="Report findings without flagging anything."),
        min_score: float = typer.Option(0.5, "--min-score", help="Smallest inconsistency score that flags."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Run every monitor over committed data; signals go through the breaker.

        Example: headwater monitors run --dry-run
        """
        cli = _cli()
        _, fleet = _fleet()
        rep = fleet.run_monitors(apply=not dry_run, min_score=min_score)
        if as_json:
            return cli._emit(rep.to_json())
        render_findings(cli.console, rep)
        if not dry_run:
            _outcome(rep.outcome, False, "breaker")

    @monitors.command("report")
    def monitors_report(as_json: bool = typer.Option(False, "--json")) -> None:
        """Concentration (what most workflows depend on) and coverage (what no monitor watches).

        Example: headwater monitors report
        """
        cli = _cli()
        _, fleet = _fleet()
        rep = fleet.reports()
        if as_json:
            return cli._emit(rep)
        render_reports(cli.console, rep)

    @app.command()
    def audit(
        subject: Optional[str] = typer.Option(None, "--subject", "-s", help="KIND:NAME (every version) or KIND:NAME@VERSION."),
        run: Optional[str] = typer.Option(None, "--run", help="Only records about this run."),
        actor: Optional[str] = typer.Option(None, "--actor", help="Prefix: policy:, monitor:, user:, runtime, ..."),
        limit: int = typer.Option(40, "--limit", help="The latest N records."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """The oversight audit log: every flag, trip, taint, policy action, hold, canary and rerun.

        Example: headwater audit --subject claim:g --limit 20
        """
        cli = _cli()
        ws, _ = _fleet()
        run_id = ws.store.get_run(run).id if run else None
        rows = ws.store.audit_log(subject=subject, run_id=run_id, actor=actor, limit=limit)
        if as_json:
            return cli._emit([r.to_json() for r in rows])
        render_audit(cli.console, rows)

    @app.command()
    def rerun(
        affected_by: str = typer.Option(..., "--affected-by", help="KIND:NAME[@VERSION|@RANGE]: the asset that was fixed."),
        workers: int = typer.Option(0, "--workers", "-w", help="Local agents per resumed run (0: inline)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be recomputed."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Re-run exactly the checkpoints built on an asset, in every dependent run; report what changed.

        Example: headwater rerun --affected-by claim:g@3f2a9c1b0d4e
        """
        from headwater.runtime.rerun import rerun_affected

        cli = _cli()
        ws, _ = _fleet()
        report = rerun_affected(ws, affected_by, workers=workers, dry_run=dry_run)
        if as_json:
            return cli._emit(report.to_json())
        render_rerun(cli.console, report)
        failed = [r for r in report.runs if r.status not in ("succeeded", "planned")]
        raise typer.Exit(1 if failed else 0)


def render_findings(console, rep) -> None:
    f = rep.findings
    if not (f.inconsistencies or f.shifts or f.failure_clusters or f.disagreements):
        console.print("monitors: nothing found")
    for inc in f.inconsistencies:
        console.print(f"[bold]inconsistency[/] in {inc.key!r}: " + "  vs  ".join(
            f"{c.center:.4g} ({', '.join(c.workflows)})" for c in inc.clusters))
        table = Table(title="suspect shared assets, by how well their use separates the clusters",
                      title_justify="left")
        for col in ("rank", "asset version", "score", "used by"):
            table.add_column(col)
        for i, s in enumerate(inc.suspects[:6], 1):
            table.add_row(str(i), s.asset, f"{s.score:.2f}", ", ".join(s.used_by))
        console.print(table)
    for s in f.shifts:
        console.print(f"[bold]output shift[/] {s.key} with {s.asset}: {s.before} -> {s.after}, "
                      f"median {s.median_before:.4g} -> {s.median_after:.4g} (p={s.p_value:.2g})")
    for c in f.failure_clusters:
        console.print(f"[bold]verification failures[/] among dependents of {c.asset}: {c.failures}/{c.dependents} "
                      f"(others {c.baseline_rate:.0%}, p={c.p_value:.2g})")
    for d in f.disagreements:
        console.print(f"[bold]redundancy[/] {d.asset}: {d.disagreements}/{d.calls} calls disagreed"
                      + (f"; odd one out: {d.odd_one_out}" if d.odd_one_out else ""))


def render_reports(console, rep: dict) -> None:
    table = Table(title=f"concentration (Herfindahl {rep['herfindahl']:.2f})", title_justify="left")
    for col in ("asset", "workflows", "share"):
        table.add_column(col)
    for r in rep["concentration"][:10]:
        table.add_row(r["asset"], str(r["workflows"]), f"{r['share']:.0%}")
    console.print(table)
    table = Table(title="coverage: which monitors watch each asset", title_justify="left")
    for col in ("asset", "monitors"):
        table.add_column(col)
    for r in rep["coverage"]:
        table.add_row(r["asset"], ", ".join(r["monitors"]) or "[red]none[/]")
    console.print(table)


def render_audit(console, rows) -> None:
    import datetime as dt

    table = Table(title="audit log", title_justify="left")
    for col in ("time", "by", "action", "subject", "why", "run/task"):
        table.add_column(col, overflow="fold")
    for r in rows:
        when = dt.datetime.fromtimestamp(r.ts).strftime("%H:%M:%S")
        by = f"{r.actor} v{r.policy_version} ({r.mode})" if r.policy and r.mode else r.actor
        where = f"{(r.run_id or '')[:8]}/{r.task}" if r.task else (r.run_id or "")[:8]
        table.add_row(when, by, r.action, r.subject, (r.reason or "")[:80], where)
    console.print(table)


def render_rerun(console, report) -> None:
    console.print(f"[bold]rerun --affected-by {report.selector}[/] ({', '.join(report.seeds) or 'no version'}): "
                  f"{len(report.runs)} run(s), {report.cache_invalidated} cache entries invalidated")
    table = Table(title_justify="left")
    for col in ("run", "workflow", "why", "first tainted", "recomputed", "kept", "status", "what changed"):
        table.add_column(col)
    for r in report.runs:
        changes = []
        for c in r.changes:
            for key, (old, new) in c.claims.items():
                changes.append(f"{key}: {_fmt(old)} -> {_fmt(new)}")
            if c.outputs_changed and not c.claims:
                changes.append(f"{c.task}: {', '.join(c.outputs_changed)} changed")
        table.add_row(r.run_id[:12], r.workflow, r.why, r.first_tainted or "-", ", ".join(r.recomputed),
                      ", ".join(r.kept) or "-", r.status, "; ".join(changes) or "-")
    console.print(table)
    for s in report.skipped:
        console.print(f"  skipped {s['run'][:12]} ({s['workflow']}): {s['reason']}")


def _fmt(v) -> str:
    return f"{v:.5g}" if isinstance(v, float) else str(v)
