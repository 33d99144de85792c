"""The API keeps its OpenAPI contract: schemathesis generates requests for
every operation (valid and invalid ones, with and without the token) and
checks that none is a server error, every status code and body is the one
the schema documents, invalid input is refused, and no route ignores auth.

In-process (ASGI), on a SQLite store holding one run, a flagged asset and
an agent; a few derandomised examples per operation keep it fast and
repeatable."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks
from schemathesis.openapi import from_asgi

from headwater.checkpoint.signing import SigningKey
from headwater.runtime.fleet import Fleet
from headwater.runtime.shared import submit_run
from headwater.server import create_app
from headwater.store import open_store
from headwater.store.tokens import Tokens
from tests.server.conftest import WORKFLOW

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.negative_data_rejection, checks.ignored_auth]


def _serve(root: Path):
    """An app over a store holding one run (verify=1), a flagged asset and an operator's agent."""
    from headwater.spec import load_workflow

    store = open_store(f"sqlite:///{root / 'store.db'}", root=root / ".headwater")
    path = root / "wf.py"
    path.write_text(WORKFLOW.format(name="wf", verify=1))
    submit_run(store, load_workflow(path))
    Fleet(store).flag("lib:numpy@1.26", "contract fixture")
    tokens = Tokens(store)
    _, secret = tokens.create(["worker", "verifier"], time.time(), kind="operator")
    key = SigningKey.generate()
    tokens.register_agent(tokens.authenticate(secret).id, "agent-1", key.public_hex, key.key_id, time.time())
    return store, create_app(store, max_body=1 << 20), secret


# The schema is read when tests are collected, so the app exists at import;
# its temporary directory is removed when the module's tests end.
_ROOT = Path(tempfile.mkdtemp(prefix="headwater-contract-"))
_STORE, _APP, _SECRET = _serve(_ROOT)
schema = from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    _STORE.close()
    shutil.rmtree(_ROOT, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=4, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_api_contract(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {_SECRET}"}, checks=CHECKS)
