"""``headwater reproduce CKPT``: run one task again from what its bundle recorded.

The task's inputs are the artifacts its manifest names (by hash), its params
and seed are the recorded ones, and its code comes from the workflow file the
run was started from. The report says whether every output is byte-identical
and, when not, how the environment differs from the recorded one — the usual
reason a computation stops reproducing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from headwater.checkpoint.env import diff_packages, fingerprint
from headwater.errors import RunError
from headwater.runtime.agent import Work, execute
from headwater.runtime.context import InputRef
from headwater.spec import load_workflow
from headwater.store import Store


@dataclass
class ReproduceReport:
    checkpoint: str
    task: str
    identical: bool
    outputs: dict[str, dict] = field(default_factory=dict)  # name -> {recorded, reproduced, same}
    code_changed: bool = False
    env_changed: bool = False
    env_diff: dict = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict:
        return self.__dict__.copy()


def reproduce(store: Store, checkpoint: str) -> ReproduceReport:
    ck = store.get_checkpoint(checkpoint)
    run = store.get_run(ck.run_id)
    if not run.source:
        raise RunError(f"run {run.id} records no workflow file; cannot reproduce {ck.id[:12]}", run_id=run.id)
    wf = load_workflow(run.source)
    if ck.task not in wf.tasks:
        raise RunError(f"workflow {run.source} no longer has task {ck.task!r}", run_id=run.id, task=ck.task)
    doc = ck.doc
    manifest = doc["manifest"]
    inputs = {i.name: InputRef(i.name, i.sha256, i.media_type, i.size, i.uri) for i in ck.inputs}
    missing = [ref for ref, sha in manifest["inputs"].items() if ref not in inputs or not store.artifacts.exists(sha)]
    if missing:
        raise RunError(f"checkpoint {ck.id[:12]}: input artifacts missing from the store: {', '.join(missing)}",
                       run_id=run.id, task=ck.task)
    work = Work(token=0, run_id=run.id, task=ck.task, attempt=ck.attempt, params=manifest["params"],
                seed=manifest["seed"], inputs=inputs)
    outcome = execute(wf, work, store.artifacts, claim_lookup=_claims(store))
    recorded = dict(manifest["outputs"])
    got = {o.name: o.sha256 for o in outcome.outputs}
    outputs = {
        name: {"recorded": recorded.get(name), "reproduced": got.get(name), "same": recorded.get(name) == got.get(name)}
        for name in sorted(set(recorded) | set(got))
    }
    identical = outcome.ok and all(o["same"] for o in outputs.values())
    env = fingerprint(None if not run.source else str(__import__("pathlib").Path(run.source).parent))
    env_changed = env.fp != ck.env_fp
    env_diff: dict = {}
    if env_changed:
        stored = store.get_env(ck.env_fp)
        env_diff = {
            "summary": {k: [v, env.summary.get(k)] for k, v in (stored[0] if stored else {}).items()
                        if env.summary.get(k) != v},
            "packages": diff_packages(stored[1] if stored else {}, env.packages),
        }
    return ReproduceReport(
        checkpoint=ck.id, task=ck.task, identical=identical, outputs=outputs,
        code_changed=wf.task_hash(ck.task) != manifest["code"].get("task_hash"),
        env_changed=env_changed, env_diff=env_diff, error=outcome.error,
    )


def _claims(store: Store):
    def lookup(key: str):
        found = store.claims(key)
        if not found:
            return None
        cid, claim = found[-1]
        return claim.value, cid[:12]
    return lookup
