"""Run agents' work on a Dask distributed cluster.

The executor only places work: the scheduling core, speculation and
verification stay in the coordinator, exactly as with local processes. A
Dask worker loads the workflow from its file once (workers are separate
processes and may be on other hosts, so task functions travel as a file
path, not as pickled code) and runs the same
:func:`~headwater.runtime.agent.handle` that local agents run, including the
``then`` chains of :class:`~headwater.runtime.agent.Work`. Artifacts go
straight from the worker to the artifact store, so the cluster must see the
same artifact URL (a shared filesystem or an fsspec object store).

Batching. Every Dask task costs a trip through the scheduler and, for its
result, a fetch from the worker, which is far more than a short task. So a
logical agent's messages travel in batches, one Dask task per batch, and how
many an agent holds adapts to how long its work takes, as with local agent
processes: enough for about :data:`BUFFER_SECONDS` of work, at least
``prefetch`` and at most :data:`~headwater.runtime.executors.MAX_PREFETCH`
messages. A batch is split into chunks of at most a quarter of that, so
results come back (and the agent is refilled) while the rest still runs; a
message that takes long enough travels alone, so Dask can spread such work
over every worker. Results are fetched on the client's event loop as each
batch finishes and handed to :meth:`DaskExecutor.poll` through a queue: the
coordinator never waits on a round trip to the cluster.

A batch that fails because the cluster lost its worker (not because a task
raised: that is a task failure, reported as usual) is reported as a lost
agent, and a fresh logical agent takes its place, so the core re-queues the
work as it does when a local agent process dies.

With no scheduler address a ``LocalCluster`` is started with one
single-threaded worker process per agent; HPC users point
``--scheduler-address`` at a cluster started with dask-jobqueue (see README).

Compute pools. With ``agent_pools`` each logical agent belongs to a pool,
and its batches ask Dask for the worker resource ``pool-NAME`` (one unit),
so they run only on workers started with it (``dask worker ADDRESS
--resources pool-gpu=1``). Without a scheduler address one worker per agent
is started, offering its agent's pool. A cluster that has workers but none
offering a pool's resource is refused at start.
"""

from __future__ import annotations

import asyncio
import math
import queue
import uuid
from dataclasses import dataclass
from typing import Any

from headwater.errors import OptionalDependency, RunError
from headwater.runtime.agent import Result, VerifyWork, Work, follow_ons, handle
from headwater.runtime.executors import MAX_PREFETCH, AgentInfo, ClaimReader
from headwater.spec import Workflow
from headwater.store.artifacts import ArtifactStore

BUFFER_SECONDS = 0.25
"""How much work (by observed duration) one logical agent is given to hold:
longer than for local processes, since a Dask task costs milliseconds."""
CHUNKS = 4
"""An agent's holding travels in at least this many Dask tasks once it is big."""

_LOADED: dict[tuple[str, str, str], tuple[Workflow, ArtifactStore]] = {}


def _run_batch(source: str, name: str, agent: str, msgs: list[Work | VerifyWork], artifacts_url: str,
               claims: ClaimReader | None) -> list[Result]:
    """Executed on a Dask worker: load the workflow once per process, run the messages in order.

    A run message's ``then`` chain runs straight after it, as local agents do;
    its results (negative tokens) come back in the same list.
    """
    key = (source, name, artifacts_url)
    if key not in _LOADED:
        from headwater.spec import load_workflow

        _LOADED[key] = load_workflow(source, name), ArtifactStore(artifacts_url)
    wf, artifacts = _LOADED[key]
    results: list[Result] = []
    for msg in msgs:
        result = handle(wf, agent, msg, artifacts, claims)
        results.append(result)
        if isinstance(msg, Work) and msg.then:
            results.extend(res for _, res in follow_ons(wf, agent, msg, result, artifacts, claims))
    return results


@dataclass(eq=False)
class _Agent:
    """The coordinator's view of one logical agent: messages held, and how many it may hold."""

    inflight: int = 0
    capacity: int = 2
    avg: float | None = None
    slot: int = 0  # which of the configured agents this is (a replacement keeps the slot's pool)


def _pool_cluster(pools: list[str]) -> Any:
    """A local cluster of one single-threaded worker process per agent, each
    offering its agent's pool as the resource ``pool-NAME``."""
    from distributed import Nanny, Scheduler, SpecCluster

    local = {"host": "127.0.0.1", "dashboard": False, "dashboard_address": None}
    workers = {f"{pool}-{i}": {"cls": Nanny, "options": {**local, "nthreads": 1, "silence_logs": 40,
                                                          "resources": {f"pool-{pool}": 1}}}
               for i, pool in enumerate(pools, 1)}
    return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": local}, silence_logs=40)


class DaskExecutor:
    """Executor contract (see :mod:`headwater.runtime.executors`) over Dask, with ``submit_many``."""

    follow_ons = True  # batches run ``Work.then`` (see the agent module)

    def __init__(self, wf: Workflow, artifacts_url: str, roles: frozenset[str], n_agents: int,
                 claims: ClaimReader | None = None, scheduler_address: str | None = None,
                 prefetch: int = 2, *, agent_pools: list[str] | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise OptionalDependency("--executor dask", "dask") from None
        if not wf.source_file:
            raise RunError(f"workflow {wf.name!r} has no source file; the Dask executor loads "
                           "task code on workers from the workflow file")
        self.wf = wf
        self.artifacts_url = artifacts_url
        self.roles = roles
        self.claims = claims
        self.prefetch = max(1, prefetch)
        self.agent_pools = list(agent_pools) if agent_pools else None
        self._cluster = None
        if scheduler_address:
            self.client = Client(scheduler_address, set_as_default=False)
            if self.agent_pools:
                self._check_resources(scheduler_address)
        elif self.agent_pools:
            self._cluster = _pool_cluster([self.agent_pools[i % len(self.agent_pools)]
                                           for i in range(max(n_agents, 1))])
            self.client = Client(self._cluster, set_as_default=False)
        else:
            self._cluster = LocalCluster(n_workers=max(n_agents, 1), threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=40)
            self.client = Client(self._cluster, set_as_default=False)
        self._serial = 0
        self._prefix = uuid.uuid4().hex[:8]
        self.agents: dict[str, AgentInfo] = {}
        self._state: dict[str, _Agent] = {}
        self._futures: dict[Any, tuple[str, int]] = {}  # future -> (agent, messages in it)
        self._done: queue.Queue = queue.Queue()  # (future, results | None), put on the client's loop
        for slot in range(max(n_agents, 1)):
            self._add_agent(slot)

    def _check_resources(self, address: str) -> None:
        """Refuse a cluster whose workers offer none of some pool's resource."""
        workers = self.client.scheduler_info().get("workers", {})
        if not workers:
            return  # workers may still be starting (dask-jobqueue): nothing to check against
        offered = {name for w in workers.values() for name in (w.get("resources") or {})}
        missing = [p for p in dict.fromkeys(self.agent_pools or ()) if f"pool-{p}" not in offered]
        if missing:
            self.client.close()
            raise RunError(
                f"no worker of the Dask cluster at {address} offers resource(s) "
                f"{', '.join(f'pool-{p}' for p in missing)}: start each pool's workers with "
                f"`dask worker {address} --resources pool-NAME=1`")

    def _add_agent(self, slot: int) -> str:
        self._serial += 1
        agent = f"dask-{self._prefix}-{self._serial}"
        pool = self.agent_pools[slot % len(self.agent_pools)] if self.agent_pools else "local"
        self.agents[agent] = AgentInfo(agent, self.roles, pool)
        self._state[agent] = _Agent(capacity=self.prefetch, slot=slot)
        return agent

    def free_slots(self, agent: str) -> int:
        state = self._state.get(agent)
        return 0 if state is None else max(0, state.capacity - state.inflight)

    def queued(self, agent: str) -> int:
        state = self._state.get(agent)
        return 0 if state is None else state.inflight

    def submit(self, agent: str, msg: Work | VerifyWork) -> None:
        self.submit_many(agent, [msg])

    def submit_many(self, agent: str, msgs: list[Work | VerifyWork]) -> None:
        state = self._state[agent]
        size = max(1, state.capacity // CHUNKS)
        resources = {f"pool-{self.agents[agent].pool}": 1} if self.agent_pools else None
        for start in range(0, len(msgs), size):
            chunk = list(msgs[start:start + size])
            future = self.client.submit(
                _run_batch, self.wf.source_file, self.wf.name, agent, chunk, self.artifacts_url, self.claims,
                pure=False, key=f"headwater-{chunk[0].task}-{uuid.uuid4().hex}", resources=resources,
            )
            self._futures[future] = (agent, len(chunk))
            state.inflight += len(chunk)
            self.client.loop.add_callback(self._fetch, future)

    async def _fetch(self, future) -> None:
        """On the client's event loop: wait for a batch and queue its results (None if it failed)."""
        try:
            results = await self.client.gather(future, asynchronous=True)
        except (Exception, asyncio.CancelledError):  # lost worker or cancelled: the agent is lost
            results = None
        self._done.put((future, results))

    def poll(self, timeout: float) -> tuple[list[Result], list[str]]:
        done = []
        try:
            done.append(self._done.get(timeout=max(timeout, 0.0)))
            while True:
                done.append(self._done.get_nowait())
        except queue.Empty:
            pass
        results: list[Result] = []
        lost: list[str] = []
        for future, batch in done:
            agent, count = self._futures.pop(future, (None, 0))
            state = self._state.get(agent)
            if state is None:
                continue
            state.inflight -= count
            if batch is not None:
                results.extend(batch)
                self._observe(state, batch)
            else:
                lost.append(agent)
                self._drop(agent)
        return results, lost

    def _observe(self, state: _Agent, batch: list[Result]) -> None:
        for result in batch:
            outcome = result.outcome
            if outcome is not None and outcome.finished:
                seconds = max(outcome.finished - outcome.started, 0.0)
                state.avg = seconds if state.avg is None else state.avg + 0.2 * (seconds - state.avg)
        if state.avg is not None:
            want = BUFFER_SECONDS / max(state.avg, 1e-6)
            state.capacity = int(min(MAX_PREFETCH, max(self.prefetch, math.ceil(want))))

    def _drop(self, agent: str) -> None:
        """Forget a lost agent (its other batches are cancelled) and add a fresh one in its slot."""
        del self.agents[agent]
        slot = self._state.pop(agent).slot
        mine = [f for f, (a, _) in self._futures.items() if a == agent]
        for future in mine:
            del self._futures[future]
        if mine:
            self.client.cancel(mine)
        self._add_agent(slot)

    def close(self) -> None:
        if self._futures:
            self.client.cancel(list(self._futures))
        self._futures.clear()
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
