"""A remote agent: claims work from ``headwater serve`` over HTTP, runs it,
and submits signed bundles. It needs no database and no shared filesystem.

Loop. Register the agent's Ed25519 public key under its token; then, until
told to stop: claim a batch of items (each comes with its
:class:`~headwater.runtime.shared.WorkContext`), download the input
artifacts the local cache lacks, run each item with
:func:`headwater.runtime.shared.execute` (the same code path local agents
use), upload only the outputs the server lacks, and submit the whole batch
in one request, which also claims the next batch. When nothing is ready the
claim is held open on the server (``wait_s``) until something is, so an
idle agent neither polls nor sleeps past new work. One persistent
``httpx.Client`` carries every request, so connections are reused.

Leases. While a batch runs, a background thread renews every lease of the
batch at a third of the lease time, so a long task is not reaped from under
its agent; a renewal refused as stale means another agent has the item and
this result will be refused too, which the server reports per item.

Code. An agent runs only code it has: the ``--workflow`` files it was given
(by workflow name), or the run's recorded source file when it exists on this
host. The workflow's spec hash must equal the run's; otherwise the agent
gives its leases back and stops with an error naming the file and both
hashes, because running different code under a run's name would record
checkpoints that do not describe what the run specified.

Stopping. SIGTERM and SIGINT finish the current batch (its results are
submitted) and exit; ``once`` exits after one batch, ``until_idle`` after
that many seconds without work.
"""

from __future__ import annotations

from collections import deque
import os
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from headwater.checkpoint.signing import SigningKey, load_or_create
from headwater.errors import HeadwaterError, RunError
from headwater.store.artifacts import ArtifactStore

__all__ = ["AgentOptions", "AgentStats", "ApiClient", "RemoteAgent", "RemoteError", "run_agent"]


class RemoteError(HeadwaterError):
    """The server refused a request: ``status``, its ``code`` and ``detail``."""

    def __init__(self, status: int, code: str, detail: str, *, url: str = "") -> None:
        self.status, self.code, self.detail = status, code, detail
        super().__init__(f"{url}: {status} {code}: {detail}" if url else f"{status} {code}: {detail}")


@dataclass
class AgentOptions:
    server: str
    token: str
    roles: list[str] = field(default_factory=list)
    workflows: list[Path] = field(default_factory=list)
    name: str | None = None
    batch: int = 16
    lease_s: float = 60.0
    cache: Path = Path(".headwater-agent")
    once: bool = False
    until_idle: float | None = None
    poll_s: float = 0.2
    max_poll_s: float = 2.0
    timeout_s: float = 60.0
    wait_s: float = 5.0


@dataclass
class AgentStats:
    agent: str
    ran: int = 0
    verified: int = 0
    accepted: int = 0
    refused: int = 0
    batches: int = 0
    seconds: float = 0.0
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=100))

    def to_json(self) -> dict:
        return {"agent": self.agent, "ran": self.ran, "verified": self.verified, "accepted": self.accepted,
                "refused": self.refused, "batches": self.batches, "seconds": round(self.seconds, 3),
                "errors": list(self.errors)[-20:]}


class ApiClient:
    """The API's agent routes over one persistent ``httpx.Client``.

    ``http`` is an existing client to send requests with (tests pass the
    app's in-process client); the token goes in every request's headers.
    """

    def __init__(self, server: str, token: str, *, timeout_s: float = 60.0,
                 http: httpx.Client | None = None) -> None:
        self.server = server.rstrip("/")
        self.owned = http is None
        self.http = http if http is not None else httpx.Client(base_url=self.server, timeout=timeout_s)
        self.auth = {"Authorization": f"Bearer {token}"}

    def _send(self, method: str, url: str, *, headers: dict | None = None, longer: float = 0.0,
              **kwargs: Any) -> httpx.Response:
        """Send a request; ``longer``: seconds the server may hold it open, added to the read timeout."""
        read = self.http.timeout.read
        if longer > 0 and self.owned and read is not None:
            kwargs["timeout"] = httpx.Timeout(self.http.timeout.connect, read=read + longer,
                                              write=self.http.timeout.write, pool=self.http.timeout.pool)
        return self.http.request(method, url, headers={**self.auth, **(headers or {})}, **kwargs)

    def close(self) -> None:
        if self.owned:
            self.http.close()

    def _check(self, response: httpx.Response, *, ok: Sequence[int] = (200,)) -> Any:
        if response.status_code in ok:
            return response.json() if response.headers.get("content-type", "").startswith("application/json") \
                else response.content
        try:
            body = response.json()
            code, detail = body.get("error", "error"), body.get("detail", response.text)
        except ValueError:
            code, detail = "error", response.text[:500]
        raise RemoteError(response.status_code, code, detail, url=str(response.request.url))

    def register(self, name: str, public_hex: str) -> dict:
        return self._check(self._send("POST", "/v1/agents", json={"name": name, "public_key": public_hex}))

    @staticmethod
    def claim_body(agent: str, roles: Sequence[str] | None, limit: int, lease_s: float) -> dict:
        return {"agent": agent, "roles": list(roles or ()) or None, "limit": limit, "lease_s": lease_s}

    def claim(self, agent: str, roles: Sequence[str] | None, limit: int, lease_s: float,
              wait: float = 0.0) -> list[dict]:
        """Lease up to ``limit`` items; with ``wait``, the server holds the request until work is ready."""
        body = {**self.claim_body(agent, roles, limit, lease_s), **({"wait": wait} if wait > 0 else {})}
        return self._check(self._send("POST", "/v1/claims", json=body, longer=wait))["items"]

    def renew(self, agent: str, token: int, lease_s: float) -> float:
        out = self._check(self._send("POST", f"/v1/leases/{token}/renew", json={"agent": agent, "lease_s": lease_s}))
        return float(out["lease_expiry"])

    def submit(self, items: list[dict]) -> list[dict]:
        """Submit a batch; returns each item's result, whether accepted or refused."""
        return self.submit_and_claim(items, None)[0]

    def submit_and_claim(self, items: list[dict], claim: dict | None) -> tuple[list[dict], list[dict]]:
        """Submit a batch and, with ``claim`` (:meth:`claim_body`), lease the next one in the same request.

        Returns each item's result, whether accepted or refused, and the items claimed.
        """
        body: dict[str, Any] = {"items": items}
        if claim is not None:
            body["claim"] = claim
        response = self._send("POST", "/v1/submissions", json=body)
        if response.status_code in (409, 422, 503):
            out = response.json()
            if "results" in out:
                return out["results"], out.get("items") or []
        out = self._check(response)
        return out["results"], out.get("items") or []

    def missing(self, shas: Sequence[str]) -> list[str]:
        if not shas:
            return []
        return self._check(self._send("POST", "/v1/artifacts/missing", json={"sha256": list(shas)}))["missing"]

    def upload(self, sha256: str, data: bytes, media_type: str = "application/octet-stream") -> None:
        self._check(self._send("PUT", f"/v1/artifacts/{sha256}", content=data,
                                  headers={"content-type": "application/octet-stream", "x-media-type": media_type}))

    def download(self, sha256: str) -> bytes:
        return self._check(self._send("GET", f"/v1/artifacts/{sha256}"))


class _Renewer:
    """Renews the leases of the batch in hand until stopped."""

    def __init__(self, client: ApiClient, agent: str, tokens: list[int], lease_s: float) -> None:
        self.client, self.agent, self.tokens, self.lease_s = client, agent, tokens, lease_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="lease-renewer", daemon=True)

    def __enter__(self) -> _Renewer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _loop(self) -> None:
        while not self.stop.wait(self.lease_s / 3):
            for token in list(self.tokens):
                try:
                    self.client.renew(self.agent, token, self.lease_s)
                except (RemoteError, httpx.HTTPError):
                    self.tokens.remove(token)


class RemoteAgent:
    """One agent process's loop; see the module docstring."""

    def __init__(self, options: AgentOptions, *, client: ApiClient | None = None,
                 key: SigningKey | None = None) -> None:
        self.options = options
        self.name = options.name or f"{socket.gethostname()}-{os.getpid()}"
        self.client = client or ApiClient(options.server, options.token, timeout_s=options.timeout_s)
        options.cache.mkdir(parents=True, exist_ok=True)
        self.key = key or load_or_create(options.cache / f"{self.name}.key")
        self.cache = ArtifactStore(options.cache / "artifacts")
        self.stats = AgentStats(self.name)
        self.stopping = threading.Event()
        self._workflows: dict[str, Any] = {}
        self._given: dict[str, Any] | None = None

    # ------------------------------------------------------------ code

    def _load_given(self) -> dict[str, Any]:
        if self._given is None:
            from headwater.spec import load_workflow

            self._given = {}
            for path in self.options.workflows:
                wf = load_workflow(path)
                self._given[wf.name] = wf
        return self._given

    def prepare(self) -> None:
        """Load and hash the ``--workflow`` files now, before registering and claiming.

        A workflow of thousands of tasks takes seconds to load and hash; done
        lazily, that time would be spent holding the first batch's leases.
        Registering only once ready also tells a waiting operator (or a
        benchmark) that the agent can take work at once.
        """
        for wf in self._load_given().values():
            self._workflows.setdefault(wf.spec_hash(), wf)

    def workflow_for(self, ctx: Any) -> Any:
        """The workflow object to run ``ctx`` with; its spec hash must be the run's."""
        if ctx.spec_hash in self._workflows:
            return self._workflows[ctx.spec_hash]
        wf = self._load_given().get(ctx.workflow)
        origin = "--workflow"
        if wf is None and ctx.source and Path(ctx.source).is_file():
            from headwater.spec import load_workflow

            wf, origin = load_workflow(ctx.source, ctx.workflow), "the run's source"
        if wf is None:
            raise RunError(f"agent {self.name} has no code for workflow {ctx.workflow!r} (run {ctx.claim.run_id}); "
                           f"start it with --workflow FILE", run_id=ctx.claim.run_id)
        actual = wf.spec_hash()
        if actual != ctx.spec_hash:
            raise RunError(f"{wf.source_file or origin}: spec hash {actual[:12]} differs from run "
                           f"{ctx.claim.run_id}'s {ctx.spec_hash[:12]}; give this agent the run's workflow file",
                           run_id=ctx.claim.run_id)
        self._workflows[ctx.spec_hash] = wf
        return wf

    # ------------------------------------------------------------ artifacts

    def fetch_inputs(self, ctx: Any) -> None:
        """Download the inputs (and, to verify, the outputs judged) the cache lacks."""
        wanted = list(ctx.inputs.values()) + [o["sha256"] for o in ctx.outputs]
        for sha in dict.fromkeys(wanted):
            if sha and not self.cache.exists(sha):
                self.cache.put_bytes(self.client.download(sha))

    def upload_outputs(self, subs: Sequence[Any]) -> None:
        shas = list(dict.fromkeys(a["sha256"] for s in subs for a in s.artifacts if a.get("sha256")))
        media = {a["sha256"]: a.get("media_type") or "application/octet-stream" for s in subs for a in s.artifacts}
        for sha in self.client.missing(shas):
            self.client.upload(sha, self.cache.get_bytes(sha), media.get(sha, "application/octet-stream"))

    # ------------------------------------------------------------ loop

    def _next_claim(self) -> dict | None:
        """What to claim with a batch's results: the next batch, unless the agent is about to stop."""
        if self.options.once or self.stopping.is_set():
            return None
        return self.client.claim_body(self.name, self.options.roles, self.options.batch, self.options.lease_s)

    def run_batch(self, items: list[dict]) -> list[dict]:
        """Run a claimed batch and submit its results; returns the next batch, claimed with them."""
        from headwater.runtime.shared import WorkContext, execute

        contexts = [WorkContext.from_json(item["context"]) for item in items]
        tokens = [c.claim.token for c in contexts]
        subs: list[Any] = []
        failure: HeadwaterError | None = None
        with _Renewer(self.client, self.name, list(tokens), self.options.lease_s):
            for i, ctx in enumerate(contexts):
                try:
                    wf = self.workflow_for(ctx)
                except HeadwaterError as exc:
                    failure, unrun = exc, tokens[i:]
                    break
                self.fetch_inputs(ctx)
                subs.append(execute(ctx, wf, self.name, self.cache, self.key))
                if ctx.claim.kind == "verify":
                    self.stats.verified += 1
                else:
                    self.stats.ran += 1
        if failure is not None:
            self._give_back(unrun)
        following = self._submit(subs, claim=self._next_claim() if failure is None else None) if subs else []
        if failure is not None:
            raise failure
        return following

    def _submit(self, subs: list[Any], attempts: int = 3, claim: dict | None = None) -> list[dict]:
        """Upload outputs and submit; results the store was too busy to apply are sent again.

        With ``claim``, the first request also claims the next batch, which is returned.
        A refused batch (the server unreachable or failing) is recorded, not
        raised: its leases expire and other agents run the items again.
        """
        pending = list(subs)
        following: list[dict] = []
        for attempt in range(attempts):
            try:
                self.upload_outputs(pending)
                results, claimed = self.client.submit_and_claim([s.to_json() for s in pending], claim)
            except (RemoteError, httpx.TransportError) as exc:
                self.stats.errors.append(f"submit: {exc}")
                return following
            following, claim = following + claimed, None
            by_token = {s.token: s for s in pending}
            pending = []
            for result in results:
                if result.get("ok"):
                    self.stats.accepted += 1
                elif result.get("error") == "store-busy" and attempt < attempts - 1:
                    pending.append(by_token[result["token"]])
                else:
                    self.stats.refused += 1
                    self.stats.errors.append(f"{result.get('token')}: {result.get('error')}: {result.get('detail')}")
            if not pending:
                return following
        return following

    def _give_back(self, tokens: Sequence[int]) -> None:
        """Let other agents take items this one cannot run: expire their leases now."""
        for token in tokens:
            try:
                self.client.renew(self.name, token, 1.0)
            except (RemoteError, httpx.HTTPError):
                pass

    def run(self) -> AgentStats:
        start = time.monotonic()
        delay = self.options.poll_s
        self.prepare()
        while True:
            try:
                self.client.register(self.name, self.key.public_hex)
                break
            except httpx.TransportError as exc:
                self.stats.errors.append(f"register: {type(exc).__name__}: {exc}")
                if self.options.once or self.stopping.wait(delay):
                    raise
                delay = min(delay * 2, self.options.max_poll_s)
        idle_since = time.monotonic()
        delay = self.options.poll_s
        items: list[dict] = []
        try:
            while not self.stopping.is_set():
                if not items:
                    wait = 0.0 if self.options.once else self.options.wait_s
                    if self.options.until_idle is not None:
                        wait = min(wait, max(0.0, self.options.until_idle - (time.monotonic() - idle_since)))
                    asked = time.monotonic()
                    try:
                        items = self.client.claim(self.name, self.options.roles, self.options.batch,
                                                  self.options.lease_s, wait=wait)
                    except httpx.TransportError as exc:
                        # The server is restarting or unreachable: keep trying,
                        # backing off, until it answers or the agent is stopped.
                        self.stats.errors.append(f"claim: {type(exc).__name__}: {exc}")
                        self.stopping.wait(delay)
                        delay = min(delay * 2, self.options.max_poll_s)
                        continue
                if items:
                    self.stats.batches += 1
                    items = self.run_batch(items)
                    idle_since, delay = time.monotonic(), self.options.poll_s
                    if self.options.once:
                        break
                    continue
                if self.options.once:
                    break
                if self.options.until_idle is not None and time.monotonic() - idle_since >= self.options.until_idle:
                    break
                if wait <= 0 or time.monotonic() - asked < wait / 2:
                    # The server answered at once, not holding the claim open: poll, backing off.
                    self.stopping.wait(delay)
                    delay = min(delay * 2, self.options.max_poll_s)
            if items:  # claimed with the last results while being stopped: let other agents have them
                self._give_back([item["claim"]["token"] for item in items])
        finally:
            self.stats.seconds = time.monotonic() - start
        return self.stats


def run_agent(options: AgentOptions) -> AgentStats:
    """Run a remote agent until it is stopped or idle; SIGTERM/SIGINT stop it after the current batch."""
    agent = RemoteAgent(options)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: agent.stopping.set())
    try:
        return agent.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        agent.client.close()
