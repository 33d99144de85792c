"""What an export covers: a set of checkpoints and everything they point at.

Every exporter works on a :class:`Selection`, read from the store once: the
checkpoints in write order (their signed bundles parsed), the runs they
belong to with their recorded specs, the environment summaries their
fingerprints name, and the identity (run, task, attempt) of every upstream
checkpoint they cite, also when that upstream checkpoint lies outside the
selection. After that, building an export does no I/O besides reading
artifact bytes for an RO-Crate.

A selection is one checkpoint, one run, a whole campaign, every run of a
workflow, the blast radius of a shared asset (every checkpoint built on the
versions an ``ASSET[@VERSION|RANGE]`` selects), or an explicit list of
checkpoint ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from headwater.errors import HeadwaterError, NotFound
from headwater.oversight import OversightError, RefError, parse_ref
from headwater.store import CheckpointRecord, RunRecord, Store

URN = "urn:headwater:"
"""Base of the identifiers headwater mints for checkpoints, runs, tasks and
artifacts in exports (``urn:headwater:checkpoint:<id>`` and so on)."""


def urn(kind: str, ident: str) -> str:
    """``urn:headwater:<kind>:<ident>``, the stable name of one object."""
    return f"{URN}{kind}:{ident}"


@dataclass(frozen=True)
class Ref:
    """Who wrote a checkpoint: enough to name it when it is only cited."""

    id: str
    run: str
    workflow: str
    task: str
    attempt: int


@dataclass
class Selection:
    """The checkpoints to export and the context needed to describe them.

    ``kind`` is ``"checkpoint"``, ``"run"``, ``"campaign"``, ``"workflow"``,
    ``"asset"`` (a blast radius) or ``"checkpoints"``; ``title`` names the
    selection for people.
    ``checkpoints`` are in write order: by run creation time, then by the
    order within each run. ``specs`` maps a spec hash to the stored spec
    (absent when the store no longer has it); ``envs`` maps an environment
    fingerprint to its stored summary; ``refs`` identifies every checkpoint
    that is selected or cited as a parent.
    """

    kind: str
    title: str
    checkpoints: list[CheckpointRecord]
    runs: dict[str, RunRecord]
    specs: dict[str, dict] = field(default_factory=dict)
    envs: dict[str, dict] = field(default_factory=dict)
    refs: dict[str, Ref] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.checkpoints]

    def run_of(self, ck: CheckpointRecord) -> RunRecord:
        return self.runs[ck.run_id]

    def spec_of(self, run: RunRecord) -> dict | None:
        return self.specs.get(run.spec_hash)

    def by_run(self) -> dict[str, list[CheckpointRecord]]:
        """The selected checkpoints grouped by run, runs in selection order."""
        out: dict[str, list[CheckpointRecord]] = {}
        for ck in self.checkpoints:
            out.setdefault(ck.run_id, []).append(ck)
        return out


def _ref(ck: CheckpointRecord) -> Ref:
    return Ref(ck.id, ck.run_id, ck.workflow, ck.task, ck.attempt)


def _complete(store: Store, kind: str, title: str, checkpoints: Iterable[CheckpointRecord]) -> Selection:
    unique = {c.id: c for c in checkpoints}
    if not unique:
        raise HeadwaterError(f"nothing to export: {title} has no checkpoints")
    runs: dict[str, RunRecord] = {}
    for ck in unique.values():
        if ck.run_id not in runs:
            runs[ck.run_id] = store.get_run(ck.run_id)
    ordered = sorted(unique.values(), key=lambda c: (runs[c.run_id].created_at, c.run_id, c.seq or 0))
    specs: dict[str, dict] = {}
    for run in runs.values():
        if run.spec_hash not in specs:
            try:
                specs[run.spec_hash] = store.get_spec(run.spec_hash)
            except NotFound:
                pass
    envs: dict[str, dict] = {}
    for ck in ordered:
        if ck.env_fp not in envs:
            found = store.get_env(ck.env_fp)
            if found is not None:
                envs[ck.env_fp] = found[0]
    refs = {ck.id: _ref(ck) for ck in ordered}
    for ck in ordered:
        for parent in ck.parents:
            if parent not in refs:
                refs[parent] = _ref(store.get_checkpoint(parent))
    return Selection(kind, title, ordered, dict(sorted(runs.items(), key=lambda kv: kv[1].created_at)),
                     specs, envs, refs)


def select_checkpoint(store: Store, id_or_prefix: str) -> Selection:
    """One checkpoint (an id or a unique prefix of one)."""
    ck = store.get_checkpoint(id_or_prefix)
    return _complete(store, "checkpoint", f"checkpoint {ck.id[:12]} ({ck.workflow}/{ck.task})", [ck])


def select_run(store: Store, id_or_prefix: str) -> Selection:
    """Every checkpoint of one run, attempts and failures included."""
    run = store.get_run(id_or_prefix)
    return _complete(store, "run", f"run {run.id} of {run.workflow}", store.list_checkpoints(run.id))


def select(store: Store, ident: str) -> Selection:
    """A run id or a checkpoint id (or a unique prefix of either)."""
    try:
        return select_run(store, ident)
    except NotFound:
        pass
    try:
        return select_checkpoint(store, ident)
    except NotFound:
        raise NotFound("run or checkpoint", ident, "see `headwater runs` and `headwater checkpoints RUN`") from None


def select_campaign(store: Store, campaign: str) -> Selection:
    """Every checkpoint of every run in ``campaign``."""
    runs = [r for r in store.list_runs(limit=1_000_000) if r.campaign == campaign]
    if not runs:
        raise NotFound("campaign", campaign, "campaigns are named with `headwater run --campaign`")
    return _complete(store, "campaign", f"campaign {campaign}",
                     [c for r in runs for c in store.list_checkpoints(r.id)])


def select_workflow(store: Store, workflow: str) -> Selection:
    """Every checkpoint of every run of ``workflow``."""
    checkpoints = store.list_checkpoints(workflow=workflow)
    if not checkpoints:
        raise NotFound("workflow", workflow, "see `headwater runs`")
    return _complete(store, "workflow", f"workflow {workflow}", checkpoints)


def select_checkpoints(store: Store, ids: Iterable[str], title: str | None = None) -> Selection:
    """An explicit set of checkpoints, such as the blast radius of an asset."""
    records = [store.get_checkpoint(i) for i in dict.fromkeys(ids)]
    return _complete(store, "checkpoints", title or f"{len(records)} checkpoints", records)


def select_asset(store: Store, ref: str) -> Selection:
    """Every checkpoint in the blast radius of ``KIND:NAME[@VERSION|@RANGE]``.

    The radius is the store's :meth:`~headwater.store.Store.blast_radius`:
    the checkpoints that used the selected versions, and everything built on
    what they produced, across runs and workflows. Checkpoints are read run
    by run, so a large radius costs one query per affected run.
    """
    try:
        parsed = parse_ref(ref)
    except RefError as exc:
        raise OversightError(str(exc), subject=ref) from None
    radius = store.blast_radius(parsed)
    wanted = set(radius.checkpoints)
    if not wanted:
        raise NotFound("checkpoint built on", ref, f"`headwater blast-radius {ref}` shows what depends on it; "
                       "`headwater assets --all` lists the known versions")
    records = [c for run_id in radius.runs for c in store.list_checkpoints(run_id) if c.id in wanted]
    return _complete(store, "asset", f"blast radius of {radius.selector}", records)
