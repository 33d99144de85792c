"""Executors place agents' work somewhere; they decide nothing.

The coordinator asks an executor which agents exist and how much more work
each can take, submits :class:`~headwater.runtime.agent.Work` to a named
agent, and polls for results and for agents that died. Two executors live
here: :class:`InlineExecutor` runs work synchronously in the coordinator's
process (for debugging and tests), :class:`LocalProcessExecutor` runs one OS
process per agent. Both keep the same contract, so the scheduling semantics
do not depend on where work runs.

Beyond the contract an executor may offer, and the coordinator uses when
present:

* ``submit_many(agent, msgs)`` -- hand over several messages at once;
* ``cancel(agent, token)`` -- stop that work: drop it if the agent has not
  started it, interrupt it if it is running;
* ``steal(agent, n)`` -- ask ``agent`` to give back up to ``n`` messages it
  has not started;
* ``take_released()`` -- the ``(agent, token)`` pairs agents gave back
  (stolen or cancelled before they finished), since the last call;
* ``queued(agent)`` -- how many messages ``agent`` holds (running or not).

Local agent processes
---------------------

Each agent process has two pipes to the coordinator. The coordinator writes
batches of messages (a pickled list per write) to the agent's inbox without
ever blocking: a frame that does not fit in the pipe waits in a buffer and
goes out when the pipe drains, so the coordinator always gets back to
reading results and two full pipes can never deadlock. Frames are written
when the coordinator next polls, just before it waits: a pipe write wakes
the agent, and Linux lets a woken reader run in its writer's place, so
writing mid-turn would stall the rest of the coordinator's turn. The agent answers on
its own pipe with batches of :class:`~headwater.runtime.agent.Result` and
``("released", tokens)`` notes.

Inside the agent a listener thread reads the inbox into a local queue while
the main thread works through it, so control messages act at once: a cancel
drops queued work, or interrupts the running task with
:class:`~headwater.runtime.agent.Cancelled` (raised by a ``SIGUSR1``
handler, so the task's own code stops where it is); a steal gives back
queued work from the end of the queue. Results are sent in batches: when the
queue runs dry, every :data:`RESULT_BATCH` results, or
:data:`RESULT_DELAY` seconds after the oldest unsent one.

How much each agent holds (its prefetch) adapts to how long its work takes:
enough for about :data:`BUFFER_SECONDS` of work, at least ``prefetch`` and at
most :data:`MAX_PREFETCH` messages, so no-op tasks travel in big batches and
hour-long ones are not hoarded.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import math
import multiprocessing as mp
import os
import pickle
import selectors
import signal
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from headwater.runtime.agent import Cancelled, Result, VerifyWork, Work, follow_ons, handle, release_scratch
from headwater.spec import Workflow
from headwater.store.artifacts import ArtifactStore

MAX_PREFETCH = 256
"""Most messages one local agent holds at once."""
BUFFER_SECONDS = 0.05
"""How much work (by observed duration) a local agent is given to hold."""
RESULT_BATCH = 64
"""An agent sends its results at the latest after this many."""
RESULT_DELAY = 0.002
"""... or this many seconds after the oldest unsent result."""
SPIN_SECONDS = 0.0005
"""How long the coordinator, waiting on no more messages than there are agents,
keeps polling before it sleeps: waking an idle CPU costs more than a no-op task
on a virtual machine, and the next result of a chain usually comes within it."""


@dataclass(frozen=True)
class AgentInfo:
    """One agent: its roles and the compute pool it belongs to."""

    id: str
    roles: frozenset[str]
    pool: str = "local"


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

    def __getstate__(self) -> dict:
        return {"store_url": self.store_url, "root": self.root, "_store": None}

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
    """Runs each message synchronously when submitted; one or more logical agents.

    ``agent_pools`` gives agent 1, 2, ... their compute pools (default: all
    in ``local``).
    """

    def __init__(self, wf: Workflow, artifacts: ArtifactStore, roles: frozenset[str],
                 claims: ClaimReader | None = None, n_agents: int = 1, *,
                 agent_pools: list[str] | None = None) -> None:
        self.wf = wf
        self.artifacts = artifacts
        self.claims = claims
        self.agents: dict[str, AgentInfo] = {}
        for i in range(1, n_agents + 1):
            pool = agent_pools[(i - 1) % len(agent_pools)] if agent_pools else "local"
            self.agents[f"inline-{i}"] = AgentInfo(f"inline-{i}", roles, pool)
        self._done: list[Result] = []

    def free_slots(self, agent: str) -> int:
        return 1

    def submit(self, agent: str, msg: Work | VerifyWork) -> None:
        self._done.append(handle(self.wf, agent, msg, self.artifacts, self.claims))

    def submit_many(self, agent: str, msgs: list[Work | VerifyWork]) -> None:
        for msg in msgs:
            self.submit(agent, msg)

    def queued(self, agent: str) -> int:
        return 0

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


# -- inside an agent process ---------------------------------------------------

class _AgentQueue:
    """An agent's local queue, shared by its listener thread and its main thread."""

    def __init__(self) -> None:
        self.items: collections.deque[Work | VerifyWork] = collections.deque()
        self.cond = threading.Condition()
        self.stopped = False
        self.current: int | None = None
        self.cancel: int | None = None


def _agent_loop(agent_id: str, wf: Workflow, inbox, outbox, artifacts_url: str, claims, parent_pid: int) -> None:
    """The body of one agent process (see the module docstring)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    artifacts = ArtifactStore(artifacts_url)
    q = _AgentQueue()
    send_lock = threading.Lock()

    def send(items: list) -> None:
        with send_lock:
            outbox.send(items)

    def on_cancel(signum, frame) -> None:
        if q.cancel is not None and q.cancel == q.current:
            q.cancel = None
            raise Cancelled()

    signal.signal(signal.SIGUSR1, on_cancel)
    main = threading.main_thread().ident
    listener = threading.Thread(target=_listen, args=(inbox, q, send, main), daemon=True)
    listener.start()
    unsent: list[Any] = []
    oldest = 0.0
    try:
        while True:
            with q.cond:
                while not q.items and not q.stopped:
                    if unsent:
                        break
                    q.cond.wait(1.0)
                    if os.getppid() != parent_pid:
                        return
                if q.stopped:
                    return
                msg = q.items.popleft() if q.items else None
                if msg is not None:
                    q.current = msg.token
            if msg is not None:
                try:
                    result = handle(wf, agent_id, msg, artifacts, claims)
                    if not unsent:
                        oldest = time.monotonic()
                    unsent.append(result)
                    if isinstance(msg, Work) and msg.then:
                        for work, res in follow_ons(wf, agent_id, msg, result, artifacts, claims):
                            q.current = work.token
                            unsent.append(res)
                    q.current = None
                except Cancelled:
                    q.current = None
                    unsent.append(("released", [msg.token]))
            if unsent and (not q.items or len(unsent) >= RESULT_BATCH or time.monotonic() - oldest >= RESULT_DELAY):
                send(unsent)
                unsent = []
    except (OSError, EOFError):
        return
    finally:
        release_scratch()


def _listen(inbox, q: _AgentQueue, send, main: int) -> None:
    """The agent's listener thread: inbox messages into the local queue, control at once."""
    try:
        while True:
            batch = inbox.recv()
            released: list[int] = []
            with q.cond:
                for item in batch:
                    if item is None:
                        q.stopped = True
                    elif isinstance(item, tuple):
                        kind, arg = item
                        if kind == "cancel":
                            dropped = _drop(q, lambda m, t=arg: m.token == t, 1)
                            released += dropped
                            if not dropped and q.current == arg:
                                q.cancel = arg
                                signal.pthread_kill(main, signal.SIGUSR1)
                        elif kind == "steal":
                            released += _drop(q, None, arg)
                    else:
                        q.items.append(item)
                q.cond.notify()
            if released:
                send([("released", released)])
            if q.stopped:
                return
    except (OSError, EOFError):
        with q.cond:
            q.stopped = True
            q.cond.notify()


def _drop(q: _AgentQueue, match, n: int) -> list[int]:
    """Remove up to ``n`` queued (not started) messages, from the end; those ``match`` accepts."""
    kept: list[Work | VerifyWork] = []
    taken: list[int] = []
    while q.items and len(taken) < n:
        msg = q.items.pop()
        if match is None or match(msg):
            taken.append(msg.token)
        else:
            kept.append(msg)
    q.items.extend(reversed(kept))
    return taken


# -- the coordinator's side ----------------------------------------------------

@dataclass(eq=False)
class _Link:
    """The coordinator's end of one agent process."""

    id: str
    proc: Any
    inbox: Any  # Connection the coordinator writes to
    outbox: Any  # Connection the coordinator reads from
    slot: int  # which of the configured agents this is (a replacement keeps the slot's roles and pool)
    inflight: dict[int, None] = field(default_factory=dict)
    capacity: int = 2
    avg: float | None = None
    pending: bytearray = field(default_factory=bytearray)
    writing: bool = False
    stealing: bool = False


class LocalProcessExecutor:
    """One forked OS process per agent, each holding up to its prefetch of messages.

    Agents are forked, so they inherit the already-imported workflow. An agent
    killed from outside is reported by :meth:`poll` and replaced by a fresh
    process under a new id (and the same roles), so no work is lost and no id
    is reused. ``agent_roles`` gives agent 1, 2, ... their roles in turn
    (default: ``roles`` for all), ``agent_pools`` their compute pools
    (default: all in ``local``); a replacement keeps its slot's roles and
    pool. Agents are only forked while holding
    ``fork_guard`` when given, so a fork never copies a lock another thread
    of the coordinator holds. See the module docstring for the pipes,
    batching, cancellation and stealing.
    """

    def __init__(self, wf: Workflow, artifacts_url: str, roles: frozenset[str], n_agents: int,
                 claims: ClaimReader | None = None, prefetch: int = 2, *,
                 agent_roles: list[frozenset[str]] | None = None, agent_pools: list[str] | None = None,
                 fork_guard: threading.Lock | None = None) -> None:
        self.wf = wf
        self.artifacts_url = artifacts_url
        self.roles = roles
        self.agent_roles = list(agent_roles) if agent_roles else None
        self.agent_pools = list(agent_pools) if agent_pools else None
        self.claims = claims
        self.prefetch = max(1, prefetch)
        self._ctx = mp.get_context("fork")
        self._links: dict[str, _Link] = {}
        self._sel = selectors.DefaultSelector()
        self._serial = 0
        self._released: list[tuple[str, int]] = []
        self._lost: list[str] = []
        self._unsent: dict[str, _Link] = {}
        self.agents: dict[str, AgentInfo] = {}
        self.fork_guard = fork_guard
        self.follow_ons = True  # agents run ``Work.then`` (see the agent module)
        for slot in range(n_agents):
            self._spawn(slot)

    def _spawn(self, slot: int) -> str:
        if self.fork_guard is None:
            return self._fork(slot)
        with self.fork_guard:
            return self._fork(slot)

    def _fork(self, slot: int) -> str:
        self._serial += 1
        roles = self.agent_roles[slot % len(self.agent_roles)] if self.agent_roles else self.roles
        agent_id = f"local-{os.getpid()}-{self._serial}"
        inbox_r, inbox_w = self._ctx.Pipe(duplex=False)
        outbox_r, outbox_w = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=_agent_loop,
            args=(agent_id, self.wf, inbox_r, outbox_w, self.artifacts_url, self.claims, os.getpid()),
            name=agent_id,
            daemon=True,
        )
        proc.start()
        inbox_r.close()
        outbox_w.close()
        os.set_blocking(inbox_w.fileno(), False)
        link = _Link(agent_id, proc, inbox_w, outbox_r, slot, capacity=self.prefetch)
        self._links[agent_id] = link
        self._sel.register(outbox_r.fileno(), selectors.EVENT_READ, ("recv", link))
        self._sel.register(proc.sentinel, selectors.EVENT_READ, ("dead", link))
        pool = self.agent_pools[slot % len(self.agent_pools)] if self.agent_pools else "local"
        self.agents[agent_id] = AgentInfo(agent_id, roles, pool)
        return agent_id

    def pid(self, agent: str) -> int | None:
        link = self._links.get(agent)
        return link.proc.pid if link else None

    def free_slots(self, agent: str) -> int:
        link = self._links.get(agent)
        return 0 if link is None else max(0, link.capacity - len(link.inflight))

    def queued(self, agent: str) -> int:
        link = self._links.get(agent)
        return 0 if link is None else len(link.inflight)

    def submit(self, agent: str, msg: Work | VerifyWork) -> None:
        self.submit_many(agent, [msg])

    def submit_many(self, agent: str, msgs: list[Work | VerifyWork]) -> None:
        link = self._links[agent]
        for msg in msgs:
            link.inflight[msg.token] = None
        self._send(link, list(msgs))

    def cancel(self, agent: str, token: int) -> None:
        link = self._links.get(agent)
        if link is not None and token in link.inflight:
            self._send(link, [("cancel", token)])

    def steal(self, agent: str, n: int) -> None:
        link = self._links.get(agent)
        if link is not None and not link.stealing and n > 0:
            link.stealing = True
            self._send(link, [("steal", n)])

    def take_released(self) -> list[tuple[str, int]]:
        out, self._released = self._released, []
        return out

    def _send(self, link: _Link, items: list) -> None:
        """Queue a frame for the agent; it goes out at the next :meth:`poll`."""
        data = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        link.pending += struct.pack("!i", len(data)) + data
        self._unsent[link.id] = link

    def _pump(self, link: _Link) -> None:
        """Write what the agent's pipe takes now; wait for writability for the rest."""
        fd = link.inbox.fileno()
        try:
            while link.pending:
                n = os.write(fd, link.pending)
                del link.pending[:n]
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.EBADF):
                raise
            link.pending.clear()
        want = bool(link.pending)
        if want != link.writing:
            if want:
                self._sel.register(fd, selectors.EVENT_WRITE, ("send", link))
            else:
                self._sel.unregister(fd)
            link.writing = want

    def poll(self, timeout: float) -> tuple[list[Result], list[str]]:
        for link in self._unsent.values():
            if link.id in self._links:
                self._pump(link)
        self._unsent.clear()
        results: list[Result] = []
        dead: list[_Link] = []
        start = time.monotonic()
        deadline = start + max(timeout, 0.0)
        spin = start + SPIN_SECONDS if sum(len(x.inflight) for x in self._links.values()) <= len(self._links) else 0
        while True:
            now = time.monotonic()
            wait = 0.0 if now < spin else max(0.0, deadline - now)
            for key, _ in self._sel.select(0 if results or dead else wait):
                kind, link = key.data
                if kind == "recv":
                    if not self._read(link, results):
                        dead.append(link)
                elif kind == "send":
                    self._pump(link)
                elif link not in dead:
                    dead.append(link)
            if results or dead or self._lost or self._released or time.monotonic() >= deadline:
                break
        for link in dict.fromkeys(dead):
            if link.id in self._links:
                self._read(link, results)
                self._drop_link(link)
        lost, self._lost = self._lost, []
        return results, lost

    def _read(self, link: _Link, results: list[Result]) -> bool:
        """Read every message the agent has sent so far; False when its pipe closed."""
        try:
            while link.outbox.poll():
                for item in link.outbox.recv():
                    if isinstance(item, tuple):
                        link.stealing = False
                        for token in item[1]:
                            if link.inflight.pop(token, 0) is None:
                                self._released.append((link.id, token))
                        continue
                    link.inflight.pop(item.token, None)
                    results.append(item)
                    outcome = item.outcome
                    if outcome is not None and outcome.finished:
                        self._observe(link, max(outcome.finished - outcome.started, 0.0))
        except (EOFError, OSError):
            return False
        return True

    def _observe(self, link: _Link, seconds: float) -> None:
        link.avg = seconds if link.avg is None else link.avg + 0.2 * (seconds - link.avg)
        want = BUFFER_SECONDS / max(link.avg, 1e-6)
        link.capacity = int(min(MAX_PREFETCH, max(self.prefetch, math.ceil(want))))

    def _drop_link(self, link: _Link) -> None:
        for fd in (link.outbox.fileno(), link.proc.sentinel):
            try:
                self._sel.unregister(fd)
            except (KeyError, ValueError):
                pass
        if link.writing:
            self._sel.unregister(link.inbox.fileno())
        for conn in (link.inbox, link.outbox):
            conn.close()
        if link.proc.is_alive():
            link.proc.kill()
        link.proc.join(timeout=2)
        del self._links[link.id]
        del self.agents[link.id]
        self._lost.append(link.id)
        self._spawn(link.slot)

    def close(self) -> None:
        for link in self._links.values():
            try:
                self._send(link, [None])
                self._pump(link)
            except (OSError, ValueError):
                pass
            link.inbox.close()
        deadline = time.monotonic() + 2
        for link in self._links.values():
            link.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if link.proc.is_alive():
                link.proc.kill()
                link.proc.join(timeout=2)
            link.outbox.close()
        self._links.clear()
        self._sel.close()
