"""A second-hop dependent: builds on the shared claim ``tower.height`` (which is
itself built, in some workflows, on the shared claim ``g``) and publishes
``tower.volume``. Taint reaches it two claim hops away from ``g``."""

from __future__ import annotations

import math

from headwater import Workflow

wf = Workflow("monument", tags=["exploratory"])
RADIUS = 3.0  # m


@wf.task(goal="Volume of the cylindrical tower from its published height")
def volume(ctx):
    height = ctx.use("claim:tower.height")
    vol = math.pi * RADIUS**2 * height
    ctx.claim("tower.volume", vol, uncertainty=vol * 0.01, units="m^3")
    ctx.save("volume", {"volume": vol, "height": height})
