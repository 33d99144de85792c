"""Rich renderings of forensic reports, for the CLI and the demo."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table


def render_diff(console: Console, result: dict) -> None:
    if result["kind"] == "runs":
        console.print(f"[bold]runs {result['a'][:12]} -> {result['b'][:12]}[/] ({result['workflow'][0]})")
        for k, (x, y) in result["params"].items():
            console.print(f"  param {k}: {x} -> {y}")
        if result["seed"]:
            console.print(f"  seed: {result['seed'][0]} -> {result['seed'][1]}")
        if result["spec"]:
            console.print(f"  spec changed: {', '.join(result['spec'])}")
        if any(result["why"]):
            console.print(f"  why: {result['why'][1] or '-'}")
        table = Table(title="per task")
        for col in ("task", "outputs changed", "outputs same", "claims changed", "env"):
            table.add_column(col)
        for task, d in result["tasks"].items():
            env = d["env"]
            pk = env["packages"]
            env_s = "same" if not env["fingerprint"] else \
                f"+{len(pk['added'])} -{len(pk['removed'])} ~{len(pk['changed'])} packages"
            table.add_row(task, ", ".join(d["artifacts"]["changed"]) or "-", ", ".join(d["artifacts"]["same"]) or "-",
                          ", ".join(f"{k}: {v[0]} -> {v[1]}" for k, v in d["claims"].items())[:70] or "-", env_s)
        console.print(table)
        return
    console.print(f"[bold]checkpoints {result['a'][:12]} -> {result['b'][:12]}[/] (tasks {' / '.join(result['task'])})")
    for section in ("params", "code", "inputs", "versions", "claims"):
        for k, (x, y) in result[section].items():
            console.print(f"  {section} {k}: {json.dumps(x)} -> {json.dumps(y)}")
    if result["seed"]:
        console.print(f"  seed: {result['seed'][0]} -> {result['seed'][1]}")
    arts = result["artifacts"]
    for key in ("added", "removed", "changed"):
        if arts[key]:
            console.print(f"  artifacts {key}: {', '.join(arts[key])}")
    pk = result["env"]["packages"]
    if result["env"]["fingerprint"]:
        console.print(f"  environment: {len(pk['added'])} added, {len(pk['removed'])} removed, {len(pk['changed'])} changed")
        for name, (old, new) in list(pk["changed"].items())[:20]:
            console.print(f"    {name}: {old} -> {new}")
    else:
        console.print("  environment: same fingerprint")


def render_reproduce(console: Console, report) -> None:
    verdict = "[green]byte-identical[/]" if report.identical else "[red]differs[/]"
    console.print(f"reproduce {report.checkpoint[:12]} ({report.task}): {verdict}")
    for name, o in report.outputs.items():
        mark = "=" if o["same"] else "!"
        console.print(f"  {mark} {name}: recorded {str(o['recorded'])[:12]} reproduced {str(o['reproduced'])[:12]}")
    if report.error:
        console.print(f"  task failed: {report.error}")
    if report.code_changed:
        console.print("  [yellow]the task's code changed since the checkpoint was written[/]")
    if report.env_changed:
        pk = report.env_diff.get("packages", {})
        console.print(f"  environment differs from the recorded one: {len(pk.get('added', {}))} added, "
                      f"{len(pk.get('removed', {}))} removed, {len(pk.get('changed', {}))} changed packages")
        for name, (old, new) in list(pk.get("changed", {}).items())[:20]:
            console.print(f"    {name}: {old} -> {new}")


def render_bisect(console: Console, report) -> None:
    console.print(f"bisect run {report.run[:12]}: {len(report.chain)} checkpoints, {len(report.checks)} checks")
    for c in report.checks:
        console.print(f"  check #{c['index']:<3} {c['checkpoint'][:12]} {c['task']:<20} "
                      + ("[green]good[/]" if c["good"] else "[red]bad[/]"))
    if report.first_bad:
        fb = report.first_bad
        console.print(f"first bad checkpoint: [bold red]{fb['checkpoint'][:12]}[/] (task {fb['task']}, #{fb['index']})")
    else:
        console.print("[green]every checkpoint passes the check[/]")


def render_lineage(console: Console, result: dict) -> None:
    s = result["subject"]
    label = f"checkpoint {s['id'][:12]} ({s['task']})" if s["kind"] == "checkpoint" else f"artifact {s['sha256'][:12]}"
    console.print(f"[bold]lineage of {label}[/]")
    for direction in ("upstream", "downstream"):
        console.print(f" {direction}: {len(result[direction])}")
        for n in result[direction]:
            console.print(f"   {'  ' * (n['distance'] - 1)}{n['id'][:12]} {n['task']} (run {n['run'][:8]}, {n['status']})")
