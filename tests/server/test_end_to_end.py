"""End to end over real HTTP: ``headwater serve`` on a free port, two
``headwater agent`` processes with tokens of their own (one runs, one
verifies), a three-task chain with ``verify=1``. Every task is committed
exactly once, verified by the other agent, and every bundle verifies against
the key its agent registered."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from headwater.checkpoint.signing import verify_signature
from headwater.runtime.shared import submit_run
from headwater.store import open_store
from headwater.store.tokens import Tokens

CHAIN = """
from headwater import Workflow

wf = Workflow("remote-chain")

@wf.task(verify=1)
def make(ctx):
    ctx.save("numbers", list(range(10)))

@wf.task(after="make", verify=1)
def square(ctx):
    ctx.save("squares", [x * x for x in ctx.load("make/numbers")])

@wf.task(after="square", verify=1)
def total(ctx):
    ctx.claim("chain.total", float(sum(ctx.load("square/squares"))))
    ctx.save("total", sum(ctx.load("square/squares")))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _headwater(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "headwater", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_remote_agents_run_and_verify_a_chain_over_http(store_url, tmp_path, write_wf):
    home = tmp_path / "coord"
    wf = write_wf(CHAIN)
    with open_store(store_url, root=home) as store:
        run_id = submit_run(store, wf, seed=3)
        tokens = Tokens(store)
        _, worker = tokens.create(["worker"], time.time(), label="host-b worker")
        _, verifier = tokens.create(["verifier"], time.time(), label="host-c verifier")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _headwater("--home", str(home), "serve", "--store", store_url, "--port", str(port))
    agents = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        env = {**os.environ, "HEADWATER_TOKEN": ""}
        for name, secret in (("runner", worker), ("checker", verifier)):
            agents.append(_headwater("agent", "--server", url, "--token", secret, "--name", name,
                                     "--workflow", wf.source_file, "--cache", str(tmp_path / name),
                                     "--batch", "4", "--lease", "30", "--json", env=env, cwd=tmp_path))
        headers = {"Authorization": f"Bearer {verifier}"}
        version, finished = 0, False
        while not finished:
            assert time.monotonic() < deadline + 120, "the run did not finish"
            assert all(p.poll() is None for p in agents), [p.stderr.read() for p in agents]
            r = httpx.get(f"{url}/v1/runs/{run_id}/wait", params={"after": version, "timeout": 5},
                          headers=headers, timeout=30)
            assert r.status_code == 200, r.text
            version, finished = r.json()["version"], r.json()["finished"]
        # SIGTERM: each agent finishes its batch, prints its tally and exits 0.
        outs = []
        for proc in agents:
            proc.terminate()
            out, errs = proc.communicate(timeout=60)
            assert proc.returncode == 0, errs
            outs.append(json.loads(out))
        runner, checker = outs
        assert (runner["ran"], runner["accepted"], runner["refused"]) == (3, 3, 0)
        assert (checker["verified"], checker["accepted"], checker["refused"]) == (3, 3, 0)
        board = httpx.get(f"{url}/v1/runs/{run_id}/scoreboard", headers=headers).json()
        assert {t: v["state"] for t, v in board["tasks"].items()} == dict.fromkeys(["make", "square", "total"],
                                                                                    "committed")
        metrics = httpx.get(f"{url}/metrics", headers=headers).text
        assert 'headwater_submissions_total{kind="verify"} 3.0' in metrics
    finally:
        for proc in [*agents, server]:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    with open_store(store_url, root=home) as store:
        cks = store.list_checkpoints(run_id)
        assert sorted(c.task for c in cks if c.status == "committed") == ["make", "square", "total"]
        keys = Tokens(store)
        runner_key = keys.agent("runner")
        for ck in cks:
            assert ck.key_id == runner_key.key_id
            assert verify_signature(runner_key.public_hex, ck.bundle, ck.signature)
        total = next(c for c in cks if c.task == "total")
        assert store.artifacts.get_bytes(total.outputs[0].sha256)
