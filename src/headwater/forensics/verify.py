"""``headwater verify``: recompute every hash, the hash chain and signatures.

Checks, in the order they are reported: each bundle's bytes hash to its id
and parse as a valid bundle; its signature verifies under the key it names
(the workspace key, or the registered key of the remote agent that signed
it); each run's ``prev`` chain is unbroken and every parent is known; every
artifact a bundle names (outputs and heavy captures) still hashes to its
sha256. The first problem in write order names the first broken bundle.

Runs served by the shared work queue (``headwater submit``) finish their
tasks on many hosts in no fixed order, so their bundles carry no ``prev``
link: for them the chain check is that every parent was written before its
child, in the same run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from headwater.checkpoint.signing import key_id_of
from headwater.checkpoint.verify import check_chain, check_checkpoint
from headwater.store import Store
from headwater.store.tokens import Tokens


@dataclass
class VerifyReport:
    checkpoints: int = 0
    artifacts: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (subject id, what is wrong)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"ok": self.ok, "checkpoints": self.checkpoints, "artifacts": self.artifacts,
                "problems": [{"subject": s, "problem": p} for s, p in self.problems]}


def verify_store(store: Store, public_hex: str, run_id: str | None = None) -> VerifyReport:
    """Verify one run (or every run) against the workspace's public key and the agents' keys."""
    report = VerifyReport()
    runs = [store.get_run(run_id)] if run_id else list(reversed(store.list_runs(limit=1_000_000)))
    seen_artifacts: dict[str, bool] = {}
    own_key = key_id_of(public_hex)
    for run in runs:
        ckpts = store.list_checkpoints(run.id)
        keys = Tokens(store).public_keys(ck.key_id for ck in ckpts if ck.key_id != own_key)
        keys[own_key] = public_hex
        parsed: list[tuple[str, dict]] = []
        for ck in ckpts:
            report.checkpoints += 1
            key = keys.get(ck.key_id)
            if key is None:
                report.problems.append((ck.id, f"run {run.id}, task {ck.task!r}: signed by key {ck.key_id!r}, "
                                               "which is neither this workspace's nor a registered agent's"))
                continue
            problems = check_checkpoint(ck.id, ck.bundle, ck.signature, key)
            report.problems.extend((ck.id, f"run {run.id}, task {ck.task!r}: {p}") for p in problems)
            if problems:
                continue
            doc = ck.doc
            parsed.append((ck.id, doc))
            shas = [a["sha256"] for a in doc.get("artifacts", [])]
            shas += list((doc.get("heavy") or {}).get("artifacts", {}).values())
            for sha in shas:
                if sha not in seen_artifacts:
                    report.artifacts += 1
                    seen_artifacts[sha] = store.artifacts.exists(sha) and store.artifacts.verify(sha)
                if not seen_artifacts[sha]:
                    report.problems.append(
                        (sha, f"artifact {sha[:12]} of checkpoint {ck.id[:12]} ({ck.task}) is missing or altered")
                    )
        queued = (run.options or {}).get("executor") == "queue"
        for cid, problem in (check_parents(parsed) if queued else check_chain(parsed)):
            report.problems.append((cid, f"run {run.id}: {problem}"))
    return report


def check_parents(checkpoints: list[tuple[str, dict]]) -> list[tuple[str, str]]:
    """The chain check for a run served by the shared queue: ``(checkpoint id, problem)`` pairs.

    ``checkpoints`` are ``(id, bundle)`` in write order. Each must belong to
    the run most of them name, carry no ``prev`` link, and name as parents
    only checkpoints of that run written before it.
    """
    problems: list[tuple[str, str]] = []
    runs = Counter(b.get("run") for _, b in checkpoints)
    run = runs.most_common(1)[0][0] if runs else None
    seen: set[str] = set()
    for cid, bundle in checkpoints:
        if bundle.get("run") != run:
            problems.append((cid, f"belongs to run {bundle.get('run')!r}, not {run!r}"))
            continue
        if bundle.get("prev") is not None:
            problems.append((cid, "a queued run's checkpoint names a prev link"))
        for parent in bundle.get("parents") or []:
            if parent not in seen:
                problems.append((cid, f"parent {str(parent)[:12]} is not a checkpoint written earlier in the run"))
        seen.add(cid)
    return problems
