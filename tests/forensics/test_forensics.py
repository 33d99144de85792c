"""Forensics from bundles alone: verify, diff, reproduce, bisect, lineage."""

import sqlalchemy as sa
import pytest

from headwater.forensics import bisect_run, diff, lineage, load_check, reproduce, verify_store
from headwater.runtime import RunOptions, run_workflow
from tests.runtime.workflows import CHAIN


@pytest.fixture
def chain_run(ws, write_wf):
    wf = write_wf(CHAIN)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=0, seed=5))
    return summary.run_id


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def test_verify_passes_on_untouched_store(ws, chain_run):
    report = verify_store(ws.store, ws.key.public_hex)
    assert report.ok, report.problems
    assert report.checkpoints == 4 and report.artifacts >= 4


@pytest.mark.parametrize("position", [0, 37, -2])
def test_verify_names_a_bundle_with_one_changed_byte(ws, chain_run, position):
    cks = ws.store.list_checkpoints(chain_run)
    target = cks[2]
    tampered = _flip(target.bundle, position % len(target.bundle))
    with ws.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE checkpoint SET bundle = :b WHERE id = :i"), {"b": tampered, "i": target.id})
    report = verify_store(ws.store, ws.key.public_hex, chain_run)
    assert not report.ok
    assert report.problems[0][0] == target.id
    assert target.task in report.problems[0][1]


def test_verify_names_a_changed_artifact(ws, chain_run):
    ck = ws.store.list_checkpoints(chain_run)[-1]
    sha = ck.outputs[0].sha256
    path = ws.store.artifacts.local_path(sha)
    path.chmod(0o644)
    path.write_bytes(_flip(path.read_bytes(), 3))
    report = verify_store(ws.store, ws.key.public_hex)
    assert [s for s, _ in report.problems] == [sha]


def test_verify_detects_a_forged_signature(ws, chain_run):
    from headwater.checkpoint.signing import SigningKey

    other = SigningKey.generate()
    report = verify_store(ws.store, other.public_hex)
    assert not report.ok and len(report.problems) >= 4


def test_verify_detects_a_removed_checkpoint(ws, chain_run):
    cks = ws.store.list_checkpoints(chain_run)
    with ws.store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM checkpoint_artifact WHERE checkpoint_id = :i"), {"i": cks[1].id})
        conn.execute(sa.text("DELETE FROM asset_use WHERE checkpoint_id = :i"), {"i": cks[1].id})
        conn.execute(sa.text("DELETE FROM checkpoint WHERE id = :i"), {"i": cks[1].id})
    report = verify_store(ws.store, ws.key.public_hex, chain_run)
    assert not report.ok
    assert report.problems[0][0] == cks[2].id


def test_reproduce_is_byte_identical(ws, chain_run):
    for ck in ws.store.list_checkpoints(chain_run):
        rep = reproduce(ws.store, ck.id[:10])
        assert rep.identical, (ck.task, rep.outputs)
        assert not rep.code_changed


def test_reproduce_reports_changed_code(ws, write_wf, tmp_path):
    wf = write_wf(CHAIN)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=0))
    total = ws.store.list_checkpoints(summary.run_id)[-1]
    source = wf.source_file
    text = open(source).read().replace('ctx.save("total", {"total": sum(scaled)})',
                                       'ctx.save("total", {"total": sum(scaled) + 1})')
    new_file = tmp_path / "edited.py"
    new_file.write_text(text)
    run = ws.store.get_run(summary.run_id)
    with ws.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE run SET source = :s WHERE id = :i"), {"s": str(new_file), "i": run.id})
    rep = reproduce(ws.store, total.id)
    assert not rep.identical and rep.code_changed
    assert rep.outputs["total"]["same"] is False


def test_diff_runs_with_changed_param(ws, write_wf):
    wf = write_wf(CHAIN)
    a = run_workflow(ws, wf, {}, RunOptions(workers=0))
    b = run_workflow(ws, wf, {"scale": "2.2"}, RunOptions(workers=0, why="bigger"))
    d = diff(ws.store, a.run_id, b.run_id)
    assert d["kind"] == "runs"
    assert d["params"] == {"scale": [2.0, 2.2]}
    assert d["why"] == [None, "bigger"]
    # same branch, same numbers: outputs identical, so nothing changed downstream
    assert d["tasks"]["total"]["artifacts"]["changed"] == []
    ck = diff(ws.store, d["tasks"]["make"]["a"], d["tasks"]["make"]["b"])
    assert ck["kind"] == "checkpoints" and ck["params"] == {"scale": [2.0, 2.2]}
    assert ck["env"]["fingerprint"] is None


def test_diff_runs_with_other_branch_shows_changed_outputs(ws, write_wf):
    wf = write_wf(CHAIN)
    a = run_workflow(ws, wf, {}, RunOptions(workers=0))
    b = run_workflow(ws, wf, {"scale": "3"}, RunOptions(workers=0))
    d = diff(ws.store, a.run_id, b.run_id)
    assert d["only_in_a"] == ["double"] and d["only_in_b"] == ["triple"]
    assert d["tasks"]["total"]["artifacts"]["changed"] == ["total"]
    assert d["tasks"]["total"]["claims"] == {"chain.total": [12.0, 18.0]}


def test_bisect_finds_first_bad_checkpoint_in_log_checks(ws, write_wf):
    source = "from headwater import Workflow\nwf = Workflow('long')\n"
    for i in range(32):
        after = f", after='t{i - 1}'" if i else ""
        source += (f"@wf.task(name='t{i}'{after})\ndef t{i}(ctx):\n"
                   f"    prev = ctx.load('value') if {i} else 0\n"
                   f"    ctx.save('value', prev + (100 if {i} == 19 else 1))\n")
    wf = write_wf(source)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=0))
    from headwater.runtime.agent import OutputsView

    calls = []

    def check(ck):
        calls.append(ck.task)
        value = OutputsView(ck.task, ck.outputs, ws.store.artifacts).load("value")
        return value == int(ck.task[1:]) + 1

    report = bisect_run(ws.store, summary.run_id, check)
    assert report.first_bad["task"] == "t19"
    assert len(report.checks) <= 6 == len(calls)


def test_bisect_with_shell_check(ws, chain_run):
    check = load_check('test "$HEADWATER_TASK" != total', ws.store)
    report = bisect_run(ws.store, chain_run, check)
    assert report.first_bad["task"] == "total"


def test_bisect_python_check_spec_errors_are_clear(ws):
    from headwater.errors import HeadwaterError

    with pytest.raises(HeadwaterError, match="python:module:function"):
        load_check("python:nomodule", ws.store)
    with pytest.raises(HeadwaterError, match="cannot load"):
        load_check("python:no_such_module_xyz:fn", ws.store)


def test_lineage_upstream_and_downstream(ws, chain_run):
    cks = ws.store.list_checkpoints(chain_run)
    make, total = cks[0], cks[-1]
    up = lineage(ws.store, total.id)
    assert [n["task"] for n in up["upstream"]][:1] == ["double"]
    assert {"make", "decide", "double"} <= {n["task"] for n in up["upstream"]}
    down = lineage(ws.store, make.id)
    assert {"double", "total"} <= {n["task"] for n in down["downstream"]}
    art = lineage(ws.store, make.outputs[0].sha256)
    assert art["subject"]["kind"] == "artifact"
    assert [n["task"] for n in art["upstream"]] == ["make"]
