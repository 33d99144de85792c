"""W3C PROV documents with the prov package: round trip and unification."""

from __future__ import annotations

from prov.model import ProvDocument

from headwater.export import prov, select


def test_prov_json_round_trips_and_is_unified(ws, chain_run):
    doc = prov.document(select(ws.store, chain_run))
    text = prov.serialize(doc, "json")
    assert ProvDocument.deserialize(content=text, format="json") == doc
    assert doc.unified() == doc


def test_mapping_covers_checkpoints_runs_artifacts_and_agents(ws, chain_run):
    sel = select(ws.store, chain_run)
    doc = prov.document(sel)
    provn = prov.serialize(doc, "provn")
    total = sel.checkpoints[-1]
    for statement in (f"activity(taskrun:{total.id}", f"entity(ckpt:{total.id}",
                      f"wasGeneratedBy(art:{total.outputs[0].sha256}, taskrun:{total.id}",
                      f"used(taskrun:{total.id}, art:{total.inputs[0].sha256}",
                      f"wasAttributedTo(ckpt:{total.id}, agent:key-{ws.key.key_id})",
                      f"activity(run:{chain_run}"):
        assert statement in provn, statement
    assert f"wasDerivedFrom(ckpt:{total.id}, ckpt:{total.parents[0]}" in provn
    assert f"wasDerivedFrom(art:{total.outputs[0].sha256}, art:{total.inputs[0].sha256}" in provn
    assert "wasAssociatedWith(taskrun:" in provn and "prov:Plan" in provn
    assert 'hw:key="chain.total"' in provn
