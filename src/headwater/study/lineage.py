"""The simulator's lineage graph: :class:`headwater.oversight.lineage.EdgeSource`, indexed.

Every committed result becomes one checkpoint ``r<idx>`` of run ``w<wf>``
(all generations of a workflow are one run, as ``rerun --affected-by``
re-runs checkpoints inside the run they belong to). It consumed its asset
versions, read at most one claim version (the producing checkpoint's id,
cut to 12 characters, as the runtime names claim versions), and took its
chain input as an artifact of the previous stage. Its own output artifact
is ``a<idx>``; its claim is ``k<key>@r<idx>``.

The oversight core's :func:`~headwater.oversight.lineage.blast_radius`
walks this graph. :class:`~headwater.oversight.lineage.LineageGraph` scans
all edges per hop, which is fine for tests and small graphs; the simulator
asks for blast radii many times per replicate, so this source keeps the
indexes the store keeps (uses by version, consumers by artifact and by
claim version) and answers each hop in time proportional to its frontier.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from headwater.oversight import AssetRef, CheckpointInfo


def ckpt_id(idx: int) -> str:
    """The checkpoint id of result ``idx`` (12 characters, so it is its own claim version)."""
    return f"r{idx:011d}"


def result_of(ckpt: str) -> int:
    return int(ckpt[1:])


class IndexedLineage:
    """An append-only lineage graph with per-hop indexes; see the module docstring."""

    def __init__(self) -> None:
        self._info: dict[str, CheckpointInfo] = {}
        self._versions: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
        self._consumers: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        self._outputs: dict[str, list[str]] = defaultdict(list)
        self._artifact_users: dict[str, list[str]] = defaultdict(list)
        self._claims: dict[str, list[tuple[str, str]]] = defaultdict(list)

    def add(self, info: CheckpointInfo, *, uses: Sequence[tuple[str, str, str]], claim: str | None,
            inputs: Sequence[str], outputs: Sequence[str]) -> None:
        """Record one checkpoint: asset versions consumed, claim produced, artifacts in and out.

        A consumed claim is passed in ``uses`` as ``("claim", key, version)``.
        """
        ck = info.id
        self._info[ck] = info
        for kind, name, version in uses:
            self._versions[(kind, name)].setdefault(version, None)
            self._consumers[(kind, name, version)].append(ck)
        if claim is not None:
            version = ck[:12]
            self._versions[("claim", claim)][version] = info.seq
            self._claims[ck].append((claim, version))
        for sha in inputs:
            self._artifact_users[sha].append(ck)
        self._outputs[ck].extend(outputs)

    # -- EdgeSource -------------------------------------------------------------
    def versions(self, ref: AssetRef) -> list[tuple[str, str, Any]]:
        out = []
        for (kind, name), vs in self._versions.items():
            if kind == ref.kind and ref.matches_name(name):
                out.extend((name, v, o) for v, o in vs.items())
        return out

    def consumers_of(self, kind: str, versions: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
        return [(n, v, ck) for n, v in versions for ck in self._consumers.get((kind, n, v), ())]

    def artifact_edges(self, ckpts: Sequence[str]) -> list[tuple[str, str, str | None]]:
        out: list[tuple[str, str, str | None]] = []
        for ck in ckpts:
            run = self._info[ck].run_id
            for sha in self._outputs.get(ck, ()):
                users = [c for c in self._artifact_users.get(sha, ()) if self._info[c].run_id == run]
                if users:
                    out.extend((ck, sha, c) for c in users)
                else:
                    out.append((ck, sha, None))
        return out

    def claim_edges(self, ckpts: Sequence[str]) -> list[tuple[str, str, str, str | None]]:
        out: list[tuple[str, str, str, str | None]] = []
        for ck in ckpts:
            for key, version in self._claims.get(ck, ()):
                users = self._consumers.get(("claim", key, version), ())
                if users:
                    out.extend((ck, key, version, c) for c in users)
                else:
                    out.append((ck, key, version, None))
        return out

    def details(self, ckpts: Sequence[str]) -> dict[str, CheckpointInfo]:
        return {c: self._info[c] for c in ckpts if c in self._info}
