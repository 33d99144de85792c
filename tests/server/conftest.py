"""An API app over the ``store`` fixture (SQLite, and PostgreSQL when
configured), driven in-process with Starlette's TestClient, with a clock the
test moves by hand and helpers to mint tokens and agents."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from headwater.checkpoint.signing import SigningKey
from headwater.runtime.shared import submit_run
from headwater.server import create_app
from headwater.store.queue import WorkQueue
from headwater.store.tokens import Tokens

WORKFLOW = """
from headwater import Workflow

wf = Workflow({name!r})

@wf.task(verify={verify})
def a(ctx):
    ctx.save("out", [1, 2, 3])
"""


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Api:
    """The app under test and what a test needs around it."""

    def __init__(self, store, client: TestClient, clock: Clock, write_wf) -> None:
        self.store, self.client, self.clock, self.write_wf = store, client, clock, write_wf
        self.tokens, self.queue = Tokens(store), WorkQueue(store)
        self.wf_file: str | None = None

    def token(self, *roles: str, scope: str | None = None, operator: bool = False) -> str:
        _, secret = self.tokens.create(list(roles), self.clock(), kind="operator" if operator else "agent",
                                       scope=scope)
        return secret

    @staticmethod
    def auth(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    def agent(self, secret: str, name: str) -> SigningKey:
        key = SigningKey.generate()
        r = self.client.post("/v1/agents", json={"name": name, "public_key": key.public_hex},
                             headers=self.auth(secret))
        assert r.status_code == 200, r.text
        return key

    def remote(self, secret: str, name: str, tmp_path, **options):
        """A remote agent talking to the app in-process; ``run()`` it for one batch."""
        from headwater.runtime.remote import AgentOptions, ApiClient, RemoteAgent

        opts = AgentOptions(server="http://testserver", token=secret, name=name, cache=tmp_path / "agents",
                            workflows=[self.wf_file] if self.wf_file else [], once=True, **options)
        return RemoteAgent(opts, client=ApiClient(opts.server, secret, http=self.client))

    def run(self, workflow: str = "wf", *, campaign: str | None = None, verify: int = 0) -> str:
        """Submit a run of a one-task workflow to the queue; returns its id."""
        wf = self.write_wf(WORKFLOW.format(name=workflow, verify=verify))
        self.wf_file = wf.source_file
        return submit_run(self.store, wf, campaign=campaign, now=self.clock(), queue=self.queue)


@pytest.fixture
def api(store, write_wf):
    clock = Clock()
    app = create_app(store, max_body=256 << 10, clock=clock)
    with TestClient(app) as client:
        yield Api(store, client, clock, write_wf)
