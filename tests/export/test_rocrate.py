"""Workflow Run RO-Crates, validated offline by roc-validator at the 0.5 profiles."""

from __future__ import annotations

import hashlib

import pytest
from rocrate_validator import models, services

from headwater.export import rocrate, select, select_checkpoint
from tests.export.conftest import load_json


def _validate(crate_dir, profile, cache):
    settings = models.ValidationSettings(rocrate_uri=str(crate_dir), profile_identifier=profile,
                                         requirement_severity="REQUIRED", offline=True, cache_path=cache)
    result = services.validate(settings)
    return result, [f"{i.check.identifier}: {i.message}" for i in result.get_issues()]


def _graph(crate_dir):
    return {e["@id"]: e for e in load_json(crate_dir / "ro-crate-metadata.json")["@graph"]}


def test_one_checkpoint_is_a_valid_process_run_crate(ws, chain_run, tmp_path, seeded_cache):
    total = ws.store.list_checkpoints(chain_run)[-1]
    out = rocrate.write(rocrate.build(select_checkpoint(ws.store, total.id), ws.store.artifacts), tmp_path / "crate")
    result, issues = _validate(out, "process-run-crate", seeded_cache)
    assert result.passed(), issues

    graph = _graph(out)
    action = graph[f"#checkpoint/{total.id}"]
    assert action["@type"] == "CreateAction"
    assert graph[action["instrument"]["@id"]]["softwareVersion"] == total.doc["manifest"]["code"]["task_hash"]
    output = graph[action["result"]["@id"]]
    data = (out / output["@id"]).read_bytes()
    assert output["sha256"] == hashlib.sha256(data).hexdigest() == total.outputs[0].sha256
    assert output["contentSize"] == str(len(data)) and output["encodingFormat"] == "application/json"
    objects = [graph[o["@id"]] for o in action["object"]]
    values = {o["name"]: o.get("value") for o in objects if o["@type"] == "PropertyValue"}
    assert values["seed"] == total.doc["manifest"]["seed"] and values["scale"] == 2.0
    env = [graph[e["@id"]] for e in action["environment"]]
    assert {e["name"]: e["value"] for e in env}["fp"] == total.env_fp
    intent = graph[f"intent/{total.id}.json"]
    assert intent["about"]["@id"] == action["@id"]
    assert load_json(out / f"intent/{total.id}.json")["claims"][0]["key"] == "chain.total"
    assert hashlib.sha256((out / f"checkpoints/{total.id}.json").read_bytes()).hexdigest() == total.id


def test_a_run_is_a_valid_provenance_run_crate(ws, chain_run, tmp_path, seeded_cache):
    out = rocrate.write(rocrate.build(select(ws.store, chain_run), ws.store.artifacts, license="https://spdx.org/licenses/CC-BY-4.0"),
                        tmp_path / "crate")
    result, issues = _validate(out, "provenance-run-crate", seeded_cache)
    assert result.passed(), issues

    graph = _graph(out)
    organize = graph[f"#organize/{chain_run}"]
    assert organize["@type"] == "OrganizeAction" and organize["result"]["@id"] == f"#run/{chain_run}"
    controls = [graph[c["@id"]] for c in organize["object"]]
    assert len(controls) == 4 and all(c["@type"] == "ControlAction" for c in controls)
    workflow = graph[graph["./"]["mainEntity"]["@id"]]
    assert "ComputationalWorkflow" in workflow["@type"]
    assert graph["./"]["license"]["@id"] == "https://spdx.org/licenses/CC-BY-4.0"


def test_a_zip_crate(ws, chain_run, tmp_path):
    out = rocrate.write(rocrate.build(select(ws.store, chain_run)), tmp_path / "crate.zip")
    import zipfile

    names = zipfile.ZipFile(out).namelist()
    assert "ro-crate-metadata.json" in names and any(n.startswith("checkpoints/") for n in names)


@pytest.mark.parametrize("tamper", ["drop-instrument"])
def test_the_validator_catches_a_broken_crate(ws, chain_run, tmp_path, seeded_cache, tamper):
    import json

    total = ws.store.list_checkpoints(chain_run)[-1]
    out = rocrate.write(rocrate.build(select_checkpoint(ws.store, total.id), ws.store.artifacts), tmp_path / "crate")
    meta = out / "ro-crate-metadata.json"
    doc = json.loads(meta.read_text())
    for entity in doc["@graph"]:
        if entity["@id"] == f"#checkpoint/{total.id}":
            del entity["instrument"]
    meta.write_text(json.dumps(doc))
    result, issues = _validate(out, "process-run-crate", seeded_cache)
    assert not result.passed() and any("instrument" in i for i in issues)


def test_a_campaign_is_one_valid_provenance_run_crate(ws, chain_run, write_wf, tmp_path, seeded_cache):
    from headwater.export import select_campaign
    from headwater.runtime import RunOptions, run_workflow
    from tests.runtime.workflows import CHAIN

    second = run_workflow(ws, write_wf(CHAIN), {"scale": 3.0}, RunOptions(workers=0, seed=6, campaign="paper"))
    sel = select_campaign(ws.store, "paper")
    out = rocrate.write(rocrate.build(sel, ws.store.artifacts), tmp_path / "crate")
    result, issues = _validate(out, "provenance-run-crate", seeded_cache)
    assert result.passed(), issues
    graph = _graph(out)
    assert {f"#run/{chain_run}", f"#run/{second.run_id}"} <= set(graph)
    assert all(f"#checkpoint/{c.id}" in graph for c in sel.checkpoints) and len(sel.checkpoints) == 8
