"""OpenLineage RunEvents, validated against vendored OpenLineage JSON schemas with jsonschema.

Every event is checked against the core schema; every facet against the
core facet definition of its scope and, when its ``_schemaURL`` names a
schema held here (a vendored OpenLineage facet schema or one of headwater's
shipped custom facet schemas), against that exact schema. Which standard
facets cannot be checked against their own schema is spelled out in
:data:`UNVENDORED` and in ``tests/export/data/SOURCES.md``; the tests fail
when that list and reality drift apart in either direction. Those facets
are held instead to the fields of the classes openlineage-python generated
from the same release's schemas, and the vendored schemas are checked to
declare exactly those classes' fields, so a client upgrade without
re-vendoring fails here.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from functools import lru_cache
from importlib.metadata import version

import attr
import pytest
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource

from headwater.export import openlineage as ol
from headwater.export import select, select_checkpoint
from tests.export.conftest import DATA, load_json

SPEC = DATA / "openlineage"
CORE = load_json(SPEC / "OpenLineage-2-0-2.json")
VENDORED = {d["$id"]: d for d in map(load_json, sorted((SPEC / "facets").glob("*.json")))}
CUSTOM = {d["$id"]: d for d in map(load_json, sorted(ol.SCHEMAS.glob("*.json")))}
CORE_DEFS = {"run": "RunFacet", "job": "JobFacet", "dataset": "DatasetFacet"}

UNVENDORED = {
    "https://openlineage.io/spec/facets/1-0-0/ExecutionParametersRunFacet.json",
    "https://openlineage.io/spec/facets/1-1-1/ProcessingEngineRunFacet.json",
    "https://openlineage.io/spec/facets/1-0-1/JobDependenciesRunFacet.json",
    "https://openlineage.io/spec/facets/1-1-0/DocumentationJobFacet.json",
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json",
    "https://openlineage.io/spec/facets/1-0-0/TagsRunFacet.json",
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json",
}
"""Facet schemas openlineage-python 1.54.0 stamps that could not be vendored
at that version (see SOURCES.md). ``TagsRunFacet`` is added by the client
itself to every event it sends."""


def _registry() -> Registry:
    docs = [CORE, *VENDORED.values(), *CUSTOM.values()]
    return Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)


REGISTRY = _registry()
CLIENT_RELEASE = "1.54.0"
BASE_FIELDS = {"_producer", "_schemaURL", "_deleted"}


@lru_cache(maxsize=None)
def _client_classes() -> dict[str, type]:
    """Schema URL (without fragment) -> the openlineage-python class generated from it."""
    import openlineage.client.generated as generated

    out = {}
    for info in pkgutil.iter_modules(generated.__path__):
        module = importlib.import_module(f"{generated.__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and attr.has(obj) and "_get_schema" in vars(obj):
                url = obj._get_schema()
                if url.endswith("Facet"):
                    out[url.split("#", 1)[0]] = obj
    return out


def _fields(cls: type) -> tuple[set[str], set[str]]:
    """(every field, the required ones) of a generated facet class, base fields left out."""
    fields = [f for f in attr.fields(cls) if f.name not in BASE_FIELDS]
    return {f.name for f in fields}, {f.name for f in fields if f.default is attr.NOTHING}


def _check(schema_ref: str, instance: dict) -> None:
    Draft202012Validator({"$ref": schema_ref}, registry=REGISTRY,
                         format_checker=Draft202012Validator.FORMAT_CHECKER).validate(instance)


def _validate_event(event: dict, seen: set[str]) -> None:
    """Validate one event and its facets; add every facet schema it names to ``seen``."""
    assert event["schemaURL"].startswith(CORE["$id"] + "#")
    _check(event["schemaURL"], event)
    bags = [("run", event["run"].get("facets", {})), ("job", event["job"].get("facets", {}))]
    bags += [("dataset", d.get("facets", {})) for d in event.get("inputs", []) + event.get("outputs", [])]
    for scope, facets in bags:
        for name, facet in facets.items():
            _check(f"{CORE['$id']}#/$defs/{CORE_DEFS[scope]}", facet)
            url = facet["_schemaURL"]
            base = url.split("#", 1)[0]
            seen.add(base)
            if base in VENDORED or base in CUSTOM:
                _check(url, facet)
            else:
                assert base in UNVENDORED, f"facet {name}: no schema for {url}; vendor it (see SOURCES.md)"
                every, required = _fields(_client_classes()[base])
                keys = set(facet) - BASE_FIELDS
                assert required <= keys <= every, f"facet {name}: {sorted(keys)} against {url}"


def _events(sel):
    return [json.loads(ol.to_json(e)) for e in ol.events(sel)]


def test_run_events_validate_and_pair_up(ws, chain_run):
    sel = select(ws.store, chain_run)
    events = _events(sel)
    seen: set[str] = set()
    for event in events:
        _validate_event(event, seen)
    not_here = {"https://openlineage.io/spec/facets/1-0-0/TagsRunFacet.json",  # the client adds it when sending
                "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json"}  # FAIL events only
    assert seen == (set(VENDORED) | set(CUSTOM) | UNVENDORED) - not_here, "a vendored schema is stale"
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


def test_vendored_schemas_are_those_of_the_installed_client_release():
    assert version("openlineage-python") == CLIENT_RELEASE, "re-vendor the schemas for this release (SOURCES.md)"
    classes = _client_classes()
    for schema_id, schema in VENDORED.items():
        (name,) = schema["properties"]
        facet_def = schema["$defs"][schema["properties"][name]["$ref"].rsplit("/", 1)[-1]]
        own = facet_def["allOf"][1]
        every, required = _fields(classes[schema_id])
        assert set(own["properties"]) == every and set(own.get("required", [])) == required, schema_id
    assert UNVENDORED <= set(classes)
    from openlineage.client.generated import base

    for name in ("BaseEvent", "Run", "Job", "Dataset", "BaseFacet"):
        declared = set(CORE["$defs"][name].get("properties", {}))
        assert declared == {f.name for f in attr.fields(getattr(base, name))}, f"core {name}"


def test_vendored_facet_schemas_reject_a_broken_facet(ws, chain_run):
    events = _events(select(ws.store, chain_run))
    facets = next(e for e in events if "." in e["job"]["name"])["run"]["facets"]
    parent = facets["parent"]
    _check(parent["_schemaURL"], parent)
    with pytest.raises(ValidationError):
        _check(parent["_schemaURL"], {**parent, "run": {}})
    job_type = next(e for e in events if "." in e["job"]["name"])["job"]["facets"]["jobType"]
    with pytest.raises(ValidationError):
        _check(job_type["_schemaURL"], {k: v for k, v in job_type.items() if k != "processingType"})


def test_custom_facet_schemas_are_shipped_and_reject_a_bad_facet():
    assert set(ol.custom_facets()) == {"headwater_environment", "headwater_claims", "headwater_specDiff",
                                       "headwater_checkpoint"}
    for key in ol.custom_facets():
        url = ol.schema_url(key)
        path = ol.schema_path(url)
        assert path.parent == ol.SCHEMAS and json.loads(path.read_text())["$id"] == url.split("#")[0]
        Draft202012Validator.check_schema(json.loads(path.read_text()))
        assert key.startswith("headwater_")
    url = ol.schema_url("headwater_specDiff")
    good = {"_producer": ol.producer(), "_schemaURL": url, "changed": ["params.alpha"], "why": "faster"}
    _check(url, good)
    with pytest.raises(ValidationError):
        _check(url, {**good, "changed": "params.alpha"})
    with pytest.raises(ValidationError):
        _check(url, {"_producer": ol.producer(), "_schemaURL": url})
    with pytest.raises(KeyError):
        ol.schema_path("urn:headwater:openlineage:facet:Nothing:1-0-0")


FAILS = """
from headwater import Workflow

wf = Workflow("fails")

@wf.task()
def broken(ctx):
    raise ValueError("bad input")
"""


def test_a_failed_task_ends_with_fail_and_its_error(ws, write_wf):
    from headwater.runtime import RunOptions, run_workflow

    summary = run_workflow(ws, write_wf(FAILS), {}, RunOptions(workers=0))
    events = _events(select(ws.store, summary.run_id))
    seen: set[str] = set()
    for event in events:
        _validate_event(event, seen)
    assert [e["eventType"] for e in events] == ["START", "START", "FAIL", "FAIL"]
    error = events[2]["run"]["facets"]["errorMessage"]
    assert "bad input" in error["message"] and error["programmingLanguage"] == "python"
    assert events[2]["outputs"] == []


def test_events_are_deterministic_and_emitted_through_a_file_transport(ws, chain_run, tmp_path):
    sel = select_checkpoint(ws.store, ws.store.list_checkpoints(chain_run)[1].id)
    assert _events(sel) == _events(sel)
    path = tmp_path / "events.jsonl"
    assert ol.emit(ol.events(sel), ol.file_client(path)) == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["eventType"] for e in lines] == ["START", "COMPLETE"]
    seen: set[str] = set()
    for event in lines:
        _validate_event(event, seen)
    assert "https://openlineage.io/spec/facets/1-0-0/TagsRunFacet.json" in seen  # the client's own tags facet
