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
edges out of a whole frontier at a time, with what is known of the
checkpoints at their heads. :class:`LineageGraph` is the in-memory source
(tests, the study simulator). This walk is the reference: the store runs
the same walk inside the database
(:class:`headwater.store.assets.DatabaseWalk`), hop by hop over tables, and
fills the same :class:`BlastRadius`; property tests hold the two equal.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, NamedTuple, Protocol

from headwater.oversight.refs import AssetRef, version_key


class CheckpointInfo(NamedTuple):
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

    def consumers_of(self, kind: str, versions: Sequence[tuple[str, str]]) -> list[tuple[str, str, Any]]:
        """``(name, version, checkpoint)`` for each consumed use of those versions;
        the checkpoint as its :class:`CheckpointInfo` (or just its id, and
        :meth:`details` is asked)."""

    def artifact_edges(self, ckpts: Sequence[str]) -> list[tuple[str, str, str | None]]:
        """``(producer, sha256, consumer or None)``: outputs of ``ckpts`` and the
        checkpoints that consumed those bytes, in any run (the walk keeps the
        consumers in the producer's own run)."""

    def claim_edges(self, ckpts: Sequence[str]) -> list[tuple[str, str, str, str | None]]:
        """``(producer, key, version, consumer or None)``: claims produced by
        ``ckpts`` and the checkpoints (any run) that consumed them."""

    def details(self, ckpts: Sequence[str]) -> dict[str, CheckpointInfo]:
        """Run, workflow, task, status and seq of each checkpoint."""

    def hop(self, ckpts: Sequence[str]) -> Hop:
        """:meth:`artifact_edges` and :meth:`claim_edges` of ``ckpts`` at once,
        with :meth:`details` of every consumer they reach. Optional: without
        it the walk calls the three (a database answers a hop with one
        statement)."""


class Hop(NamedTuple):
    """The edges out of one frontier (see :meth:`EdgeSource.hop`)."""

    artifacts: list[tuple[str, str, str | None]]
    claims: list[tuple[str, str, str, str | None]]
    info: dict[str, CheckpointInfo]


@dataclass(slots=True)
class Hit:
    """One node in a blast radius, and the path from the asset to it.

    ``path`` lists node labels from the asset version to this node:
    ``claim:g@3f2a9c1b0d4e``, ``ckpt:<id>``, ``artifact:<sha256>``,
    ``claim:tower.height@<version>``, ... It is built from the radius's
    links when first read, so a large radius costs no path until one is
    asked for. ``depth`` counts checkpoints on it. Treat hits as read-only.
    """

    kind: str
    id: str
    depth: int
    run_id: str | None = None
    workflow: str | None = None
    task: str | None = None
    status: str | None = None
    seq: int | None = None
    origin: BlastRadius | None = field(default=None, compare=False, repr=False)

    @property
    def path(self) -> tuple[str, ...]:
        return self.origin.path_to(self.kind, self.id) if self.origin is not None else ()

    def to_json(self) -> dict:
        return {"kind": self.kind, "id": self.id, "depth": self.depth, "path": list(self.path),
                "run_id": self.run_id, "workflow": self.workflow, "task": self.task, "status": self.status,
                "seq": self.seq}


class Reached(NamedTuple):
    """The checkpoints a walk reached, column by column (one row per checkpoint,
    in the order the radius lists them): what a database walk reads at the end.

    ``prevs`` and ``vias`` are each checkpoint's link (see
    :attr:`BlastRadius.links`); ``outputs`` lists the labels
    (``artifact:<sha256>``, ``claim:KEY@VERSION``) of what each produced,
    empty for a checkpoint at the walk's depth limit.
    """

    ids: Sequence[str]
    run_ids: Sequence[str]
    workflows: Sequence[str]
    tasks: Sequence[str]
    statuses: Sequence[str]
    seqs: Sequence[int]
    depths: Sequence[int]
    prevs: Sequence[str | None]
    vias: Sequence[str]
    outputs: Sequence[Sequence[str]]


@dataclass
class BlastRadius:
    """The result of :func:`blast_radius`; counts and groupings as properties.

    The walk records, per node, only what it must: ``depths`` (checkpoint id,
    ``artifact:<sha256>`` or ``claim:KEY@VERSION`` -> depth), ``info`` (checkpoint -> run, workflow,
    task, status, seq), ``links`` (checkpoint -> the checkpoint it was
    reached from, or None for a direct user, and the artifact, claim or
    asset version label in between) and ``producers`` (artifact or claim
    label -> the checkpoint it was reached through). The :class:`Hit` dictionaries
    and paths are built from these when first read, so answering for a
    large radius costs no objects nobody looks at. A walk that reads its
    radius in bulk hands it over as columns (:meth:`fill`); the four
    dictionaries are built from them when first read, and :meth:`counts`
    needs none of them.
    """

    selector: str
    seeds: list[str] = field(default_factory=list)
    _depths: dict[str, int] = field(default_factory=dict, repr=False)
    _info: dict[str, CheckpointInfo] = field(default_factory=dict, repr=False)
    _links: dict[str, tuple[str | None, str]] = field(default_factory=dict, repr=False)
    _producers: dict[str, str] = field(default_factory=dict, repr=False)
    _reached: Reached | None = field(default=None, repr=False)
    _hits: dict[str, dict[str, Hit]] = field(default_factory=dict, repr=False)

    def fill(self, columns: Reached) -> None:
        """Take the checkpoints in ``columns`` as the radius (of an empty
        result): each output is reached through its producer with the
        smallest ``(depth, id)``."""
        self._reached = columns

    @property
    def depths(self) -> dict[str, int]:
        return self._built()._depths

    @property
    def info(self) -> dict[str, CheckpointInfo]:
        return self._built()._info

    @property
    def links(self) -> dict[str, tuple[str | None, str]]:
        return self._built()._links

    @property
    def producers(self) -> dict[str, str]:
        return self._built()._producers

    def _built(self) -> BlastRadius:
        """Fill the dictionaries from the columns handed over, once, in bulk:
        checkpoints in the order of the columns, outputs in the order they
        first come in there."""
        r, self._reached = self._reached, None
        if r is None:
            return self
        ids, depths = r.ids, r.depths
        self._info.update(zip(ids, map(CheckpointInfo, ids, r.run_ids, r.workflows, r.tasks, r.statuses, r.seqs)))
        self._links.update(zip(ids, zip(r.prevs, r.vias)))
        self._depths.update(zip(ids, depths))
        labels = list(chain.from_iterable(r.outputs))
        rows = list(chain.from_iterable(map(repeat, range(len(ids)), map(len, r.outputs))))
        # Each output's first row (written last to first, the first wins) ...
        first = dict.fromkeys(labels)
        first.update(zip(reversed(labels), reversed(rows)))
        if len(first) < len(labels):
            # ... unless several checkpoints produced it: the smallest (depth, id) wins.
            shared = {label for label, n in Counter(labels).items() if n > 1}
            for label, i in zip(labels, rows):
                if label in shared:
                    j = first[label]
                    if (depths[i], ids[i]) < (depths[j], ids[j]):
                        first[label] = i
        self._depths.update(zip(first, map(depths.__getitem__, first.values())))
        self._producers.update(zip(first, map(ids.__getitem__, first.values())))
        return self

    def _make(self, kind: str) -> dict[str, Hit]:
        if kind not in self._hits:
            self._built()
            depths, links, info, producers = self._depths, self._links, self._info, self._producers
            out: dict[str, Hit] = {}
            for label, d in depths.items():
                if kind == "checkpoint":
                    if label not in links:
                        continue
                    ident, i = label, info.get(label)
                elif not label.startswith(f"{kind}:"):
                    continue
                else:
                    ident = label if kind == "claim" else label[len("artifact:"):]
                    i = info.get(producers[label])
                out[ident] = Hit(kind, ident, d, *(i[1:] if i else (None,) * 5), self)  # type: ignore[arg-type]
            self._hits[kind] = out
        return self._hits[kind]

    @property
    def checkpoints(self) -> dict[str, Hit]:
        """checkpoint id -> its hit."""
        return self._make("checkpoint")

    @property
    def artifacts(self) -> dict[str, Hit]:
        """sha256 -> the hit of the artifact (reached through its producer)."""
        return self._make("artifact")

    @property
    def claims(self) -> dict[str, Hit]:
        """``claim:KEY@VERSION`` -> its hit."""
        return self._make("claim")

    def path_to(self, kind: str, ident: str) -> tuple[str, ...]:
        """The labels from the asset version to a checkpoint, artifact or claim."""
        if kind == "checkpoint":
            tail: list[str] = []
            ck: str | None = ident
        else:
            label = f"artifact:{ident}" if kind == "artifact" else ident
            tail, ck = [label], self.producers[label]
        links = self.links
        while ck is not None:
            tail.append(f"ckpt:{ck}")
            prev, via = links[ck]
            tail.append(via)
            ck = prev
        return tuple(reversed(tail))

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
        r = self._reached
        if r is not None:
            labels = set(chain.from_iterable(r.outputs))
            claims = sum(map(str.startswith, labels, repeat("claim:")))
            return {"workflows": len(set(r.workflows)), "runs": len(set(r.run_ids)), "checkpoints": len(r.ids),
                    "committed": r.statuses.count("committed"), "artifacts": len(labels) - claims,
                    "claims": claims}
        info, links, producers = self._info, self._links, self._producers
        infos = [info[c] for c in links if c in info]
        claims = sum(1 for k in producers if k.startswith("claim:"))
        return {"workflows": len({i.workflow for i in infos}), "runs": len({i.run_id for i in infos}),
                "checkpoints": len(links), "committed": sum(1 for i in infos if i.status == "committed"),
                "artifacts": len(producers) - claims, "claims": claims}

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
    """Every checkpoint, artifact and claim built on the versions ``ref`` selects.

    Breadth first, one batch of edge queries per hop; each node keeps the
    first node it was reached from (ties broken by id, so the result does
    not depend on the order the source returns edges in).
    """
    selected = select_versions(source, ref)
    result = BlastRadius(str(ref), [f"{ref.kind}:{n}@{v}" for n, v in selected])
    if not selected:
        return result
    links, depths, producers = result.links, result.depths, result.producers
    frontier: list[str] = []
    info = result.info
    seeds = [(n, v, c if isinstance(c, str) else c[0], None if isinstance(c, str) else c)
             for n, v, c in source.consumers_of(ref.kind, selected)]
    for name, version, ck, i in sorted(seeds, key=lambda u: u[:3]):
        if ck not in links:
            links[ck] = (None, f"{ref.kind}:{name}@{version}")
            depths[ck] = 1
            frontier.append(ck)
            if i is not None:
                info[ck] = i
    missing = [c for c in frontier if c not in info]
    if missing:
        info.update(source.details(missing))
    step = getattr(source, "hop", None) or (lambda ckpts: _compose_hop(source, ckpts))
    depth = 1
    while frontier and depth < max_depth:
        # Within a hop, the smallest (producer, via) wins, whatever order the
        # source returns edges in: the result is the same on every backend.
        found: dict[str, tuple[str, str]] = {}
        edges, claim_edges, heads = step(frontier)
        for ck, i in heads.items():
            if ck not in info:
                info[ck] = i
        for producer, sha, consumer in edges:
            label = "artifact:" + sha
            d = depths.get(label)
            if d is None or (d == depth and producer < producers[label]):
                producers[label] = producer
                depths[label] = depth
            if consumer is not None and consumer not in links and consumer in info \
                    and info[consumer][1] == info[producer][1]:
                link = (producer, label)
                old = found.get(consumer)
                if old is None or link < old:
                    found[consumer] = link
        for producer, key, version, consumer in claim_edges:
            label = f"claim:{key}@{version}"
            d = depths.get(label)
            if d is None or (d == depth and producer < producers[label]):
                producers[label] = producer
                depths[label] = depth
            if consumer is not None and consumer not in links:
                link = (producer, label)
                old = found.get(consumer)
                if old is None or link < old:
                    found[consumer] = link
        depth += 1
        frontier = sorted(found)
        for consumer in frontier:
            links[consumer] = found[consumer]
            depths[consumer] = depth
    return result


def _compose_hop(source: Any, ckpts: Sequence[str]) -> Hop:
    arts, claims = source.artifact_edges(ckpts), source.claim_edges(ckpts)
    heads = {e[-1] for e in arts if e[-1] is not None} | {e[-1] for e in claims if e[-1] is not None}
    return Hop(arts, claims, source.details(sorted(heads)))


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

    def consumers_of(self, kind: str, versions: Sequence[tuple[str, str]]) -> list[tuple[str, str, CheckpointInfo]]:
        wanted = set(versions)
        return [(n, v, self.info[ck]) for ck, k, n, v, d in self.uses
                if d == "consumed" and k == kind and (n, v) in wanted and ck in self.info]

    def artifact_edges(self, ckpts: Sequence[str]) -> list[tuple[str, str, str | None]]:
        front = set(ckpts)
        inputs: dict[str, list[str]] = defaultdict(list)
        for ck, direction, sha in self.links:
            if direction == "in":
                inputs[sha].append(ck)
        out: list[tuple[str, str, str | None]] = []
        for ck, direction, sha in self.links:
            if direction == "out" and ck in front:
                consumers = inputs.get(sha, [])
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

    def hop(self, ckpts: Sequence[str]) -> Hop:
        return _compose_hop(self, ckpts)
