"""Request and response bodies of the HTTP API (pydantic), hence its OpenAPI schema.

Bodies that the shared work queue and the remote runtime already define as
dataclasses with ``to_json``/``from_json`` (a claim, a work context, a
checkpoint bundle) travel as JSON objects; the fields the server itself
checks (agent names, keys, tokens, sizes, limits) are typed and bounded
here, so malformed input is refused with a 422 before anything is touched.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

AgentName = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
Sha256 = Field(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")
MAX_BATCH = 256
"""Most items one claim or submission request may carry."""
MAX_CLAIM_WAIT_S = 10.0
"""Longest a claim is held open waiting for work; agents simply claim again."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    """Every 4xx/5xx body: a short machine-readable code and what to do about it."""

    error: str
    detail: str


class WhoAmI(BaseModel):
    id: str
    kind: str
    roles: list[str]
    scope: str


class AgentIn(_Strict):
    name: str = AgentName
    public_key: str = Field(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$",
                            description="The agent's Ed25519 public key, 64 hex digits.")


class AgentOut(BaseModel):
    agent: str
    key_id: str
    token: str


class NextClaimIn(_Strict):
    """A claim: what ``POST /v1/claims`` takes, and what a submission may carry for the agent's next batch."""

    agent: str = AgentName
    roles: Optional[list[str]] = Field(default=None, max_length=32,
                                       description="Roles to claim for (default: every role of the token).")
    limit: int = Field(default=1, ge=1, le=MAX_BATCH)
    lease_s: float = Field(default=30.0, ge=1.0, le=3600.0)
    run: Optional[str] = Field(default=None, max_length=128, description="Only items of this run.")


class ClaimIn(NextClaimIn):
    wait: float = Field(default=0.0, ge=0.0, le=MAX_CLAIM_WAIT_S,
                        description="Long poll: when nothing is ready, hold the request up to this many "
                        "seconds until something is.")


class ClaimOut(BaseModel):
    claim: dict[str, Any]
    context: dict[str, Any]


class ClaimsOut(BaseModel):
    items: list[ClaimOut]


class RenewIn(_Strict):
    agent: str = AgentName
    lease_s: float = Field(default=30.0, ge=1.0, le=3600.0)


class RenewOut(BaseModel):
    token: int
    lease_expiry: float


class SubmissionIn(_Strict):
    """One finished work item: a run result (bundle, signature, artifacts) or a verdict."""

    token: int = Field(ge=0, le=2**62)
    agent: str = AgentName
    kind: Literal["run", "verify"]
    bundle: Optional[str] = Field(default=None, max_length=64 << 20,
                                  description="The canonical bundle bytes, base64.")
    signature: Optional[str] = Field(default=None, max_length=256)
    key_id: Optional[str] = Field(default=None, max_length=64)
    artifacts: list[dict[str, Any]] = Field(default_factory=list, max_length=4096)
    approve: Optional[bool] = None
    reason: str = Field(default="", max_length=10_000)
    error: Optional[str] = Field(default=None, max_length=100_000)


class SubmitIn(_Strict):
    items: list[SubmissionIn] = Field(min_length=1, max_length=MAX_BATCH)
    claim: Optional[NextClaimIn] = Field(default=None, description="Claim the agent's next batch once these "
                                         "results are applied; the items come back in the response.")


class SubmitResult(BaseModel):
    token: int
    ok: bool
    checkpoint: Optional[str] = None
    error: Optional[str] = None
    detail: Optional[str] = None


class SubmitOut(BaseModel):
    results: list[SubmitResult]
    items: list[ClaimOut] = Field(default_factory=list, description="The next batch, when the request asked "
                                  "for one ('claim').")


class MissingIn(_Strict):
    sha256: list[str] = Field(max_length=4096)


class MissingOut(BaseModel):
    missing: list[str]


class ArtifactOut(BaseModel):
    sha256: str
    size: int


class WaitOut(BaseModel):
    version: int
    finished: bool


class FlagIn(_Strict):
    asset: str = Field(min_length=3, max_length=512, description="KIND:NAME, KIND:NAME@VERSION or KIND:NAME@RANGE.")
    reason: str = Field(min_length=1, max_length=10_000)
    trip: bool = False
    retract: bool = False
    introduced: Optional[str] = Field(default=None, max_length=128)
    fixed: Optional[str] = Field(default=None, max_length=128)


class ClearIn(_Strict):
    asset: str = Field(min_length=3, max_length=512)
    reason: str = Field(default="cleared", max_length=10_000)


class PolicyIn(_Strict):
    policy: dict[str, Any] = Field(description="A policy document, as in a policy YAML file.")
    mode: Optional[Literal["shadow", "staged", "enforced"]] = None
    share: Optional[float] = Field(default=None, ge=0.0, le=1.0)
