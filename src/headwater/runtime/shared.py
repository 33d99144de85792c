"""Executing and accepting work claimed from the shared queue.

Three steps, each usable on its own host:

1. :func:`work_context` (next to the store) turns a :class:`Claim` into a
   :class:`WorkContext`: the run's parameters, the task's seed, its input
   artifacts (from the committed checkpoints of its inputs), and for a
   verification the outputs and invariants of the attempt being judged. It
   is plain JSON, so it can travel to a remote agent.
2. :func:`execute` (on the agent) runs the task or the verifier with the
   same code as the in-process runtime (:mod:`headwater.runtime.agent`),
   writes outputs to the agent's artifact store, and for a successful run
   builds the checkpoint bundle (:func:`headwater.checkpoint.bundle.build_bundle`)
   and signs it with the agent's key. The result is a :class:`Submission`.
3. :func:`accept` (next to the store) trusts nothing in a submission: the
   fencing token must still be current, the signature must verify, the
   bundle must name the claimed run, task and attempt, and every artifact
   it lists must be in the artifact store. Then the checkpoint is written
   and the claim completed in one transaction.

Failed attempts send no bundle, only the error: the queue retries them. A
task's checkpoints are chained to its inputs' (``parents``); ``prev`` (the
in-process runtime's per-run hash chain) is left empty, since attempts of
one run finish on many hosts in no fixed order.
"""

from __future__ import annotations

import base64
import functools
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from headwater.checkpoint import bundle as B
from headwater.checkpoint.canonical import NotJSON, hash_obj, to_jsonable
from headwater.checkpoint.env import fingerprint, git_state
from headwater.checkpoint.profiles import analysis_part, simulation_part
from headwater.checkpoint.signing import SigningKey, verify_signature
from headwater.errors import HeadwaterError, IntegrityError, RunError
from headwater.runtime import agent as _agent
from headwater.runtime.context import InputRef
from headwater.store import schema as t
from headwater.store import queries as q
from headwater.store.queue import Claim, StaleLease, WorkQueue, retrying
from headwater.store.records import ArtifactRecord, AssetUse, CheckpointRecord, ClaimRecord, RunRecord

__all__ = ["Outcome", "Rejected", "StaleLease", "Submission", "WorkContext", "accept", "accept_many", "execute",
           "submit_run", "work_context", "work_contexts"]


class Rejected(HeadwaterError):
    """A submission whose bundle is forged, or does not match its claim.

    ``reason`` says which check failed; nothing was written. ``code`` names
    the kind of refusal for an API: ``forged-bundle`` when the signature
    does not verify, ``rejected`` otherwise.
    """

    def __init__(self, reason: str, *, token: int | None = None, code: str = "rejected") -> None:
        self.reason, self.token, self.code = reason, token, code
        super().__init__(f"submission for lease token {token} rejected: {reason}" if token is not None else reason)


@dataclass
class WorkContext:
    """Everything an agent needs to run a claim; JSON-serialisable.

    ``inputs`` maps each input reference (``"task/name"``) to its sha256;
    ``input_refs`` carries the same artifacts with size, media type and URI
    (what the task's context needs to decode them). ``seed`` is the task's
    seed, derived from the run's. ``previous`` is the newest committed
    checkpoint of the same workflow and task in another run, and
    ``previous_doc`` the parts of it the spec diff compares (manifest,
    environment fingerprint, spec hash). ``status`` is what a successful
    attempt's bundle records: ``committed``, or ``provisional`` when the
    task awaits verification.
    """

    claim: Claim
    workflow: str
    spec_hash: str
    source: str | None
    params: dict
    seed: int
    inputs: dict[str, str]
    upstream: list[str]
    previous: str | None
    outputs: list[dict] = field(default_factory=list)
    invariants: list[dict] = field(default_factory=list)
    input_refs: list[dict] = field(default_factory=list)
    previous_doc: dict | None = None
    status: str = "committed"
    why: str | None = None

    def to_json(self) -> dict:
        # Field by field rather than dataclasses.asdict, which deep-copies every
        # value: a server building contexts for a batch of claims spends its
        # time here otherwise. The values are JSON already (lists, dicts, str).
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["claim"] = self.claim.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> WorkContext:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["claim"] = Claim.from_json(data["claim"])
        return cls(**fields)


@dataclass
class Submission:
    """What an agent sends back for one claim; JSON-serialisable (bundle bytes base64).

    A run: ``bundle`` (canonical bytes), its ``signature`` and ``key_id``,
    and the output ``artifacts`` (sha256, size, name, media type, uri); or
    ``error`` when the attempt failed. A verification: ``approve`` and
    ``reason``.
    """

    token: int
    agent: str
    kind: str
    bundle: bytes | None = None
    signature: str | None = None
    key_id: str | None = None
    artifacts: list[dict] = field(default_factory=list)
    approve: bool | None = None
    reason: str = ""
    error: str | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["bundle"] = base64.b64encode(self.bundle).decode("ascii") if self.bundle is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict) -> Submission:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if fields.get("bundle") is not None:
            fields["bundle"] = base64.b64decode(fields["bundle"])
        return cls(**fields)


# ------------------------------------------------------------------ submit


def submit_run(store: Any, wf: Any, params: dict | None = None, *, seed: int = 0, campaign: str | None = None,
               why: str | None = None, now: float | None = None, queue: WorkQueue | None = None,
               **queue_options: Any) -> str:
    """Record a run of ``wf`` and put it on the shared queue; return the run id.

    ``queue_options`` (``backoff``, ``max_refutations``) go to
    :meth:`WorkQueue.enqueue_run`.
    """
    from headwater.runtime.coordinator import new_run_id

    now = time.time() if now is None else now
    wf.validate(file=wf.source_file)
    resolved = wf.resolve_params(params or {})
    description = wf.describe()
    spec_hash = hash_obj(description)
    store.put_spec(wf.name, spec_hash, description)
    run = RunRecord(
        id=new_run_id(), workflow=wf.name, spec_hash=spec_hash, campaign=campaign or wf.name, params=resolved,
        seed=seed, status="running", why=why, source=wf.source_file, created_at=now,
        options={"executor": "queue"}, tags=list(wf.tags),
    )
    store.create_run(run)
    (queue or WorkQueue(store)).enqueue_run(run.id, wf, now, **queue_options)
    return run.id


# ------------------------------------------------------------------ context


def work_context(store: Any, claim: Claim, *, cache: dict | None = None) -> WorkContext:
    """What an agent needs to run ``claim`` (see :class:`WorkContext`); :func:`work_contexts` for one claim.

    Raises what building it raised: :class:`StaleLease` when a verification's
    attempt has no checkpoint, :class:`RunError` when the run's spec lacks the task.
    """
    (ctx,) = work_contexts(store, [claim], cache=cache)
    if isinstance(ctx, HeadwaterError):
        raise ctx
    return ctx


def work_contexts(store: Any, claims: Sequence[Claim], *, cache: dict | None = None
                  ) -> list[WorkContext | HeadwaterError]:
    """The :class:`WorkContext` of each claim, in order, read with a few queries for the whole batch.

    Per run in the batch: one read of the claimed tasks' and their inputs'
    queue rows, one of their inputs' output artifacts, and (with a cache or
    more than one claim) one of the workflow's previous checkpoints; per
    verification, one read of the checkpoint it judges. A claim that cannot
    be described gets the error instead (:class:`StaleLease` when the attempt
    to judge has no checkpoint, :class:`RunError` when the run's spec lacks
    the task), so the caller can fail that one and hand out the others.

    ``cache``, a dict the caller keeps, holds each run's record and spec and
    the workflow's previous checkpoints between calls: the first two never
    change, and a large run's spec is costly to read for every claim.
    """
    many = cache is not None or len(claims) > 1
    cache = {} if cache is None else cache
    out: list[WorkContext | HeadwaterError | None] = [None] * len(claims)
    by_run: dict[str, list[int]] = {}
    for i, claim in enumerate(claims):
        by_run.setdefault(claim.run_id, []).append(i)
    qt, ca, a = t.queue_task, t.checkpoint_artifact, t.artifact
    for run_id, idx in by_run.items():
        known = cache.get(run_id)
        if known is None:
            found = store.get_run(run_id)
            known = cache[run_id] = (found, store.get_spec(found.spec_hash))
        run, spec = known
        entries = {}
        for i in idx:
            entry = spec["tasks"].get(claims[i].task)
            if entry is None:
                out[i] = RunError(f"run {run.id}: its spec {run.spec_hash[:12]} has no task {claims[i].task!r}",
                                  run_id=run.id, task=claims[i].task)
            else:
                entries[i] = entry
        names = sorted({n for i, e in entries.items() for n in [*e["after"], claims[i].task]})
        rows: dict[str, Any] = {}
        outs: dict[str, list[Any]] = {}
        with store.engine.connect() as conn:
            for chunk in q.chunks(names):
                for r in conn.execute(sa.select(qt.c.task, qt.c.state, qt.c.checkpoint_id, qt.c.verify)
                                      .where(qt.c.run_id == run.id, qt.c.task.in_(chunk))):
                    rows[r.task] = r
            committed = sorted({r.checkpoint_id for r in rows.values()
                                if r.state == "committed" and r.checkpoint_id is not None})
            for chunk in q.chunks(committed):
                for o in conn.execute(
                        sa.select(ca.c.checkpoint_id, ca.c.name, a.c.sha256, a.c.media_type, a.c.size, a.c.uri)
                        .join(a, a.c.sha256 == ca.c.sha256)
                        .where(ca.c.checkpoint_id.in_(chunk), ca.c.direction == "out")
                        .order_by(ca.c.checkpoint_id, ca.c.pos)):
                    outs.setdefault(o.checkpoint_id, []).append(o)
        latest = cache.get(("previous", run.id)) if many else None
        if many and latest is None:
            latest = cache[("previous", run.id)] = store.latest_checkpoints(run.workflow, exclude_run=run.id)
        for i, entry in entries.items():
            try:
                out[i] = _context(store, cache, run, claims[i], entry, rows, outs, latest)
            except HeadwaterError as exc:
                out[i] = exc
    return out  # type: ignore[return-value]


def _context(store: Any, cache: dict, run: Any, claim: Claim, entry: dict, rows: dict[str, Any],
             outs: dict[str, list[Any]], latest: dict | None) -> WorkContext:
    """One claim's context from the rows :func:`work_contexts` read for its run (``latest``: the
    workflow's previous checkpoints by task, when read for the whole batch)."""
    upstream = {}
    for name in entry["after"]:
        r = rows.get(name)
        if r is not None and r.state == "committed" and r.checkpoint_id is not None:
            upstream[r.checkpoint_id] = name
    inputs: dict[str, str] = {}
    refs: list[dict] = []
    for ck_id in sorted(upstream):
        for o in outs.get(ck_id, ()):
            ref = f"{upstream[ck_id]}/{o.name}"
            inputs[ref] = o.sha256
            refs.append({"ref": ref, "sha256": o.sha256, "media_type": o.media_type, "size": o.size, "uri": o.uri})
    own = rows.get(claim.task)
    outputs: list[dict] = []
    invariants: list[dict] = []
    if claim.kind == "verify":
        if own is None or own.checkpoint_id is None:
            raise StaleLease(claim.token, run.id, claim.task, "the attempt to judge has no checkpoint")
        ck = store.get_checkpoint(own.checkpoint_id)
        outputs = [asdict(o) for o in ck.outputs]
        invariants = list((ck.doc.get("profile") or {}).get("invariants", []))
    if latest is not None:  # a caller serving many claims reads every task's previous checkpoint once
        prev = latest.get(claim.task)
    else:
        prev = store.latest_checkpoint(run.workflow, claim.task, exclude_run=run.id)
    previous_doc = None
    if prev is not None:
        spec_hash = cache.get(("spec_hash", prev.run_id))
        if spec_hash is None:
            spec_hash = cache[("spec_hash", prev.run_id)] = store.get_run(prev.run_id).spec_hash
        previous_doc = {"manifest": prev.doc.get("manifest"), "env_fp": prev.env_fp, "spec_hash": spec_hash}
    return WorkContext(
        claim=claim, workflow=run.workflow, spec_hash=run.spec_hash, source=run.source, params=dict(run.params),
        seed=B.derive_seed(run.seed, claim.task), inputs=inputs, upstream=sorted(upstream),
        previous=prev.id if prev else None, outputs=outputs, invariants=invariants, input_refs=refs,
        previous_doc=previous_doc, status="provisional" if own is not None and own.verify > 0 else "committed",
        why=run.why,
    )


# ------------------------------------------------------------------ execute


def execute(ctx: WorkContext, wf: Any, agent: str, artifacts: Any, signer: SigningKey) -> Submission:
    """Run the claim of ``ctx`` as ``agent``; outputs go to ``artifacts``; the bundle is signed by ``signer``.

    Never raises for the task's own failure: that becomes the submission's
    ``error`` (for a verification, a declined verdict).
    """
    claim = ctx.claim
    refs = {r["ref"]: InputRef(r["ref"], r["sha256"], r["media_type"], r.get("size", 0), r.get("uri", ""))
            for r in ctx.input_refs}
    if claim.kind == "verify":
        work = _agent.VerifyWork(claim.token, claim.run_id, claim.task, claim.attempt, ctx.params, ctx.seed, refs,
                                 outputs=[ArtifactRecord(**o) for o in ctx.outputs],
                                 invariants=list(ctx.invariants))
        try:
            approve, reason = _agent.verify(wf, work, artifacts)
        except Exception as exc:  # a verifier that cannot run declines rather than votes
            return Submission(claim.token, agent, "verify", error=f"{type(exc).__name__}: {exc}")
        return Submission(claim.token, agent, "verify", approve=approve, reason=reason)
    work = _agent.Work(claim.token, claim.run_id, claim.task, claim.attempt, ctx.params, ctx.seed, refs)
    outcome = _agent.execute(wf, work, artifacts)
    if not outcome.ok:
        return Submission(claim.token, agent, "run", error=outcome.error)
    data = _bundle(ctx, wf, outcome)
    return Submission(
        claim.token, agent, "run", bundle=data, signature=signer.sign(data), key_id=signer.key_id,
        artifacts=[{"name": o.name, "sha256": o.sha256, "size": o.size, "media_type": o.media_type, "uri": o.uri}
                   for o in outcome.outputs],
    )


@functools.lru_cache(maxsize=8)
def _host_parts(project_dir: str | None) -> tuple[dict, dict]:
    """This host's environment part of a bundle and its git state, computed once per process."""
    env = fingerprint(project_dir)
    env_plain = to_jsonable({k: v for k, v in env.bundle_part().items()
                             if k == "fp" or v not in (None, "", [], {}, ())})
    git = {k: v for k, v in (git_state(project_dir) or {}).items() if v is not None} if project_dir else {}
    return env_plain, git


def _bundle(ctx: WorkContext, wf: Any, outcome: Any) -> bytes:
    claim = ctx.claim
    spec = wf.tasks[claim.task]
    project_dir = str(Path(wf.source_file).parent) if wf.source_file else None
    env, git = _host_parts(project_dir)
    try:
        params: Any = to_jsonable(ctx.params)
    except NotJSON:
        params = ctx.params
    code = {"task_hash": wf.task_hash(claim.task), **git}
    manifest: dict[str, Any] = {"inputs": dict(ctx.inputs), "outputs": {o.name: o.sha256 for o in outcome.outputs},
                                "code": code, "seed": ctx.seed, "params": params}
    if outcome.uses:
        manifest["versions"] = {f"{u.kind}:{u.name}": u.version for u in outcome.uses}
    if ctx.upstream:
        manifest["upstream"] = list(ctx.upstream)
    if outcome.branch is not None:
        manifest["branch"] = outcome.branch
    prev = ctx.previous_doc or {}
    spec_diff = B.make_spec_diff(
        against=ctx.previous, prev_manifest=prev.get("manifest"), manifest=manifest,
        prev_env_fp=prev.get("env_fp"), env_fp=env["fp"],
        spec_changed=bool(prev) and prev.get("spec_hash") != ctx.spec_hash, why=ctx.why,
    )
    intent: dict[str, Any] = {"goal": spec.intent.goal, "assumptions": list(spec.intent.assumptions),
                              "concludes": spec.intent.concludes}
    if outcome.claims:
        intent["claims"] = [asdict(c) for c in outcome.claims]
    profile = None
    if wf.profile == "simulation":
        profile = simulation_part(outcome.numerics, outcome.invariants)
    elif wf.profile == "analysis":
        profile = analysis_part(outcome.transforms, outcome.cohort, outcome.schemas)
    doc = B.build_bundle(
        run=claim.run_id, workflow=ctx.workflow, task=claim.task, attempt=claim.attempt, status=ctx.status,
        parents=list(ctx.upstream), prev=None, manifest=manifest, spec_diff=spec_diff, env=env, intent=intent,
        artifacts=[{"name": o.name, "uri": o.uri, "sha256": o.sha256, "size": o.size, "media_type": o.media_type}
                   for o in outcome.outputs],
        profile=profile, started=outcome.started, finished=outcome.finished,
    )
    return B.bundle_bytes(doc)


# ------------------------------------------------------------------ accept


@dataclass(frozen=True)
class Outcome:
    """What became of one submission of a batch (:func:`accept_many`).

    ``checkpoint`` is the id written for an accepted result (None for a
    verdict or a failure); ``error`` the :class:`StaleLease` or
    :class:`Rejected` that refused it, in which case nothing of it was written.
    """

    token: int
    checkpoint: str | None = None
    error: HeadwaterError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def accept(store: Any, queue: WorkQueue, sub: Submission, now: float, public_key: Any = None) -> str | None:
    """Check a submission and apply it; return the checkpoint id written (None for a verdict or failure).

    :func:`accept_many` for one submission, raising its refusal:
    :class:`StaleLease` when the token is no longer current,
    :class:`Rejected` when the bundle is forged or does not match the claim;
    in both cases nothing is written.
    """
    (out,) = accept_many(store, queue, [sub], now, public_key)
    if out.error is not None:
        raise out.error
    return out.checkpoint


def verify_all(checks: Sequence[tuple[str, bytes, str]]) -> list[bool]:
    """Whether each ``(public key hex, data, signature hex)`` is a valid Ed25519 signature.

    What :func:`accept_many` checks its batch's signatures with, unless given
    another ``verify`` (the API server runs this in a worker process, so the
    checks, which hold the GIL, do not stall its other requests).
    """
    return [verify_signature(key, data, signature) for key, data, signature in checks]


def accept_many(store: Any, queue: WorkQueue, subs: Sequence[Submission], now: float,
                public_key: Any = None, then: Callable[[sa.Connection], None] | None = None,
                verify: Callable[[list[tuple[str, bytes, str]]], list[bool]] = verify_all) -> list[Outcome]:
    """Check many submissions and apply those that pass in one transaction; one :class:`Outcome` each, in order.

    ``public_key`` (hex, a :class:`SigningKey`, or a mapping from agent id
    to either) is the key each bundle must be signed with; by default the
    store's own key (``<store root>/signing.key``). Signatures, bundles and
    artifacts are checked one by one before the transaction; a refused
    submission (:class:`Rejected`, or :class:`StaleLease` for a token no
    longer current) writes nothing and leaves the others standing.

    Inside the transaction the work is set-based: every lease is locked
    with one statement, every task row with another, and results that
    commit at once (tasks needing no verification and choosing no branch,
    the common case) are applied by :meth:`WorkQueue.commit_many_in` and
    their checkpoints written by one ``executemany`` per table, so a batch
    costs a fixed number of statements per run. Verdicts, failures and
    results awaiting verification or choosing a branch take the
    one-at-a-time path (:meth:`WorkQueue.complete_in`), each in a savepoint.
    A deadlock victim is run again as a whole.

    ``then`` is called with the connection inside the same transaction once
    the results are applied (the reporter's next claim rides on the same
    commit); it is called again if the transaction is run again, and not at
    all when every submission was refused before the transaction.
    ``verify`` checks the batch's signatures, all in one call (:func:`verify_all`).
    """
    outcomes: dict[int, Outcome] = {}
    checked: list[tuple[int, Submission, dict | None]] = []
    keys: dict = {}
    wanted: list[tuple[int, tuple[str, bytes, str]]] = []
    for i, sub in enumerate(subs):
        if sub.kind == "run" and sub.error is None and sub.bundle is not None and sub.signature:
            try:
                wanted.append((i, (_key_for(store, public_key, sub.agent, keys)(), bytes(sub.bundle), sub.signature)))
            except Rejected as exc:
                outcomes[i] = Outcome(sub.token, error=exc)
    verdicts = verify([check for _, check in wanted]) if wanted else []
    if len(verdicts) != len(wanted):
        raise ValueError(f"verify answered {len(verdicts)} signature checks for {len(wanted)}")
    signed = {i: bool(ok) for (i, _), ok in zip(wanted, verdicts)}
    for i, sub in enumerate(subs):
        if i in outcomes:
            continue
        try:
            checked.append((i, sub, _checked_bundle(store, sub, signed.get(i, False))))
        except Rejected as exc:
            outcomes[i] = Outcome(sub.token, error=exc)
    if checked:
        outcomes.update(retrying(lambda: _apply(store, queue, checked, now, then)))
    return [outcomes[i] for i in range(len(subs))]


def _checked_bundle(store: Any, sub: Submission, signed: bool) -> dict | None:
    """The bundle of a run submission, once its signature (``signed``: it verified) and artifacts check
    out (None for other kinds)."""
    if sub.kind == "verify":
        return None
    if sub.kind != "run":
        raise Rejected(f"kind must be 'run' or 'verify', got {sub.kind!r}", token=sub.token)
    if sub.error is not None:
        return None
    if sub.bundle is None or not sub.signature:
        raise Rejected("a run submission needs a bundle and its signature (or an error)", token=sub.token)
    data = bytes(sub.bundle)
    if not signed:
        raise Rejected("the bundle's signature does not verify with the expected key", token=sub.token,
                       code="forged-bundle")
    try:
        doc = B.load_bundle(data)
    except IntegrityError as exc:
        raise Rejected(f"the bundle is not valid: {exc}", token=sub.token) from None
    missing = [a["sha256"] for a in doc.get("artifacts", []) if not store.artifacts.exists(a["sha256"])]
    if missing:
        raise Rejected(f"artifact(s) {', '.join(m[:12] for m in missing)} listed in the bundle are not in the "
                       "artifact store; upload them first", token=sub.token)
    listed = {(a["name"], a["sha256"]) for a in doc.get("artifacts", [])}
    if {(a["name"], a["sha256"]) for a in sub.artifacts} != listed:
        raise Rejected("the submission's artifacts differ from the ones the bundle lists", token=sub.token)
    return doc


def _apply(store: Any, queue: WorkQueue, checked: list[tuple[int, Submission, dict | None]],
           now: float, then: Callable[[sa.Connection], None] | None = None) -> dict[int, Outcome]:
    """The transaction of :func:`accept_many` (run again from the start when it was a deadlock victim)."""
    out: dict[int, Outcome] = {}
    with store.transaction() as conn:
        items, tasks = queue.lock_items(conn, [(sub.token, sub.agent) for _, sub, _ in checked])
        known = _known_artifacts(conn, [sha for _, _, doc in checked if doc is not None
                                        for sha in doc["manifest"].get("inputs", {}).values()])
        fast: list[tuple[int, Submission, Any, Any, CheckpointRecord, str | None]] = []
        slow: list[tuple[int, Submission, Any, CheckpointRecord | None, str | None]] = []
        used: set[int] = set()
        for i, sub, doc in checked:
            item = items.get(sub.token)
            if item is None or sub.token in used:
                out[i] = Outcome(sub.token, error=queue.stale(conn, sub.token))
                continue
            used.add(sub.token)
            if doc is None:
                slow.append((i, sub, item, None, None))
                continue
            task = tasks[(item.run_id, item.task)]
            try:
                ck, branch = _checkpoint(store, sub, doc, item, task, known, now)
            except Rejected as exc:
                out[i] = Outcome(sub.token, error=exc)
                continue
            if task.verify == 0 and not task.branches:
                fast.append((i, sub, item, task, ck, branch))
            else:
                slow.append((i, sub, item, ck, branch))
        if fast:
            seqs = queue.commit_many_in(conn, [(item, task, sub.agent, ck.id, branch)
                                               for _, sub, item, task, ck, branch in fast], now)
            q.write_checkpoints(conn, [ck for *_, ck, _ in fast], [seqs[sub.token] for _, sub, *_ in fast])
            for i, sub, *_, ck, _ in fast:
                out[i] = Outcome(sub.token, ck.id)
        for i, sub, item, ck, branch in slow:
            try:
                with conn.begin_nested():
                    _apply_one(conn, queue, sub, item, ck, branch, now)
            except HeadwaterError as exc:
                out[i] = Outcome(sub.token, error=exc)
            else:
                out[i] = Outcome(sub.token, ck.id if ck is not None else None)
        if then is not None:
            then(conn)
    return out


def _apply_one(conn: sa.Connection, queue: WorkQueue, sub: Submission, item: Any, ck: CheckpointRecord | None,
               branch: str | None, now: float) -> None:
    """A verdict, a failure, or a result that awaits verification or chooses a branch."""
    if ck is not None:
        queue.complete_in(conn, sub.token, sub.agent, now, checkpoint_id=ck.id, branch=branch, item=item,
                          written=ck.status == "committed",
                          after_close=lambda version: q.write_checkpoints(conn, [ck], [version]))
    elif sub.kind == "verify" and sub.error is None and sub.approve is not None:
        queue.complete_in(conn, sub.token, sub.agent, now, approve=bool(sub.approve), reason=sub.reason, item=item)
    else:
        queue.fail_in(conn, item, sub.agent, now, sub.error or "no verdict")


def _checkpoint(store: Any, sub: Submission, doc: dict, item: Any, task: Any, known: dict[str, Any],
                now: float) -> tuple[CheckpointRecord, str | None]:
    """The checkpoint record of an accepted run result, and the branch it chose; Rejected if it does not fit."""
    claimed = (item.run_id, item.task, item.attempt)
    if (doc["run"], doc["task"], doc["attempt"]) != claimed or item.kind != "run":
        raise Rejected(f"the bundle is for run {doc['run']} task {doc['task']!r} attempt {doc['attempt']}, "
                       f"but the lease is for run {item.run_id} task {item.task!r} attempt {item.attempt}",
                       token=sub.token)
    status = "provisional" if task.verify else "committed"
    if doc["status"] != status:
        raise Rejected(f"the bundle says {doc['status']!r}, but task {item.task!r} of run {item.run_id} "
                       f"is {status} when it finishes", token=sub.token)
    branch = doc["manifest"].get("branch")
    reason = None
    if task.branches and branch not in task.branches:
        status, reason = "failed", f"chose {branch!r}, not one of {list(task.branches)}"
    sent = {a["name"]: a for a in sub.artifacts}
    ck = CheckpointRecord(
        id=B.bundle_id(bytes(sub.bundle or b"")), run_id=doc["run"], workflow=doc["workflow"], task=doc["task"],
        attempt=doc["attempt"], status=status, bundle=bytes(sub.bundle or b""), signature=sub.signature or "",
        key_id=sub.key_id or "", parents=list(doc["parents"]), prev=doc.get("prev"), cache_key=None,
        env_fp=doc["env"]["fp"], created_at=now, status_reason=reason,
        inputs=_input_records(known, doc["manifest"].get("inputs", {}), sub.token),
        outputs=[ArtifactRecord(a["sha256"], int(sent[a["name"]].get("size", 0)),
                                sent[a["name"]].get("media_type", "application/octet-stream"),
                                sent[a["name"]].get("uri") or store.artifacts.uri(a["sha256"]), a["name"])
                 for a in doc.get("artifacts", [])],
        claims=[ClaimRecord(c["key"], c.get("value"), c.get("uncertainty"), c.get("units"))
                for c in (doc.get("intent") or {}).get("claims", [])],
        uses=[AssetUse(*ref.split(":", 1), version=v, direction="consumed")
              for ref, v in (doc["manifest"].get("versions") or {}).items()],
    )
    return ck, branch


def _known_artifacts(conn: sa.Connection, shas: Sequence[str]) -> dict[str, Any]:
    """The artifact rows of these hashes that the store has, by hash."""
    a = t.artifact
    known: dict[str, Any] = {}
    for chunk in q.chunks(sorted(set(shas))):
        known.update((r.sha256, r) for r in conn.execute(sa.select(a).where(a.c.sha256.in_(chunk))))
    return known


def _input_records(known: dict[str, Any], inputs: dict[str, str], token: int) -> list[ArtifactRecord]:
    out = []
    for ref, sha in sorted(inputs.items()):
        row = known.get(sha)
        if row is None:
            raise Rejected(f"input {ref!r} ({sha[:12]}) is not a known artifact of the store", token=token)
        out.append(ArtifactRecord(sha, row.size, row.media_type, row.uri, name=ref))
    return out


def _key_for(store: Any, public_key: Any, agent: str, memo: dict) -> Callable[[], str]:
    """The public key (hex) ``agent``'s bundles must verify with, looked up only when needed (once per batch)."""
    if isinstance(public_key, Mapping):
        if public_key.get(agent) is None:
            def unknown() -> str:
                raise Rejected(f"agent {agent} has no registered key; register it before submitting")
            return unknown
        public_key = public_key[agent]

    def key() -> str:
        if id(public_key) not in memo:
            memo[id(public_key)] = _public_hex(store, public_key)
        return memo[id(public_key)]

    return key


def _public_hex(store: Any, public_key: Any) -> str:
    if isinstance(public_key, SigningKey):
        return public_key.public_hex
    if isinstance(public_key, str):
        return public_key
    return SigningKey.load(Path(store.root) / "signing.key").public_hex


def new_agent_id(prefix: str = "agent") -> str:
    """A fresh agent id, unique across hosts."""
    return f"{prefix}-{secrets.token_hex(4)}"
