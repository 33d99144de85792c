"""kill -9 the runner mid-run: resume finishes it and runs no finished task again."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from headwater.runtime import open_workspace, resume_run
from tests.runtime.workflows import SLOW


@pytest.mark.slow
def test_resume_after_sigkill_reruns_nothing_that_finished(tmp_path):
    wf_file = tmp_path / "slow.py"
    wf_file.write_text(SLOW)
    log = tmp_path / "executions.log"
    home = tmp_path / ".headwater"
    env = dict(os.environ, HEADWATER_HOME=str(home))
    proc = subprocess.Popen(
        [sys.executable, "-m", "headwater", "run", str(wf_file), "--param", f"log={log}", "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    ws = None
    try:
        deadline = time.time() + 60
        committed_before: set[str] = set()
        while time.time() < deadline:
            time.sleep(0.1)
            if not (home / "store.db").exists():
                continue
            if ws is None:
                ws = open_workspace(home)
            runs = ws.store.list_runs()
            if runs:
                committed_before = {c.task for c in ws.store.list_checkpoints(runs[0].id) if c.status == "committed"}
                if len(committed_before) >= 3:
                    break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert 3 <= len(committed_before) < 10, "the run must be killed mid-way"
        run = ws.store.list_runs()[0]
        committed_at_kill = {c.task for c in ws.store.list_checkpoints(run.id) if c.status == "committed"}
        assert ws.store.get_run(run.id).status == "running"
        summary = resume_run(ws, run.id[:8], workers=2)
        assert summary.ok
        counts = Counter(log.read_text().split())
        for task in committed_at_kill:
            assert counts[task] == 1, f"{task} ran again after resume"
        final = [c for c in ws.store.list_checkpoints(run.id) if c.status == "committed"]
        assert sorted(c.task for c in final) == sorted(f"s{i}" for i in range(10))
        assert ws.store.get_run(run.id).status == "succeeded"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if ws is not None:
            ws.close()


def test_resume_refuses_a_changed_workflow(tmp_path):
    from headwater.errors import RunError
    from headwater.runtime import RunOptions, run_workflow
    from headwater.spec import load_workflow

    wf_file = tmp_path / "chain_a.py"
    wf_file.write_text(SLOW.replace("range(10)", "range(2)"))
    ws = open_workspace(tmp_path / ".headwater")
    summary = run_workflow(ws, load_workflow(wf_file), {"log": str(tmp_path / "l")}, RunOptions(workers=0))
    ws.store.set_run_status(summary.run_id, "interrupted")
    wf_file.write_text(SLOW.replace("range(10)", "range(3)"))
    with pytest.raises(RunError, match="changed since run"):
        resume_run(ws, summary.run_id)
    ws.close()


def test_resume_refuses_a_run_served_by_the_shared_queue(tmp_path):
    from headwater.errors import RunError
    from headwater.runtime.shared import submit_run
    from headwater.spec import load_workflow

    wf_file = tmp_path / "chain_q.py"
    wf_file.write_text(SLOW)
    ws = open_workspace(tmp_path / ".headwater")
    run_id = submit_run(ws.store, load_workflow(wf_file), {"log": str(tmp_path / "l")})
    with pytest.raises(RunError, match="headwater coordinator --run"):
        resume_run(ws, run_id)
    assert ws.store.get_run(run_id).status == "running"
    ws.close()
