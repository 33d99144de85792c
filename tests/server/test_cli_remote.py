"""``headwater token`` in-process, and the remote agent's refusals: code that
differs from the run's spec, and a revoked token."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from headwater.cli import app
from headwater.errors import RunError
from headwater.runtime.remote import RemoteError
from tests.server.conftest import WORKFLOW

runner = CliRunner()


def _json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_token_create_list_revoke(tmp_path):
    home = ["--home", str(tmp_path / "hw")]
    made = _json(runner.invoke(app, [*home, "token", "create", "--role", "worker", "--role", "verifier",
                                     "--scope", "campaign:survey", "--label", "host-b", "--json"]))
    assert made["secret"].startswith(f"hw_{made['id']}_")
    assert (made["roles"], made["scope"], made["kind"]) == (["worker", "verifier"], "campaign:survey", "agent")
    op = _json(runner.invoke(app, [*home, "token", "create", "--operator", "--json"]))
    listed = _json(runner.invoke(app, [*home, "token", "list", "--json"]))
    assert [t["id"] for t in listed] == [made["id"], op["id"]]
    assert all("secret" not in t for t in listed)
    revoked = _json(runner.invoke(app, [*home, "token", "revoke", made["id"], "--json"]))
    assert revoked["revoked_at"] is not None
    table = runner.invoke(app, [*home, "token", "list"])
    assert table.exit_code == 0 and made["id"] in table.output


def test_token_create_refuses_bad_input(tmp_path):
    home = ["--home", str(tmp_path / "hw")]
    bad_scope = runner.invoke(app, [*home, "token", "create", "--role", "worker", "--scope", "team:x"])
    assert bad_scope.exit_code != 0 and "workflow:NAME or campaign:NAME" in str(bad_scope.exception)
    no_role = runner.invoke(app, [*home, "token", "create"])
    assert no_role.exit_code != 0 and "--role" in str(no_role.exception)
    unknown = runner.invoke(app, [*home, "token", "revoke", "nope"])
    assert unknown.exit_code != 0 and "nope" in str(unknown.exception)


def test_every_new_command_has_help_with_an_example():
    for args in (["serve"], ["agent"], ["token", "create"], ["token", "list"], ["token", "revoke"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Example: headwater" in result.output, args


def test_agent_refuses_code_whose_spec_differs_and_gives_the_lease_back(api, tmp_path):
    run_id = api.run()
    secret = api.token("worker")
    other = tmp_path / "other.py"
    other.write_text(WORKFLOW.format(name="wf", verify=2))
    agent = api.remote(secret, "w1", tmp_path)
    agent.options.workflows = [other]
    with pytest.raises(RunError, match="spec hash .* differs from run"):
        agent.run()
    api.clock.now += 5
    api.queue.reap(api.clock())
    assert api.queue.scoreboard(run_id)["tasks"]["a"]["state"] in ("ready", "pending")
    # The right code runs it.
    assert api.remote(secret, "w2", tmp_path).run().accepted == 1


def test_agent_with_a_revoked_token_stops_with_the_reason(api, tmp_path):
    api.run()
    secret = api.token("worker")
    api.tokens.revoke(api.tokens.authenticate(secret).id, api.clock())
    with pytest.raises(RemoteError) as caught:
        api.remote(secret, "w1", tmp_path).run()
    assert caught.value.status == 401 and caught.value.code == "invalid-token"


def test_lease_renewer_renews_each_lease_until_stopped_and_drops_stale_ones():
    import threading

    from headwater.runtime.remote import _Renewer

    calls: list[int] = []
    renewed_twice = threading.Event()

    class Client:
        def renew(self, agent, token, lease_s):
            calls.append(token)
            if token == 2:
                raise RemoteError(409, "stale-lease", "taken over")
            if calls.count(1) >= 2:
                renewed_twice.set()
            return 0.0

    with _Renewer(Client(), "w1", [1, 2], lease_s=0.03) as renewer:
        assert renewed_twice.wait(timeout=30)
    assert renewer.tokens == [1]
    assert calls.count(2) == 1
    done = len(calls)
    renewer.stop.wait(0.05)
    assert len(calls) == done
