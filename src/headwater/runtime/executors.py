"""Executors place agents' work somewhere; they decide nothing.

The coordinator asks an executor which agents exist and how much more work
each can take, submits :class:`~headwater.runtime.agent.Work` to a named
agent, and polls for results and for agents that died. Two executors live
here: :class:`InlineExecutor` runs work synchronously in the coordinator's
process (for debugging and tests), :class:`LocalProcessExecutor` runs one OS
process per agent. Both keep the same contract, so the scheduling semantics
do not depend on where work runs.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue
import signal
from dataclasses import dataclass
from typing import Protocol

from headwater.runtime.agent import Result, VerifyWork, Work, handle
from headwater.spec import Workflow
from headwater.store.artifacts import ArtifactStore


@dataclass(frozen=True)
class AgentInfo:
    id: str
    roles: frozenset[str]


class Executor(Protocol):
    """The contract every executor keeps."""

    agents: dict[str, AgentInfo]

    def free_slots(self, agent: str) -> int:
        """How many more messages ``agent`` will accept now."""

    def submit(self, agent: str, msg: Work | VerifyWork) -> None:
        """Hand work to ``agent``; returns at once."""

    def poll(self, timeout: float) -> tuple[list[Result], list[str]]:
        """Results that arrived (waiting up to ``timeout`` s for the first)
        and the ids of agents that died since the last poll."""

    def close(self) -> None:
        """Stop every agent."""


class ClaimReader:
    """Resolves ``ctx.use("claim:KEY")`` against the store, opened lazily."""

    def __init__(self, store_url: str, root: str) -> None:
        self.store_url = store_url
        self.root = root
        self._store = None

    def __call__(self, key: str):
        if self._store is None:
            from headwater.store import open_store

            self._store = open_store(self.store_url, root=self.root)
        found = self._store.claims(key)
        if not found:
            return None
        ckpt_id, claim = found[-1]
        return claim.value, ckpt_id[:12]


class InlineExecutor:
    """Runs each message synchronously when submitted; one or more logical agents."""

    def __init__(self, wf: Workflow, artifacts: ArtifactStore, roles: frozenset[str],
                 claims: ClaimReader | None = None, n_agents: int = 1) -> None:
        self.wf = wf
        self.artifacts = artifacts
        self.claims = claims
        self.agents = {f"inline-{i}": AgentInfo(f"inline-{i}", roles) for i in range(1, n_agents + 1)}
        self._done: list[Result] = []

    def free_slots(self, agent: str) -> int:
        return 1

    def submit(self, agent: str, msg: Work | VerifyWork) -> None:
        self._done.append(handle(self.wf, agent, msg, self.artifacts, self.claims))

    def poll(self, timeout: float) -> tuple[list[Result], list[str]]:
        done, self._done = self._done, []
        return done, []

    def close(self) -> None:
        self._done.clear()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphans)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _agent_loop(agent_id, wf, inbox, outbox, artifacts_url, claims, parent_pid) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    artifacts = ArtifactStore(artifacts_url)
    while True:
        try:
            msg = inbox.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return
            continue
        if msg is None:
            return
        outbox.put(handle(wf, agent_id, msg, artifacts, claims))


class LocalProcessExecutor:
    """One forked OS process per agent; each holds up to ``prefetch`` messages.

    Agents are forked, so they inherit the already-imported workflow. An agent
    killed from outside is reported by :meth:`poll` and replaced by a fresh
    process under a new id, so no work is lost and no id is reused.
    """

    def __init__(self, wf: Workflow, artifacts_url: str, roles: frozenset[str], n_agents: int,
                 claims: ClaimReader | None = None, prefetch: int = 2) -> None:
        self.wf = wf
        self.artifacts_url = artifacts_url
        self.roles = roles
        self.claims = claims
        self.prefetch = prefetch
        self._ctx = mp.get_context("fork")
        self._outbox = self._ctx.Queue()
        self._procs: dict[str, tuple[mp.process.BaseProcess, mp.queues.Queue]] = {}
        self._inflight: dict[str, int] = {}
        self._serial = 0
        self.agents: dict[str, AgentInfo] = {}
        for _ in range(n_agents):
            self._spawn()

    def _spawn(self) -> str:
        self._serial += 1
        agent_id = f"local-{os.getpid()}-{self._serial}"
        inbox = self._ctx.Queue()
        proc = self._ctx.Process(
            target=_agent_loop,
            args=(agent_id, self.wf, inbox, self._outbox, self.artifacts_url, self.claims, os.getpid()),
            name=agent_id,
            daemon=True,
        )
        proc.start()
        self._procs[agent_id] = (proc, inbox)
        self._inflight[agent_id] = 0
        self.agents[agent_id] = AgentInfo(agent_id, self.roles)
        return agent_id

    def pid(self, agent: str) -> int | None:
        return self._procs[agent][0].pid if agent in self._procs else None

    def free_slots(self, agent: str) -> int:
        return self.prefetch - self._inflight.get(agent, self.prefetch)

    def submit(self, agent: str, msg: Work | VerifyWork) -> None:
        self._procs[agent][1].put(msg)
        self._inflight[agent] += 1

    def poll(self, timeout: float) -> tuple[list[Result], list[str]]:
        results: list[Result] = []
        try:
            results.append(self._outbox.get(timeout=max(timeout, 0.0)))
            while True:
                results.append(self._outbox.get_nowait())
        except queue.Empty:
            pass
        for res in results:
            if res.agent in self._inflight:
                self._inflight[res.agent] -= 1
        lost = [a for a, (proc, _) in self._procs.items() if not proc.is_alive()]
        for agent in lost:
            proc, inbox = self._procs.pop(agent)
            del self._inflight[agent]
            del self.agents[agent]
            inbox.close()
            self._spawn()
        return results, lost

    def close(self) -> None:
        for proc, inbox in self._procs.values():
            try:
                inbox.put(None)
            except (OSError, ValueError):
                pass
        for proc, _ in self._procs.values():
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2)
        self._procs.clear()
