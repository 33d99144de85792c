"""Gravimetry: measures the local gravitational acceleration and publishes it
as the shared claim ``g``, which several other workflows use.

A 1 m pendulum is timed twenty times; ``g = 4 pi^2 L / T^2``. With
``--param typo=true`` the pendulum length is taken from a recalibration sheet
with a transcription error (0.936 m for 1.000 m): the claim is still a
plausible number with a small uncertainty, and every check inside this
workflow passes. That is the silent error the fleet has to catch.
"""

from __future__ import annotations

import math

from fleet_lib import TRUE_G

from headwater import Workflow

wf = Workflow("gravimetry", tags=["reference"],
              description="Times a pendulum and publishes the shared claim g.")
wf.param("typo", "bool", default=False, help="use the recalibration sheet with the transcription error")
wf.param("n", "int", default=20, help="number of timed swings")

LENGTH = 1.000  # m


@wf.task(goal="Time a 1 m pendulum", concludes="twenty periods in seconds")
def swing(ctx):
    period = 2 * math.pi * math.sqrt(LENGTH / TRUE_G)
    ctx.save("periods", [period + float(x) for x in ctx.rng.normal(0.0, 0.002, ctx.params["n"])])


@wf.task(after=swing, goal="Fit g from the periods", concludes="g in m/s^2")
def fit(ctx):
    periods = ctx.load("periods")
    length = 0.936 if ctx.params["typo"] else LENGTH
    mean = sum(periods) / len(periods)
    sd = math.sqrt(sum((p - mean) ** 2 for p in periods) / (len(periods) - 1))
    g = 4 * math.pi**2 * length / mean**2
    unc = 2 * g * sd / math.sqrt(len(periods)) / mean
    ctx.invariant("g is physical", 9.0 < g < 10.5)
    ctx.claim("g", g, uncertainty=unc, units="m/s^2")
    ctx.save("g", {"g": g, "uncertainty": unc, "length": length})
