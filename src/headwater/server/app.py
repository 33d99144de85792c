"""The HTTP API: the coordinator's work queue for remote agents, and the
store's runs, checkpoints, assets, blast radius and audit log for people.

Shape. :func:`create_app` builds one FastAPI app around one store; nothing is
global (the Prometheus registry, the token table and the queue hang off
``app.state``), so tests build as many apps as they like. Routes are thin:
they check who is asking (:mod:`headwater.server.auth`), call the store,
:class:`~headwater.store.queue.WorkQueue`, :mod:`headwater.runtime.shared` or
:class:`~headwater.runtime.fleet.Fleet` exactly as the CLI does, and turn the
result into JSON. Store calls block, so routes are plain ``def`` functions and
run in the server's thread pool.

Throughput. A remote agent claims several items per request (each with its
work context, so no second round trip), uploads only the artifacts the
server lacks, and submits several results per request, with the claim of its
next batch riding on the results' transaction; the cost of HTTP is paid per
batch, not per task. An agent with nothing to do holds its claim open
(``wait``) instead of polling: results applied here wake it at once.

Errors. Every refusal is JSON ``{"error": code, "detail": what to do}``:
401 without a live token, 403 for a missing role, scope or privilege or a
self-verification, 404 for unknown ids, 409 for a stale fencing token, 413
for a body over the size limit, 422 for malformed input, a forged bundle or
an artifact whose bytes do not match its name. Bad input changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict
from typing import Any, Optional

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from headwater.errors import HeadwaterError, IntegrityError, NotFound, SpecError, StoreError
from headwater.server import models as m
from headwater.server.auth import (
    ApiError,
    check_not_self_verification,
    check_roles,
    check_run_scope,
    current_token,
    operator_token,
    own_agent,
)
from headwater.store import Store, open_store
from headwater.store.tokens import TokenError, TokenRecord, Tokens

API_VERSION = "v1"
DEFAULT_MAX_BODY = 64 << 20
"""Largest request body accepted (bytes): a batch of bundles, or one artifact."""
MAX_WAIT_S = 30.0
"""Longest a ``wait`` long poll is held open; clients simply ask again."""
CLAIM_RECHECK_S = 0.25
"""How often a claim held open looks for work made ready by other processes."""

Sha256Path = Path(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")
_ERROR_CODES = {400: "bad-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found",
                405: "method-not-allowed", 409: "conflict", 413: "too-large", 422: "invalid-request"}
_ERRORS = {code: {"model": m.ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422, 503)}


class Metrics:
    """The server's Prometheus counters, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("headwater_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.claims = Counter("headwater_claims", "Work items handed to remote agents", ["kind"],
                              registry=self.registry)
        self.submissions = Counter("headwater_submissions", "Results accepted from remote agents", ["kind"],
                                   registry=self.registry)
        self.rejections = Counter("headwater_rejections", "Requests or results refused, by reason", ["reason"],
                                  registry=self.registry)


class _Guard:
    """ASGI middleware: the request body size limit (413) and request metrics.

    The limit is checked on ``Content-Length`` before the app runs and again
    while the body streams in, so a client that lies about the length or
    sends chunks still cannot make the server buffer more than the limit.
    """

    def __init__(self, app: Any, max_body: int, metrics: Metrics) -> None:
        self.app, self.max_body, self.metrics = app, max_body, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]
        too_large = ApiError(413, "too-large", f"request body over the limit of {self.max_body} bytes; "
                             "send fewer items per request, or raise the server's --max-body")
        length = dict(scope.get("headers") or ()).get(b"content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                status[0] = 413
                self.metrics.rejections.labels("too-large").inc()
                response = JSONResponse({"error": too_large.code, "detail": too_large.detail}, status_code=413)
                return await response(scope, receive, send)
            seen = [0]

            async def limited() -> dict:
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > self.max_body:
                        self.metrics.rejections.labels("too-large").inc()
                        raise too_large
                return message

            async def tracked(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            await self.app(scope, limited, tracked)
        finally:
            route = scope.get("route")
            self.metrics.requests.labels(getattr(route, "path", "unmatched"), scope.get("method", ""),
                                         str(status[0])).inc()


def _error(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status)


def _domain_status(exc: HeadwaterError) -> tuple[int, str]:
    from headwater.runtime.shared import Rejected, StaleLease

    if isinstance(exc, NotFound):
        return 404, "not-found"
    if isinstance(exc, StaleLease):
        return 409, "stale-lease"
    if isinstance(exc, (Rejected, IntegrityError)):
        return 422, "rejected"
    if isinstance(exc, StoreError):
        return 503, "store-unavailable"
    if isinstance(exc, (TokenError, SpecError)):
        return 400, "bad-request"
    return 400, "refused"


def _install_errors(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or _ERROR_CODES.get(exc.status_code, "error")
        if exc.status_code in (401, 403):
            metrics.rejections.labels(code).inc()
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        response = _error(exc.status_code, code, str(exc.detail))
        if headers:
            response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return _error(422, "invalid-request", problems or "malformed request")

    @app.exception_handler(HeadwaterError)
    async def domain(request: Request, exc: HeadwaterError) -> JSONResponse:
        status, code = _domain_status(exc)
        metrics.rejections.labels(code).inc()
        return _error(status, code, str(exc))


# ---------------------------------------------------------------- helpers

class _Wakeup:
    """Claims held open for work (``wait``), and the signal that wakes them.

    A claim that finds nothing waits here, on the server's event loop, not
    in a worker thread, so a fleet of idle agents ties up no threads. Each
    accepted batch of results (and each reap) wakes every waiter, from
    whichever thread applied it; a waiter then looks for work with a read
    before it claims. Changes made by other processes (a coordinator, a
    second server, a run submitted) are seen at the next recheck.

    ``waiting`` counts the claims held open per role set, so that a claim
    takes only its fair share of the items ready (:meth:`WorkQueue.claim`'s
    ``share``) while others of the same roles wait.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._waiting: dict[frozenset[str], int] = {}

    def waiting(self, roles: Sequence[str]) -> int:
        return self._waiting.get(frozenset(roles), 0)

    @asynccontextmanager
    async def held(self, roles: Sequence[str]):
        """Count a claim as waiting for ``roles`` while the block runs."""
        key = frozenset(roles)
        self._loop = asyncio.get_running_loop()
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            yield
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]

    async def wait(self, timeout: float) -> bool:
        """Sleep until :meth:`notify` or ``timeout``; True when notified."""
        if self._event is None:
            self._event = asyncio.Event()
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def notify(self) -> None:
        """Wake every waiting claim; safe from any thread."""
        loop = self._loop
        if loop is not None and self._waiting:
            try:
                loop.call_soon_threadsafe(self._fire)
            except RuntimeError:  # the loop has closed: nobody waits any more
                pass

    def _fire(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()


class _Verifier:
    """Checks a batch's bundle signatures in worker processes (``workers`` > 0), else in the calling thread.

    An Ed25519 check holds the GIL, and a server accepting thousands of
    results a second spends a sixth of its time in them; in a worker process
    they run beside the server's other requests, on another core. Small
    batches are checked in the caller (a round trip to the worker would cost
    more). A worker that dies is replaced; meanwhile the caller checks. Every
    signature is checked either way, with the same function
    (:func:`~headwater.runtime.shared.verify_all`).
    """

    MIN_BATCH = 8

    def __init__(self, workers: int) -> None:
        self.workers = max(0, workers)
        self._pool: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the workers now (their imports take a second), not on the first batch."""
        if self.workers:
            from headwater.runtime.shared import verify_all

            self._executor().submit(verify_all, []).result()

    def _executor(self) -> Any:
        with self._lock:
            if self._pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                # Spawned, not forked: the server's threads and database connections stay behind.
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    def __call__(self, checks: list[tuple[str, bytes, str]]) -> list[bool]:
        from concurrent.futures.process import BrokenProcessPool

        from headwater.runtime.shared import verify_all

        if not self.workers or len(checks) < self.MIN_BATCH:
            return verify_all(checks)
        size = -(-len(checks) // self.workers)
        try:
            parts = [self._executor().submit(verify_all, checks[i:i + size]) for i in range(0, len(checks), size)]
            return [ok for part in parts for ok in part.result()]
        except BrokenProcessPool:
            with self._lock:
                self._pool = None
            return verify_all(checks)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class _SerialWrites:
    """The store with its write transactions taken one at a time in this process (SQLite only).

    SQLite lets one writer in at a time; a second one waits in SQLite's busy
    handler, which sleeps in steps of up to 100 ms. The server's threads
    queue on a lock instead, so each write starts the moment the previous
    one commits. Other processes (a coordinator beside the server) still
    meet the busy handler. PostgreSQL, with row locks, is left alone.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock() if store.dialect == "sqlite" else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        if self._lock is None:
            with self._store.transaction() as conn:
                yield conn
            return
        with self._lock, self._store.transaction() as conn:
            yield conn


class _ImmutableReads:
    """The store as :func:`~headwater.runtime.shared.work_context` reads it,
    with the reads that never change cached.

    A spec version is content-addressed, and a run's workflow, spec, params,
    seed and source are fixed when it is recorded; yet building a work
    context reads both, and a 10,000-task spec is megabytes of JSON. Without
    the cache every claim would parse it again, making a run's claims cost
    quadratic time. Everything else goes to the store unchanged.
    """

    def __init__(self, store: Store, size: int = 256) -> None:
        self._store = store
        self._size = size
        self._specs: dict[str, dict] = {}
        self._runs: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _remember(self, cache: dict, key: str, value: Any) -> Any:
        if len(cache) >= self._size:
            cache.pop(next(iter(cache)))
        cache[key] = value
        return value

    def get_spec(self, spec_hash: str) -> dict:
        found = self._specs.get(spec_hash)
        return found if found is not None else self._remember(self._specs, spec_hash, self._store.get_spec(spec_hash))

    def get_run(self, run_id: str) -> Any:
        found = self._runs.get(run_id)
        if found is None:
            found = self._store.get_run(run_id)
            self._remember(self._runs, found.id, found)
        return found


def _forged(token: int, agent: str, key_id: str) -> m.SubmitResult:
    return m.SubmitResult(token=token, ok=False, error="forged-bundle",
                          detail=f"the bundle for fencing token {token} is not signed by agent {agent}'s "
                          f"registered key {key_id}; re-register the key")


def _run_json(run: Any) -> dict:
    return dict(run.__dict__)


def _decode_bundle(item: m.SubmissionIn) -> bytes | None:
    if item.bundle is None:
        return None
    try:
        return base64.b64decode(item.bundle, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid-bundle", f"item with token {item.token}: 'bundle' is not base64") from None


def create_app(store: Store | str, *, root: str | None = None, max_body: int = DEFAULT_MAX_BODY,
               clock: Callable[[], float] = time.time, reap_every: float = 5.0, verify_workers: int = 0) -> FastAPI:
    """The API over ``store`` (a :class:`Store` or a store URL, opened with ``root``).

    ``reap_every``: at most this often (seconds), a claim request first puts
    expired leases back on the queue. ``verify_workers``: processes that
    check bundle signatures beside the server (0: in the server's threads).

    A store given as a URL is opened here and closed when the app shuts down;
    a :class:`Store` passed in stays the caller's to close.
    """
    from headwater.runtime import shared
    from headwater.runtime.fleet import Fleet
    from headwater.store.queue import WorkQueue

    owned = isinstance(store, str)
    the_store: Store = open_store(store, root=root or ".headwater") if owned else store  # type: ignore[arg-type]

    verifier = _Verifier(verify_workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(verifier.start)
        try:
            yield
        finally:
            verifier.close()
            if owned:
                the_store.close()

    app = FastAPI(title="headwater", version=API_VERSION, lifespan=lifespan,
                  description="Work queue for remote agents; runs, checkpoints and fleet oversight for people. "
                  "Every route except /healthz needs a bearer token from `headwater token create`.")
    metrics = Metrics()
    writer = _SerialWrites(the_store)
    tokens, queue = Tokens(writer), WorkQueue(writer)  # type: ignore[arg-type]
    contexts = _ImmutableReads(the_store)
    wakeup = _Wakeup()
    previous: dict = {}

    def context_cache() -> dict:
        """What :func:`~headwater.runtime.shared.work_contexts` keeps between batches (runs, specs,
        each run's previous checkpoints), emptied once it holds many runs."""
        if len(previous) > 512:
            previous.clear()
        return previous
    last_reap = [float("-inf")]
    app.state.store, app.state.tokens, app.state.queue, app.state.metrics = the_store, tokens, queue, metrics
    app.state.clock = clock
    app.add_middleware(_Guard, max_body=max_body, metrics=metrics)
    _install_errors(app, metrics)

    def fleet() -> Fleet:
        return Fleet(the_store, clock=clock)

    def scoped_run(token: TokenRecord, run_id: str) -> Any:
        run = the_store.get_run(run_id)
        check_run_scope(token, run)
        return run

    # ------------------------------------------------------------ service

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        """Liveness: answers without a token and without touching the store."""
        return {"ok": True}

    @app.get("/metrics", tags=["service"], response_class=Response,
             responses={**_ERRORS, 200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {
                 "schema": {"type": "string"}}}}})
    def prometheus(token: TokenRecord = Depends(current_token)) -> Response:
        """Prometheus metrics: requests by route and status, claims, submissions, rejections."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/whoami", response_model=m.WhoAmI, tags=["service"], responses=_ERRORS)
    def whoami(token: TokenRecord = Depends(current_token)) -> m.WhoAmI:
        """The token's id, kind, roles and scope."""
        return m.WhoAmI(id=token.id, kind=token.kind, roles=list(token.roles), scope=str(token.scope))

    # ------------------------------------------------------------ agents

    @app.post("/v1/agents", response_model=m.AgentOut, tags=["agents"], responses=_ERRORS)
    def register_agent(body: m.AgentIn, token: TokenRecord = Depends(current_token)) -> m.AgentOut:
        """Register an agent's Ed25519 public key under this token; its bundles must verify against it."""
        key_id = hashlib.sha256(bytes.fromhex(body.public_key)).hexdigest()[:16]
        try:
            key = tokens.register_agent(token.id, body.name, body.public_key, key_id, clock())
        except TokenError as exc:
            raise ApiError(403, "not-your-agent", str(exc)) from None
        return m.AgentOut(agent=key.agent, key_id=key.key_id, token=token.id)

    def claim_roles(token: TokenRecord, body: m.NextClaimIn) -> list[str]:
        """The roles a claim is for, once its agent, roles and run are the token's (else 403)."""
        own_agent(tokens, token, body.agent)
        roles = check_roles(token, body.roles)
        if body.run is not None:
            scoped_run(token, body.run)
        return roles

    def claim_runs(token: TokenRecord, body: m.NextClaimIn) -> list[str] | None:
        """The runs a claim may take items of (None: every run)."""
        if body.run is not None:
            return [scoped_run(token, body.run).id]
        if token.scope.kind is not None:
            return tokens.runs_in_scope(token.scope)
        return None

    def reap(now: float) -> None:
        """Put expired leases back on the queue, at most every ``reap_every`` seconds, even when no
        coordinator process runs beside the server."""
        if now - last_reap[0] >= reap_every:
            last_reap[0] = now
            if queue.reap(now):
                wakeup.notify()

    def describe(token: TokenRecord, agent: str, claimed: list[Any], now: float) -> list[dict]:
        """The items to hand out for leases just granted to ``agent``: each claim with its work context."""
        claims = []
        declined = False
        for c in claimed:
            if c.kind == "verify" and c.producer is not None:
                owner = tokens.agent(c.producer)
                if owner is not None and owner.token_id == token.id:
                    # Never hand a token its own agents' work to verify: decline
                    # it at once, which offers the item to other agents.
                    queue.fail(c.token, agent, now, f"declined: token {token.id} produced this attempt")
                    declined = True
                    continue
            claims.append(c)
        items = []
        for c, context in zip(claims, shared.work_contexts(contexts, claims, cache=context_cache())):
            if isinstance(context, shared.StaleLease):
                continue
            if isinstance(context, HeadwaterError):
                # An item that cannot be described cannot be run: report it
                # failed (the queue retries or declines it) rather than fail
                # the whole batch and leave its other items leased.
                queue.fail(c.token, agent, now, f"server could not build the work context: {context}")
                metrics.rejections.labels("no-context").inc()
                declined = True
                continue
            metrics.claims.labels(c.kind).inc()
            items.append({"claim": c.to_json(), "context": context.to_json()})
        if declined:
            wakeup.notify()
        return items

    def claim_items(token: TokenRecord, body: m.NextClaimIn, roles: list[str], share: int) -> list[dict]:
        """Lease up to ``body.limit`` items (a ``share``-th of those ready), each with its work context."""
        runs = claim_runs(token, body)
        if runs is not None and not runs:
            return []
        now = clock()
        reap(now)
        claimed = queue.claim(body.agent, roles, now, body.lease_s, limit=body.limit, runs=runs, share=share)
        return describe(token, body.agent, claimed, now)

    def claimable(token: TokenRecord, body: m.NextClaimIn, roles: list[str]) -> bool:
        return queue.claimable(roles, clock(), claim_runs(token, body))

    @app.post("/v1/claims", response_model=m.ClaimsOut, tags=["agents"], responses=_ERRORS)
    async def claim(body: m.ClaimIn, request: Request, token: TokenRecord = Depends(current_token)) -> JSONResponse:
        """Lease up to ``limit`` work items for the token's roles, each with its work context.

        With ``wait``, a claim that finds nothing ready is held open until
        something is (or ``wait`` seconds pass, then ``items`` is empty).
        While other agents of the same roles wait too, a claim takes only its
        share of the items ready, so a small layer of a graph is split among them.
        """
        roles = await run_in_threadpool(claim_roles, token, body)
        deadline = time.monotonic() + body.wait
        async with wakeup.held(roles):
            look = True
            while True:
                if look:
                    items = await run_in_threadpool(claim_items, token, body, roles, wakeup.waiting(roles))
                    if items:
                        break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # Woken by results applied here, or at a recheck for work made ready by
                # another process: look (a read) before claiming (a write).
                await wakeup.wait(min(left, CLAIM_RECHECK_S))
                if await request.is_disconnected():  # the agent is gone: lease it nothing
                    break
                look = await run_in_threadpool(claimable, token, body, roles)
        return JSONResponse({"items": items})

    @app.post("/v1/leases/{token_id}/renew", response_model=m.RenewOut, tags=["agents"], responses=_ERRORS)
    def renew(body: m.RenewIn, token_id: int = Path(ge=0, le=2**62),
              token: TokenRecord = Depends(current_token)) -> m.RenewOut:
        """Extend a lease; 409 when its fencing token is no longer current."""
        own_agent(tokens, token, body.agent)
        return m.RenewOut(token=token_id, lease_expiry=queue.renew(token_id, body.agent, clock(), body.lease_s))

    def submit_items(items: list[m.SubmissionIn], token: TokenRecord,
                     next_claim: m.NextClaimIn | None = None) -> JSONResponse:
        # Authorise the whole batch (and the claim it carries) before accepting
        # any of it; an item whose lease is gone is only that item's problem
        # (409 in its result).
        roles = claim_roles(token, next_claim) if next_claim is not None else []
        runs = claim_runs(token, next_claim) if next_claim is not None else None
        keys = {}
        leases = queue.leases([item.token for item in items])
        for item in items:
            keys[item.agent] = keys.get(item.agent) or own_agent(tokens, token, item.agent)
            lease = leases.get(item.token)
            if lease is None:
                continue
            check_run_scope(token, contexts.get_run(lease.run_id))
            check_roles(token, [lease.role])
            if lease.kind != item.kind:
                raise ApiError(422, "wrong-kind", f"fencing token {item.token} leases a {lease.kind} item, "
                               f"not {item.kind}")
            if item.kind == "verify":
                check_not_self_verification(tokens, token, lease, item.agent)
        outcomes: list[m.SubmitResult | None] = []
        subs, at = [], []
        for item in items:
            refused, bundle = (_check_submission(item, keys[item.agent]) if item.token in leases else (
                m.SubmitResult(token=item.token, ok=False, error="stale-lease",
                               detail=f"no current lease with fencing token {item.token}; claim again"), None))
            outcomes.append(refused)
            if refused is None:
                at.append(len(outcomes) - 1)
                # Artifacts are addressed by the server's store, whatever URI the agent's cache gave them.
                subs.append(shared.Submission(
                    token=item.token, agent=item.agent, kind=item.kind, bundle=bundle,
                    signature=item.signature, key_id=item.key_id,
                    artifacts=[{**a, "uri": the_store.artifacts.uri(str(a.get("sha256")))} for a in item.artifacts],
                    approve=item.approve, reason=item.reason, error=item.error))
        # The next claim takes up to the agent's batch of what is ready (agents
        # waiting for work split among themselves what this makes ready; see
        # claim()). On SQLite it rides on the results' transaction, one commit
        # (and fsync) for both, since writers take turns anyway; on PostgreSQL
        # it is a transaction of its own, so the run's version row, locked by
        # the results, is not held while the claim runs and concurrent results
        # of the run wait less.
        now = clock()
        claimed: list[Any] | None = None

        def claim_next(conn: Any) -> None:
            nonlocal claimed
            assert next_claim is not None
            claimed = queue.claim_in(conn, next_claim.agent, roles, now, next_claim.lease_s,
                                     limit=next_claim.limit, runs=runs)

        wants_claim = next_claim is not None and (runs is None or bool(runs))
        ride = wants_claim and the_store.dialect == "sqlite"
        if next_claim is not None:
            reap(now)
        if subs:
            try:
                accepted = shared.accept_many(writer, queue, subs, now,
                                              public_key={agent: key.public_hex for agent, key in keys.items()},
                                              then=claim_next if ride else None, verify=verifier)
            except HeadwaterError as exc:
                # The store could not apply the batch (a deadlock victim once
                # too often, or a dropped connection): nothing of it was
                # written and every lease still stands, so it can be sent again.
                accepted = [shared.Outcome(sub.token, error=exc) for sub in subs]
                claimed, wants_claim = [], False
                busy = f"the store could not apply this result ({exc}); submit it again"
                for i, sub in zip(at, subs):
                    outcomes[i] = m.SubmitResult(token=sub.token, ok=False, error="store-busy", detail=busy)
            else:
                for i, done, sub in zip(at, accepted, subs):
                    if done.ok:
                        outcomes[i] = m.SubmitResult(token=done.token, ok=True, checkpoint=done.checkpoint)
                    elif getattr(done.error, "code", None) == "forged-bundle":
                        outcomes[i] = _forged(done.token, sub.agent, keys[sub.agent].key_id)
                    else:
                        outcomes[i] = m.SubmitResult(token=done.token, ok=False, detail=str(done.error),
                                                     error=_domain_status(done.error)[1])
        results, failure = [], None
        for item, result in zip(items, outcomes):
            if result.ok:
                metrics.submissions.labels(item.kind).inc()
            else:
                metrics.rejections.labels(result.error or "rejected").inc()
                failure = failure or result
            results.append(result)
        payload: dict[str, Any] = {"results": [r.model_dump() for r in results]}
        if next_claim is not None:
            try:
                if claimed is None and wants_claim:  # PostgreSQL, or nothing reached the store: claim on its own
                    claimed = queue.claim(next_claim.agent, roles, now, next_claim.lease_s,
                                          limit=next_claim.limit, runs=runs)
                payload["items"] = describe(token, next_claim.agent, claimed or [], now)
            except HeadwaterError as exc:
                metrics.rejections.labels(_domain_status(exc)[1]).inc()
                payload["items"] = []
        if any(r.ok for r in results):
            # Waiting agents look for what these results made ready (and the
            # next claim did not take) only now, after the claim.
            wakeup.notify()
        if failure is None:
            return JSONResponse(payload)
        status = {"stale-lease": 409, "store-busy": 503}.get(failure.error or "", 422)
        return _error(status, failure.error or "rejected", failure.detail or "", **payload)

    def _check_submission(item: m.SubmissionIn, key: Any) -> tuple[m.SubmitResult | None, bytes | None]:
        """The refusal of one item the store need not see (undecodable, signed by another key than the
        agent's, artifacts missing), or None, and its bundle's bytes. The signature itself is checked
        by :func:`~headwater.runtime.shared.accept_many`, with the agent's registered key."""
        try:
            bundle = _decode_bundle(item)
        except ApiError as exc:
            return m.SubmitResult(token=item.token, ok=False, error=exc.code, detail=str(exc.detail)), None
        if bundle is not None and item.key_id != key.key_id:
            return _forged(item.token, item.agent, key.key_id), None
        missing = [a.get("sha256") for a in item.artifacts if not the_store.artifacts.exists(str(a.get("sha256")))]
        if missing:
            return m.SubmitResult(token=item.token, ok=False, error="missing-artifact",
                                  detail=f"upload artifact {missing[0]} (PUT /v1/artifacts/SHA256) before "
                                  "submitting"), None
        return None, bundle

    @app.post("/v1/submissions", response_model=m.SubmitOut, tags=["agents"], responses=_ERRORS)
    def submit(body: m.SubmitIn, token: TokenRecord = Depends(current_token)) -> JSONResponse:
        """Submit finished items (results with signed bundles, verdicts, failures), several at once.

        The whole batch is authorised first (403 refuses all of it); then each
        item is accepted on its own: a stale lease (409) or a rejected bundle
        (422) refuses that item, the others still count, and ``results`` says
        which is which. With ``claim``, the agent's next batch is claimed once
        the results are applied and comes back as ``items``, saving a request.
        """
        return submit_items(body.items, token, body.claim)

    @app.post("/v1/verdicts", response_model=m.SubmitOut, tags=["agents"], responses=_ERRORS)
    def verdict(body: m.SubmissionIn, token: TokenRecord = Depends(current_token)) -> JSONResponse:
        """Submit one verification verdict; a token may never verify its own agents' work."""
        if body.kind != "verify":
            raise ApiError(422, "wrong-kind", "a verdict has kind 'verify'; results go to /v1/submissions")
        return submit_items([body], token)

    @app.get("/v1/runs/{run_id}/scoreboard", tags=["agents"], responses=_ERRORS)
    def scoreboard(run_id: str = Path(max_length=128), token: TokenRecord = Depends(current_token)) -> dict:
        """How many agents work on each task of a run, and each task's state; ``version`` grows on change."""
        return queue.scoreboard(scoped_run(token, run_id).id)

    @app.get("/v1/runs/{run_id}/wait", response_model=m.WaitOut, tags=["agents"], responses=_ERRORS)
    def wait(run_id: str = Path(max_length=128), after: int = Query(0, ge=0, le=2**62),
             timeout: float = Query(10.0, ge=0.0, le=MAX_WAIT_S),
             token: TokenRecord = Depends(current_token)) -> m.WaitOut:
        """Long poll: return once the run's scoreboard version exceeds ``after``, or at ``timeout``."""
        run = scoped_run(token, run_id)
        if the_store.dialect != "postgresql":
            return m.WaitOut(version=queue.wait(run.id, after, timeout), finished=queue.finished(run.id))
        # A LISTEN connection of its own: waiters sharing one would take each
        # other's notifications and queue on its lock.
        waiter = WorkQueue(the_store)
        try:
            return m.WaitOut(version=waiter.wait(run.id, after, timeout), finished=waiter.finished(run.id))
        finally:
            waiter.close()

    # ------------------------------------------------------------ artifacts

    @app.put("/v1/artifacts/{sha256}", response_model=m.ArtifactOut, tags=["artifacts"], responses=_ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def put_artifact(request: Request, sha256: str = Sha256Path,
                           token: TokenRecord = Depends(current_token)) -> m.ArtifactOut:
        """Upload an artifact by its sha256; bytes that do not hash to the name are refused (422)."""
        data = await request.body()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ApiError(422, "digest-mismatch", f"the body hashes to {actual}, not {sha256}; nothing stored")
        media = request.headers.get("x-media-type") or "application/octet-stream"
        await run_in_threadpool(the_store.artifacts.put_bytes, data, media)
        return m.ArtifactOut(sha256=sha256, size=len(data))

    @app.get("/v1/artifacts/{sha256}", tags=["artifacts"], response_class=Response,
             responses={**_ERRORS, 200: {"content": {"application/octet-stream": {
                 "schema": {"type": "string", "format": "binary"}}}}})
    def get_artifact(sha256: str = Sha256Path, token: TokenRecord = Depends(current_token)) -> Response:
        """Download an artifact's bytes.

        An agent token may download only artifacts recorded by checkpoints of
        runs in its scope (the inputs of the work it leases, the outputs it
        verifies); anything else is 403, whether or not the server has it.
        Operator tokens may download any artifact.
        """
        if not token.operator and not tokens.artifact_in_scope(token.scope, sha256):
            raise ApiError(403, "out-of-scope",
                           f"artifact {sha256} is not an input or output of any run in token {token.id}'s scope "
                           f"{token.scope}; an agent token downloads only artifacts of runs it may work on "
                           "(use an operator token to fetch others)")
        local = the_store.artifacts.local_path(sha256)
        if local is not None:
            return FileResponse(local, media_type="application/octet-stream")
        return Response(the_store.artifacts.get_bytes(sha256), media_type="application/octet-stream")

    @app.post("/v1/artifacts/missing", response_model=m.MissingOut, tags=["artifacts"], responses=_ERRORS)
    def missing_artifacts(body: m.MissingIn, token: TokenRecord = Depends(current_token)) -> m.MissingOut:
        """Which of these sha256s the server lacks, so an agent uploads only those."""
        return m.MissingOut(missing=[s for s in dict.fromkeys(body.sha256) if not the_store.artifacts.exists(s)])

    # ------------------------------------------------------------ people

    @app.get("/v1/runs", tags=["runs"], responses=_ERRORS)
    def runs(workflow: Optional[str] = Query(None, max_length=256), limit: int = Query(20, ge=1, le=1000),
             token: TokenRecord = Depends(current_token)) -> list[dict]:
        """Runs, newest first (only those in the token's scope)."""
        rows = the_store.list_runs(workflow, limit)
        return [_run_json(r) for r in rows if token.scope.allows(r.workflow, r.campaign)]

    @app.get("/v1/runs/{run_id}", tags=["runs"], responses=_ERRORS)
    def run(run_id: str = Path(max_length=128), token: TokenRecord = Depends(current_token)) -> dict:
        """One run (id or unique prefix) with the state of each task."""
        record = scoped_run(token, run_id)
        return {**_run_json(record), "tasks": [asdict(x) for x in the_store.get_tasks(record.id)]}

    @app.get("/v1/runs/{run_id}/checkpoints", tags=["runs"], responses=_ERRORS)
    def run_checkpoints(run_id: str = Path(max_length=128), token: TokenRecord = Depends(current_token)) -> list[dict]:
        """A run's checkpoints in the order they were written."""
        record = scoped_run(token, run_id)
        return [{"id": c.id, "task": c.task, "attempt": c.attempt, "status": c.status, "seq": c.seq,
                 "bytes": len(c.bundle), "outputs": {o.name: o.sha256 for o in c.outputs}}
                for c in the_store.list_checkpoints(record.id)]

    @app.get("/v1/checkpoints/{checkpoint_id}", tags=["runs"], responses=_ERRORS)
    def checkpoint(checkpoint_id: str = Path(max_length=128), token: TokenRecord = Depends(current_token)) -> dict:
        """One checkpoint: its bundle exactly as stored, with signature and key id."""
        ck = the_store.get_checkpoint(checkpoint_id)
        scoped_run(token, ck.run_id)
        return {"id": ck.id, "run_id": ck.run_id, "status": ck.status, "signature": ck.signature,
                "key_id": ck.key_id, "bundle": ck.doc}

    @app.get("/v1/assets", tags=["oversight"], responses=_ERRORS)
    def assets(kind: Optional[str] = Query(None, max_length=32), token: TokenRecord = Depends(current_token)) -> dict:
        """Asset versions with a status on record, and how every version in use is used."""
        versions = [{"asset": f"{r.kind}:{r.name}", "version": r.version, "status": r.status.label,
                     "reason": r.reason, "updated_at": r.updated_at} for r in the_store.version_records(kind)]
        usage = [asdict(u) for u in the_store.asset_usage() if kind is None or u.kind == kind]
        return {"versions": versions, "usage": usage}

    @app.get("/v1/blast-radius", tags=["oversight"], responses=_ERRORS)
    def blast_radius(asset: str = Query(..., min_length=3, max_length=512),
                     introduced: Optional[str] = Query(None, max_length=128),
                     fixed: Optional[str] = Query(None, max_length=128),
                     token: TokenRecord = Depends(current_token)) -> dict:
        """Everything built on an asset version: workflows, runs, checkpoints, claims, with paths."""
        return fleet().blast_radius(asset, introduced=introduced, fixed=fixed).to_json()

    @app.get("/v1/audit", tags=["oversight"], responses=_ERRORS)
    def audit(subject: Optional[str] = Query(None, max_length=512), run: Optional[str] = Query(None, max_length=128),
              actor: Optional[str] = Query(None, max_length=128), limit: int = Query(40, ge=1, le=10_000),
              token: TokenRecord = Depends(current_token)) -> list[dict]:
        """The oversight audit log, latest ``limit`` records, oldest first."""
        run_id = scoped_run(token, run).id if run else None
        return [r.to_json() for r in the_store.audit_log(subject=subject, run_id=run_id, actor=actor, limit=limit)]

    @app.post("/v1/assets/flag", tags=["oversight"], responses=_ERRORS)
    def flag(body: m.FlagIn, token: TokenRecord = Depends(operator_token)) -> dict:
        """Operator only: mark versions suspect (``trip``: degraded; ``retract``: withdrawn)."""
        actor = f"token:{token.id}"
        f = fleet()
        if body.retract:
            out = f.change(body.asset, "retract", body.reason, actor=actor, introduced=body.introduced,
                           fixed=body.fixed)
        else:
            out = f.flag(body.asset, body.reason, actor=actor, trip=body.trip, introduced=body.introduced,
                         fixed=body.fixed)
        return out.to_json()

    @app.post("/v1/assets/clear", tags=["oversight"], responses=_ERRORS)
    def clear(body: m.ClearIn, token: TokenRecord = Depends(operator_token)) -> dict:
        """Operator only: dismiss a suspicion (suspect versions back to trusted)."""
        return fleet().change(body.asset, "clear", body.reason, actor=f"token:{token.id}").to_json()

    @app.post("/v1/policies", tags=["oversight"], responses=_ERRORS)
    def apply_policy(body: m.PolicyIn, token: TokenRecord = Depends(operator_token)) -> dict:
        """Operator only: store a policy (a new version when its rules changed) and roll it out."""
        from headwater.oversight.policy import policy_from_doc

        policy = policy_from_doc(body.policy, source="request body 'policy'")
        return fleet().apply_policy(policy, mode=body.mode, share=body.share,
                                         actor=f"token:{token.id}").to_doc()

    return app
