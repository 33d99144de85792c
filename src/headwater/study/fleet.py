"""The fleet a replicate simulates, and every random draw it will need, made up front.

:func:`make_fleet` turns :class:`~headwater.study.params.Params` and a seed
into a :class:`Fleet`: the assets (a shared core with a popularity skew,
bespoke assets, one code asset per stage, compute pools), the workflows
(chains of stages, each stage with the assets it uses, the claim key it
produces and the one it may consume), the silent errors planted in it, the
benign version changes of the shared core, and the bad policy, if any.

All randomness is drawn here, from one :class:`numpy.random.Generator`,
including the draws the simulation consumes later (a verifier's verdict,
the node a task lands on, the noise on a claim): they are indexed by
``(stage, attempt)``, so the four strategies of a replicate see the same
fleet, the same errors and the same luck wherever their paths agree, and
their differences come from what they decide. The simulator itself draws
nothing.

Asset names follow the oversight registry's ``kind:name`` form
(:mod:`headwater.oversight.refs`): ``lib:lib03``, ``dataset:dat07``; a
stage's own code is ``lib:w12.s2``, a pool ``compute:pool1``. Claim keys
are ints ``topic * stages + stage``: workflows on one topic produce claims
under the same keys, which is what the cross-workflow inconsistency monitor
compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headwater.study.params import ERROR_KINDS, SHARED_KINDS, Params

REF_KIND = {"library": "lib", "code": "lib", "dataset": "dataset", "model": "model", "claim": "claim",
            "compute": "compute"}
"""The registry kind (:data:`headwater.oversight.refs.KINDS`) of each study kind."""

DRAWS = 16
"""Per-stage draws kept for attempts; attempt ``a`` uses slot ``(a - 1) % DRAWS``."""


@dataclass(frozen=True, slots=True)
class Asset:
    """One asset. ``owner`` is the workflow of a bespoke or code asset, -1 if shared."""

    idx: int
    name: str
    kind: str
    owner: int = -1

    @property
    def shared(self) -> bool:
        return self.owner < 0


@dataclass(frozen=True, slots=True)
class StageDef:
    """One stage of one workflow, with its draws.

    ``assets`` are versioned assets it uses (shared core, bespoke, its own
    code asset); ``manifest`` holds one draw per asset slot (a buggy version
    corrupts the stage when the draw is below ``p_manifest``: the bug
    depends on the stage's inputs, not on the attempt). ``consume`` is the
    claim key it reads, or -1; ``u_inherit`` decides whether a corrupted
    chain input and a corrupted claim pass their error on (like
    ``manifest``, per stage, not per attempt). The per-attempt draws: ``u_verify`` (the
    verifier), ``u_node`` (which node of the pool), ``u_aux`` (owners'
    root-cause search, redundancy sampling) and ``noise`` (the claim value).
    """

    wf: int
    j: int
    hours: float
    key: int
    assets: tuple[int, ...]
    manifest: tuple[float, ...]
    consume: int
    u_consume: float
    u_inherit: tuple[float, float]
    u_verify: tuple[float, ...]
    u_node: tuple[float, ...]
    u_aux: tuple[float, ...]
    u_red: tuple[float, ...]
    noise: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class WorkflowDef:
    """One workflow: a chain of stages on one topic, run on one compute pool.

    ``tag`` is 0 for the class a bad policy targets. ``u_heed`` is one draw
    per planted error (does this workflow act on its advisory).
    """

    idx: int
    start: float
    topic: int
    pool: int
    tag: int
    stages: tuple[StageDef, ...]
    u_heed: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class PlantedError:
    """A silent error: where it lives, from when, and how strongly it shows.

    ``asset`` is the versioned asset it is introduced into (a buggy new
    version at ``time``), or the compute pool with a bad ``node``, or for a
    ``local`` bug the code asset of stage ``stage`` of workflow ``wf``
    (present from the start). ``bias`` is the signed shift it puts on the
    claims it corrupts; ``external`` is when someone outside the fleet would
    find it (shared errors only; ``inf`` for local bugs).
    """

    idx: int
    kind: str
    asset: int
    time: float
    bias: float
    external: float
    node: int = -1
    wf: int = -1
    stage: int = -1


@dataclass(frozen=True, slots=True)
class Change:
    """A benign new version of a shared asset; ``shift`` is its legitimate effect on results."""

    time: float
    asset: int
    shift: float


@dataclass(frozen=True, slots=True)
class BadPolicy:
    """A bad global policy rolled out at ``time``.

    ``kind`` is ``"auto-approve"`` (workflows in scope skip their own
    verification) or ``"over-throttle"`` (workflows in scope that use the
    most popular shared asset are paused). ``u_shadow`` and ``u_staged`` are
    the draws of the two rollout gates; ``enforced_days`` how long it stays
    once enforced before someone notices.
    """

    time: float
    kind: str
    u_shadow: float
    u_staged: float
    enforced_days: float


@dataclass(frozen=True, slots=True)
class Fleet:
    """Everything one replicate simulates; see the module docstring."""

    params: Params
    seed: int
    assets: tuple[Asset, ...]
    workflows: tuple[WorkflowDef, ...]
    errors: tuple[PlantedError, ...]
    changes: tuple[Change, ...]
    bad_policy: BadPolicy | None
    blind: str | None
    n_keys: int
    popular: int
    """The most used shared asset (what an over-throttling policy hits), or -1."""

    def users(self) -> dict[int, set[int]]:
        """Asset -> the workflows that use it (compute pools included)."""
        out: dict[int, set[int]] = {}
        for wf in self.workflows:
            for st in wf.stages:
                for a in st.assets:
                    out.setdefault(a, set()).add(wf.idx)
            if wf.pool >= 0:
                out.setdefault(wf.pool, set()).add(wf.idx)
        return out

    def top_reach(self, k: int = 5) -> float:
        """Mean share of workflows using each of the ``k`` most used shared assets.

        The study's measure of concentration: 0.5 means the top ``k`` shared
        assets are each used by half the fleet on average.
        """
        users = self.users()
        reach = sorted((len(users.get(a.idx, ())) for a in self.assets if a.shared), reverse=True)[:k]
        if not reach or not self.workflows:
            return 0.0
        return float(sum(reach) / (len(reach) * len(self.workflows)))


def _pick(rng: np.random.Generator, mix: dict[str, float], names: tuple[str, ...]) -> str:
    w = np.array([max(0.0, mix.get(n, 0.0)) for n in names], dtype=float)
    if w.sum() <= 0:
        raise ValueError(f"mix {mix!r} gives no weight to any of {names}")
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _zipf_weights(n: int, s: float) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=float) ** -s
    return w / w.sum()


def _draw(cdf: np.ndarray, u: float) -> int:
    """The index a uniform draw ``u`` picks from cumulative weights ``cdf``."""
    return min(int(np.searchsorted(cdf, u, side="right")), len(cdf) - 1)


def make_fleet(params: Params, seed: int) -> Fleet:
    """Draw one fleet, its errors, changes and risks; deterministic in ``(params, seed)``."""
    p = params
    rng = np.random.default_rng(seed)
    horizon = p.horizon
    assets: list[Asset] = []

    # shared core: kinds assigned to popularity ranks at random
    n_shared = max(0, p.n_shared)
    for r in range(n_shared):
        kind = _pick(rng, p.shared_kinds, SHARED_KINDS)
        assets.append(Asset(len(assets), f"{REF_KIND[kind]}:{kind[:3]}{r:02d}", kind))
    shared_w = _zipf_weights(n_shared, p.zipf) if n_shared else np.zeros(0)
    pools: list[int] = []
    for k in range(max(0, p.n_pools)):
        pools.append(len(assets))
        assets.append(Asset(len(assets), f"compute:pool{k}", "compute"))
    pool_w = _zipf_weights(len(pools), p.zipf) if pools else np.zeros(0)

    n_topics = p.n_workflows if p.topics_per_workflow >= 1 else max(1, round(p.n_workflows * p.topics_per_workflow))
    topic_w = _zipf_weights(n_topics, 0.8)
    shared_cdf, topic_cdf = np.cumsum(shared_w), np.cumsum(topic_w)
    n_keys = n_topics * p.stages
    bespoke_per_wf = max(1, p.assets_per_stage)
    tagged = rng.random(p.n_workflows) < p.bad_policy_share

    workflows: list[WorkflowDef] = []
    starts = np.sort(rng.uniform(0.0, p.arrival_days * 24.0, p.n_workflows))
    n_err_max = 64
    for w in range(p.n_workflows):
        topic = w if p.topics_per_workflow >= 1 else int(rng.choice(n_topics, p=topic_w))
        if pools:
            pool = pools[int(rng.choice(len(pools), p=pool_w))]
        else:
            pool = len(assets)
            assets.append(Asset(pool, f"compute:own{w}", "compute", owner=w))
        bespoke = []
        for b in range(bespoke_per_wf):
            kind = _pick(rng, p.shared_kinds, SHARED_KINDS)
            bespoke.append(len(assets))
            assets.append(Asset(len(assets), f"{REF_KIND[kind]}:w{w}.{b}", kind, owner=w))
        stages = []
        for j in range(p.stages):
            code = len(assets)
            assets.append(Asset(code, f"lib:w{w}.s{j}", "code", owner=w))
            used: list[int] = []
            u = rng.random((p.assets_per_stage, 3))
            for k in range(p.assets_per_stage):
                if n_shared and u[k, 0] >= p.bespoke_share:
                    a = _draw(shared_cdf, u[k, 1])
                else:
                    a = bespoke[min(int(u[k, 2] * len(bespoke)), len(bespoke) - 1)]
                if a not in used:
                    used.append(a)
            used.append(code)
            consume = -1
            if n_keys > 1:
                t = _draw(topic_cdf, float(rng.random()))
                consume = t * p.stages + int(rng.integers(p.stages))
            hours = float(p.stage_hours * rng.lognormal(-0.125, 0.5))
            draws = rng.random((4, DRAWS))
            stages.append(StageDef(
                wf=w, j=j, hours=hours, key=topic * p.stages + j, assets=tuple(used),
                manifest=tuple(rng.random(len(used)).tolist()), consume=consume,
                u_consume=float(rng.random()), u_inherit=(float(rng.random()), float(rng.random())),
                u_verify=tuple(draws[0].tolist()), u_node=tuple(draws[1].tolist()),
                u_aux=tuple(draws[2].tolist()), u_red=tuple(draws[3].tolist()),
                noise=tuple((rng.normal(0.0, p.claim_noise, DRAWS)).tolist()),
            ))
        workflows.append(WorkflowDef(
            idx=w, start=float(starts[w]), topic=topic, pool=pool, tag=0 if tagged[w] else 1,
            stages=tuple(stages), u_heed=tuple(float(x) for x in rng.random(n_err_max)),
        ))

    # planted errors: shared ones over the middle of the period, then local bugs
    errors: list[PlantedError] = []
    by_kind = {k: [a.idx for a in assets[:n_shared] if a.kind == k] for k in SHARED_KINDS}
    n_shared_err = int(rng.poisson(p.shared_errors)) if n_shared or pools else 0
    for _ in range(n_shared_err):
        kind = _pick(rng, p.error_kinds, ERROR_KINDS[:-1])
        t0 = float(rng.uniform(0.1, 0.6) * horizon)
        bias = float(p.signal * p.claim_noise * rng.lognormal(0.0, 0.5) * rng.choice((-1.0, 1.0)))
        ext = t0 + float(rng.exponential(p.external_discovery_days * 24.0))
        if kind == "compute":
            if not pools:
                continue
            errors.append(PlantedError(len(errors), kind, pools[int(rng.integers(len(pools)))], t0, bias, ext,
                                       node=int(rng.integers(p.nodes_per_pool))))
        elif by_kind[kind]:
            cands = by_kind[kind]
            errors.append(PlantedError(len(errors), kind, cands[int(rng.integers(len(cands)))], t0, bias, ext))
        if len(errors) >= n_err_max // 2:
            break
    for wf in workflows:
        if rng.random() < p.p_local_bug and len(errors) < n_err_max:
            j = int(rng.integers(p.stages))
            bias = float(p.signal * p.claim_noise * rng.lognormal(0.0, 0.5) * rng.choice((-1.0, 1.0)))
            errors.append(PlantedError(len(errors), "local", wf.stages[j].assets[-1], 0.0, bias, float("inf"),
                                       wf=wf.idx, stage=j))

    # ids in planting order, so that "the earliest planted error" is the smallest id
    errors.sort(key=lambda e: (e.time, e.kind != "local", e.wf, e.asset))
    errors = [PlantedError(i, e.kind, e.asset, e.time, e.bias, e.external, e.node, e.wf, e.stage)
              for i, e in enumerate(errors)]

    # benign changes of the versioned shared core
    changes: list[Change] = []
    rate = p.change_rate / (30.0 * 24.0)
    for a in range(n_shared):
        n = int(rng.poisson(rate * horizon))
        for t in np.sort(rng.uniform(0.0, horizon, n)):
            shift = 0.0
            if rng.random() < p.p_benign_shift:
                shift = float(p.benign_shift * p.claim_noise * rng.lognormal(0.0, 0.5) * rng.choice((-1.0, 1.0)))
            changes.append(Change(float(t), a, shift))
    changes.sort(key=lambda c: (c.time, c.asset))

    bad_policy = None
    u_policy = rng.random(4)
    if u_policy[0] < p.p_bad_policy:
        bad_policy = BadPolicy(
            time=float((0.1 + 0.5 * u_policy[1]) * horizon),
            kind="auto-approve" if u_policy[2] < 0.5 else "over-throttle",
            u_shadow=float(rng.random()), u_staged=float(rng.random()),
            enforced_days=float(rng.exponential(14.0)),
        )
    blind = None
    u_blind = rng.random(2)
    if p.blind_kind is not None:
        blind = p.blind_kind
    elif u_blind[0] < p.p_blind:
        kinds = ("library", "dataset", "model", "claim", "compute")
        blind = kinds[int(u_blind[1] * len(kinds))]

    fleet = Fleet(params=p, seed=seed, assets=tuple(assets), workflows=tuple(workflows), errors=tuple(errors),
                  changes=tuple(changes), bad_policy=bad_policy, blind=blind, n_keys=n_keys, popular=-1)
    users = fleet.users()
    shared_used = [(len(users.get(a, ())), -a) for a in range(n_shared)]
    popular = -max(shared_used)[1] if shared_used and max(shared_used)[0] else -1
    return Fleet(params=p, seed=seed, assets=fleet.assets, workflows=fleet.workflows, errors=fleet.errors,
                 changes=fleet.changes, bad_policy=bad_policy, blind=blind, n_keys=n_keys, popular=popular)
