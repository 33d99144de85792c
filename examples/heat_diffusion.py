"""Heat diffusion in an insulated rod, by the method of lines.

The temperature excess u(x, t) of a uniform rod of length L obeys

    u_t = alpha * u_xx,   0 < x < L,   u_x = 0 at both ends (insulated),

so no heat leaves the rod: the total heat (the integral of u over the rod) is
constant, the hottest point can only cool and the coldest only warm (maximum principle),
and every cosine mode cos(k pi x / L) decays as exp(-alpha (k pi / L)^2 t).
The slowest, k = 1, sets how fast the rod evens out.

The rod is cut into nx finite-volume cells; the second difference with mirror
ghost cells turns the PDE into a stiff linear ODE system u' = A u, integrated
with an implicit BDF method that is given A itself as its sparse Jacobian.
The first-mode decay rate is measured on two grids, Richardson-extrapolated,
and compared with alpha (pi / L)^2.

Run it with ``headwater run examples/heat_diffusion.py --param alpha=0.02 --seed 7``.

For bisect demonstrations, ``--param bug=STAGE`` makes one stage silently
wrong (every invariant still holds) and :func:`check_outputs` tells good
checkpoints from bad ones::

    headwater bisect RUN --check python:examples.heat_diffusion:check_outputs
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.fft import dct, idct
from scipy.integrate import solve_ivp
from scipy.stats import linregress

from headwater import Context, Workflow

STAGES = ("setup", "solve", "check_convergence", "refine", "analyse", "report")
ORDER = 2  # the three-point second difference is second-order accurate in dx
MODES = (1, 2, 3, 4)  # cosine modes whose decay the analysis fits

wf = Workflow(
    "heat-diffusion",
    profile="simulation",
    tags=["demo", "pde", "diffusion"],
    description="1-D heat equation in an insulated rod: conservation, maximum principle "
    "and the decay rate of the slowest mode, with a grid-convergence check.",
)
wf.param("length", "float", default=1.0, help="rod length L [m]")
wf.param("alpha", "float", default=0.01, help="thermal diffusivity [m^2/s]")
wf.param("nx", "int", default=64, help="number of cells (even, >= 16)")
wf.param("t_end", "float", default=20.0, help="simulated time [s]")
wf.param("snapshots", "int", default=101, help="stored time levels, t = 0 included")
wf.param("bump_center", "float", default=0.3, help="centre of the initial hot spot, as a fraction of L")
wf.param("bump_width", "float", default=0.05, help="standard deviation of the hot spot, as a fraction of L")
wf.param("bump_height", "float", default=1.0, help="peak temperature excess of the hot spot [K]")
wf.param("noise", "float", default=0.01, help="amplitude of the seeded cell-to-cell noise [K]")
wf.param("rtol", "float", default=1e-6, help="relative tolerance of the time integrator")
wf.param("atol", "float", default=1e-9, help="absolute tolerance of the time integrator [K]")
wf.param("conv_tol", "float", default=1e-4, help="accepted relative discretisation error of the decay rate")
wf.param("bug", "str", default="", help="name of a stage to make silently wrong (bisect demos)")


# ---------------------------------------------------------------- numerics


def laplacian(nx: int, dx: float, alpha: float) -> sparse.csc_matrix:
    """alpha * d2/dx2 on cell centres, with zero-flux (mirror) ends: columns sum to zero."""
    main = np.full(nx, -2.0)
    main[[0, -1]] = -1.0
    off = np.ones(nx - 1)
    return (alpha / dx**2) * sparse.diags([off, main, off], [-1, 0, 1], format="csc")


def mode_rates(nx: int, length: float, alpha: float) -> np.ndarray:
    """Exact decay rates of the discrete cosine modes k = 0..nx-1 of :func:`laplacian`.

    Mode k decays at alpha * (2/dx)^2 sin^2(k pi dx / 2L), which tends to
    alpha (k pi / L)^2 as dx -> 0 with an error of order dx^2.
    """
    dx = length / nx
    return alpha * (2.0 / dx * np.sin(np.arange(nx) * np.pi * dx / (2.0 * length))) ** 2


def cosine_amplitudes(field: np.ndarray) -> np.ndarray:
    """Amplitude of every cosine mode at every time (DCT-II: the modes of :func:`laplacian`)."""
    return dct(field, type=2, norm="ortho", axis=-1)


def fit_decay(times: np.ndarray, amplitude: np.ndarray) -> tuple[float, float]:
    """Rate and standard error of an exponential decay, from samples above the noise floor."""
    size = np.abs(amplitude)
    keep = size > 1e-4 * size[0]
    fit = linregress(times[keep], np.log(size[keep]))
    return -fit.slope, fit.stderr


def simulate(ctx: Context, u0: np.ndarray, dx: float, times: np.ndarray, rtol: float, atol: float):
    """Integrate u' = A u from u0; record numerics and check conservation and the maximum principle."""
    A = laplacian(u0.size, dx, ctx.params["alpha"])
    sol = solve_ivp(lambda t, u: A @ u, (times[0], times[-1]), u0, method="BDF", t_eval=times,
                    jac=A, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    field = sol.y.T
    ctx.numerics(solver="scipy.integrate.solve_ivp BDF (variable order 1-5)", rtol=rtol, atol=atol,
                 dt="adaptive", jacobian="exact, sparse tridiagonal",
                 grid={"cells": u0.size, "dx": dx, "layout": "cell-centred, mirror ghost cells"},
                 rhs_evaluations=sol.nfev, lu_decompositions=sol.nlu, rng="none (deterministic)")
    heat = field.sum(axis=1) * dx
    span = np.ptp(u0)
    ctx.invariant("energy_conservation", heat[-1], expected=heat[0], tol=float(1e-9 * span * dx * u0.size))
    overshoot = max(field.max() - u0.max(), u0.min() - field.min(), 0.0)
    ctx.invariant("maximum_principle", overshoot, expected=0.0, tol=float(1e-6 * span))
    return field


def run_record(ctx: Context, nx: int, dx: float, rtol: float, atol: float) -> dict:
    """What a solving stage ran: enough to rebuild its exact solution."""
    p = ctx.params
    return {"length": p["length"], "alpha": p["alpha"], "nx": nx, "dx": dx, "rtol": rtol, "atol": atol}


# ---------------------------------------------------------------- stages


@wf.task(uses=["lib:numpy"])
def setup(ctx: Context) -> None:
    """Lay out the grid and the initial temperature.

    Goal: a cell-centred grid on [0, L] and an initial hot spot with seeded noise.
    Assumptions:
    - the rod is uniform, with constant diffusivity alpha
    - both ends are insulated (zero heat flux)
    - u is the temperature excess over ambient, in kelvin
    Concludes: the initial heat content that every later stage must conserve.
    """
    p = ctx.params
    if p["bug"] not in ("", *STAGES):
        raise ValueError(f"bug must be '' or one of {', '.join(STAGES)}; got {p['bug']!r}")
    nx, length = p["nx"], p["length"]
    if nx < 16 or nx % 2:
        raise ValueError(f"nx must be even and >= 16 (the convergence check halves the grid); got {nx}")
    x = (np.arange(nx) + 0.5) * (length / nx)
    if p["bug"] == "setup":
        x = np.linspace(0.0, length, nx)  # node-centred points: the cells overhang the rod
    bump = p["bump_height"] * np.exp(-0.5 * ((x / length - p["bump_center"]) / p["bump_width"]) ** 2)
    u0 = bump + p["noise"] * ctx.rng.standard_normal(nx)
    excitation = np.abs(cosine_amplitudes(u0))
    if excitation[list(MODES)].min() < 1e-3 * excitation.max():
        raise ValueError("the initial state hardly excites one of the fitted modes; "
                         "move bump_center off the middle or add noise")
    ctx.numerics(grid={"cells": nx, "dx": x[1] - x[0], "layout": "cell-centred"},
                 rng=f"numpy PCG64 seeded with the task seed {ctx.seed}: normal noise per cell")
    ctx.save("x", x)
    ctx.save("u0", u0)
    ctx.save("problem", {"length": length, "alpha": p["alpha"], "nx": nx,
                         "initial_heat": float(u0.sum() * (x[1] - x[0]))})


@wf.task(after=["setup"], uses=["lib:scipy"])
def solve(ctx: Context) -> None:
    """Integrate the heat equation on the setup grid.

    Goal: the temperature field at evenly spaced times up to t_end.
    Assumptions:
    - the method of lines with the three-point Laplacian is second-order in dx
    - BDF with rtol/atol keeps time errors well below the spatial ones
    Concludes: u(x, t) on the base grid.
    """
    p = ctx.params
    x, u0 = ctx.load("setup/x"), ctx.load("setup/u0")
    dx = x[1] - x[0]
    if p["bug"] == "solve":
        dx = (x[-1] - x[0]) / x.size  # off by one: nx centres span nx - 1 cells
    times = np.linspace(0.0, p["t_end"], p["snapshots"])
    field = simulate(ctx, u0, dx, times, p["rtol"], p["atol"])
    ctx.save("times", times)
    ctx.save("field", field)
    ctx.save("run", run_record(ctx, x.size, dx, p["rtol"], p["atol"]))


@wf.task(after=["setup", "solve"], branches=("refine", "accept"), uses=["lib:scipy"])
def check_convergence(ctx: Context) -> str:
    """Estimate the discretisation error by re-solving on a grid twice as coarse.

    Goal: decide whether the base grid resolves the first-mode decay rate to conv_tol.
    Assumptions:
    - the error of the rate falls as dx^2, so the fine-grid error is about
      |rate(dx) - rate(2 dx)| / (2^2 - 1) (Richardson)
    Concludes: "refine" when the estimated relative error exceeds conv_tol, else "accept".
    """
    p = ctx.params
    x, u0 = ctx.load("setup/x"), ctx.load("setup/u0")
    times, field = ctx.load("solve/times"), ctx.load("solve/field")
    coarse_dx = 2 * (x[1] - x[0])
    if p["bug"] == "check_convergence":
        coarse_dx = x[1] - x[0]  # kept the fine spacing: the coarse rod is half as long
    coarse = simulate(ctx, u0.reshape(-1, 2).mean(axis=1), coarse_dx, times, p["rtol"], p["atol"])
    fine_rate, _ = fit_decay(times, cosine_amplitudes(field)[:, 1])
    coarse_rate, _ = fit_decay(times, cosine_amplitudes(coarse)[:, 1])
    error = abs(fine_rate - coarse_rate) / (2**ORDER - 1)
    decision = "refine" if error > p["conv_tol"] * fine_rate else "accept"
    ctx.save("coarse_field", coarse)
    ctx.save("convergence", {
        "length": p["length"], "alpha": p["alpha"],
        "grids": [{"nx": x.size // 2, "rate": coarse_rate}, {"nx": x.size, "rate": fine_rate}],
        "error_estimate": error, "relative_error": error / fine_rate, "tolerance": p["conv_tol"],
        "decision": decision,
    })
    ctx.log.info("first-mode rate %.6g 1/s, estimated relative error %.2g -> %s",
                 fine_rate, error / fine_rate, decision)
    return decision


@wf.task(after=["setup", "solve", "check_convergence"], uses=["lib:scipy"])
def refine(ctx: Context) -> None:
    """Re-solve on a grid twice as fine, with tolerances ten times tighter.

    Goal: a solution whose first-mode decay rate meets conv_tol.
    Assumptions:
    - splitting each cell in two keeps the initial cell averages, so the
      refined run starts from the same initial state
    Concludes: u(x, t) on the refined grid, and the three-grid convergence table.
    """
    p = ctx.params
    x, u0 = ctx.load("setup/x"), ctx.load("setup/u0")
    times = ctx.load("solve/times")
    xf = (x[:, None] + np.array([-0.25, 0.25]) * (x[1] - x[0])).ravel()
    if p["bug"] == "refine":
        xf = np.linspace(x[0], x[-1], 2 * x.size)  # spans the old centres, not the rod
    dxf = xf[1] - xf[0]
    rtol, atol = p["rtol"] / 10, p["atol"] / 10
    field = simulate(ctx, np.repeat(u0, 2), dxf, times, rtol, atol)
    rates = [fit_decay(times, cosine_amplitudes(f)[:, 1])[0]
             for f in (ctx.load("check_convergence/coarse_field"), ctx.load("solve/field"), field)]
    observed = np.log2(abs(rates[0] - rates[1]) / abs(rates[1] - rates[2]))
    ctx.save("x", xf)
    ctx.save("times", times)
    ctx.save("field", field)
    ctx.save("run", run_record(ctx, xf.size, dxf, rtol, atol))
    ctx.save("convergence", {
        "length": p["length"], "alpha": p["alpha"],
        "grids": [{"nx": n, "rate": r} for n, r in zip((x.size // 2, x.size, xf.size), rates)],
        "observed_order": observed, "error_estimate": abs(rates[2] - rates[1]) / (2**ORDER - 1),
    })


@wf.task(after=["setup", "solve", "check_convergence"])
def accept(ctx: Context) -> None:
    """Keep the base-grid solution as the final one.

    Goal: hand on the base-grid solution, whose estimated error already meets conv_tol.
    Concludes: the final u(x, t) and its two-grid convergence table.
    """
    ctx.save("x", ctx.load("setup/x"))
    for name in ("times", "field", "run"):
        ctx.save(name, ctx.load(f"solve/{name}"))
    ctx.save("convergence", ctx.load("check_convergence/convergence"))


@wf.task(after=["solve", "check_convergence", "refine", "accept"], uses=["lib:scipy"])
def analyse(ctx: Context) -> None:
    """Measure modal decay rates and extrapolate the slowest one to the continuum.

    Goal: the first-mode decay rate of the rod, with its discretisation uncertainty.
    Assumptions:
    - the two finest grids are in the asymptotic dx^2 regime
    - the fits use only amplitudes well above the integrator's tolerance
    - the quoted uncertainty is the error estimate of the finest grid's rate,
      a conservative bound for the extrapolated one
    Concludes: heat.decay_rate [1/s], heat.diffusivity [m^2/s] and the
    dispersion exponent of the modal rates (2 for diffusion).
    """
    p = ctx.params
    times = ctx.load("solve/times")
    fields = [ctx.load("check_convergence/coarse_field"), ctx.load("solve/field")]
    if ctx.load("check_convergence/convergence")["decision"] == "refine":
        fields.append(ctx.load("refine/field"))
    amplitudes = [cosine_amplitudes(f)[:, list(MODES)] for f in fields]
    if p["bug"] == "analyse":
        amplitudes = [a**2 for a in amplitudes]  # fits the modal energy, which decays twice as fast
    table = [{"nx": f.shape[1], "rate": fit_decay(times, a[:, 0])[0]} for f, a in zip(fields, amplitudes)]
    coarse, fine = table[-2]["rate"], table[-1]["rate"]
    rate = fine + (fine - coarse) / (2**ORDER - 1)
    _, fit_error = fit_decay(times, amplitudes[-1][:, 0])
    uncertainty = float(np.hypot(rate - fine, fit_error))
    spectrum = [fit_decay(times, amplitudes[-1][:, j])[0] for j in range(len(MODES))]
    dispersion = linregress(np.log(MODES), np.log(spectrum))
    discrete = mode_rates(fields[-1].shape[1], p["length"], p["alpha"])[list(MODES)]
    expected = linregress(np.log(MODES), np.log(discrete)).slope
    ctx.invariant("diffusive_scaling", dispersion.slope, expected=expected, tol=0.01)
    wavenumber2 = (np.pi / p["length"]) ** 2
    ctx.claim("heat.decay_rate", rate, uncertainty=uncertainty, units="1/s")
    ctx.claim("heat.diffusivity", rate / wavenumber2, uncertainty=uncertainty / wavenumber2, units="m^2/s")
    ctx.claim("heat.dispersion_exponent", dispersion.slope, uncertainty=dispersion.stderr, units="1")
    ctx.save("amplitudes", amplitudes[-1])
    ctx.save("analysis", {
        "length": p["length"], "alpha": p["alpha"], "grids": table,
        "decay_rate": rate, "uncertainty": uncertainty, "analytic_rate": p["alpha"] * wavenumber2,
        "diffusivity": rate / wavenumber2, "modes": list(MODES), "mode_rates": spectrum,
        "dispersion_exponent": dispersion.slope,
    })


@wf.task(after=["analyse"])
def report(ctx: Context) -> None:
    """Summarise the run for readers.

    Goal: a short report of the decay rate, its time scales and the convergence study.
    Concludes: the e-folding time and half-life of the rod's slowest temperature contrast.
    """
    a = ctx.load("analyse/analysis")
    rate = a["decay_rate"]
    half_life = np.log(2) / rate
    if ctx.params["bug"] == "report":
        half_life = np.log(2) * rate  # multiplied where it should divide
    summary = {**a, "efolding_time": 1.0 / rate, "half_life": float(half_life)}
    rows = "\n".join(f"| {g['nx']} | {g['rate']:.8f} |" for g in a["grids"])
    text = (
        f"# Heat diffusion in an insulated rod\n\n"
        f"L = {a['length']:g} m, alpha = {a['alpha']:g} m^2/s\n\n"
        f"| cells | first-mode decay rate [1/s] |\n|---|---|\n{rows}\n\n"
        f"Extrapolated decay rate: {rate:.8f} +/- {a['uncertainty']:.1e} 1/s "
        f"(analytic alpha (pi/L)^2 = {a['analytic_rate']:.8f} 1/s)\n\n"
        f"Recovered diffusivity: {a['diffusivity']:#.7g} m^2/s; "
        f"dispersion exponent {a['dispersion_exponent']:.4f} (2 for diffusion)\n\n"
        f"e-folding time {summary['efolding_time']:.4f} s, half-life {summary['half_life']:.4f} s\n"
    )
    ctx.save("summary", summary)
    ctx.save("report.md", text)


# ---------------------------------------------------------------- bisect check

RTOL_CHECK = 1e-4  # relative; time-integration and fit errors are ~1e-6, every bug is > 1e-3


def _tiles_rod(x: np.ndarray, length: float) -> bool:
    """Cell centres of nx equal cells that exactly cover [0, L]."""
    return bool(np.allclose(x, (np.arange(x.size) + 0.5) * length / x.size, rtol=0, atol=1e-12 * length))


def _rates_exact(record: dict) -> bool:
    """Every first-mode rate in a convergence table equals the exact rate of its grid."""
    return all(
        abs(g["rate"] / mode_rates(g["nx"], record["length"], record["alpha"])[1] - 1) < RTOL_CHECK
        for g in record["grids"]
    )


def _field_exact(times: np.ndarray, field: np.ndarray, run: dict) -> bool:
    """The field equals the exact solution of u' = A u (mode k decays as exp(-rate_k t))."""
    rates = mode_rates(field.shape[1], run["length"], run["alpha"])
    exact = idct(cosine_amplitudes(field[0]) * np.exp(-np.outer(times, rates)), type=2, norm="ortho", axis=-1)
    return bool(np.abs(field - exact).max() < RTOL_CHECK * np.ptp(field[0]))


def check_outputs(view) -> bool:
    """True when one checkpoint's outputs are physically right, False when not.

    ``view.task`` names the stage and ``view.load(name)`` loads its outputs.
    Grids must tile the rod; fields must match the exact solution of the
    discretised equations; tabulated rates must equal the exact rate of their
    grid; the extrapolated decay rate must match alpha (pi / L)^2 and the
    reported half-life ln 2 over it. Each ``bug`` value breaks its own stage
    and, through the data it hands on, every later one.
    """
    task = view.task
    if task == "setup":
        return _tiles_rod(view.load("x"), view.load("problem")["length"])
    if task in ("solve", "refine", "accept"):
        run = view.load("run")
        ok = _field_exact(view.load("times"), view.load("field"), run)
        if task != "solve":
            ok = ok and _tiles_rod(view.load("x"), run["length"]) and _rates_exact(view.load("convergence"))
        return ok
    if task == "check_convergence":
        return _rates_exact(view.load("convergence"))
    if task in ("analyse", "report"):
        out = view.load("analysis" if task == "analyse" else "summary")
        analytic = out["alpha"] * (np.pi / out["length"]) ** 2
        ok = _rates_exact(out) and abs(out["decay_rate"] / analytic - 1) < RTOL_CHECK
        if task == "report":
            ok = ok and abs(out["half_life"] * analytic / np.log(2) - 1) < RTOL_CHECK
        return ok
    return True
