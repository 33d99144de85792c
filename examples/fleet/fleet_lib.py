"""Shared code of the fleet examples: one shared integrator with two implementations.

``lib:integrate`` integrates the motion ``x'' = a`` from rest over ``t``
seconds and returns the distance covered. Tasks call it as
``ctx.call("lib:integrate", a, t)``: oversight routing picks the
implementation (``rk4`` by default), the checkpoint records which one and
which version ran, and half of the calls are also run on ``euler`` and
compared, so a silent bug in either shows up as disagreement.
"""

from __future__ import annotations

from headwater.oversight import implementation, implementations

TRUE_HEIGHT = 52.0  # m: the tower every workflow measures
TRUE_G = 9.81  # m/s^2: the local gravitational acceleration
STEPS = 2000


def _derivative(state, accel):
    x, v = state
    return (v, accel)


@implementation("integrate", "rk4", version="1.1", default=True)
def rk4(accel: float, seconds: float, steps: int = STEPS) -> float:
    """Classical fourth-order Runge-Kutta; exact for constant acceleration."""
    h = seconds / steps
    x, v = 0.0, 0.0
    for _ in range(steps):
        k1 = _derivative((x, v), accel)
        k2 = _derivative((x + h / 2 * k1[0], v + h / 2 * k1[1]), accel)
        k3 = _derivative((x + h / 2 * k2[0], v + h / 2 * k2[1]), accel)
        k4 = _derivative((x + h * k3[0], v + h * k3[1]), accel)
        x += h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        v += h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return x


@implementation("integrate", "euler", version="1.0")
def euler(accel: float, seconds: float, steps: int = STEPS) -> float:
    """Semi-implicit Euler; first order, close enough at this step size."""
    h = seconds / steps
    x, v = 0.0, 0.0
    for _ in range(steps):
        v += h * accel
        x += h * v
    return x - 0.5 * accel * h * seconds  # remove the first-order bias of the update order


implementations.redundancy("integrate", share=0.5, rtol=1e-6)
