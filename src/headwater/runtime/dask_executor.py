"""Run agents' work on a Dask distributed cluster.

The executor only places work: the scheduling core, speculation and
verification stay in the coordinator, exactly as with local processes. Each
logical agent's messages become Dask tasks; a Dask worker loads the workflow
from its file once (workers are separate processes and may be on other hosts,
so task functions travel as a file path, not as pickled code) and runs the
same :func:`~headwater.runtime.agent.handle` that local agents run. Artifacts
go straight from the worker to the artifact store, so the cluster must see the
same artifact URL (a shared filesystem or an fsspec object store).

A task that fails because the cluster lost its worker (not because the task
raised: that is a task failure, reported as usual) is reported as a lost
agent, and a fresh logical agent takes its place, so the core re-queues the
work as it does when a local agent process dies.

With no scheduler address a ``LocalCluster`` is started with one
single-threaded worker process per agent; HPC users point
``--scheduler-address`` at a cluster started with dask-jobqueue (see README).
"""

from __future__ import annotations

import queue
from typing import Any

from headwater.errors import OptionalDependency, RunError
from headwater.runtime.agent import Result, VerifyWork, Work, handle
from headwater.runtime.executors import AgentInfo, ClaimReader
from headwater.spec import Workflow
from headwater.store.artifacts import ArtifactStore

_LOADED: dict[tuple[str, str], Workflow] = {}


def _run_on_worker(source: str, name: str, agent: str, msg: Work | VerifyWork, artifacts_url: str,
                   claims: ClaimReader | None) -> Result:
    """Executed on a Dask worker: load the workflow once per process, run the message."""
    from headwater.spec import load_workflow

    key = (source, name)
    if key not in _LOADED:
        _LOADED[key] = load_workflow(source, name)
    return handle(_LOADED[key], agent, msg, ArtifactStore(artifacts_url), claims)


class DaskExecutor:
    """Executor contract (see :mod:`headwater.runtime.executors`) over Dask."""

    def __init__(self, wf: Workflow, artifacts_url: str, roles: frozenset[str], n_agents: int,
                 claims: ClaimReader | None = None, scheduler_address: str | None = None,
                 prefetch: int = 2) -> None:
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
        self.prefetch = prefetch
        self._cluster = None
        if scheduler_address:
            self.client = Client(scheduler_address, set_as_default=False)
        else:
            self._cluster = LocalCluster(n_workers=max(n_agents, 1), threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=40)
            self.client = Client(self._cluster, set_as_default=False)
        self._serial = 0
        self.agents: dict[str, AgentInfo] = {}
        self._inflight: dict[str, int] = {}
        self._futures: dict[Any, str] = {}
        self._done: queue.Queue = queue.Queue()  # futures, put by Dask's callback thread
        for _ in range(max(n_agents, 1)):
            self._add_agent()

    def _add_agent(self) -> str:
        self._serial += 1
        agent = f"dask-{id(self) % 10_000}-{self._serial}"
        self.agents[agent] = AgentInfo(agent, self.roles)
        self._inflight[agent] = 0
        return agent

    def free_slots(self, agent: str) -> int:
        return self.prefetch - self._inflight.get(agent, self.prefetch)

    def submit(self, agent: str, msg: Work | VerifyWork) -> None:
        future = self.client.submit(
            _run_on_worker, self.wf.source_file, self.wf.name, agent, msg, self.artifacts_url, self.claims,
            pure=False, key=f"headwater-{msg.task}-{msg.attempt}-{msg.token}",
        )
        self._futures[future] = agent
        self._inflight[agent] += 1
        future.add_done_callback(self._done.put)

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
        for future in done:
            agent = self._futures.pop(future, None)
            if agent is None:
                continue
            if agent in self._inflight:
                self._inflight[agent] -= 1
            if future.status == "finished":
                results.append(future.result())
            elif agent in self.agents:
                lost.append(agent)
                del self.agents[agent]
                del self._inflight[agent]
                self._add_agent()
        return results, lost

    def close(self) -> None:
        for future in list(self._futures):
            future.cancel()
        self._futures.clear()
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
