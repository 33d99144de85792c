"""in-toto Statement v1 + SLSA Provenance v1 in DSSE, checked with the standard's libraries."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from headwater.checkpoint.signing import SigningKey
from headwater.export import intoto, select, select_campaign, select_checkpoint


def _key(ws):
    return SSlibKey(ws.key.key_id, "ed25519", "ed25519", {"public": ws.key.public_hex})


def _statement_of(envelope: dict) -> dict:
    return json.loads(base64.b64decode(envelope["payload"]))


def test_statement_validates_and_maps_the_bundle(ws, chain_run):
    sel = select(ws.store, chain_run)
    total = sel.checkpoints[-1]
    stmt = intoto.statement(sel, total)
    Statement.copy_from_pb(json_format.ParseDict(stmt, statement_pb2.Statement())).validate()
    json_format.ParseDict(stmt["predicate"], provenance_pb2.Provenance())

    subjects = {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]}
    assert subjects[f"checkpoint/{total.id}.json"] == total.id == hashlib.sha256(total.bundle).hexdigest()
    assert subjects["total/total"] == total.outputs[0].sha256
    build = stmt["predicate"]["buildDefinition"]
    bundle = total.doc
    assert build["externalParameters"]["seed"] == bundle["manifest"]["seed"]
    assert isinstance(build["externalParameters"]["seed"], int)
    assert build["externalParameters"]["params"] == bundle["manifest"]["params"]
    assert build["externalParameters"]["specDiff"] == bundle["spec_diff"]
    assert build["internalParameters"]["environment"]["fp"] == bundle["env"]["fp"]
    deps = {d["name"]: d for d in build["resolvedDependencies"]}
    assert deps["task:total"]["digest"]["sha256"] == bundle["manifest"]["code"]["task_hash"]
    assert deps["input:double/scaled"]["digest"]["sha256"] == bundle["manifest"]["inputs"]["double/scaled"]
    assert {f"checkpoint:{p}" for p in bundle["parents"]} <= set(deps)
    run = stmt["predicate"]["runDetails"]
    assert run["builder"]["id"] == f"urn:headwater:builder:{ws.key.key_id}"
    assert run["metadata"]["invocationId"].endswith(f"{chain_run}/total/1")
    assert run["metadata"]["startedOn"] == bundle["time"]["start"]
    intent = next(b for b in run["byproducts"] if b["name"] == "intent")
    assert intent["annotations"]["claims"][0]["key"] == "chain.total"


def test_envelope_verifies_with_securesystemslib(ws, chain_run):
    sel = select_checkpoint(ws.store, ws.store.list_checkpoints(chain_run)[0].id)
    [envelope] = intoto.attest(sel, ws.key)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    verified = Envelope.from_dict(json.loads(json.dumps(envelope))).verify([_key(ws)], 1)
    assert set(verified) == {ws.key.key_id}


def test_changed_subject_digest_fails(ws, chain_run, tmp_path):
    sel = select(ws.store, chain_run)
    envelope = intoto.attest(sel, ws.key)[-1]
    stmt = _statement_of(envelope)
    stmt["subject"][0]["digest"]["sha256"] = "0" * 64
    forged = dict(envelope, payload=base64.b64encode(json.dumps(stmt).encode()).decode())
    with pytest.raises(VerificationError):
        Envelope.from_dict(json.loads(json.dumps(forged))).verify([_key(ws)], 1)
    path = tmp_path / "forged.intoto.json"
    path.write_text(json.dumps(forged))
    report = intoto.verify(path, ws.key.public_hex)
    assert not report.ok and "signature" in report.envelopes[0].problems[0]


def test_other_key_fails(ws, chain_run, tmp_path):
    path = tmp_path / "a.intoto.jsonl"
    path.write_text(intoto.dumps(intoto.attest(select(ws.store, chain_run), ws.key), bundle=True))
    assert intoto.verify(path, ws.key.public_hex).ok
    assert not intoto.verify(path, SigningKey.generate().public_hex).ok


def test_campaign_bundle_is_json_lines_and_checks_subject_files(ws, chain_run, write_wf, tmp_path):
    from headwater.runtime import RunOptions, run_workflow
    from tests.runtime.workflows import CHAIN

    run_workflow(ws, write_wf(CHAIN), {"scale": 3.0}, RunOptions(workers=0, seed=6, campaign="paper"))
    sel = select_campaign(ws.store, "paper")
    assert len(sel.runs) == 2
    path = tmp_path / "paper.intoto.jsonl"
    path.write_text(intoto.dumps(intoto.attest(sel, ws.key), bundle=True))
    lines = path.read_text().splitlines()
    assert len(lines) == len(sel.checkpoints) == 8
    total = ws.store.list_checkpoints(chain_run)[-1]
    good = tmp_path / "total.json"
    good.write_bytes(ws.store.artifacts.get_bytes(total.outputs[0].sha256))
    other = tmp_path / "other.json"
    other.write_text("{}")
    assert intoto.verify(path, ws.key.public_hex, [good]).ok
    report = intoto.verify(path, ws.key.public_hex, [good, other])
    assert not report.ok and report.missing_subjects == [str(other)]


def test_public_key_files(ws, tmp_path):
    pem = tmp_path / "k.pub"
    pem.write_text(intoto.public_pem(ws.key.public_hex))
    hexfile = tmp_path / "k.hex"
    hexfile.write_text(ws.key.public_hex + "\n")
    assert intoto.load_public_key(pem) == intoto.load_public_key(hexfile) == ws.key.public_hex
    assert intoto.load_public_key(ws.key_path) == ws.key.public_hex
