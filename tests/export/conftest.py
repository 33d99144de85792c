"""Fixtures for the export tests: a finished CHAIN run and offline validators."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from headwater.runtime import RunOptions, run_workflow
from tests.runtime.workflows import CHAIN

DATA = Path(__file__).parent / "data"
CONTEXTS = {
    "https://w3id.org/ro/crate/1.1/context": DATA / "jsonld" / "ro-crate-1.1-context.jsonld",
    "https://w3id.org/ro/terms/workflow-run/context": DATA / "jsonld" / "workflow-run-context.json",
}


@pytest.fixture
def chain_run(ws, write_wf):
    """The id of a finished run of the CHAIN workflow (4 checkpoints)."""
    summary = run_workflow(ws, write_wf(CHAIN), {}, RunOptions(workers=0, seed=5, campaign="paper"))
    assert summary.ok
    return summary.run_id


@pytest.fixture
def seeded_cache(tmp_path):
    """A roc-validator HTTP cache holding the vendored JSON-LD contexts.

    roc-validator resolves remote JSON-LD contexts through a requests-cache
    ``CachedSession`` (SQLite backend) at ``ValidationSettings.cache_path``;
    with ``offline=True`` it answers only from that cache. Writing the
    vendored contexts into the same cache as responses to their URLs lets it
    validate with no network.
    """
    import requests
    import urllib3
    from requests.structures import CaseInsensitiveDict
    from requests_cache import CachedSession

    path = tmp_path / "roc-validator-cache"
    session = CachedSession(cache_name=str(path), backend="sqlite", allowable_methods=("GET",),
                            allowable_codes=(200, 302, 404), expire_after=-1)
    for url, file in CONTEXTS.items():
        body = file.read_bytes()
        headers = {"Content-Type": "application/ld+json"}
        response = requests.Response()
        response.status_code, response.reason, response.url = 200, "OK", url
        response._content = body
        response.encoding = "utf-8"
        response.headers = CaseInsensitiveDict(headers)
        response.request = requests.Request("GET", url).prepare()
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(body), headers=headers, status=200,
                                            preload_content=False, request_url=url)
        session.cache.save_response(response)
    session.close()
    return path


def load_json(path: Path):
    return json.loads(path.read_text())
