"""Blast radius: everything built, directly or transitively, on an asset version.

The lineage graph spans every run and workflow. Its edges are

* asset version -> each checkpoint that consumed it;
* checkpoint -> each artifact it produced -> each checkpoint *of the same
  run* that consumed that artifact (content addressing makes equal bytes
  from unrelated runs share a hash; within a run, an input's producer is
  exact, and across runs data flows through claims);
* checkpoint -> each claim version it produced (``claim:KEY@<checkpoint id
  prefix>``) -> each checkpoint, of any run, that consumed that version.

:func:`blast_radius` walks these edges breadth first from the checkpoints
that used any selected version, and keeps for every node reached the node it
was first reached from, so each result carries the path that links it to
the asset. The walk itself is pure: it asks an :class:`EdgeSource` for the
edges of a whole frontier at a time. :class:`LineageGraph` is the in-memory
source (tests, the study simulator); the store implements the same protocol
with a few indexed queries per hop, which is what makes a million-edge graph
answer in well under a second.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from headwater.oversight.refs import AssetRef, version_key


@dataclass(frozen=True)
class CheckpointInfo:
    """What the blast radius reports about a checkpoint."""

    id: str
    run_id: str
    workflow: str
    task: str
    status: str = "committed"
    seq: int = 0


class EdgeSource(Protocol):
    """Batch access to the lineage graph; every method takes a whole frontier."""

    def versions(self, ref: AssetRef) -> list[tuple[str, str, Any]]:
        """``(name, version, order)`` of every version of assets matching
        ``ref``'s kind and name; ``order`` None means "order by version"."""

    def consumers_of(self, kind: str, versions: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
        """``(name, version, checkpoint)`` for each consumed use of those versions."""

    def artifact_edges(self, ckpts: Sequence[str]) -> list[tuple[str, str, str | None]]:
        """``(producer, sha256, consumer or None)``: outputs of ``ckpts`` and
        the checkpoints of the producer's run that consumed them."""

    def claim_edges(self, ckpts: Sequence[str]) -> list[tuple[str, str, str, str | None]]:
        """``(producer, key, version, consumer or None)``: claims produced by
        ``ckpts`` and the checkpoints (any run) that consumed them."""

    def details(self, ckpts: Sequence[str]) -> dict[str, CheckpointInfo]:
        """Run, workflow, task, status and seq of each checkpoint."""


@dataclass(frozen=True)
class Hit:
    """One node in a blast radius, and the path from the asset to it.

    ``path`` lists node labels from the asset version to this node:
    ``claim:g@3f2a9c1b0d4e``, ``ckpt:<id>``, ``artifact:<sha256>``,
    ``claim:tower.height@<version>``, ... ``depth`` counts checkpoints on it.
    """

    kind: str
    id: str
    depth: int
    path: tuple[str, ...]
    run_id: str | None = None
    workflow: str | None = None
    task: str | None = None
    status: str | None = None
    seq: int | None = None

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class BlastRadius:
    """The result of :func:`blast_radius`; counts and groupings as properties."""

    selector: str
    seeds: list[str] = field(default_factory=list)
    checkpoints: dict[str, Hit] = field(default_factory=dict)
    artifacts: dict[str, Hit] = field(default_factory=dict)
    claims: dict[str, Hit] = field(default_factory=dict)

    @property
    def runs(self) -> dict[str, list[Hit]]:
        """run id -> its affected checkpoints, in run order."""
        out: dict[str, list[Hit]] = defaultdict(list)
        for h in self.checkpoints.values():
            out[h.run_id or ""].append(h)
        return {r: sorted(hs, key=lambda h: (h.seq or 0, h.id)) for r, hs in sorted(out.items())}

    @property
    def workflows(self) -> dict[str, set[str]]:
        """workflow -> the ids of its affected runs."""
        out: dict[str, set[str]] = defaultdict(set)
        for h in self.checkpoints.values():
            out[h.workflow or ""].add(h.run_id or "")
        return dict(sorted(out.items()))

    def committed(self) -> list[Hit]:
        return [h for h in self.checkpoints.values() if h.status == "committed"]

    def counts(self) -> dict[str, int]:
        return {"workflows": len(self.workflows), "runs": len(self.runs),
                "checkpoints": len(self.checkpoints), "committed": len(self.committed()),
                "artifacts": len(self.artifacts), "claims": len(self.claims)}

    def to_json(self) -> dict:
        return {
            "selector": self.selector, "seeds": list(self.seeds), "counts": self.counts(),
            "workflows": {w: sorted(r) for w, r in self.workflows.items()},
            "checkpoints": [h.to_json() for h in _ordered(self.checkpoints)],
            "artifacts": [h.to_json() for h in _ordered(self.artifacts)],
            "claims": [h.to_json() for h in _ordered(self.claims)],
        }


def _ordered(hits: dict[str, Hit]) -> list[Hit]:
    return sorted(hits.values(), key=lambda h: (h.depth, h.workflow or "", h.run_id or "", h.seq or 0, h.id))


def select_versions(source: EdgeSource, ref: AssetRef) -> list[tuple[str, str]]:
    """The ``(name, version)`` pairs ``ref`` selects among the known versions."""
    known = source.versions(ref)
    order = {(n, v): o for n, v, o in known}

    def key(name: str) -> Callable[[str], Any]:
        def k(version: str) -> Any:
            o = order.get((name, version))
            return (o,) if o is not None else version_key(version)
        return k

    return sorted({(n, v) for n, v, _ in known if ref.matches(ref.kind, n, v, key(n))})


def blast_radius(source: EdgeSource, ref: AssetRef, *, max_depth: int = 10_000) -> BlastRadius:
    """Every checkpoint, artifact and claim built on the versions ``ref`` selects."""
    selected = select_versions(source, ref)
    result = BlastRadius(str(ref), [f"{ref.kind}:{n}@{v}" for n, v in selected])
    if not selected:
        return result
    # parent: node label -> (previous node label or None, via label or None)
    path_of: dict[str, tuple[str, ...]] = {}
    frontier: list[str] = []
    depth_of: dict[str, int] = {}
    for name, version, ck in sorted(source.consumers_of(ref.kind, selected)):
        node = f"ckpt:{ck}"
        if node not in path_of:
            path_of[node] = (f"{ref.kind}:{name}@{version}", node)
            depth_of[ck] = 1
            frontier.append(ck)
    reached: list[str] = list(frontier)
    depth = 1
    while frontier and depth < max_depth:
        nxt: list[str] = []
        for producer, sha, consumer in sorted(source.artifact_edges(frontier), key=_edge_key):
            art = f"artifact:{sha}"
            base = path_of[f"ckpt:{producer}"]
            if sha not in result.artifacts:
                result.artifacts[sha] = Hit("artifact", sha, depth, base + (art,))
            if consumer is not None and f"ckpt:{consumer}" not in path_of:
                path_of[f"ckpt:{consumer}"] = base + (art, f"ckpt:{consumer}")
                depth_of[consumer] = depth + 1
                nxt.append(consumer)
        for producer, key, version, consumer in sorted(source.claim_edges(frontier), key=_edge_key):
            label = f"claim:{key}@{version}"
            base = path_of[f"ckpt:{producer}"]
            if label not in result.claims:
                result.claims[label] = Hit("claim", label, depth, base + (label,))
            if consumer is not None and f"ckpt:{consumer}" not in path_of:
                path_of[f"ckpt:{consumer}"] = base + (label, f"ckpt:{consumer}")
                depth_of[consumer] = depth + 1
                nxt.append(consumer)
        frontier = nxt
        reached.extend(nxt)
        depth += 1
    info = source.details(reached)
    for ck in reached:
        d = info.get(ck)
        result.checkpoints[ck] = Hit(
            "checkpoint", ck, depth_of[ck], path_of[f"ckpt:{ck}"],
            d.run_id if d else None, d.workflow if d else None, d.task if d else None,
            d.status if d else None, d.seq if d else None,
        )
    for label, h in list(result.claims.items()):
        d = info.get(h.path[-2][5:])
        if d is not None:
            result.claims[label] = Hit("claim", label, h.depth, h.path, d.run_id, d.workflow, d.task, d.status, d.seq)
    for sha, h in list(result.artifacts.items()):
        d = info.get(h.path[-2][5:])
        if d is not None:
            result.artifacts[sha] = Hit("artifact", sha, h.depth, h.path, d.run_id, d.workflow, d.task, d.status, d.seq)
    return result


def _edge_key(edge: tuple) -> tuple:
    return tuple("" if x is None else x for x in edge)


# ------------------------------------------------------- in-memory graph


@dataclass
class LineageGraph:
    """An in-memory lineage graph implementing :class:`EdgeSource`.

    Fill it with :meth:`add` (one checkpoint with its uses, claims, inputs
    and outputs); claims produced are recorded as claim versions named by
    the checkpoint id's first 12 characters, as the runtime does.
    """

    info: dict[str, CheckpointInfo] = field(default_factory=dict)
    uses: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    links: list[tuple[str, str, str]] = field(default_factory=list)
    created: dict[str, float] = field(default_factory=dict)

    def add(self, info: CheckpointInfo, *, uses: Iterable[tuple[str, str, str]] = (),
            claims: Iterable[str] = (), inputs: Iterable[str] = (), outputs: Iterable[str] = (),
            created_at: float | None = None) -> None:
        self.info[info.id] = info
        self.created[info.id] = float(len(self.created)) if created_at is None else created_at
        for kind, name, version in uses:
            self.uses.append((info.id, kind, name, version, "consumed"))
        for key in claims:
            self.uses.append((info.id, "claim", key, info.id[:12], "produced"))
        self.links.extend((info.id, "in", sha) for sha in inputs)
        self.links.extend((info.id, "out", sha) for sha in outputs)

    def versions(self, ref: AssetRef) -> list[tuple[str, str, Any]]:
        seen: dict[tuple[str, str], Any] = {}
        for ck, kind, name, version, _ in self.uses:
            if kind == ref.kind and ref.matches_name(name):
                # claims are ordered by when they were first seen (published or consumed)
                order = self.created.get(ck) if kind == "claim" else None
                key = (name, version)
                if key not in seen or (order is not None and (seen[key] is None or order < seen[key])):
                    seen[key] = order
        return [(n, v, o) for (n, v), o in seen.items()]

    def consumers_of(self, kind: str, versions: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
        wanted = set(versions)
        return [(n, v, ck) for ck, k, n, v, d in self.uses
                if d == "consumed" and k == kind and (n, v) in wanted]

    def artifact_edges(self, ckpts: Sequence[str]) -> list[tuple[str, str, str | None]]:
        front = set(ckpts)
        inputs: dict[str, list[str]] = defaultdict(list)
        for ck, direction, sha in self.links:
            if direction == "in":
                inputs[sha].append(ck)
        out: list[tuple[str, str, str | None]] = []
        for ck, direction, sha in self.links:
            if direction == "out" and ck in front:
                run = self.info[ck].run_id
                consumers = [c for c in inputs.get(sha, []) if self.info[c].run_id == run]
                out.extend((ck, sha, c) for c in consumers) if consumers else out.append((ck, sha, None))
        return out

    def claim_edges(self, ckpts: Sequence[str]) -> list[tuple[str, str, str, str | None]]:
        front = set(ckpts)
        consumed: dict[tuple[str, str], list[str]] = defaultdict(list)
        for ck, kind, name, version, d in self.uses:
            if kind == "claim" and d == "consumed":
                consumed[(name, version)].append(ck)
        out: list[tuple[str, str, str, str | None]] = []
        for ck, kind, name, version, d in self.uses:
            if d == "produced" and ck in front:
                users = consumed.get((name, version), [])
                out.extend((ck, name, version, c) for c in users) if users else out.append((ck, name, version, None))
        return out

    def details(self, ckpts: Sequence[str]) -> dict[str, CheckpointInfo]:
        return {c: self.info[c] for c in ckpts if c in self.info}
