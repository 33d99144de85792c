"""Shared builders: a representative bundle and a chain of checkpoints."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from headwater.checkpoint import bundle as B
from headwater.checkpoint.profiles import check_invariant, simulation_part


def h(text: str) -> str:
    """A deterministic sha256 hex standing in for a real content hash."""
    return hashlib.sha256(text.encode()).hexdigest()


ENV = {
    "fp": h("env"),
    "hw": "3f2a9c0d1e4b5a67",
    "python": "3.11.7",
    "impl": "CPython",
    "platform": "Linux-6.5.0-35-generic-x86_64-with-glibc2.35",
    "machine": "x86_64",
    "cpu": "AMD EPYC 7763 64-Core Processor",
    "cpus": 128,
    "gpu": "4x NVIDIA A100-SXM4-80GB",
    "container": "kubepods:1a2b3c4d5e6f",
    "lock": {"file": "uv.lock", "sha256": h("uv.lock")},
}


def bundle_kwargs(**overrides: Any) -> dict[str, Any]:
    """Arguments for a typical simulation checkpoint: 5 inputs, 3 outputs,
    6 params, 3 invariants, 3 claims, 2 parents."""
    outputs = {name: h(name) for name in ("trajectory.h5", "energies.csv", "summary.json")}
    manifest = {
        "inputs": {f"{t}/{n}": h(t + n) for t, n in [
            ("prepare", "mesh.msh"), ("prepare", "initial.npz"), ("calibrate", "coeffs.json"),
            ("calibrate", "bounds.json"), ("fetch", "forcing.nc")]},
        "outputs": outputs,
        "code": {"task_hash": h("code"), "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
                 "dirty": False},
        "seed": 5209385719375038271,
        "params": {"alpha": 0.35, "beta": 1.2e-3, "n_steps": 20000, "dt": 0.001,
                   "solver": "rk45", "grid": [256, 256, 64]},
        "versions": {"dataset:forcing": "2024.03", "lib:numpy": "1.26.4"},
        "upstream": [h("p1"), h("p2")],
    }
    invariants = [
        check_invariant("energy_drift", 3.2e-7, 0.0, 1e-6),
        check_invariant("mass_conservation", 1.0000000002, 1.0, 1e-9, rel=True),
        check_invariant("cfl", 0.42, None),
    ]
    kwargs: dict[str, Any] = dict(
        run="r-20240501-7f3a9c",
        workflow="ocean-spinup",
        task="integrate",
        attempt=1,
        status="provisional",
        parents=[h("p2"), h("p1")],
        prev=h("prev"),
        manifest=manifest,
        spec_diff={"against": h("prev"), "changed": ["params.alpha"], "why": "tighter damping after review"},
        env=dict(ENV),
        intent={
            "goal": "Spin up the ocean model to quasi-equilibrium from the calibrated state",
            "assumptions": ["forcing 2024.03 is bias-corrected",
                            "64 vertical levels resolve the thermocline"],
            "concludes": "equilibrium kinetic energy and heat content used by the sensitivity study",
            "claims": [
                {"key": "ocean.ke_eq", "value": 1.84e18, "uncertainty": 2.1e16, "units": "J"},
                {"key": "ocean.heat_content", "value": 2.31e23, "uncertainty": 1.5e21, "units": "J"},
                {"key": "ocean.spinup_steps", "value": 20000},
            ],
        },
        artifacts=[
            {"name": n, "uri": f"file:///data/runs/r-20240501-7f3a9c/integrate/{n}", "sha256": s,
             "size": 1048576 * (i + 1), "media_type": "application/octet-stream"}
            for i, (n, s) in enumerate(outputs.items())
        ],
        profile=simulation_part(
            {"solver": "rk45", "rtol": 1e-8, "atol": 1e-10, "dt": 0.001, "grid": [256, 256, 64],
             "rng": "philox per task"},
            invariants,
        ),
        started=1714557600.0,
        finished=1714561234.567,
    )
    kwargs.update(overrides)
    return kwargs


@pytest.fixture
def sample() -> dict:
    return B.build_bundle(**bundle_kwargs())


def make_chain(run: str, n: int, *, start_prev: str | None = None) -> list[tuple[str, dict]]:
    """``n`` checkpoints of one run in write order, each naming the one
    before as ``prev`` and, from the second on, the first as its parent."""
    chain: list[tuple[str, dict]] = []
    prev = start_prev
    for i in range(n):
        parents = [chain[0][0]] if chain else []
        bundle = B.build_bundle(**bundle_kwargs(run=run, task=f"t{i}", prev=prev, parents=parents))
        cid = B.bundle_id(bundle)
        chain.append((cid, bundle))
        prev = cid
    return chain
