"""Agents: the processes that run task code and verifiers.

An agent receives :class:`Work` (run a task attempt) or :class:`VerifyWork`
(judge someone else's attempt) and answers with a :class:`Result`. It never
decides anything about scheduling: it runs what it was leased and reports.
The same functions serve every executor — local processes, the inline
executor used for debugging, and remote agents.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headwater.runtime.context import ClaimLookup, Context, InputRef, InvariantViolated, TaskOutcome
from headwater.spec import TaskSpec, Workflow
from headwater.store.artifacts import ArtifactStore
from headwater.store.records import ArtifactRecord


@dataclass
class Work:
    """Run one attempt of a task under the lease ``token``.

    ``then`` is a chain of follow-ons the agent may run straight after this
    work succeeds, each on the outputs of the one before (added to its
    ``inputs`` as ``"<task>/<name>"``), for as long as ``budget`` seconds
    allow: they hold no lease yet (their tokens are negative placeholders),
    and the coordinator leases and accepts each one only if, once the work
    before it is in, that very attempt is what it would run next. This saves
    a round trip per task on chains of short tasks.
    """

    token: int
    run_id: str
    task: str
    attempt: int
    params: dict[str, Any]
    seed: int
    inputs: dict[str, InputRef]
    then: list[Work] = field(default_factory=list)
    budget: float = 0.0


@dataclass
class VerifyWork:
    """Judge a provisional attempt: its inputs, outputs and recorded invariants."""

    token: int
    run_id: str
    task: str
    attempt: int
    params: dict[str, Any]
    seed: int
    inputs: dict[str, InputRef]
    outputs: list[ArtifactRecord]
    invariants: list[dict] = field(default_factory=list)


@dataclass
class Result:
    """What an agent sends back for one piece of work."""

    token: int
    agent: str
    kind: str  # "run" | "verify"
    outcome: TaskOutcome | None = None
    approve: bool | None = None
    reason: str = ""


class OutputsView:
    """A verifier's or check function's read-only view of one attempt's outputs."""

    def __init__(self, task: str, outputs: list[ArtifactRecord], artifacts: ArtifactStore) -> None:
        self.task = task
        self.outputs = {o.name: o for o in outputs}
        self._artifacts = artifacts

    def load(self, name: str) -> Any:
        from headwater.runtime import serialize

        if name not in self.outputs:
            raise KeyError(f"task {self.task!r} has no output {name!r} (outputs: {', '.join(self.outputs) or 'none'})")
        rec = self.outputs[name]
        return serialize.decode(self._artifacts.get_bytes(rec.sha256), rec.media_type)

    def path(self, name: str) -> Path | None:
        return self._artifacts.local_path(self.outputs[name].sha256)


class Cancelled(BaseException):
    """Raised inside an agent's running work when the coordinator cancels it.

    A ``BaseException``, so the ``except Exception`` that turns a task's own
    errors into a failed outcome does not swallow it: cancelled work reports
    nothing.
    """


_SCRATCH: dict[int, Path] = {}


@contextlib.contextmanager
def _scratch(name: str):
    """A private working directory for one piece of work, removed afterwards.

    It lives under one temporary directory per process and is only created
    when the work touches it (see :attr:`Context.workdir`): most tasks never
    do, and creating and removing a directory costs more than a no-op task.
    """
    pid = os.getpid()
    base = _SCRATCH.get(pid)
    if base is None:
        base = _SCRATCH[pid] = Path(tempfile.mkdtemp(prefix="hw-agent-"))
        atexit.register(release_scratch)
    path = base / name
    try:
        yield path
    finally:
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)


def release_scratch() -> None:
    """Remove this process's scratch directory (agents call it when they stop)."""
    base = _SCRATCH.pop(os.getpid(), None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)


def execute(
    wf: Workflow,
    work: Work,
    artifacts: ArtifactStore,
    claim_lookup: ClaimLookup | None = None,
) -> TaskOutcome:
    """Run one task attempt and return its outcome; never raises for task errors."""
    spec = wf.tasks[work.task]
    started = time.time()
    with _scratch(f"{work.task}-{work.attempt}-{work.token}") as tmp:
        ctx = Context(
            run_id=work.run_id,
            task=work.task,
            attempt=work.attempt,
            params=work.params,
            seed=work.seed,
            inputs=work.inputs,
            artifacts=artifacts,
            workdir=tmp,
            claim_lookup=claim_lookup,
        )
        out, err = io.StringIO(), io.StringIO()
        try:
            for ref in spec.uses:  # declared uses resolve to the version current now
                ctx.use(ref)
            if spec.fn is not None:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    returned = spec.fn(ctx)
            else:
                returned = _run_command(spec, ctx, out, err)
            if spec.branches:
                if returned not in spec.branches:
                    raise ValueError(
                        f"task {spec.name!r} must return one of {list(spec.branches)}, got {returned!r}"
                    )
                ctx.outcome.branch = returned
            bad = [inv["name"] for inv in ctx.outcome.invariants if not inv["ok"]]
            if bad:
                raise InvariantViolated(f"task {spec.name!r}: invariant violated: {', '.join(bad)}")
        except Exception as exc:  # the task's own failure, reported not raised
            ctx.outcome.error = f"{type(exc).__name__}: {exc}"
            err.write(traceback.format_exc())
        ctx.outcome.stdout = out.getvalue()
        ctx.outcome.stderr = err.getvalue()
    ctx.outcome.started = started
    ctx.outcome.finished = time.time()
    return ctx.outcome


def _run_command(spec: TaskSpec, ctx: Context, out: io.StringIO, err: io.StringIO) -> str | None:
    """Run a shell step: inputs as files, outputs collected from files."""
    inputs = {local: str(ctx.path(ref)) for local, ref in spec.inputs.items()}
    outdir = ctx.workdir / "out"
    outdir.mkdir()
    outputs = {name: str(outdir / rel) for name, rel in spec.outputs.items()}
    for path in outputs.values():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    quoted = {
        "inputs": {k: shlex.quote(v) for k, v in inputs.items()},
        "outputs": {k: shlex.quote(v) for k, v in outputs.items()},
        "params": {k: shlex.quote(str(v)) for k, v in ctx.params.items()},
    }
    command = spec.command.format(seed=ctx.seed, **quoted)
    env = dict(os.environ, HEADWATER_SEED=str(ctx.seed), HEADWATER_TASK=spec.name)
    proc = subprocess.run(
        command, shell=True, cwd=ctx.workdir, capture_output=True, text=True, env=env, timeout=spec.timeout
    )
    out.write(proc.stdout)
    err.write(proc.stderr)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"command exited with status {proc.returncode}: {' | '.join(tail)}")
    for name, path in outputs.items():
        if not Path(path).exists():
            raise FileNotFoundError(f"command did not write output {name!r} ({spec.outputs[name]})")
        ctx.save(name, Path(path))
    lines = proc.stdout.strip().splitlines()
    return lines[-1].strip() if spec.branches and lines else None


def verify(wf: Workflow, work: VerifyWork, artifacts: ArtifactStore) -> tuple[bool, str]:
    """Judge an attempt. The default verifier re-hashes every output and
    re-checks the recorded invariants; a task's own verifier (a function
    ``fn(ctx, outputs) -> bool | str`` or a shell command given the output
    paths as ``{outputs[name]}``) runs after that."""
    for rec in work.outputs:
        if not artifacts.verify(rec.sha256):
            return False, f"output {rec.name!r} does not match its sha256"
    bad = [inv["name"] for inv in work.invariants if not inv.get("ok")]
    if bad:
        return False, f"invariant violated: {', '.join(bad)}"
    spec = wf.tasks[work.task]
    if spec.verifier is None:
        return True, "hashes and invariants check out"
    view = OutputsView(work.task, work.outputs, artifacts)
    try:
        if callable(spec.verifier):
            with _scratch(f"verify-{work.task}-{work.attempt}-{work.token}") as tmp:
                ctx = Context(
                    run_id=work.run_id, task=work.task, attempt=work.attempt, params=work.params,
                    seed=work.seed, inputs=work.inputs, artifacts=artifacts, workdir=tmp,
                )
                verdict = spec.verifier(ctx, view)
        else:
            paths = {n: shlex.quote(str(view.path(n))) for n in view.outputs}
            proc = subprocess.run(
                spec.verifier.format(outputs=paths), shell=True, capture_output=True, text=True
            )
            verdict = proc.returncode == 0 or (proc.stderr.strip() or f"verifier exited {proc.returncode}")
    except Exception as exc:
        return False, f"verifier raised {type(exc).__name__}: {exc}"
    if verdict is True:
        return True, "verifier approved"
    return False, verdict if isinstance(verdict, str) else "verifier rejected"


def follow_ons(wf: Workflow, agent_id: str, msg: Work, done: Result, artifacts: ArtifactStore,
               claim_lookup: ClaimLookup | None = None):
    """Run ``msg.then`` after ``msg`` succeeded (see :class:`Work`); yields each result.

    Stops at the first failure, or when ``msg.budget`` seconds have passed
    since ``msg`` started.
    """
    prev, outcome = msg, done.outcome
    deadline = (outcome.started if outcome else time.time()) + msg.budget
    for nxt in msg.then:
        if outcome is None or not outcome.ok or time.time() >= deadline:
            return
        inputs = dict(nxt.inputs)
        for o in outcome.outputs:
            ref = f"{prev.task}/{o.name}"
            inputs[ref] = InputRef(ref, o.sha256, o.media_type, o.size, o.uri)
        work = Work(nxt.token, nxt.run_id, nxt.task, nxt.attempt, nxt.params, nxt.seed, inputs)
        result = handle(wf, agent_id, work, artifacts, claim_lookup)
        yield work, result
        prev, outcome = work, result.outcome


def handle(wf: Workflow, agent_id: str, msg: Work | VerifyWork, artifacts: ArtifactStore,
           claim_lookup: ClaimLookup | None = None) -> Result:
    """Run one message and wrap the answer."""
    if isinstance(msg, VerifyWork):
        approve, reason = verify(wf, msg, artifacts)
        return Result(token=msg.token, agent=agent_id, kind="verify", approve=approve, reason=reason)
    return Result(token=msg.token, agent=agent_id, kind="run", outcome=execute(wf, msg, artifacts, claim_lookup))
