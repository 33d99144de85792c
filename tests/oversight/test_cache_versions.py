"""A cache entry is reused only when every claim and shared implementation it
used resolves, now, to the version it used: a newer committed claim version
or a new implementation version voids it, though the cache key is unchanged."""

import json

from headwater.runtime import RunOptions, run_workflow

PRODUCER = '''
from headwater import Workflow
wf = Workflow("producer-cv")
wf.param("value", "float", default=1.0)

@wf.task()
def publish(ctx):
    ctx.claim("cv.g", ctx.params["value"], uncertainty=0.01)
'''

CONSUMER = '''
import json
from headwater import Workflow
wf = Workflow("consumer-cv")

@wf.task()
def read(ctx):
    ctx.save("seen", json.dumps(ctx.use("claim:cv.g")))
'''

CALLER = '''
from headwater import Workflow
from headwater.oversight import implementation

@implementation("cv_solver", "fast", version="{version}", default=True)
def fast(x):
    return {factor} * x

wf = Workflow("caller-cv")

@wf.task()
def compute(ctx):
    ctx.save("out", ctx.call("lib:cv_solver", 2))
'''


def run(ws, path, params=None):
    return run_workflow(ws, path, params or {}, RunOptions(workers=0))


def saved(ws, summary):
    ck = ws.store.list_checkpoints(summary.run_id)[0]
    return json.loads(ws.store.artifacts.get_bytes(ck.outputs[0].sha256)), ck


def test_a_newer_committed_claim_version_voids_the_cache_entry(ws, write_wf):
    producer, consumer = write_wf(PRODUCER), write_wf(CONSUMER)
    assert run(ws, producer).ok
    first = run(ws, consumer)
    again = run(ws, consumer)
    assert again.tasks[0].cached
    _, ck = saved(ws, first)
    assert run(ws, producer, {"value": 2.0}).ok  # a newer version of the claim, committed
    fresh = run(ws, consumer)
    assert not fresh.tasks[0].cached
    value, ck2 = saved(ws, fresh)
    assert value == 2.0 and ck2.cache_key == ck.cache_key  # same key: the guard is what refused the hit
    assert run(ws, consumer).tasks[0].cached  # the new entry is reused


def test_a_new_implementation_version_voids_the_cache_entry(ws, write_wf):
    first = run(ws, write_wf(CALLER.format(version="1.0", factor=2)))
    assert run(ws, write_wf(CALLER.format(version="1.0", factor=2))).tasks[0].cached
    _, ck = saved(ws, first)
    assert [(u.name, u.version) for u in ck.uses if u.kind == "lib" and "/" in u.name] == [("cv_solver/fast", "1.0")]
    fresh = run(ws, write_wf(CALLER.format(version="1.1", factor=3)))
    assert not fresh.tasks[0].cached
    value, ck2 = saved(ws, fresh)
    assert value == 6 and ck2.cache_key == ck.cache_key
    assert [(u.name, u.version) for u in ck2.uses if u.kind == "lib" and "/" in u.name] == [("cv_solver/fast", "1.1")]
    assert run(ws, write_wf(CALLER.format(version="1.1", factor=3))).tasks[0].cached
