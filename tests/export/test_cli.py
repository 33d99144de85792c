"""``headwater export`` and ``headwater attest`` in-process, and the missing-extra error."""

from __future__ import annotations

import base64
import builtins
import json

import pytest
from typer.testing import CliRunner

from headwater.cli import app
from headwater.errors import OptionalDependency

runner = CliRunner()


@pytest.fixture
def env(ws, chain_run, monkeypatch):
    monkeypatch.setenv("HEADWATER_HOME", str(ws.root))
    monkeypatch.delenv("HEADWATER_STORE", raising=False)
    return chain_run


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_export_intoto_then_verify_and_tamper(env, tmp_path):
    bundle = tmp_path / "run.intoto.jsonl"
    result = invoke("export", env[:8], "--format", "intoto", "-o", bundle, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["attestations"] == 4
    pub = tmp_path / "k.pub"
    assert invoke("attest", "key", "-o", pub).exit_code == 0
    ok = invoke("attest", "verify", bundle, "--key", pub, "--json")
    assert ok.exit_code == 0 and json.loads(ok.output)["ok"] is True

    lines = bundle.read_text().splitlines()
    envelope = json.loads(lines[2])
    stmt = json.loads(base64.b64decode(envelope["payload"]))
    stmt["subject"][0]["digest"]["sha256"] = "f" * 64
    envelope["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    lines[2] = json.dumps(envelope)
    tampered = tmp_path / "tampered.intoto.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    bad = invoke("attest", "verify", tampered, "--key", pub)
    assert bad.exit_code == 1 and "verification failed" in bad.output


@pytest.mark.parametrize("fmt", ["openlineage", "prov"])
def test_export_to_stdout(env, fmt):
    result = invoke("export", env, "--format", fmt)
    assert result.exit_code == 0
    if fmt == "openlineage":
        assert len(result.output.splitlines()) == 10
    else:
        assert json.loads(result.output)["activity"]


def test_export_a_checkpoint_set_and_a_crate(env, ws, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(c.id for c in ws.store.list_checkpoints(env)[:2]))
    out = tmp_path / "set.provn"
    assert invoke("export", "--ids-from", ids, "-f", "prov", "-o", out).exit_code == 0
    assert out.read_text().startswith("document")
    crate = tmp_path / "crate"
    result = invoke("export", "--campaign", "paper", "-f", "rocrate", "-o", crate, "--json")
    assert result.exit_code == 0 and (crate / "ro-crate-metadata.json").exists()


def test_export_refuses_two_selections(env):
    from headwater.errors import HeadwaterError

    with pytest.raises(HeadwaterError):
        invoke("export", env, "--campaign", "paper", "-f", "prov")


def test_missing_library_names_the_extra(ws, chain_run, monkeypatch):
    from headwater.export import prov, select

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "prov.model" or name.startswith("prov.model"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    import importlib

    monkeypatch.setattr(importlib, "import_module", lambda name, *a: fake(name))
    with pytest.raises(OptionalDependency) as err:
        prov.document(select(ws.store, chain_run))
    assert "headwater[export]" in str(err.value)


def test_every_command_has_an_example():
    import typer.main

    group = typer.main.get_command(app)
    for name in ("export", "attest"):
        assert "Example:" in group.commands[name].help
    for sub in group.commands["attest"].commands.values():
        assert "Example:" in sub.help
