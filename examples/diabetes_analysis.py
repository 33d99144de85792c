"""Disease progression in the diabetes study of Efron et al. (2004), by linear regression.

442 patients were measured at baseline (age, sex, body-mass index, mean blood
pressure and six blood serum values) and scored for disease progression one
year later. Within a cohort chosen by age and BMI, the analysis regresses
progression on the standardised baseline measures, by ordinary least squares
when the design is well conditioned and by ridge regression when collinearity
(the cholesterol fractions nearly add up to the total) makes OLS unstable,
with bootstrap confidence intervals. The headline is the BMI effect in
progression points per kg/m^2.

The data ship with scikit-learn (``sklearn.datasets.load_diabetes``); no
network access is needed. Run it with ``headwater run examples/diabetes_analysis.py``.

For bisect demonstrations, ``--param bug=STAGE`` makes one stage silently
wrong (every invariant still holds) and :func:`check_outputs` tells good
checkpoints from bad ones::

    headwater bisect RUN --check python:examples.diabetes_analysis:check_outputs
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sklearn
from sklearn.datasets import load_diabetes

from headwater import Context, Workflow

STAGES = ("load", "select_cohort", "features", "model_choice", "fit_ols", "fit_ridge", "summarise")
SERUM = {"s1": "tc", "s2": "ldl", "s3": "hdl", "s4": "tch", "s5": "ltg", "s6": "glu"}
PREDICTORS = ["age", "sex", "bmi", "bp", "tc", "ldl", "hdl", "tch", "ltg", "glu"]
UNITS = {"age": "year", "sex": "sex code", "bmi": "kg/m^2", "bp": "mm Hg", "tc": "mg/dL", "ldl": "mg/dL",
         "hdl": "mg/dL", "tch": "tc/hdl ratio", "ltg": "log triglycerides", "glu": "mg/dL"}

wf = Workflow(
    "diabetes-progression",
    profile="analysis",
    tags=["demo", "regression", "clinical"],
    description="Baseline predictors of one-year diabetes progression in an age and BMI cohort: "
    "OLS or ridge by collinearity, with bootstrap intervals.",
)
wf.param("min_age", "int", default=30, help="youngest patient in the cohort [years]")
wf.param("max_age", "int", default=70, help="oldest patient in the cohort [years]")
wf.param("bmi_min", "float", default=18.5, help="lowest BMI in the cohort [kg/m^2]")
wf.param("bmi_max", "float", default=40.0, help="highest BMI in the cohort [kg/m^2]")
wf.param("max_condition", "float", default=30.0, help="largest condition number of the design for OLS")
wf.param("min_n_per_param", "int", default=20, help="patients needed per fitted coefficient for OLS")
wf.param("n_boot", "int", default=2000, help="bootstrap resamples for the confidence intervals")
wf.param("bug", "str", default="", help="name of a stage to make silently wrong (bisect demos)")


def public_data() -> pd.DataFrame:
    """The bundled data in clinical units, serum columns named, with a stable row id."""
    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns=SERUM)
    frame.insert(0, "row", np.arange(len(frame)))
    return frame


def in_cohort(frame: pd.DataFrame, c: dict) -> pd.Series:
    """Rows inside the cohort's age and BMI bounds, bounds included."""
    return frame["age"].between(c["min_age"], c["max_age"]) & frame["bmi"].between(c["bmi_min"], c["bmi_max"])


def ridge(Z: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Intercept and slopes minimising |y - b0 - Z b|^2 + penalty |b|^2 (OLS when penalty is 0)."""
    zm, ym = Z.mean(axis=0), y.mean()
    u, s, vt = np.linalg.svd(Z - zm, full_matrices=False)
    slopes = vt.T @ (s / (s**2 + penalty) * (u.T @ (y - ym)))
    return np.r_[ym - zm @ slopes, slopes]


PENALTIES = np.logspace(-3, 4, 141)  # ridge penalties tried, in units of the standardised design


def gcv_penalty(Z: np.ndarray, y: np.ndarray, grid: np.ndarray) -> float:
    """The ridge penalty with the smallest generalised cross-validation error."""
    u, s, _ = np.linalg.svd(Z - Z.mean(axis=0), full_matrices=False)
    uty = u.T @ (y - y.mean())
    rss_outside = np.sum((y - y.mean()) ** 2) - np.sum(uty**2)
    scores = []
    for lam in grid:
        shrink = s**2 / (s**2 + lam)
        rss = rss_outside + np.sum(((1 - shrink) * uty) ** 2)
        scores.append(len(y) * rss / (len(y) - 1 - shrink.sum()) ** 2)
    return float(grid[int(np.argmin(scores))])


def design_arrays(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    design = ctx.load("features/design")
    return design[PREDICTORS].to_numpy(), design["target"].to_numpy()


def scaling_arrays(scaling: dict) -> tuple[np.ndarray, np.ndarray]:
    """Means and standard deviations in PREDICTORS order."""
    return tuple(np.array([scaling[key][c] for c in PREDICTORS]) for key in ("mean", "sd"))


def save_fit(ctx: Context, method: str, penalty: float, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Fit, bootstrap over patients, save the coefficient table and fit record; return the coefficients.

    Coefficients are reported per standard deviation of each predictor and,
    divided by that standard deviation, per clinical unit.
    """
    Z, y = design_arrays(ctx)
    n = len(y)
    beta = ridge(Z, y, penalty)
    resamples = ctx.rng.integers(0, n, size=(ctx.params["n_boot"], n))
    draws = np.array([ridge(Z[i], y[i], penalty) for i in resamples])

    def clinical(b: np.ndarray) -> np.ndarray:
        slopes = b[..., 1:] / sd
        return np.concatenate([b[..., :1] - slopes @ mean[:, None], slopes], axis=-1)

    per_unit, per_unit_draws = clinical(beta), clinical(draws)
    residual = y - beta[0] - Z @ beta[1:]
    ctx.save("coefficients", pd.DataFrame({
        "term": ["intercept", *PREDICTORS],
        "units": ["progression", *(f"progression per {UNITS[c]}" for c in PREDICTORS)],
        "estimate": per_unit,
        "se": per_unit_draws.std(axis=0, ddof=1),
        "ci_low": np.percentile(per_unit_draws, 2.5, axis=0),
        "ci_high": np.percentile(per_unit_draws, 97.5, axis=0),
        "per_sd": beta,
        "per_sd_se": draws.std(axis=0, ddof=1),
    }))
    ctx.save("fit", {
        "method": method, "penalty": penalty, "n": n, "n_boot": ctx.params["n_boot"],
        "r_squared": 1 - residual @ residual / np.sum((y - y.mean()) ** 2),
        "residual_sd": residual.std(ddof=len(beta)),
        "cohort": ctx.load("features/scaling")["cohort"], "selection": ctx.load("model_choice/diagnostics"),
    })
    return beta


# ---------------------------------------------------------------- stages


@wf.task(uses=["lib:scikit-learn", "lib:pandas"])
def load(ctx: Context) -> None:
    """Load the diabetes study in clinical units.

    Goal: the 442 baseline records and their one-year progression scores.
    Assumptions:
    - s1..s6 are, in order, total cholesterol, LDL, HDL, total/HDL ratio,
      log triglycerides and blood glucose (scikit-learn documentation)
    Concludes: a complete table with one row per patient.
    """
    if ctx.params["bug"] not in ("", *STAGES):
        raise ValueError(f"bug must be '' or one of {', '.join(STAGES)}; got {ctx.params['bug']!r}")
    ctx.use(f"dataset:sklearn-diabetes@{sklearn.__version__}")
    names = dict(SERUM)
    if ctx.params["bug"] == "load":
        names.update(s2="hdl", s3="ldl")  # the two cholesterol fractions named the wrong way round
    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns=names)
    frame.insert(0, "row", np.arange(len(frame)))
    ctx.transform("rename", "sklearn-diabetes", rows_in=len(frame), rows_out=len(frame),
                  columns=list(names.values()))
    ctx.invariant("complete_records", int(frame.isna().sum().sum()), expected=0)
    ctx.invariant("patients", len(frame), expected=442)
    ctx.save("raw", frame)


@wf.task(after=["load"])
def select_cohort(ctx: Context) -> None:
    """Select the study cohort by age and BMI.

    Goal: the patients inside the age and BMI bounds, bounds included.
    Assumptions:
    - age and BMI at baseline are recorded without error
    Concludes: the cohort table and its written definition.
    """
    p = ctx.params
    raw = ctx.load("load/raw")
    definition = f"{p['min_age']} <= age <= {p['max_age']} and {p['bmi_min']} <= bmi <= {p['bmi_max']}"
    query = definition
    if p["bug"] == "select_cohort":
        query = query.replace(f"{p['min_age']} <= age", f"{p['min_age']} < age")  # lower age bound left out
    cohort = raw.query(query).reset_index(drop=True)
    ctx.cohort(definition)
    ctx.transform("filter", "diabetes", rows_in=len(raw), rows_out=len(cohort), columns=["age", "bmi"])
    bounds = {k: p[k] for k in ("min_age", "max_age", "bmi_min", "bmi_max")}
    ctx.invariant("within_bounds", bool(in_cohort(cohort, bounds).all()))
    ctx.save("cohort", cohort)
    ctx.save("definition", {**bounds, "text": definition})


@wf.task(after=["select_cohort"])
def features(ctx: Context) -> None:
    """Standardise the baseline predictors within the cohort.

    Goal: z-scores of the ten predictors, so coefficients and penalties share one scale.
    Assumptions:
    - the cohort mean and standard deviation describe each predictor
    Concludes: the design table and the scaling needed to return to clinical units.
    """
    cohort = ctx.load("select_cohort/cohort")
    X = cohort[PREDICTORS].to_numpy(dtype=float)
    mean, sd = X.mean(axis=0), X.std(axis=0, ddof=1)
    if ctx.params["bug"] == "features":
        sd = X.std(ddof=1) * np.ones(len(PREDICTORS))  # axis left out: one pooled spread for every column
    Z = (X - mean) / sd
    design = pd.DataFrame(Z, columns=PREDICTORS)
    design.insert(0, "row", cohort["row"])
    design["target"] = cohort["target"]
    ctx.transform("standardise", "diabetes-cohort", rows_in=len(X), rows_out=len(X), columns=PREDICTORS)
    ctx.invariant("centred", float(np.abs(Z.mean(axis=0)).max()), expected=0.0, tol=1e-9)
    ctx.save("design", design)
    ctx.save("scaling", {"cohort": ctx.load("select_cohort/definition"),
                         "mean": dict(zip(PREDICTORS, mean)), "sd": dict(zip(PREDICTORS, sd))})


@wf.task(after=["features"], branches=("fit_ols", "fit_ridge"), uses=["lib:numpy"])
def model_choice(ctx: Context) -> str:
    """Choose the estimator from the conditioning of the design.

    Goal: OLS when the cohort is large and the design well conditioned, ridge otherwise.
    Assumptions:
    - a condition number above about 30 signals harmful collinearity (Belsley)
    Concludes: "fit_ols" or "fit_ridge", with the condition number and variance inflation factors.
    """
    p = ctx.params
    design = ctx.load("features/design")
    Z = design[PREDICTORS].to_numpy()
    condition = np.linalg.cond(Z)
    if p["bug"] == "model_choice":
        condition = np.linalg.cond(Z.T @ Z)  # the Gram matrix squares the condition number
    vif = np.diag(np.linalg.inv(np.corrcoef(Z, rowvar=False)))
    n, k = Z.shape
    ols = n >= p["min_n_per_param"] * (k + 1) and condition <= p["max_condition"]
    decision = "fit_ols" if ols else "fit_ridge"
    ctx.save("diagnostics", {
        "cohort": ctx.load("features/scaling")["cohort"], "n": n, "coefficients": k + 1,
        "condition_number": condition, "vif": dict(zip(PREDICTORS, vif)),
        "max_condition": p["max_condition"], "min_n_per_param": p["min_n_per_param"], "decision": decision,
    })
    ctx.log.info("n=%d, condition number %.1f, largest VIF %.1f -> %s", n, condition, vif.max(), decision)
    return decision


@wf.task(after=["model_choice", "features"], uses=["lib:numpy"])
def fit_ols(ctx: Context) -> None:
    """Ordinary least squares with bootstrap confidence intervals.

    Goal: the linear effect of each baseline measure on one-year progression.
    Assumptions:
    - progression is linear in the predictors, with independent errors
    - patients are exchangeable, so resampling them gives the sampling spread
    Concludes: coefficients per clinical unit with 95% percentile intervals.
    """
    scaling = ctx.load("features/scaling")
    mean, sd = scaling_arrays(scaling)
    if ctx.params["bug"] == "fit_ols":
        sd = np.array(list(scaling["sd"].values()))  # the saved JSON sorts its keys: columns mismatched
    beta = save_fit(ctx, "ols", 0.0, mean, sd)
    Z, y = design_arrays(ctx)
    X = np.c_[np.ones(len(y)), Z]
    imbalance = np.abs(X.T @ (y - X @ beta)).max() / (len(y) * y.std())
    ctx.invariant("normal_equations", float(imbalance), expected=0.0, tol=1e-9)


@wf.task(after=["model_choice", "features"], uses=["lib:numpy"])
def fit_ridge(ctx: Context) -> None:
    """Ridge regression, its penalty chosen by generalised cross-validation, with bootstrap intervals.

    Goal: stable effects of the baseline measures when the design is collinear.
    Assumptions:
    - shrinking the standardised slopes trades a little bias for much less variance
    - patients are exchangeable, so resampling them gives the sampling spread
    Concludes: shrunken coefficients per clinical unit with 95% percentile intervals.
    """
    Z, y = design_arrays(ctx)
    penalty = gcv_penalty(Z, y, PENALTIES)
    if ctx.params["bug"] == "fit_ridge":
        penalty *= len(y)  # a per-patient penalty scaled up to the whole sample
    beta = save_fit(ctx, "ridge", penalty, *scaling_arrays(ctx.load("features/scaling")))
    ols = ridge(Z, y, 0.0)
    ctx.invariant("shrinkage", bool(np.linalg.norm(beta[1:]) <= np.linalg.norm(ols[1:])))


@wf.task(after=["model_choice", "fit_ols", "fit_ridge"])
def summarise(ctx: Context) -> None:
    """State the findings of whichever fit ran.

    Goal: the effect of BMI and blood pressure on one-year progression, with uncertainty.
    Assumptions:
    - effects are associations in this cohort, not causal effects
    Concludes: diabetes.bmi_effect, diabetes.bp_effect and diabetes.r_squared.
    """
    method = ctx.load("model_choice/diagnostics")["decision"]
    table = ctx.load(f"{method}/coefficients").set_index("term")
    fit = ctx.load(f"{method}/fit")
    effects = {term: row._asdict() for term, row in zip(table.index, table.itertuples(index=False))}
    bmi = table.loc["bmi", "estimate"]
    if ctx.params["bug"] == "summarise":
        bmi = table.loc["bmi", "per_sd"]  # the effect per standard deviation, quoted per kg/m^2
    headline = {"bmi_effect": bmi, "bmi_se": table.loc["bmi", "se"],
                "bp_effect": table.loc["bp", "estimate"], "bp_se": table.loc["bp", "se"]}
    ctx.claim("diabetes.bmi_effect", headline["bmi_effect"], uncertainty=headline["bmi_se"],
              units="progression per kg/m^2")
    ctx.claim("diabetes.bp_effect", headline["bp_effect"], uncertainty=headline["bp_se"],
              units="progression per mm Hg")
    ctx.claim("diabetes.r_squared", fit["r_squared"], units="1")
    ctx.save("summary", {**fit, "effects": effects, "headline": headline})
    rows = "\n".join(f"| {t} | {e['estimate']:.3f} | {e['ci_low']:.3f} .. {e['ci_high']:.3f} | {e['units']} |"
                     for t, e in effects.items())
    ctx.save("report.md", (
        f"# Diabetes progression: {fit['method'].upper()} on {fit['n']} patients\n\n"
        f"Cohort: {fit['cohort']['text']}\n\n"
        f"Design condition number {fit['selection']['condition_number']:.1f}; penalty {fit['penalty']:.4g}; "
        f"R^2 = {fit['r_squared']:.3f}\n\n"
        f"| term | estimate | 95% CI ({fit['n_boot']} bootstrap resamples) | units |\n"
        f"|---|---|---|---|\n{rows}\n\n"
        f"BMI: {headline['bmi_effect']:.3f} +/- {headline['bmi_se']:.3f} progression points per kg/m^2\n"
    ))


# ---------------------------------------------------------------- bisect check

COLUMNS = ["row", *PREDICTORS, "target"]


def _close(a, b) -> bool:
    return bool(np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-6, atol=1e-9))


def _same_table(table: pd.DataFrame, expected: pd.DataFrame) -> bool:
    return len(table) == len(expected) and all(_close(table[c], expected[c]) for c in COLUMNS)


def check_outputs(view) -> bool:
    """True when one checkpoint's outputs are right, False when not.

    ``view.task`` names the stage and ``view.load(name)`` loads its outputs.
    Every number a stage hands on is re-derived from the public data set with
    plain numpy, for the cohort the outputs record: the tables, the scaling,
    the condition number, variance inflation factors and estimator choice,
    the penalty, the coefficients on both scales and the headline effects.
    Each ``bug`` value breaks its own stage and, through the data it hands
    on, every later one.
    """
    task, data = view.task, public_data()
    if task == "load":
        return _same_table(view.load("raw"), data)
    if task == "select_cohort":
        return _same_table(view.load("cohort"), data[in_cohort(data, view.load("definition"))])
    name = {"features": "scaling", "model_choice": "diagnostics", "summarise": "summary"}.get(task, "fit")
    record = view.load(name)
    cohort = data[in_cohort(data, record["cohort"])]
    X, y = cohort[PREDICTORS], cohort["target"].to_numpy()
    mean, sd = X.mean().to_numpy(), X.std().to_numpy()
    Z = (X.to_numpy() - mean) / sd
    if task == "features":
        design = view.load("design")
        return (_same_table(design, cohort.assign(**dict(zip(PREDICTORS, Z.T))))
                and _close(scaling_arrays(record), (mean, sd)))
    selection = record if task == "model_choice" else record["selection"]
    n, k = Z.shape
    condition = np.linalg.cond(Z)
    ols = n >= selection["min_n_per_param"] * (k + 1) and condition <= selection["max_condition"]
    ok = (selection["n"] == n and _close(selection["condition_number"], condition)
          and _close([selection["vif"][c] for c in PREDICTORS], np.diag(np.linalg.inv(np.corrcoef(Z.T))))
          and selection["decision"] == ("fit_ols" if ols else "fit_ridge"))
    if task == "model_choice":
        return ok
    penalty = 0.0 if ols else gcv_penalty(Z, y, PENALTIES)
    slopes = np.linalg.solve(Z.T @ Z + penalty * np.eye(k), Z.T @ (y - y.mean()))
    per_sd = np.r_[y.mean(), slopes]
    per_unit = np.r_[y.mean() - slopes @ (mean / sd), slopes / sd]
    if task == "summarise":
        table = pd.DataFrame(record["effects"]).T.loc[["intercept", *PREDICTORS]]
        headline = record["headline"]
        terms = [1 + PREDICTORS.index("bmi"), 1 + PREDICTORS.index("bp")]
        ok = ok and _close([headline["bmi_effect"], headline["bp_effect"]], per_unit[terms])
    else:
        table = view.load("coefficients")
    return (ok and record["method"] == ("ols" if ols else "ridge") and _close(record["penalty"], penalty)
            and _close(table["per_sd"], per_sd) and _close(table["estimate"], per_unit))
