"""API tokens and remote agents' public keys, in the store.

A token is what a remote agent or a person presents to ``headwater serve``.
Only a hash of its secret is stored, so a leaked database does not leak
working credentials. The secret is ``hw_<id>_<random>``: the id part finds
the row with one primary-key lookup, and the sha256 of the whole secret is
compared with :func:`hmac.compare_digest`, so the comparison takes the same
time however many leading characters match.

A token carries least privilege:

* ``kind``: ``agent`` (claims and submits work for its roles) or
  ``operator`` (also changes asset statuses and policies);
* ``roles``: the task roles it may claim (``verifier`` included, to verify);
* an optional scope (``workflow:NAME`` or ``campaign:NAME``) restricting
  the runs it may touch.

Revoking sets ``revoked_at``; the row stays, so the audit trail of what a
token did keeps naming it. Each remote agent registers an Ed25519 public key
under its token (table ``agent_key``); every bundle it submits must verify
against that key, and the token that registered an agent is how the API
recognises an attempt to verify one's own work.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from headwater.errors import HeadwaterError, NotFound
from headwater.store import schema as t

if TYPE_CHECKING:
    from headwater.store import Store

TOKEN_KINDS = ("agent", "operator")
SCOPE_KINDS = ("workflow", "campaign")
SECRET_PREFIX = "hw_"


class TokenError(HeadwaterError):
    """A token cannot be created or used as asked; ``token_id`` names it."""

    def __init__(self, message: str, *, token_id: str | None = None) -> None:
        self.token_id = token_id
        super().__init__(message)


@dataclass(frozen=True)
class Scope:
    """Which runs a token may touch: every run (``kind`` None), one workflow or one campaign."""

    kind: str | None = None
    value: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> Scope:
        """``workflow:NAME`` or ``campaign:NAME``; empty or None is the whole store."""
        if not text:
            return cls()
        kind, sep, value = text.partition(":")
        if not sep or kind not in SCOPE_KINDS or not value:
            raise TokenError(f"--scope {text!r}: expected workflow:NAME or campaign:NAME")
        return cls(kind, value)

    def allows(self, workflow: str, campaign: str) -> bool:
        if self.kind is None:
            return True
        return (workflow if self.kind == "workflow" else campaign) == self.value

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}" if self.kind else "*"


@dataclass(frozen=True)
class TokenRecord:
    """One token as stored, without its secret."""

    id: str
    kind: str
    roles: tuple[str, ...]
    scope: Scope = field(default_factory=Scope)
    label: str | None = None
    created_at: float = 0.0
    revoked_at: float | None = None

    @property
    def operator(self) -> bool:
        return self.kind == "operator"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "roles": list(self.roles), "scope": str(self.scope),
                "label": self.label, "created_at": self.created_at, "revoked_at": self.revoked_at}


@dataclass(frozen=True)
class AgentKey:
    """A remote agent's registered public key and the token it belongs to."""

    agent: str
    token_id: str
    public_hex: str
    key_id: str
    created_at: float


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _record(row: Any) -> TokenRecord:
    return TokenRecord(id=row.id, kind=row.kind, roles=tuple(row.roles), scope=Scope(row.scope_kind, row.scope_value),
                       label=row.label, created_at=row.created_at, revoked_at=row.revoked_at)


class Tokens:
    """Token and agent-key operations over a :class:`~headwater.store.Store`.

    Kept beside the store rather than inside it: only the HTTP server and the
    ``headwater token`` commands need them. Times are passed in.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, roles: Sequence[str], now: float, *, kind: str = "agent", scope: Scope | str | None = None,
               label: str | None = None) -> tuple[TokenRecord, str]:
        """Store a new token; returns its record and the secret, which is never stored."""
        if kind not in TOKEN_KINDS:
            raise TokenError(f"token kind {kind!r}: expected one of {', '.join(TOKEN_KINDS)}")
        roles = tuple(dict.fromkeys(r.strip() for r in roles if r.strip()))
        if not roles and kind == "agent":
            raise TokenError("an agent token needs at least one --role (e.g. --role worker --role verifier)")
        scope = scope if isinstance(scope, Scope) else Scope.parse(scope)
        token_id = secrets.token_hex(6)
        secret = f"{SECRET_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        row = {"id": token_id, "secret_hash": hash_secret(secret), "kind": kind, "roles": list(roles),
               "scope_kind": scope.kind, "scope_value": scope.value, "label": label, "created_at": now,
               "revoked_at": None}
        with self.store.transaction() as conn:
            conn.execute(sa.insert(t.api_token), row)
        return _record(SimpleNamespace(**row)), secret

    def list(self, *, include_revoked: bool = True) -> list[TokenRecord]:
        q = sa.select(t.api_token).order_by(t.api_token.c.created_at)
        if not include_revoked:
            q = q.where(t.api_token.c.revoked_at.is_(None))
        with self.store._read() as conn:
            return [_record(r) for r in conn.execute(q)]

    def get(self, token_id: str) -> TokenRecord:
        with self.store._read() as conn:
            row = conn.execute(sa.select(t.api_token).where(t.api_token.c.id == token_id)).first()
        if row is None:
            raise NotFound("token", token_id, "list tokens with: headwater token list")
        return _record(row)

    def revoke(self, token_id: str, now: float) -> TokenRecord:
        """Revoke a token at once; revoking twice keeps the first time."""
        tok = self.get(token_id)
        if not tok.revoked:
            with self.store.transaction() as conn:
                conn.execute(sa.update(t.api_token).where(t.api_token.c.id == token_id,
                                                          t.api_token.c.revoked_at.is_(None))
                             .values(revoked_at=now))
        return self.get(token_id)

    def authenticate(self, secret: str) -> TokenRecord | None:
        """The live token whose secret this is, or None (unknown, malformed or revoked)."""
        if not secret.startswith(SECRET_PREFIX):
            return None
        token_id, sep, _ = secret[len(SECRET_PREFIX):].partition("_")
        if not sep or not token_id:
            return None
        with self.store._read() as conn:
            row = conn.execute(sa.select(t.api_token).where(t.api_token.c.id == token_id)).first()
        if row is None or not hmac.compare_digest(row.secret_hash, hash_secret(secret)):
            return None
        record = _record(row)
        return None if record.revoked else record

    def runs_in_scope(self, scope: Scope) -> list[str]:
        """Ids of the running runs a scoped token may claim work from."""
        r = t.run
        column = r.c.workflow if scope.kind == "workflow" else r.c.campaign
        with self.store._read() as conn:
            return list(conn.scalars(sa.select(r.c.id).where(column == scope.value, r.c.status == "running")))

    def artifact_in_scope(self, scope: Scope, sha256: str) -> bool:
        """Whether a checkpoint of a run ``scope`` covers records the artifact ``sha256`` (as input or output).

        This is what an agent token may download: the inputs of the work it
        leases (outputs of the checkpoints upstream, in the same run), the
        outputs of an attempt it verifies, and the other artifacts of runs it
        may work on; never an artifact that only runs outside its scope, or
        no run at all, refer to.
        """
        ca, ck, r = t.checkpoint_artifact, t.checkpoint, t.run
        query = sa.select(ca.c.checkpoint_id).where(ca.c.sha256 == sha256)
        if scope.kind is not None:
            column = r.c.workflow if scope.kind == "workflow" else r.c.campaign
            query = (query.join(ck, ck.c.id == ca.c.checkpoint_id).join(r, r.c.id == ck.c.run_id)
                     .where(column == scope.value))
        with self.store._read() as conn:
            return conn.execute(query.limit(1)).first() is not None

    # ------------------------------------------------------------ agent keys

    def register_agent(self, token_id: str, agent: str, public_hex: str, key_id: str, now: float) -> AgentKey:
        """Bind ``agent`` to ``token_id`` with its public key.

        Re-registering the same agent under the same token with a new key (an
        agent restarted with a new key) makes that key current; earlier keys
        stay on record, so bundles they signed still verify. An agent name
        taken by another token is refused, so one token cannot speak for
        another token's agent.
        """
        k = t.agent_key
        with self.store.transaction() as conn:
            owner = conn.scalar(sa.select(k.c.token_id).where(k.c.agent == agent).limit(1))
            if owner is not None and owner != token_id:
                raise TokenError(f"agent name {agent!r} belongs to another token; choose another --name",
                                 token_id=token_id)
            known = sa.and_(k.c.agent == agent, k.c.key_id == key_id)
            if conn.scalar(sa.select(k.c.public_hex).where(known)) is None:
                conn.execute(sa.insert(k), {"agent": agent, "token_id": token_id, "public_hex": public_hex,
                                            "key_id": key_id, "created_at": now})
            else:
                conn.execute(sa.update(k).where(known).values(created_at=now))
        return AgentKey(agent, token_id, public_hex, key_id, now)

    def agent(self, agent: str) -> AgentKey | None:
        """The current (latest registered) key of ``agent``, or None for an agent never registered."""
        k = t.agent_key
        query = sa.select(k).where(k.c.agent == agent).order_by(k.c.created_at.desc()).limit(1)
        with self.store._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else AgentKey(row.agent, row.token_id, row.public_hex, row.key_id, row.created_at)

    def public_keys(self, key_ids: Iterable[str]) -> dict[str, str]:
        """Public keys (hex) of the agent keys named by ``key_ids``, current or not.

        This is how ``headwater verify`` checks bundles that remote agents
        signed: a checkpoint records the ``key_id`` it was signed with.
        """
        wanted = sorted(set(key_ids))
        if not wanted:
            return {}
        k = t.agent_key
        with self.store._read() as conn:
            rows = conn.execute(sa.select(k.c.key_id, k.c.public_hex).where(k.c.key_id.in_(wanted)))
            return {row.key_id: row.public_hex for row in rows}

