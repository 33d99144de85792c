"""The oversight commands, in-process: JSON for scripts, tables for people, examples in every help."""

import json

import pytest
import typer.main
from typer.testing import CliRunner

from headwater.cli import app

runner = CliRunner()

PRODUCER = '''
from headwater import Workflow
wf = Workflow("cli-producer")
wf.param("value", "float", default=2.0)

@wf.task()
def publish(ctx):
    ctx.claim("cli.k", ctx.params["value"], uncertainty=0.01)
'''

CONSUMER = '''
from headwater import Workflow
wf = Workflow("cli-consumer", tags=["exploratory"])

@wf.task()
def first(ctx):
    ctx.save("x", 1)

@wf.task(after="first")
def use(ctx):
    ctx.claim("cli.twice", 2 * ctx.use("claim:cli.k"))
'''

POLICY = '''
policy: cli-pause
rules:
  - when: {status: [degraded], kind: claim}
    do: [pause, alert]
'''


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path / ".headwater"))
    monkeypatch.delenv("HEADWATER_STORE", raising=False)
    for name, text in (("producer.py", PRODUCER), ("consumer.py", CONSUMER), ("policy.yaml", POLICY)):
        (tmp_path / name).write_text(text)
    return tmp_path


def invoke(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def as_json(*args, code=0):
    return json.loads(invoke(*args, "--json", code=code).output)


def test_every_oversight_command_has_help_with_an_example():
    group = typer.main.get_command(app)
    for name in ("assets", "flag", "clear", "blast-radius", "pin", "canary", "policy", "monitors", "audit", "rerun"):
        command = group.commands[name]
        assert "Example:" in (command.help or ""), name
        for sub_name, sub in getattr(command, "commands", {}).items():
            assert "Example:" in (sub.help or ""), f"{name} {sub_name}"


def test_the_oversight_story_from_the_command_line(env):
    run = as_json("run", env / "producer.py", "--workers", "0")
    version = as_json("checkpoints", run["run_id"])[0]["id"][:12]
    subject = f"claim:cli.k@{version}"
    assert as_json("run", env / "consumer.py", "--workers", "0")["status"] == "succeeded"

    rows = as_json("assets", "--kind", "claim")
    assert [(r["asset"], r["version"], r["status"], r["workflows"]) for r in rows] == [
        ("claim:cli.k", version, "trusted", 1)]
    radius = as_json("blast-radius", subject)
    assert radius["counts"]["checkpoints"] == 1 and radius["claims"][0]["id"].startswith("claim:cli.twice@")
    assert "blast radius of" in invoke("blast-radius", "claim:cli.k").output
    ids = invoke("blast-radius", subject, "--ids").output.split()
    assert len(ids) == 1 and len(ids[0]) == 64

    flagged = as_json("flag", subject, "--reason", "units", "--trip")
    assert [t["to"] for t in flagged["transitions"]] == ["suspect", "degraded"]
    assert flagged["tainted"][0]["subject"].startswith("claim:cli.twice@")
    applied = as_json("policy", "apply", env / "policy.yaml", "--mode", "enforced")
    assert applied[0]["version"] == 1 and applied[0]["mode"] == "enforced"
    assert as_json("policy", "list")[0]["policy"] == "cli-pause"
    assert "cli-pause" in invoke("policy", "show", "cli-pause").output

    paused = as_json("run", env / "consumer.py", "--workers", "0", code=1)
    assert paused["status"] == "interrupted"
    assert {t["name"]: t["state"] for t in paused["tasks"]} == {"first": "committed", "use": "paused"}
    audit = as_json("audit", "--run", paused["run_id"])
    assert [r["action"] for r in audit if r["actor"] == "runtime"][:2] == ["hold", "stop"]
    assert "audit log" in invoke("audit", "--subject", "claim:cli.k").output

    report = as_json("monitors", "report")
    assert {r["asset"] for r in report["concentration"]} >= {"claim:cli.k"}
    assert "nothing found" in invoke("monitors", "run", "--dry-run").output

    fixed = as_json("run", env / "producer.py", "--workers", "0", "--param", "value=2.5")
    new = f"claim:cli.k@{as_json('checkpoints', fixed['run_id'])[0]['id'][:12]}"
    assert as_json("canary", "list")[0]["status"] == "running"  # the new version waits for a canary
    invoke("canary", "start", new, "--metric", "cli.twice:tolerance:rtol=0.5")
    assert as_json("canary", "verdict")[0]["outcome"] == "inconclusive"
    as_json("clear", new, "--force")
    plan = as_json("rerun", "--affected-by", subject, "--dry-run")
    assert [(r["workflow"], r["recomputed"]) for r in plan["runs"]] == [("cli-consumer", ["use"]),
                                                                        ("cli-consumer", ["use"])]
    done = as_json("rerun", "--affected-by", subject)
    assert [r["status"] for r in done["runs"]] == ["succeeded", "succeeded"]
    assert done["runs"][0]["changes"][0]["claims"] == {"cli.twice": [4.0, 5.0]}
    assert "rerun --affected-by" in invoke("rerun", "--affected-by", subject, "--dry-run").output


def test_pins_registration_gates_and_errors(env):
    as_json("run", env / "producer.py", "--workers", "0")
    rows = as_json("assets", "--register", "dataset:survey@2024-06", "--description", "field survey", "--all")
    assert ("dataset:survey", "2024-06", "trusted") in {(r["asset"], r["version"], r["status"]) for r in rows}
    assert as_json("canary", "gate", "dataset:survey")["gated"] is True
    rows = as_json("assets", "--register", "dataset:survey@2024-07", "--kind", "dataset")
    assert [(r["version"], r["status"]) for r in rows] == [("2024-06", "trusted"), ("2024-07", "revalidating")]
    assert as_json("policy", "retire", "nothing") == {"policy": "nothing", "retired": False}
    invoke("pin", "lib:thing/impl@1.0", "--scope", "!canary", "--reason", "freeze")
    assert as_json("pin") == [{"kind": "lib", "name": "thing/impl", "version": "1.0", "scope": "!canary",
                               "reason": "freeze"}]
    invoke("pin", "lib:thing/impl", "--scope", "!canary", "--remove")
    assert as_json("pin") == []
    from headwater.cli import main

    for args in (["flag", "widget:x", "--reason", "r"], ["pin", "lib:x"], ["clear", "claim:none"],
                 ["policy", "apply", str(env / "missing.yaml")]):
        import sys

        old = sys.argv
        sys.argv = ["headwater", *args]
        try:
            with pytest.raises(SystemExit) as exit_:
                main()
        finally:
            sys.argv = old
        assert exit_.value.code == 2, args
