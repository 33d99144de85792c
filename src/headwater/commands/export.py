"""``headwater export`` and ``headwater attest``: provenance in the standards' formats.

``export`` writes one checkpoint, a run, a campaign, a workflow's runs, the
blast radius of a shared asset or an explicit set of checkpoints as
in-toto/SLSA attestations, a Workflow Run RO-Crate, OpenLineage events or
W3C PROV.
``attest verify`` checks attestations against a public key; ``attest key``
prints the workspace's public key for others to verify with.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from headwater.errors import HeadwaterError

FORMATS = ("intoto", "rocrate", "openlineage", "prov")


def _selection(store, ident: Optional[str], campaign: Optional[str], workflow: Optional[str],
               asset: Optional[str], ckpts: list[str], ids_from: Optional[Path]):
    from headwater.export import source

    ids = list(ckpts)
    if ids_from is not None:
        ids += [line.strip() for line in ids_from.read_text().splitlines() if line.strip()]
    given = [x for x in (ident, campaign, workflow, asset, ids or None) if x]
    if len(given) != 1:
        raise HeadwaterError("give exactly one of RUN|CKPT, --campaign, --workflow, --asset, or --ckpt/--ids-from")
    if ident:
        return source.select(store, ident)
    if campaign:
        return source.select_campaign(store, campaign)
    if workflow:
        return source.select_workflow(store, workflow)
    if asset:
        return source.select_asset(store, asset)
    return source.select_checkpoints(store, ids)


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        ident: Optional[str] = typer.Argument(None, help="Run or checkpoint id (or a unique prefix)."),
        fmt: str = typer.Option(..., "--format", "-f", help="intoto | rocrate | openlineage | prov."),
        output: Optional[Path] = typer.Option(None, "--output", "-o",
                                              help="Where to write (a directory or .zip for rocrate). "
                                                   "Default: standard output (a directory named after "
                                                   "the selection for rocrate)."),
        campaign: Optional[str] = typer.Option(None, "--campaign", help="Export every run of a campaign."),
        workflow: Optional[str] = typer.Option(None, "--workflow", help="Export every run of a workflow."),
        asset: Optional[str] = typer.Option(None, "--asset",
                                            help="Export the blast radius of KIND:NAME, KIND:NAME@VERSION or "
                                                 "KIND:NAME@RANGE: every checkpoint built on it."),
        ckpt: list[str] = typer.Option([], "--ckpt", help="A checkpoint id to include; repeatable."),
        ids_from: Optional[Path] = typer.Option(None, "--ids-from",
                                                help="File of checkpoint ids, one per line (e.g. a blast radius)."),
        namespace: str = typer.Option("headwater", "--namespace", help="OpenLineage namespace of jobs and datasets."),
        emit: bool = typer.Option(False, "--emit", help="OpenLineage: send through the transport openlineage-python "
                                                        "is configured for (openlineage.yml, OPENLINEAGE_URL)."),
        prov_syntax: Optional[str] = typer.Option(None, "--prov-syntax",
                                                  help="json | provn (default: from the file extension, else json)."),
        no_data: bool = typer.Option(False, "--no-data", help="RO-Crate: reference artifacts by URI instead of copying them."),
        license: Optional[str] = typer.Option(None, "--license", help="RO-Crate: license URL or text of the crate."),
        as_json: bool = typer.Option(False, "--json", help="Report what was written as JSON."),
    ) -> None:
        """Export checkpoints as in-toto/SLSA, a Workflow Run RO-Crate, OpenLineage or W3C PROV.

        One checkpoint, one run, a campaign (--campaign), a workflow (--workflow),
        the blast radius of an asset (--asset) or a set of checkpoints (--ckpt,
        --ids-from) becomes one attestation bundle, one crate, one event stream
        or one PROV document.
        Example: headwater export --asset lib:numpy@1.26.0 --format intoto -o affected.intoto.jsonl
        """
        from headwater import cli

        if fmt not in FORMATS:
            raise HeadwaterError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        ws = cli._ws()
        sel = _selection(ws.store, ident, campaign, workflow, asset, ckpt, ids_from)
        report: dict = {"format": fmt, "selection": sel.title, "checkpoints": len(sel.checkpoints),
                        "output": str(output) if output else None}
        text: Optional[str] = None
        if fmt == "intoto":
            from headwater.export import intoto

            envelopes = intoto.attest(sel, ws.key)
            bundle = len(envelopes) > 1 or (output is not None and output.suffix == ".jsonl")
            text = intoto.dumps(envelopes, bundle=bundle)
            report.update({"attestations": len(envelopes), "key_id": ws.key.key_id})
        elif fmt == "rocrate":
            from headwater.export import rocrate

            crate = rocrate.build(sel, None if no_data else ws.store.artifacts, license=license)
            target = output or Path(f"{sel.kind}-{sel.checkpoints[0].id[:12]}-crate")
            rocrate.write(crate, target)
            report.update({"output": str(target), "profile": "provenance-run-crate-0.5"
                           if sel.kind != "checkpoint" else "process-run-crate-0.5"})
        elif fmt == "openlineage":
            from headwater.export import openlineage

            events = openlineage.events(sel, namespace)
            report["events"] = len(events)
            if emit:
                openlineage.emit(events, openlineage.configured_client())
                report["emitted"] = True
            if output is not None:
                openlineage.emit(events, openlineage.file_client(output))
            elif not emit:
                text = "".join(openlineage.to_json(e) + "\n" for e in events)
        else:
            from headwater.export import prov

            syntax = prov_syntax or ("provn" if output is not None and output.suffix == ".provn" else "json")
            text = prov.serialize(prov.document(sel), syntax)
            report["syntax"] = syntax
        if text is not None:
            if output is not None:
                output.write_text(text)
            else:
                sys.stdout.write(text)
                return
        if as_json:
            cli._emit(report)
        else:
            cli.console.print(f"exported {report['checkpoints']} checkpoint(s) of {sel.title} as {fmt} "
                              f"to {report['output'] or 'the configured OpenLineage transport'}")

    attest = typer.Typer(help="Check in-toto attestations written by `headwater export --format intoto`.\n\n"
                              "Example: headwater attest verify run.intoto.jsonl --key headwater.pub",
                         no_args_is_help=True)
    app.add_typer(attest, name="attest")

    @attest.command("verify")
    def attest_verify(
        file: Path = typer.Argument(..., help="A DSSE envelope (.json) or an in-toto bundle (.jsonl)."),
        key: Path = typer.Option(..., "--key", help="Ed25519 public key: PEM, or 64 hex digits."),
        subject: list[Path] = typer.Option([], "--subject", help="A file that must be an attested subject; repeatable."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Verify signatures, statement and predicate; exit 1 when anything does not check.

        Example: headwater attest verify run.intoto.jsonl --key headwater.pub --subject results/total.json
        """
        from headwater import cli
        from headwater.export import intoto

        report = intoto.verify(file, intoto.load_public_key(key), subject)
        if as_json:
            cli._emit(report.to_json())
        elif report.ok:
            cli.console.print(f"[green]verified[/] {len(report.envelopes)} attestation(s) signed by key {report.key_id}")
        else:
            bad = [e for e in report.envelopes if not e.ok]
            cli.console.print(f"[red]verification failed[/]: {len(bad)} of {len(report.envelopes)} attestation(s)")
            for e in bad[:10]:
                cli.console.print(f"  #{e.index} {e.invocation or ''}: {'; '.join(e.problems)}")
            for path in report.missing_subjects:
                cli.console.print(f"  {path}: not an attested subject")
        raise typer.Exit(0 if report.ok else 1)

    @attest.command("key")
    def attest_key(
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the PEM here instead of printing it."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Print the workspace's public key (PEM), the one `attest verify --key` needs.

        Example: headwater attest key -o headwater.pub
        """
        from headwater import cli
        from headwater.export import intoto

        ws = cli._ws()
        pem = intoto.public_pem(ws.key.public_hex)
        if output is not None:
            output.write_text(pem)
        if as_json:
            cli._emit({"key_id": ws.key.key_id, "public_hex": ws.key.public_hex, "pem": pem})
        elif output is None:
            sys.stdout.write(pem)
        else:
            cli.console.print(f"public key {ws.key.key_id} written to {output}")

