"""OpenLineage RunEvents, validated against vendored OpenLineage JSON schemas with jsonschema."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from headwater.export import openlineage as ol
from headwater.export import select, select_checkpoint
from tests.export.conftest import DATA, load_json

SPEC = DATA / "openlineage"
CORE = load_json(SPEC / "OpenLineage-2-0-2.json")
FACETS = {p.name.split("-")[0]: load_json(p) for p in (SPEC / "facets").glob("*.json")}
CORE_DEFS = {"run": "RunFacet", "job": "JobFacet", "dataset": "DatasetFacet"}


def _registry() -> Registry:
    docs = [CORE, *FACETS.values(), *ol.facet_schemas().values()]
    return Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)


def _check(schema_ref: str, instance: dict, registry: Registry) -> None:
    Draft202012Validator({"$ref": schema_ref}, registry=registry).validate(instance)


def _validate_event(event: dict, registry: Registry) -> None:
    _check(event["schemaURL"], event, registry)
    bags = [("run", event["run"].get("facets", {})), ("job", event["job"].get("facets", {}))]
    bags += [("dataset", d.get("facets", {})) for d in event.get("inputs", []) + event.get("outputs", [])]
    for scope, facets in bags:
        for name, facet in facets.items():
            _check(f"{CORE['$id']}#/$defs/{CORE_DEFS[scope]}", facet, registry)
            url = facet["_schemaURL"]
            facet_class = url.rsplit("/", 1)[-1]
            if url.startswith("urn:headwater:"):
                _check(url, facet, registry)
            elif facet_class in FACETS:
                vendored = FACETS[facet_class]
                _check(f"{vendored['$id']}#/$defs/{facet_class}", facet, registry)


def _events(sel):
    return [json.loads(ol.to_json(e)) for e in ol.events(sel)]


def test_run_events_validate_and_pair_up(ws, chain_run):
    sel = select(ws.store, chain_run)
    events = _events(sel)
    registry = _registry()
    for event in events:
        _validate_event(event, registry)
    tasks = [e for e in events if "." in e["job"]["name"]]
    assert [e["eventType"] for e in tasks] == ["START", "COMPLETE"] * 4
    assert events[0]["job"]["name"] == "chain" and events[0]["eventType"] == "START"
    assert events[-1]["job"]["name"] == "chain" and events[-1]["eventType"] == "COMPLETE"
    start = tasks[-2]
    facets = start["run"]["facets"]
    total = sel.checkpoints[-1]
    assert facets["parent"]["run"]["runId"] == events[0]["run"]["runId"]
    assert facets["headwater_checkpoint"]["id"] == total.id
    assert facets["headwater_environment"]["fingerprint"] == total.env_fp
    assert facets["headwater_claims"]["claims"][0]["key"] == "chain.total"
    assert facets["headwater_specDiff"]["changed"] == []
    params = {p["key"]: p["value"] for p in facets["executionParameters"]["parameters"]}
    assert params["seed"] == str(total.doc["manifest"]["seed"])
    upstream = facets["jobDependencies"]["upstream"]
    assert [u["run"]["runId"] for u in upstream] == [ol.run_uuid("checkpoint", p) for p in total.parents]
    assert "sourceCodeLocation" in start["job"]["facets"] and "documentation" in tasks[0]["job"]["facets"]
    out = tasks[-1]["outputs"][0]
    assert out["facets"]["version"]["datasetVersion"] == total.outputs[0].sha256


def test_custom_facet_schemas_reject_a_bad_facet():
    registry = _registry()
    url = ol.schema_url("headwater_specDiff")
    good = {"_producer": ol.producer(), "_schemaURL": url, "changed": ["params.alpha"], "why": "faster"}
    _check(url, good, registry)
    with pytest.raises(Exception):
        _check(url, {**good, "changed": "params.alpha"}, registry)
    with pytest.raises(Exception):
        _check(url, {"_producer": ol.producer(), "_schemaURL": url}, registry)


def test_events_are_deterministic_and_emitted_through_a_file_transport(ws, chain_run, tmp_path):
    sel = select_checkpoint(ws.store, ws.store.list_checkpoints(chain_run)[1].id)
    assert _events(sel) == _events(sel)
    path = tmp_path / "events.jsonl"
    assert ol.emit(ol.events(sel), ol.file_client(path)) == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["eventType"] for e in lines] == ["START", "COMPLETE"]
    registry = _registry()
    for event in lines:
        _validate_event(event, registry)
