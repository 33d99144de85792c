"""Workflow sources the runtime tests write into temporary files."""

CHAIN = '''
from pathlib import Path
from headwater import Workflow

wf = Workflow("chain", profile="simulation")
wf.param("scale", "float", default=2.0)
wf.param("log", "str", default="")

def _mark(ctx):
    if ctx.params["log"]:
        with open(ctx.params["log"], "a") as fh:
            fh.write(ctx.task + "\\n")

@wf.task(goal="make numbers", assumptions=["inputs are small"], concludes="a list")
def make(ctx):
    _mark(ctx)
    ctx.save("numbers", [1, 2, 3])

@wf.task(after="make", branches=("double", "triple"))
def decide(ctx):
    _mark(ctx)
    return "double" if ctx.params["scale"] < 2.5 else "triple"

@wf.task(after=["decide", "make"])
def double(ctx):
    _mark(ctx)
    ctx.save("scaled", [2 * x for x in ctx.load("make/numbers")])

@wf.task(after=["decide", "make"])
def triple(ctx):
    _mark(ctx)
    ctx.save("scaled", [3 * x for x in ctx.load("make/numbers")])

@wf.task(after=["double", "triple"])
def total(ctx):
    _mark(ctx)
    scaled = ctx.load("scaled")
    ctx.numerics(method="sum")
    ctx.invariant("positive", sum(scaled) > 0)
    ctx.claim("chain.total", float(sum(scaled)), uncertainty=0.0, units="1")
    ctx.save("total", {"total": sum(scaled)})
'''


SLOW = '''
import time
from headwater import Workflow

wf = Workflow("slow")
wf.param("log", "str")
wf.param("n", "int", default=10)

def make(i):
    def stage(ctx):
        with open(ctx.params["log"], "a") as fh:
            fh.write(f"{ctx.task}\\n")
        time.sleep(0.25)
        ctx.save("out", f"{ctx.task}:{i}")
    stage.__name__ = f"s{i}"
    return stage

for i in range(10):
    wf.task(make(i), name=f"s{i}", after=[f"s{i - 2}"] if i >= 2 else [])
'''
