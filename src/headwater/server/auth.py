"""Who may do what through the HTTP API: bearer tokens, roles, scopes, agents.

Every check is a FastAPI dependency or a plain function the routes call, so
each route states its requirement in its signature and the OpenAPI schema
shows the bearer scheme on every operation. The rules:

* no token, a malformed, unknown or revoked one: 401;
* an operator-only action (flag, clear, policies) with an agent token: 403;
* claiming for a role the token does not carry: 403;
* touching a run outside the token's scope (``workflow:NAME`` or
  ``campaign:NAME``): 403;
* acting as an agent registered under another token, or one never
  registered: 403;
* a verdict on work produced by an agent of the same token: 403 — the queue
  already keeps a producer from claiming its own verify items, but one
  token may run several agents, and least privilege means a token cannot
  vouch for itself whichever of its agents asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from headwater.store.tokens import AgentKey, TokenRecord, Tokens

if TYPE_CHECKING:
    from headwater.store import RunRecord

bearer = HTTPBearer(auto_error=False, description="A token from `headwater token create`.")


class ApiError(HTTPException):
    """A refused request: HTTP ``status``, a short ``code`` and a ``detail`` saying what to do."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(status_code=status, detail=detail)
        self.code = code


def tokens_of(request: Request) -> Tokens:
    return request.app.state.tokens


def current_token(request: Request,
                  creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> TokenRecord:
    """The live token of the request, or 401."""
    if creds is None or not creds.credentials:
        raise ApiError(401, "unauthenticated",
                       "send 'Authorization: Bearer <token>'; create a token with: headwater token create")
    token = tokens_of(request).authenticate(creds.credentials)
    if token is None:
        raise ApiError(401, "invalid-token",
                       "the token is unknown, malformed or revoked; ask an operator for a new one "
                       "(headwater token create)")
    request.state.token = token
    return token


def operator_token(token: TokenRecord = Depends(current_token)) -> TokenRecord:
    """The request's token if it is an operator token, or 403."""
    if not token.operator:
        raise ApiError(403, "operator-only",
                       f"token {token.id} is an agent token; changing asset statuses and policies "
                       "needs an operator token (headwater token create --operator)")
    return token


def check_roles(token: TokenRecord, roles: list[str] | None) -> list[str]:
    """The roles to claim for: those asked (each must be the token's), or all of the token's."""
    if not roles:
        return list(token.roles)
    missing = [r for r in roles if r not in token.roles]
    if missing and not token.operator:
        raise ApiError(403, "wrong-role",
                       f"token {token.id} carries roles {', '.join(token.roles) or '(none)'}, not "
                       f"{', '.join(missing)}; create a token with --role {missing[0]}")
    return list(roles)


def check_run_scope(token: TokenRecord, run: RunRecord) -> None:
    if not token.scope.allows(run.workflow, run.campaign):
        raise ApiError(403, "out-of-scope",
                       f"run {run.id} (workflow {run.workflow!r}, campaign {run.campaign!r}) is outside "
                       f"token {token.id}'s scope {token.scope}")


def own_agent(tokens: Tokens, token: TokenRecord, agent: str) -> AgentKey:
    """The registered key of ``agent``, which must belong to ``token``; else 403."""
    key = tokens.agent(agent)
    if key is None:
        raise ApiError(403, "unknown-agent",
                       f"agent {agent!r} is not registered; POST /v1/agents with its public key first")
    if key.token_id != token.id:
        raise ApiError(403, "not-your-agent", f"agent {agent!r} belongs to another token, not {token.id}")
    return key


def check_not_self_verification(tokens: Tokens, token: TokenRecord, claim: Any, agent: str) -> None:
    """Refuse a verdict on work produced by ``agent`` or any agent of the same token."""
    producer = getattr(claim, "producer", None)
    if producer is None:
        return
    owner = tokens.agent(producer)
    if producer == agent or (owner is not None and owner.token_id == token.id):
        raise ApiError(403, "self-verification",
                       f"{claim.run_id}/{claim.task} attempt {claim.attempt} was produced by {producer!r} "
                       f"under token {token.id}; a token may not verify its own agents' work")
