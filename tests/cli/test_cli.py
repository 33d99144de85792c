"""The CLI, in-process with Typer's runner, plus one run of the installed command."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from headwater.cli import app, main
from tests.runtime.workflows import CHAIN

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path / ".headwater"))
    monkeypatch.delenv("HEADWATER_STORE", raising=False)
    wf = tmp_path / "chain.py"
    wf.write_text(CHAIN)
    return tmp_path, wf


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_every_command_has_help_with_an_example():
    group = typer_group()
    for name, command in group.commands.items():
        assert command.help, f"{name} has no help"
        assert "Example:" in command.help, f"{name} help has no example"


def typer_group():
    import typer.main

    return typer.main.get_command(app)


def test_run_then_inspect_everything_as_json(env):
    tmp, wf = env
    result = invoke("run", wf, "--workers", "0", "--seed", "4", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    run_id = summary["run_id"]
    assert summary["status"] == "succeeded"
    runs = json.loads(invoke("runs", "--json").output)
    assert [r["id"] for r in runs] == [run_id]
    cks = json.loads(invoke("checkpoints", run_id[:6], "--json").output)
    assert [c["task"] for c in cks] == ["make", "decide", "double", "total"]
    shown = json.loads(invoke("show", cks[-1]["id"][:8], "--json").output)
    assert shown["bundle"]["intent"]["claims"][0]["key"] == "chain.total"
    verified = invoke("verify", "--json")
    assert verified.exit_code == 0 and json.loads(verified.output)["ok"] is True
    rep = invoke("reproduce", cks[0]["id"], "--json")
    assert rep.exit_code == 0 and json.loads(rep.output)["identical"] is True
    lin = json.loads(invoke("lineage", cks[-1]["id"], "--json").output)
    assert {n["task"] for n in lin["upstream"]} >= {"make", "double"}
    bis = json.loads(invoke("bisect", run_id, "--check", "true", "--json").output)
    assert bis["first_bad"] is None


def test_readable_tables_and_diff(env):
    tmp, wf = env
    a = json.loads(invoke("run", wf, "--workers", "0", "--json").output)["run_id"]
    b = json.loads(invoke("run", wf, "--workers", "0", "-p", "scale=3", "--why", "triple it", "--json").output)["run_id"]
    out = invoke("diff", a, b).output
    assert "scale: 2.0 -> 3.0" in out and "triple it" in out
    assert "total" in invoke("checkpoints", a).output
    assert "chain.total" in invoke("show", json.loads(invoke("checkpoints", a, "--json").output)[-1]["id"]).output


def test_failed_run_exits_one(env):
    tmp, _ = env
    bad = tmp / "bad.py"
    bad.write_text("from headwater import Workflow\nwf = Workflow('bad')\n@wf.task()\ndef boom(ctx):\n    raise RuntimeError('no')\n")
    result = invoke("run", bad, "--workers", "0")
    assert result.exit_code == 1
    assert "failed" in result.output


def test_domain_errors_name_the_culprit_and_exit_two(env, capsys, monkeypatch):
    tmp, wf = env
    spec = tmp / "cyclic.yaml"
    spec.write_text("name: c\ntasks:\n  - {name: a, run: 'true', after: [b]}\n  - {name: b, run: 'true', after: [a]}\n")
    monkeypatch.setattr(sys, "argv", ["headwater", "run", str(spec)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "cyclic.yaml" in err and "cycle" in err.lower()
    monkeypatch.setattr(sys, "argv", ["headwater", "show", "ffffffffffff"])
    with pytest.raises(SystemExit):
        main()
    assert "ffffffffffff" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["headwater", "run", str(wf), "-p", "nonsense"])
    with pytest.raises(SystemExit):
        main()
    assert "NAME=VALUE" in capsys.readouterr().err


def test_installed_command_runs_a_yaml_workflow(tmp_path):
    spec = tmp_path / "wc.yaml"
    spec.write_text(
        "name: wc\nparams:\n  word: {type: str, default: hello}\ntasks:\n"
        "  - name: make\n    run: \"printf '%s %s\\n' {params[word]} {params[word]} > {outputs[text]}\"\n"
        "    outputs: {text: text.txt}\n"
        "  - name: count\n    after: [make]\n    inputs: {text: make/text}\n"
        "    run: \"wc -w < {inputs[text]} | tr -d ' ' > {outputs[n]}\"\n    outputs: {n: n.txt}\n"
    )
    env = dict(os.environ, HEADWATER_HOME=str(tmp_path / ".headwater"))
    proc = subprocess.run([sys.executable, "-m", "headwater", "run", str(spec), "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    proc = subprocess.run([sys.executable, "-m", "headwater", "checkpoints", run_id, "--json"],
                          capture_output=True, text=True, env=env, timeout=60)
    cks = json.loads(proc.stdout)
    assert [c["task"] for c in cks] == ["make", "count"]
    from headwater.runtime import open_workspace

    ws = open_workspace(tmp_path / ".headwater")
    assert ws.store.artifacts.get_bytes(cks[1]["outputs"]["n"]).strip() == b"2"
    ws.close()


def test_status_of_a_queued_run_shows_the_queue_scoreboard(env):
    _, wf = env
    submitted = json.loads(invoke("submit", wf, "--param", "scale=2", "--json").stdout)
    run_id = submitted["run"]
    data = json.loads(invoke("status", run_id[:8], "--json").stdout)
    assert data["run"] == run_id and data["status"] == "running"
    assert data["tasks_by_state"] == {"ready": 1, "pending": submitted["tasks"] - 1}
    shown = invoke("status", run_id, "--once")
    assert shown.exit_code == 0 and f"run {run_id}: running (0/{submitted['tasks']} final)" in shown.stdout


def test_run_reads_the_environment_while_the_workflow_imports(tmp_path, monkeypatch):
    import threading

    from headwater.checkpoint import env
    from headwater.cli import _read_environment_meanwhile

    env.clear_cache()
    calls = []
    monkeypatch.setattr(env, "git_state", lambda path: calls.append(("git", path)) or {"commit": None, "dirty": None})
    wf = tmp_path / "sub" / "wf.py"
    wf.parent.mkdir()
    _read_environment_meanwhile(wf)
    (reader,) = [t for t in threading.enumerate() if t.name == "headwater-environment"] or [None]
    if reader is not None:
        reader.join(10)
    project = wf.parent.resolve()
    assert calls == [("git", wf.parent.absolute())]
    # The coordinator's later call for the same project is served from the process cache.
    assert str(project) in env._fingerprints
    env.clear_cache()


def test_a_failing_environment_read_in_the_background_is_left_to_the_run(tmp_path, monkeypatch):
    import threading

    from headwater.checkpoint import env
    from headwater.cli import _read_environment_meanwhile

    def broken(_):
        raise OSError("no uname here")

    monkeypatch.setattr(env, "fingerprint", broken)
    errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    _read_environment_meanwhile(tmp_path / "wf.py")
    for t in [t for t in threading.enumerate() if t.name == "headwater-environment"]:
        t.join(10)
    assert errors == []


def test_error_lines_keep_square_brackets(monkeypatch, capsys):
    import headwater.cli as cli
    from headwater.errors import OptionalDependency

    def fail():
        raise OptionalDependency("headwater serve", "server")

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert "pip install 'headwater[server]'" in capsys.readouterr().err
