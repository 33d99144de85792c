"""OpenLineage RunEvents: START and COMPLETE, FAIL or ABORT per task run.

Events are built and emitted with ``openlineage-python``. Each checkpoint is
one OpenLineage run of the job ``<workflow>.<task>``; each workflow run is
one run of the job ``<workflow>``, the parent of its task runs. Run ids are
UUIDs derived from the checkpoint or run id (UUID 5 of its ``urn:headwater:``
name), so exporting twice gives the same events.

Standard facets:

================================  =========================================
run ``parent``                    the workflow run that scheduled the task
run ``processing_engine``         headwater and openlineage-python versions
run ``executionParameters``       params, seed, attempt, branch
run ``jobDependencies``           the upstream checkpoints' task runs
run ``errorMessage``              the error of a failed task (FAIL only)
job ``sourceCodeLocation``        workflow file, commit or task code hash
job ``documentation``             the task's goal and what it concludes
job ``jobType``                   BATCH / HEADWATER / TASK or DAG
dataset ``version``               the artifact's sha256
================================  =========================================

Custom facets, each prefixed ``headwater_`` and described by its own JSON
Schema shipped in ``headwater/export/schemas/`` (:data:`SCHEMAS`):
``headwater_environment`` (the environment fingerprint),
``headwater_claims`` (the claim/intent summary), ``headwater_specDiff``
(the spec diff) and ``headwater_checkpoint`` (the checkpoint id, status,
chain links and signature). Their fields and schema URLs come from those
files, so the schema a consumer validates against is the one the events
were built from.

Inputs and outputs are datasets in the export namespace named
``<workflow>/<task>/<output>``; the ``version`` facet pins the content.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from headwater.export._deps import need
from headwater.export.source import Selection, urn
from headwater.store import CheckpointRecord, RunRecord

FEATURE = "export to OpenLineage"
DEFAULT_NAMESPACE = "headwater"

SCHEMAS = Path(__file__).parent / "schemas"
"""The JSON Schemas (2020-12) of the custom facets, shipped with the package.

Each file is ``<FacetClass>-<version>.json`` and is laid out like
OpenLineage's own facet schemas: ``$defs`` holds the facet class (an
``allOf`` of the core ``RunFacet`` and the facet's fields) and the
top-level ``properties`` name the facet key. A facet's ``_schemaURL`` is the
file's ``$id`` plus the ``$defs`` pointer, so :func:`schema_path` finds the
file from what an event carries.
"""


@lru_cache(maxsize=None)
def _custom_index() -> dict[str, tuple[str, dict, Path]]:
    """facet key -> (facet class, schema, file), read once from :data:`SCHEMAS`."""
    out: dict[str, tuple[str, dict, Path]] = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text())
        (cls,) = schema["$defs"]
        (key,) = schema["properties"]
        out[key] = (cls, schema, path)
    return out


def custom_facets() -> list[str]:
    """The keys of the ``headwater_`` facets, in file order."""
    return list(_custom_index())


def schema_url(facet: str) -> str:
    """The ``_schemaURL`` of a custom facet: its schema's ``$id`` and ``$defs`` pointer."""
    cls, schema, _ = _custom_index()[facet]
    return f"{schema['$id']}#/$defs/{cls}"


def schema_path(url: str) -> Path:
    """The shipped schema file a custom facet's ``_schemaURL`` names."""
    base = url.split("#", 1)[0]
    for _, schema, path in _custom_index().values():
        if schema["$id"] == base:
            return path
    raise KeyError(f"{url!r} names no headwater facet schema; the known ones are in {SCHEMAS}")


def facet_schemas() -> dict[str, dict]:
    """The JSON Schema (2020-12) of every custom facet, by facet key (copies: change them freely)."""
    return {key: copy.deepcopy(schema) for key, (_, schema, _) in _custom_index().items()}


def _fields(schema: dict) -> list[str]:
    cls = next(iter(schema["$defs"]))
    return list(schema["$defs"][cls]["allOf"][1]["properties"])


@lru_cache(maxsize=None)
def _custom_classes() -> dict[str, type]:
    attr = need("attr", FEATURE)
    base = need("openlineage.client.generated.base", FEATURE)
    classes: dict[str, type] = {}
    for name, (class_name, schema, _) in _custom_index().items():
        url = schema_url(name)
        fields = {p: attr.field(default=None, kw_only=True) for p in _fields(schema)}
        cls = attr.make_class(class_name, fields, bases=(base.RunFacet,))
        cls._get_schema = staticmethod(lambda url=url: url)
        classes[name] = cls
    return classes


def producer() -> str:
    """The ``producer`` URI stamped on events and facets."""
    from headwater import __version__

    return urn("producer", __version__)


def run_uuid(kind: str, ident: str) -> str:
    """A stable OpenLineage run id for a headwater run or checkpoint."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, urn(kind, ident)))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class _Builder:
    def __init__(self, sel: Selection, namespace: str) -> None:
        self.sel = sel
        self.ns = namespace
        self.ev = need("openlineage.client.event_v2", FEATURE)
        gen = "openlineage.client.generated."
        self.parent = need(gen + "parent_run", FEATURE)
        self.engine = need(gen + "processing_engine_run", FEATURE)
        self.params = need(gen + "execution_parameters_run", FEATURE)
        self.deps = need(gen + "job_dependencies_run", FEATURE)
        self.error = need(gen + "error_message_run", FEATURE)
        self.source = need(gen + "source_code_location_job", FEATURE)
        self.docs = need(gen + "documentation_job", FEATURE)
        self.jobtype = need(gen + "job_type_job", FEATURE)
        self.version = need(gen + "dataset_version_dataset", FEATURE)
        self.custom = _custom_classes()
        self.producer = producer()
        client_version = need("openlineage.client", FEATURE)
        self.ol_version = getattr(client_version, "__version__", None) or _dist_version("openlineage-python")

    def _engine(self) -> Any:
        from headwater import __version__

        return self.engine.ProcessingEngineRunFacet(
            version=__version__, name="headwater", openlineageAdapterVersion=self.ol_version,
            producer=self.producer)

    def _source(self, run: RunRecord, version: str, commit: str | None) -> Any | None:
        if not run.source:
            return None
        path = Path(run.source)
        url = path.as_uri() if path.is_absolute() else f"file:{run.source}"
        return self.source.SourceCodeLocationJobFacet(
            type="git" if commit else "file", url=url, path=run.source, version=commit or version,
            producer=self.producer)

    def _custom(self, name: str, **fields: Any) -> Any:
        return self.custom[name](**{k: v for k, v in fields.items() if v is not None}, producer=self.producer)

    def _dataset(self, cls: Any, name: str, sha: str) -> Any:
        return cls(namespace=self.ns, name=name, facets={
            "version": self.version.DatasetVersionDatasetFacet(datasetVersion=sha, producer=self.producer)})

    def run_events(self, run: RunRecord) -> tuple[Any, Any | None]:
        """START and (when the run has ended) the terminal event of a workflow run."""
        spec = self.sel.spec_of(run) or {}
        job_facets: dict[str, Any] = {
            "jobType": self.jobtype.JobTypeJobFacet(processingType="BATCH", integration="HEADWATER",
                                                    jobType="DAG", producer=self.producer)}
        if spec.get("description"):
            job_facets["documentation"] = self.docs.DocumentationJobFacet(
                description=spec["description"], producer=self.producer)
        source = self._source(run, run.spec_hash, None)
        if source is not None:
            job_facets["sourceCodeLocation"] = source
        job = self.ev.Job(namespace=self.ns, name=run.workflow, facets=job_facets)
        params = [self.params.ExecutionParameter(key=f"params.{k}", value=str(v)) for k, v in sorted(run.params.items())]
        params.append(self.params.ExecutionParameter(key="seed", value=str(run.seed)))
        facets = {"processing_engine": self._engine(),
                  "executionParameters": self.params.ExecutionParametersRunFacet(parameters=params, producer=self.producer)}
        rid = run_uuid("run", run.id)
        start = self.ev.RunEvent(eventType=self.ev.RunState.START, eventTime=_iso(run.created_at),
                                 run=self.ev.Run(runId=rid, facets=facets), job=job, producer=self.producer)
        states = {"succeeded": "COMPLETE", "failed": "FAIL", "interrupted": "ABORT"}
        if run.status not in states or run.finished_at is None:
            return start, None
        end = self.ev.RunEvent(eventType=getattr(self.ev.RunState, states[run.status]),
                               eventTime=_iso(run.finished_at), run=self.ev.Run(runId=rid),
                               job=self.ev.Job(namespace=self.ns, name=run.workflow), producer=self.producer)
        return start, end

    def task_events(self, ck: CheckpointRecord) -> tuple[Any, Any]:
        """START and COMPLETE / FAIL / ABORT of the task run one checkpoint records."""
        b = ck.doc
        m = b["manifest"]
        run = self.sel.run_of(ck)
        intent = b["intent"]
        job_facets: dict[str, Any] = {
            "jobType": self.jobtype.JobTypeJobFacet(processingType="BATCH", integration="HEADWATER",
                                                    jobType="TASK", producer=self.producer)}
        description = "; concludes: ".join(x for x in (intent.get("goal"), intent.get("concludes")) if x)
        if description:
            job_facets["documentation"] = self.docs.DocumentationJobFacet(description=description,
                                                                          producer=self.producer)
        source = self._source(run, m["code"]["task_hash"], m["code"].get("commit"))
        if source is not None:
            job_facets["sourceCodeLocation"] = source
        job_name = f"{b['workflow']}.{b['task']}"
        job = self.ev.Job(namespace=self.ns, name=job_name, facets=job_facets)

        parameters = [self.params.ExecutionParameter(key=f"params.{k}", value=str(v))
                      for k, v in sorted(m["params"].items())]
        parameters += [self.params.ExecutionParameter(key="seed", value=str(m["seed"])),
                       self.params.ExecutionParameter(key="attempt", value=str(b["attempt"]))]
        if "branch" in m:
            parameters.append(self.params.ExecutionParameter(key="branch", value=str(m["branch"])))
        upstream = []
        for parent in b["parents"]:
            ref = self.sel.refs.get(parent)
            if ref is None:
                continue
            upstream.append(self.deps.JobDependency(
                job=self.deps.JobIdentifier(namespace=self.ns, name=f"{ref.workflow}.{ref.task}"),
                run=self.deps.RunIdentifier(runId=run_uuid("checkpoint", parent)),
                sequence_trigger_rule="FINISH_TO_START", status_trigger_rule="EXECUTE_ON_SUCCESS"))
        env = b["env"]
        facets: dict[str, Any] = {
            "parent": self.parent.ParentRunFacet(
                run=self.parent.Run(runId=run_uuid("run", b["run"])),
                job=self.parent.Job(namespace=self.ns, name=b["workflow"]), producer=self.producer),
            "processing_engine": self._engine(),
            "executionParameters": self.params.ExecutionParametersRunFacet(parameters=parameters,
                                                                           producer=self.producer),
            "jobDependencies": self.deps.JobDependenciesRunFacet(upstream=upstream, producer=self.producer),
            "headwater_environment": self._custom(
                "headwater_environment", fingerprint=env["fp"], hardwareClass=env.get("hw"),
                python=env.get("python"), platform=env.get("platform"), container=env.get("container"),
                lock=env.get("lock"), details=env),
            "headwater_claims": self._custom(
                "headwater_claims", goal=intent.get("goal"), assumptions=intent.get("assumptions"),
                concludes=intent.get("concludes"),
                claims=[_strip({"key": c["key"], "value": c["value"], "uncertainty": c.get("uncertainty"),
                                "units": c.get("units")}) for c in intent.get("claims", [])]),
            "headwater_specDiff": self._custom("headwater_specDiff", **b["spec_diff"]),
            "headwater_checkpoint": self._custom(
                "headwater_checkpoint", id=ck.id, run=b["run"], status=ck.status, attempt=b["attempt"],
                prev=b["prev"], parents=b["parents"], keyId=ck.key_id, signature=ck.signature),
        }
        rid = run_uuid("checkpoint", ck.id)
        inputs = [self._dataset(self.ev.InputDataset, f"{b['workflow']}/{ref}", sha)
                  for ref, sha in sorted(m["inputs"].items())]
        start = self.ev.RunEvent(eventType=self.ev.RunState.START, eventTime=b["time"]["start"],
                                 run=self.ev.Run(runId=rid, facets=facets), job=job, inputs=inputs,
                                 producer=self.producer)
        end_facets: dict[str, Any] = {"parent": facets["parent"], "headwater_checkpoint": facets["headwater_checkpoint"]}
        if ck.status == "failed":
            state = self.ev.RunState.FAIL
            end_facets["errorMessage"] = self.error.ErrorMessageRunFacet(
                message=b.get("error") or "task failed", programmingLanguage="python", producer=self.producer)
            outputs = []
        else:
            state = self.ev.RunState.ABORT if ck.status == "squashed" else self.ev.RunState.COMPLETE
            outputs = [self._dataset(self.ev.OutputDataset, f"{b['workflow']}/{b['task']}/{a['name']}", a["sha256"])
                       for a in b["artifacts"]]
        end = self.ev.RunEvent(eventType=state, eventTime=b["time"]["end"],
                               run=self.ev.Run(runId=rid, facets=end_facets),
                               job=self.ev.Job(namespace=self.ns, name=job_name), inputs=inputs, outputs=outputs,
                               producer=self.producer)
        return start, end


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def events(sel: Selection, namespace: str = DEFAULT_NAMESPACE) -> list[Any]:
    """Every RunEvent of a selection, in time order within each run.

    A workflow run's START comes before its tasks' events and its terminal
    event after them; a single-checkpoint selection gives that task's two
    events (with the parent facet naming the workflow run).
    """
    builder = _Builder(sel, namespace)
    out: list[Any] = []
    whole_runs = sel.kind != "checkpoint"
    for run_id, checkpoints in sel.by_run().items():
        run = sel.runs[run_id]
        start, end = builder.run_events(run) if whole_runs else (None, None)
        if start is not None:
            out.append(start)
        for ck in checkpoints:
            out.extend(builder.task_events(ck))
        if end is not None:
            out.append(end)
    return out


def to_json(event: Any) -> str:
    """One event as compact JSON, the way openlineage-python's transports send it."""
    serde = need("openlineage.client.serde", FEATURE)
    return serde.Serde.to_json(event)


def emit(evts: list[Any], client: Any) -> int:
    """Send events through an ``OpenLineageClient`` and its transport; how many."""
    for event in evts:
        client.emit(event)
    return len(evts)


def file_client(path: str | Path) -> Any:
    """A client whose file transport appends JSON lines to ``path`` (emptied first)."""
    client_mod = need("openlineage.client", FEATURE)
    file_mod = need("openlineage.client.transport.file", FEATURE)
    Path(path).write_text("")
    transport = file_mod.FileTransport(file_mod.FileConfig(log_file_path=str(path), append=True))
    return client_mod.OpenLineageClient(transport=transport)


def configured_client() -> Any:
    """A client with the transport openlineage-python is configured for
    (``openlineage.yml``, ``OPENLINEAGE_URL``, ``OPENLINEAGE__TRANSPORT__*``)."""
    client_mod = need("openlineage.client", FEATURE)
    return client_mod.OpenLineageClient()
