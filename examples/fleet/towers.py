"""Five independent estimates of one tower's height, each a workflow that
publishes the claim ``tower.height``, plus a canary copy of one of them.

Two of the methods need the local gravitational acceleration and use the
shared claim ``g`` (published by ``gravimetry.py``); three do not. Two call
the shared integrator ``lib:integrate``. When ``g`` is silently wrong, the
two workflows that use it agree with each other and disagree with the other
three: the inconsistency monitor's clue.

=====================  ========================  ==========  ==============
workflow               method                    uses g      tags
=====================  ========================  ==========  ==============
tower-drop             drop time, integrated     yes         production
tower-pendulum         pendulum from the top     yes         exploratory
tower-shadow           shadow and sun elevation  no          production
tower-laser            laser time of flight      no          production
tower-survey           two-point triangulation   no          exploratory
tower-drop-canary      as tower-drop             yes         canary
=====================  ========================  ==========  ==============
"""

from __future__ import annotations

import math

from fleet_lib import TRUE_G, TRUE_HEIGHT

from headwater import Workflow

C = 299_792_458.0
BOB = 1.5  # m: the pendulum bob hangs this far above the ground


def _mean_sd(xs):
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


# ------------------------------------------------------------------ drop


def drop_measure(ctx):
    """Goal: Time ten drops of a steel ball from the top."""
    t = math.sqrt(2 * TRUE_HEIGHT / TRUE_G)
    ctx.save("times", [t + float(x) for x in ctx.rng.normal(0.0, 0.004, 10)])


def drop_estimate(ctx):
    """Goal: Integrate the fall with the shared g and integrator."""
    g = ctx.use("claim:g")
    t, sd = _mean_sd(ctx.load("times"))
    height = ctx.call("lib:integrate", g, t)
    unc = height * math.hypot(2 * sd / math.sqrt(10) / t, 0.002)
    ctx.claim("tower.height", height, uncertainty=unc, units="m")
    ctx.save("height", {"height": height, "g": g})


drop = Workflow("tower-drop", tags=["production", "tower"])
drop.task(drop_measure, name="measure")
drop.task(drop_estimate, name="estimate", after="measure")

canary = Workflow("tower-drop-canary", tags=["canary", "tower"],
                  description="tower-drop, run on candidate versions of its shared assets")
canary.task(drop_measure, name="measure")
canary.task(drop_estimate, name="estimate", after="measure")

# -------------------------------------------------------------- pendulum

pendulum = Workflow("tower-pendulum", tags=["exploratory", "tower"])


@pendulum.task(name="measure", goal="Time a pendulum hung from the top")
def pendulum_measure(ctx):
    period = 2 * math.pi * math.sqrt((TRUE_HEIGHT - BOB) / TRUE_G)
    ctx.save("periods", [period + float(x) for x in ctx.rng.normal(0.0, 0.01, 10)])


@pendulum.task(name="estimate", after="measure", goal="Length from period and g")
def pendulum_estimate(ctx):
    g = ctx.use("claim:g")
    period, sd = _mean_sd(ctx.load("periods"))
    length = g * period**2 / (4 * math.pi**2)
    unc = length * math.hypot(2 * sd / math.sqrt(10) / period, 0.002)
    ctx.claim("tower.height", length + BOB, uncertainty=unc, units="m")
    ctx.save("height", {"height": length + BOB, "g": g})


# ---------------------------------------------------------------- shadow

shadow = Workflow("tower-shadow", tags=["production", "tower"])


@shadow.task(name="measure", goal="Measure the shadow and the sun's elevation")
def shadow_measure(ctx):
    elevation = math.radians(40.0)
    length = TRUE_HEIGHT / math.tan(elevation)
    ctx.save("shadow", {"length": length + float(ctx.rng.normal(0, 0.05)), "elevation": elevation})


@shadow.task(name="estimate", after="measure", goal="Height from shadow length")
def shadow_estimate(ctx):
    m = ctx.load("shadow")
    height = m["length"] * math.tan(m["elevation"])
    ctx.claim("tower.height", height, uncertainty=0.25, units="m")
    ctx.save("height", {"height": height})


# ----------------------------------------------------------------- laser

laser = Workflow("tower-laser", tags=["production", "tower"])


@laser.task(name="measure", goal="Time laser pulses to the top and back")
def laser_measure(ctx):
    t = 2 * TRUE_HEIGHT / C
    ctx.save("flight", [t + float(x) for x in ctx.rng.normal(0.0, 2e-10, 10)])


@laser.task(name="estimate", after="measure", goal="Distance from time of flight")
def laser_estimate(ctx):
    t, sd = _mean_sd(ctx.load("flight"))
    height = ctx.call("lib:integrate", 0.0, t / 2) + C * t / 2  # no acceleration: x = c t
    ctx.claim("tower.height", height, uncertainty=max(C * sd / 2, 0.1), units="m")
    ctx.save("height", {"height": height})


# ---------------------------------------------------------------- survey

survey = Workflow("tower-survey", tags=["exploratory", "tower"])


@survey.task(name="measure", goal="Sight the top from two points 30 m apart")
def survey_measure(ctx):
    near, base = 40.0, 30.0
    a1, a2 = math.atan(TRUE_HEIGHT / near), math.atan(TRUE_HEIGHT / (near + base))
    noise = ctx.rng.normal(0, 2e-4, 2)
    ctx.save("angles", {"near": a1 + float(noise[0]), "far": a2 + float(noise[1]), "base": base})


@survey.task(name="estimate", after="measure", goal="Triangulate the height")
def survey_estimate(ctx):
    m = ctx.load("angles")
    t1, t2 = math.tan(m["near"]), math.tan(m["far"])
    height = m["base"] * t1 * t2 / (t1 - t2)
    ctx.claim("tower.height", height, uncertainty=0.3, units="m")
    ctx.save("height", {"height": height})
