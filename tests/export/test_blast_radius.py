"""Exporting the blast radius of a shared asset, checked by each standard's validator."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from prov.model import ProvDocument
from typer.testing import CliRunner

from headwater.cli import app
from headwater.errors import NotFound
from headwater.export import intoto, openlineage, prov, rocrate, select_asset
from headwater.oversight import OversightError
from headwater.runtime import RunOptions, run_workflow
from tests.export.test_openlineage import _events, _validate_event
from tests.export.test_rocrate import _graph, _validate

PRODUCER = """
from headwater import Workflow
wf = Workflow("br-producer")
wf.param("value", "float", default=2.0)

@wf.task()
def publish(ctx):
    ctx.claim("br.k", ctx.params["value"], uncertainty=0.01)
"""

CONSUMER = """
from headwater import Workflow
wf = Workflow("br-consumer")

@wf.task()
def first(ctx):
    ctx.save("x", 1)

@wf.task(after="first")
def use(ctx):
    ctx.save("y", 2 * ctx.use("claim:br.k"))

@wf.task(after="use")
def later(ctx):
    ctx.claim("br.twice", ctx.load("use/y"))
"""

DOWNSTREAM = """
from headwater import Workflow
wf = Workflow("br-downstream")

@wf.task()
def read(ctx):
    ctx.save("z", ctx.use("claim:br.twice") + 1)
"""


@dataclass
class Fleet:
    ws: object
    version: str
    consumer: str
    downstream: str

    @property
    def ref(self) -> str:
        return f"claim:br.k@{self.version}"


def _fleet(ws, write_wf) -> Fleet:
    """A producer, a consumer two tasks deep and a workflow built on the consumer's claim."""
    produced = run_workflow(ws, write_wf(PRODUCER), {}, RunOptions(workers=0))
    consumer = run_workflow(ws, write_wf(CONSUMER), {}, RunOptions(workers=0))
    downstream = run_workflow(ws, write_wf(DOWNSTREAM), {}, RunOptions(workers=0))
    assert produced.ok and consumer.ok and downstream.ok
    version = ws.store.list_checkpoints(produced.run_id)[0].id[:12]
    return Fleet(ws, version, consumer.run_id, downstream.run_id)


@pytest.fixture
def fleet(ws, write_wf) -> Fleet:
    return _fleet(ws, write_wf)


def test_the_selection_is_the_stores_blast_radius(ws_any, write_wf):
    fleet = _fleet(ws_any, write_wf)
    store = ws_any.store
    sel = select_asset(store, fleet.ref)
    assert sel.kind == "asset" and fleet.ref in sel.title
    assert set(sel.ids) == set(store.blast_radius(fleet.ref).checkpoints)
    assert [(c.workflow, c.task) for c in sel.checkpoints] == [
        ("br-consumer", "use"), ("br-consumer", "later"), ("br-downstream", "read")]
    assert set(sel.runs) == {fleet.consumer, fleet.downstream}
    first = store.list_checkpoints(fleet.consumer)[0]
    assert first.task == "first" and first.id not in sel.ids and first.id in sel.refs  # cited, not exported
    assert set(select_asset(store, "claim:br.k").ids) == set(sel.ids)  # every version


def test_an_unknown_or_malformed_asset_says_what_to_do(ws):
    with pytest.raises(NotFound, match="headwater blast-radius claim:nothing"):
        select_asset(ws.store, "claim:nothing")
    with pytest.raises(OversightError, match="KIND:NAME"):
        select_asset(ws.store, "nothing")


def test_one_attestation_bundle(fleet, tmp_path):
    sel = select_asset(fleet.ws.store, fleet.ref)
    path = tmp_path / "radius.intoto.jsonl"
    path.write_text(intoto.dumps(intoto.attest(sel, fleet.ws.key), bundle=True))
    assert len(path.read_text().splitlines()) == len(sel.checkpoints) == 3
    report = intoto.verify(path, fleet.ws.key.public_hex)
    assert report.ok and len(report.envelopes) == 3


def test_one_provenance_run_crate(fleet, tmp_path, seeded_cache):
    sel = select_asset(fleet.ws.store, fleet.ref)
    out = rocrate.write(rocrate.build(sel, fleet.ws.store.artifacts), tmp_path / "crate")
    result, issues = _validate(out, "provenance-run-crate", seeded_cache)
    assert result.passed(), issues
    graph = _graph(out)
    assert all(graph[f"#checkpoint/{c.id}"]["@type"] == "CreateAction" for c in sel.checkpoints)
    assert fleet.ref in graph["./"]["name"]


def test_one_event_stream(fleet):
    events = _events(select_asset(fleet.ws.store, fleet.ref))
    seen: set[str] = set()
    for event in events:
        _validate_event(event, seen)
    tasks = [(e["job"]["name"], e["eventType"]) for e in events if "." in e["job"]["name"]]
    assert tasks == [("br-consumer.use", "START"), ("br-consumer.use", "COMPLETE"),
                     ("br-consumer.later", "START"), ("br-consumer.later", "COMPLETE"),
                     ("br-downstream.read", "START"), ("br-downstream.read", "COMPLETE")]
    assert {e["job"]["name"] for e in events if "." not in e["job"]["name"]} == {"br-consumer", "br-downstream"}
    assert len(events) == len(openlineage.events(select_asset(fleet.ws.store, fleet.ref)))


def test_one_prov_document(fleet):
    sel = select_asset(fleet.ws.store, fleet.ref)
    doc = prov.document(sel)
    assert ProvDocument.deserialize(content=prov.serialize(doc, "json"), format="json") == doc
    assert doc.unified() == doc
    provn = prov.serialize(doc, "provn")
    assert all(f"entity(ckpt:{c.id}" in provn for c in sel.checkpoints)


def test_the_command_line(fleet, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWATER_HOME", str(fleet.ws.root))
    monkeypatch.delenv("HEADWATER_STORE", raising=False)
    runner = CliRunner()
    bundle = tmp_path / "radius.intoto.jsonl"
    result = runner.invoke(app, ["export", "--asset", fleet.ref, "-f", "intoto", "-o", str(bundle), "--json"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["attestations"] == report["checkpoints"] == 3 and fleet.ref in report["selection"]
    pub = tmp_path / "k.pub"
    pub.write_text(intoto.public_pem(fleet.ws.key.public_hex))
    assert runner.invoke(app, ["attest", "verify", str(bundle), "--key", str(pub)]).exit_code == 0
    events = runner.invoke(app, ["export", "--asset", "claim:br.k", "-f", "openlineage"], catch_exceptions=False)
    assert len(events.output.splitlines()) == 10
    from headwater.errors import HeadwaterError

    with pytest.raises(HeadwaterError, match="exactly one"):
        runner.invoke(app, ["export", "--asset", fleet.ref, "--campaign", "x", "-f", "prov"], catch_exceptions=False)
