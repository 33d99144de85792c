"""``headwater verify``: recompute every hash, the hash chain and signatures.

Checks, in the order they are reported: each bundle's bytes hash to its id
and parse as a valid bundle; its signature verifies under the workspace key;
each run's ``prev`` chain is unbroken and every parent is known; every
artifact a bundle names (outputs and heavy captures) still hashes to its
sha256. The first problem in write order names the first broken bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from headwater.checkpoint.verify import check_chain, check_checkpoint
from headwater.store import Store


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
    """Verify one run (or every run) against the workspace's public key."""
    report = VerifyReport()
    runs = [store.get_run(run_id)] if run_id else list(reversed(store.list_runs(limit=1_000_000)))
    seen_artifacts: dict[str, bool] = {}
    for run in runs:
        ckpts = store.list_checkpoints(run.id)
        parsed: list[tuple[str, dict]] = []
        for ck in ckpts:
            report.checkpoints += 1
            problems = check_checkpoint(ck.id, ck.bundle, ck.signature, public_hex)
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
        for cid, problem in check_chain(parsed):
            report.problems.append((cid, f"run {run.id}: {problem}"))
    return report
