"""Workflow Run RO-Crates, written with the ``rocrate`` library.

One checkpoint becomes a Process Run Crate; a run, a campaign or any set of
checkpoints becomes a Provenance Run Crate (which is also a Workflow Run
Crate and a Process Run Crate). Both target the 0.5 profiles on RO-Crate
1.1, the versions ``roc-validator`` checks today. Mapping:

* **run manifest**: a ``CreateAction`` per checkpoint (``#checkpoint/<id>``)
  whose ``instrument`` is the task at its code version (a
  ``SoftwareApplication`` ``#tool/<workflow>/<task>/<hash>``), whose
  ``object`` is the input files plus the params and seed as
  ``PropertyValue`` s, whose ``result`` is the output files (each with
  ``sha256``, ``contentSize``, ``encodingFormat``), with start and end
  times, status, and the upstream checkpoints it was built on;
* **environment fingerprint**: the action's ``environment``, one
  ``PropertyValue`` per field of the bundle's env part;
* **claim/intent summary**: a JSON file ``intent/<id>.json`` ``about`` the
  action; every claim is also a ``PropertyValue`` of the file;
* **spec diff**: the action's ``description`` and ``PropertyValue`` s in
  its ``object`` (``spec_diff.changed``, ``spec_diff.against``);
* **artifact index**: every artifact is a ``File`` under ``data/`` with its
  digest, size and media type; the signed bundle itself is
  ``checkpoints/<id>.json`` (its sha256 is the checkpoint id).

For a multi-stage export each run also gets the workflow (its recorded
spec, as a ``ComputationalWorkflow`` with a ``HowToStep`` per task), a
``CreateAction`` for the workflow run, an ``OrganizeAction`` for headwater
as the engine and a ``ControlAction`` per task run.
"""

from __future__ import annotations

import io
import json
import mimetypes
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from headwater.checkpoint.canonical import canonical_json
from headwater.export._deps import need
from headwater.export.source import Selection
from headwater.store import ArtifactStore, CheckpointRecord, RunRecord

FEATURE = "export to RO-Crate"
RO_CRATE_VERSION = "1.1"
WFRUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
PROCESS = "https://w3id.org/ro/wfrun/process/0.5"
WORKFLOW = "https://w3id.org/ro/wfrun/workflow/0.5"
PROVENANCE = "https://w3id.org/ro/wfrun/provenance/0.5"
WORKFLOW_RO_CRATE = "https://w3id.org/workflowhub/workflow-ro-crate/1.0"
_TYPES = {"int": "Integer", "float": "Float", "bool": "Boolean", "str": "Text", "path": "File"}
_STATUS = {"failed": "FailedActionStatus", "squashed": "FailedActionStatus"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")


def _time(stamp: str) -> str:
    """A bundle time (``...Z``) in the ``+00:00`` form the run-crate profiles expect."""
    return stamp[:-1] + "+00:00" if stamp.endswith("Z") else stamp


def _value(v: Any) -> Any:
    if isinstance(v, (str, bool, int, float)):
        return v
    return canonical_json(v).decode("utf-8")


def _ref(entity: Any) -> dict:
    return {"@id": entity.id if hasattr(entity, "id") else entity}


def _refs(entities: list) -> Any:
    """References to entities: one value for one entity, as RO-Crate 1.1 recommends, else a list."""
    refs = [_ref(e) for e in entities]
    return refs[0] if len(refs) == 1 else refs


class _Builder:
    def __init__(self, sel: Selection, artifacts: ArtifactStore | None, name: str | None,
                 license: str | None) -> None:
        self.sel = sel
        self.artifacts = artifacts
        rocrate = need("rocrate.rocrate", FEATURE)
        self.contextentity = need("rocrate.model.contextentity", FEATURE)
        self.crate = rocrate.ROCrate(version=RO_CRATE_VERSION)
        self.crate.metadata.extra_contexts.append(WFRUN_CONTEXT)
        self.multi = sel.kind != "checkpoint"
        self.name = name
        self.license = license
        self.files: dict[str, Any] = {}
        self.params: dict[str, Any] = {}
        self.tools: dict[str, Any] = {}
        self.steps: dict[str, Any] = {}
        self.workflows: dict[str, Any] = {}
        self.actions: dict[str, Any] = {}
        self.engine = None

    # ------------------------------------------------------------ entities

    def entity(self, ident: str, props: dict) -> Any:
        found = self.crate.get(ident)
        if found is not None:
            return found
        return self.crate.add(self.contextentity.ContextEntity(self.crate, ident, properties=props))

    def headwater(self) -> Any:
        if self.engine is None:
            from headwater import __version__

            self.engine = self.entity("#headwater", {
                "@type": "SoftwareApplication", "name": "headwater", "softwareVersion": __version__,
                "description": "Provenance, speculative verification and fleet oversight for scientific workflows"})
        return self.engine

    def artifact(self, sha: str, name: str, media_type: str, size: int, uri: str) -> Any:
        if sha in self.files:
            return self.files[sha]
        ext = mimetypes.guess_extension(media_type or "") or ""
        base = name.replace("/", "-")
        props = {"name": name, "sha256": sha, "contentSize": str(size),
                 "encodingFormat": media_type or "application/octet-stream"}
        if self.artifacts is not None and self.artifacts.exists(sha):
            data = self.artifacts.get_bytes(sha)
            path = f"data/{sha[:12]}-{base}{'' if base.endswith(ext) else ext}"
            entity = self.crate.add_file(io.BytesIO(data), dest_path=path, properties=props)
        else:
            entity = self.crate.add_file(uri, properties=props)
        self.files[sha] = entity
        return entity

    def json_file(self, path: str, value: Any, props: dict) -> Any:
        data = canonical_json(value)
        import hashlib

        props = {"encodingFormat": "application/json", "contentSize": str(len(data)),
                 "sha256": hashlib.sha256(data).hexdigest(), **props}
        return self.crate.add_file(io.BytesIO(data), dest_path=path, properties=props)

    def formal(self, ident: str, name: str, kind: str, description: str | None = None) -> Any:
        if ident not in self.params:
            props = {"@type": "FormalParameter", "name": name, "additionalType": kind,
                     "conformsTo": {"@id": "https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"}}
            if description:
                props["description"] = description
            self.params[ident] = self.entity(ident, props)
        return self.params[ident]

    def property_value(self, ident: str, name: str, value: Any, formal: Any | None = None) -> Any:
        props: dict[str, Any] = {"@type": "PropertyValue", "name": name, "value": _value(value)}
        if formal is not None:
            props["exampleOfWork"] = _ref(formal)
        return self.entity(ident, props)

    def param_kinds(self, run: RunRecord) -> dict[str, str]:
        spec = self.sel.spec_of(run) or {}
        return {k: _TYPES.get((p or {}).get("type", ""), "Text") for k, p in (spec.get("params") or {}).items()}

    def tool(self, ck: CheckpointRecord) -> Any:
        b = ck.doc
        code = b["manifest"]["code"]
        ident = f"#tool/{b['workflow']}/{b['task']}/{code['task_hash'][:12]}"
        if ident not in self.tools:
            props: dict[str, Any] = {"@type": "SoftwareApplication", "name": b["task"],
                                     "softwareVersion": code["task_hash"],
                                     "description": f"task {b['task']} of workflow {b['workflow']}"}
            if code.get("commit"):
                props["version"] = code["commit"]
            tool = self.entity(ident, props)
            kinds = self.param_kinds(self.sel.run_of(ck))
            inputs = [self.formal(f"#param/{b['workflow']}/{k}", k, kinds.get(k, "Text"))
                      for k in sorted(b["manifest"]["params"])]
            inputs.append(self.formal(f"#param/{b['workflow']}/seed", "seed", "Integer", "the task's seed"))
            inputs += [self.formal(f"#param/{b['workflow']}/{b['task']}/in/{ref}", ref, "File")
                       for ref in sorted(b["manifest"]["inputs"])]
            tool["input"] = _refs(inputs)
            outputs = [self.formal(f"#param/{b['workflow']}/{b['task']}/out/{a['name']}", a["name"], "File")
                       for a in b["artifacts"]]
            if outputs:
                tool["output"] = _refs(outputs)
            self.tools[ident] = tool
        return self.tools[ident]

    # ------------------------------------------------------------- actions

    def task_action(self, ck: CheckpointRecord) -> Any:
        b = ck.doc
        m = b["manifest"]
        wf = b["workflow"]
        short = ck.id[:12]
        tool = self.tool(ck)
        by_sha = {i.sha256: i for i in ck.inputs}
        objects: list[Any] = []
        for ref, sha in sorted(m["inputs"].items()):
            rec = by_sha.get(sha)
            f = self.artifact(sha, ref, rec.media_type if rec else "", rec.size if rec else 0, rec.uri if rec else "")
            f["exampleOfWork"] = _ref(self.formal(f"#param/{wf}/{b['task']}/in/{ref}", ref, "File"))
            objects.append(f)
        kinds = self.param_kinds(self.sel.run_of(ck))
        for k, v in sorted(m["params"].items()):
            objects.append(self.property_value(f"#pv/{short}/params.{k}", k, v,
                                               self.formal(f"#param/{wf}/{k}", k, kinds.get(k, "Text"))))
        objects.append(self.property_value(f"#pv/{short}/seed", "seed", m["seed"],
                                           self.formal(f"#param/{wf}/seed", "seed", "Integer")))
        sd = b["spec_diff"]
        objects.append(self.property_value(f"#pv/{short}/spec_diff.changed", "spec_diff.changed",
                                           ", ".join(sd["changed"]) or "nothing"))
        if sd.get("against"):
            objects.append(self.property_value(f"#pv/{short}/spec_diff.against", "spec_diff.against", sd["against"]))
        results = []
        if ck.status != "failed":
            for a in b["artifacts"]:
                f = self.artifact(a["sha256"], f"{b['task']}/{a['name']}", a.get("media_type", ""),
                                  a.get("size", 0), a.get("uri", ""))
                f["exampleOfWork"] = _ref(self.formal(f"#param/{wf}/{b['task']}/out/{a['name']}", a["name"], "File"))
                results.append(f)
        env = [self.property_value(f"#env/{b['env']['fp'][:12]}/{k}", k, v) for k, v in sorted(b["env"].items())]
        why = f" Why: {sd['why']}" if sd.get("why") else ""
        changed = ", ".join(sd["changed"]) or "nothing"
        props: dict[str, Any] = {
            "@type": "CreateAction", "name": f"{wf}/{b['task']} attempt {b['attempt']} ({ck.status})",
            "description": f"Checkpoint {ck.id}. Spec diff against "
                           f"{sd.get('against') or 'no baseline'}: changed {changed}.{why}",
            "startTime": _time(b["time"]["start"]), "endTime": _time(b["time"]["end"]),
            "actionStatus": f"http://schema.org/{_STATUS.get(ck.status, 'CompletedActionStatus')}",
            "identifier": ck.id,
        }
        if "error" in b:
            props["error"] = b["error"]
        action = self.entity(f"#checkpoint/{ck.id}", props)
        action["instrument"] = _ref(tool)
        action["object"] = _refs(objects)
        if results:
            action["result"] = _refs(results)
        action["environment"] = _refs(env)
        action["agent"] = _ref(self.headwater())
        self.actions[ck.id] = action

        bundle = self.json_file(f"checkpoints/{ck.id}.json", b, {
            "name": f"checkpoint bundle {short}", "about": _ref(action),
            "description": "The signed provenance bundle, byte for byte as stored; its sha256 is the checkpoint id.",
            "identifier": ck.id})
        bundle["sha256"] = ck.id
        claims = [self.property_value(f"#claim/{short}/{c['key']}", c["key"], c["value"])
                  for c in b["intent"].get("claims", [])]
        intent = self.json_file(f"intent/{ck.id}.json", b["intent"], {
            "name": f"claim/intent summary of {wf}/{b['task']}", "about": _ref(action),
            "description": "; ".join(x for x in (b["intent"].get("goal"), b["intent"].get("concludes")) if x)
                           or "claim and intent summary"})
        if claims:
            intent["variableMeasured"] = _refs(claims)
        return action

    def workflow(self, run: RunRecord) -> Any:
        key = f"{run.workflow}/{run.spec_hash}"
        if key in self.workflows:
            return self.workflows[key]
        spec = self.sel.spec_of(run) or {"name": run.workflow}
        lang = self.entity("#headwater-spec", {
            "@type": "ComputerLanguage", "name": "headwater workflow spec",
            "identifier": {"@id": "urn:headwater:spec:format:1"}})
        wf = self.json_file(f"workflows/{run.workflow}-{run.spec_hash[:12]}.json", spec, {
            "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
            "name": run.workflow, "description": spec.get("description") or f"workflow {run.workflow}",
            "identifier": run.spec_hash, "version": run.spec_hash[:12]})
        wf["programmingLanguage"] = _ref(lang)
        kinds = self.param_kinds(run)
        params = [self.formal(f"#param/{run.workflow}/{k}", k, kinds.get(k, "Text"),
                              ((spec.get("params") or {}).get(k) or {}).get("help") or None)
                  for k in sorted(run.params)]
        params.append(self.formal(f"#param/{run.workflow}/seed", "seed", "Integer", "the run seed"))
        wf["input"] = _refs(params)
        self.workflows[key] = wf
        return wf

    def run_actions(self, run: RunRecord, checkpoints: list[CheckpointRecord]) -> Any:
        wf = self.workflow(run)
        steps = []
        for position, task in enumerate(dict.fromkeys(ck.task for ck in checkpoints)):
            ck = next(c for c in checkpoints if c.task == task)
            ident = f"#step/{run.workflow}-{run.spec_hash[:12]}/{task}"
            step = self.entity(ident, {"@type": "HowToStep", "name": task, "position": str(position)})
            step["workExample"] = _ref(self.tool(ck))
            self.steps[(run.id, task)] = step
            steps.append(step)
        known = {s.id: s for s in _as_list(wf.get("step"))}
        known.update({s.id: s for s in steps})
        wf["step"] = _refs([known[k] for k in sorted(known)])
        parts = {t.id: t for t in _as_list(wf.get("hasPart"))}
        parts.update({self.tool(ck).id: self.tool(ck) for ck in checkpoints})
        wf["hasPart"] = _refs([parts[k] for k in sorted(parts)])
        kinds = self.param_kinds(run)
        objects = [self.property_value(f"#pv/{run.id}/params.{k}", k, v,
                                       self.formal(f"#param/{run.workflow}/{k}", k, kinds.get(k, "Text")))
                   for k, v in sorted(run.params.items())]
        objects.append(self.property_value(f"#pv/{run.id}/seed", "seed", run.seed,
                                           self.formal(f"#param/{run.workflow}/seed", "seed", "Integer")))
        end = max(_time(ck.doc["time"]["end"]) for ck in checkpoints)
        props: dict[str, Any] = {"@type": "CreateAction", "name": f"run {run.id} of {run.workflow}",
                                 "startTime": _iso(run.created_at), "endTime": _iso(run.finished_at)
                                 if run.finished_at else end, "identifier": run.id}
        status = {"succeeded": "CompletedActionStatus", "failed": "FailedActionStatus",
                  "interrupted": "FailedActionStatus"}.get(run.status)
        if status:
            props["actionStatus"] = f"http://schema.org/{status}"
        if run.why:
            props["description"] = run.why
        action = self.entity(f"#run/{run.id}", props)
        action["instrument"] = _ref(wf)
        action["object"] = _refs(objects)
        results = {r.id: r for ck in checkpoints for r in _as_list(self.actions[ck.id].get("result"))}
        if results:
            action["result"] = _refs(list(results.values()))
        action["agent"] = _ref(self.headwater())
        controls = []
        for ck in checkpoints:
            control = self.entity(f"#control/{ck.id}", {"@type": "ControlAction",
                                                        "name": f"orchestrate {ck.task} attempt {ck.attempt}"})
            control["instrument"] = _ref(self.steps[(run.id, ck.task)])
            control["object"] = _ref(self.actions[ck.id])
            controls.append(control)
        organize = self.entity(f"#organize/{run.id}", {
            "@type": "OrganizeAction", "name": f"headwater orchestration of run {run.id}",
            "startTime": props["startTime"], "endTime": props["endTime"]})
        organize["instrument"] = _ref(self.headwater())
        organize["object"] = _refs(controls)
        organize["result"] = _ref(action)
        return action

    def build(self) -> Any:
        sel = self.sel
        for ck in sel.checkpoints:
            self.task_action(ck)
            b = ck.doc
            upstream = [p for p in b["parents"] if p in self.actions]
            if upstream:
                self.actions[ck.id]["isBasedOn"] = _refs([self.actions[p] for p in upstream])
        root = self.crate.root_dataset
        mentions: list[Any] = []
        main = None
        if self.multi:
            for run_id, checkpoints in sel.by_run().items():
                run = sel.runs[run_id]
                mentions.append(self.run_actions(run, checkpoints))
                mentions.extend(self.actions[ck.id] for ck in checkpoints)
                main = main or self.workflow(run)
            root["conformsTo"] = [{"@id": p} for p in (PROCESS, WORKFLOW, PROVENANCE, WORKFLOW_RO_CRATE)]
            root["mainEntity"] = _ref(main)
            for ident, profile_name in ((PROCESS, "Process Run Crate"), (WORKFLOW, "Workflow Run Crate"),
                                        (PROVENANCE, "Provenance Run Crate"), (WORKFLOW_RO_CRATE, "Workflow RO-Crate")):
                self.entity(ident, {"@type": "CreativeWork", "name": profile_name,
                                    "version": ident.rsplit("/", 1)[1]})
        else:
            mentions.extend(self.actions[ck.id] for ck in sel.checkpoints)
            root["conformsTo"] = {"@id": PROCESS}
            self.entity(PROCESS, {"@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"})
        root["mentions"] = _refs(mentions)
        root["name"] = self.name or f"headwater export: {sel.title}"
        root["description"] = (f"Provenance of {len(sel.checkpoints)} checkpoint(s) recorded by headwater "
                               f"({sel.title}).")
        root["datePublished"] = max(_time(ck.doc["time"]["end"]) for ck in sel.checkpoints)
        if self.license and "://" in self.license:
            root["license"] = _ref(self.entity(self.license, {"@type": "CreativeWork", "name": self.license}))
        elif self.license:
            root["license"] = self.license
        else:
            root["license"] = _ref(self.entity("#license", {
                "@type": "CreativeWork", "name": "license not stated",
                "description": "The exporter stated no license for this crate; ask its authors before reuse."}))
        return self.crate


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def build(sel: Selection, artifacts: ArtifactStore | None = None, *, name: str | None = None,
          license: str | None = None) -> Any:
    """The ``rocrate.rocrate.ROCrate`` of a selection.

    With ``artifacts`` the artifacts' bytes are copied into the crate under
    ``data/``; without it (or for an artifact the store no longer has) the
    ``File`` entity points at the artifact's URI instead.
    """
    return _Builder(sel, artifacts, name, license).build()


def write(crate: Any, path: str | Path) -> Path:
    """Write a crate to a directory, or to a zip file when ``path`` ends in ``.zip``."""
    path = Path(path)
    if path.suffix == ".zip":
        crate.write_zip(str(path))
    else:
        crate.write(str(path))
    return path


def metadata(crate: Any) -> dict:
    """The crate's ``ro-crate-metadata.json`` document."""
    return json.loads(json.dumps(crate.metadata.generate()))
