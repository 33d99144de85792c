"""The coordinator's fast bundle assembly gives build_bundle's exact bytes; the store writer."""

import math

import pytest

from headwater.checkpoint import bundle as B
from headwater.errors import IntegrityError
from headwater.runtime.recorder import StoreWriter, assemble_bundle
from tests.store import factories as f

H = "ab" * 32


def _args(**over):
    args = dict(
        run="r1", workflow="wf", task="fit", attempt=2, status="provisional", parents=[H, "cd" * 32, H],
        prev=None, manifest={"inputs": {"make/x": H}, "outputs": {"y": H}, "code": {"task_hash": "t" * 8, "dirty": False},
                             "seed": 7, "params": {"alpha": 0.5, "grid": [4, 4]}, "versions": {},
                             "upstream": [H, H], "speculative": [["make", 1], ["a", 3], ["make", 1]]},
        spec_diff={"against": None, "changed": ["params.alpha"], "why": "try"},
        env={"fp": "e" * 16, "hw": "x86_64"},
        intent={"goal": "fit it", "assumptions": [], "concludes": None,
                "claims": [{"key": "k", "value": {"b": [1, 2.5]}, "uncertainty": None, "units": "m"}]},
        artifacts=[{"name": "y", "uri": "", "sha256": H, "size": 0, "media_type": "application/json"}],
        profile={"kind": "simulation", "numerics": {"dt": 0.1}, "invariants": [{"name": "m", "ok": True}]},
        heavy={"triggers": ["failed"], "artifacts": {"stdout": H}}, started=1_700_000_000.25,
        finished=1_700_000_001.5, cache_hit=H, error="boom",
    )
    args.update(over)
    return args


CASES = {
    "everything": {},
    "bare": dict(manifest={"inputs": {}, "outputs": {}, "code": {"task_hash": "t"}, "seed": 1, "params": {}},
                 intent={"goal": None, "assumptions": [], "concludes": None}, artifacts=[], profile=None,
                 heavy=None, cache_hit=None, error=None, parents=[], prev=H),
    "branch": dict(manifest={"inputs": {}, "outputs": {}, "code": {"task_hash": "t"}, "seed": 1, "params": {},
                             "branch": "left", "speculative": [("d", 1)]}),
    "unicode": dict(task="naïve ∑ 😀", intent={"goal": "ünïcode", "claims": []}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_assembled_bytes_equal_build_bundle(case):
    args = _args(**CASES[case])
    assert assemble_bundle(**args) == B.bundle_bytes(B.build_bundle(**args))
    B.load_bundle(assemble_bundle(**args))


def test_values_that_are_not_plain_json_take_build_bundles_path():
    np = pytest.importorskip("numpy")
    args = _args(intent={"claims": [{"key": "k", "value": np.float64(1.5)}]})
    assert assemble_bundle(**args) == B.bundle_bytes(B.build_bundle(**args))
    with pytest.raises(IntegrityError, match="intent.claims"):
        assemble_bundle(**_args(intent={"claims": [{"key": "k", "value": math.nan}]}))
    with pytest.raises(IntegrityError, match="time"):
        assemble_bundle(**_args(started=2.0, finished=1.0))


@pytest.mark.parametrize("process", [True, False])
def test_store_writer_signs_and_writes_batches_in_order(store, process):
    from headwater.checkpoint.signing import SigningKey, verify_signature

    key = SigningKey.generate()
    store.create_run(f.run("r1"))
    writer = StoreWriter(store, key, process=process, max_batches=2)
    batches = [[f.checkpoint("r1", f"t{i}", i) for i in range(j * 10, j * 10 + 10)] for j in range(5)]
    for batch in batches:
        for ck in batch:
            ck.signature = ""
        writer.submit(batch, [f.task("r1", ck.task, "committed") for ck in batch], [], [])
    writer.submit([], [], [f.event("counters", run_id="r1")], [(batches[0][0].id, "squashed", "why")])
    writer.close()
    stored = store.list_checkpoints("r1")
    assert [c.seq for c in stored] == list(range(1, 51))
    assert [c.id for c in stored] == [c.id for b in batches for c in b]
    assert all(verify_signature(key.public_hex, c.bundle, c.signature) for c in stored)
    assert stored[0].status == "squashed" and stored[0].status_reason == "why"


def test_store_writer_reports_a_failed_batch(store):
    from headwater.checkpoint.signing import SigningKey
    from headwater.errors import StoreError

    writer = StoreWriter(store, SigningKey.generate())
    writer.submit([f.checkpoint("no-such-run", "t", 1)], [], [], [])
    with pytest.raises(StoreError):
        writer.close()


def test_store_writer_rows_read_back_as_written(store):
    from headwater.checkpoint.signing import SigningKey
    from headwater.store.records import ArtifactRecord, AssetUse, ClaimRecord

    store.create_run(f.run("r1"))
    out = ArtifactRecord("cd" * 32, 3, "text/plain", "file:///x", name="y")
    ck = f.checkpoint("r1", "naïve", 1, outputs=[out], claims=[ClaimRecord("g", {"v": [1, None, "ü"]}, 0.5, "m")],
                      uses=[AssetUse("lib", "numpy", "2.0", "consumed")])
    ck.signature = ""
    data = {"reason": "ünïcode \"quoted\"", "none": None, "flag": True, "nested": {"a": [1.5, 2]}}
    writer = StoreWriter(store, SigningKey.generate(), process=False)
    writer.submit([ck], [f.task("r1", "naïve", "committed", agent="a1", fencing=2**40, error=None)],
                  [f.event("committed", run_id="r1", task="naïve", attempt=1, data=data)], [])
    writer.close()
    got = store.get_checkpoint(ck.id)
    assert (got.bundle, got.parents, got.cache_valid) == (ck.bundle, ck.parents, True)
    assert [(o.sha256, o.size, o.name) for o in got.outputs] == [(out.sha256, 3, "y")]
    assert [(c.key, c.value, c.uncertainty) for c in got.claims] == [("g", {"v": [1, None, "ü"]}, 0.5)]
    assert [(u.kind, u.name, u.version) for u in got.uses] == [("lib", "numpy", "2.0")]
    (event,) = store.list_events("r1")
    assert (event.kind, event.task, event.data) == ("committed", "naïve", data)
    (row,) = store.get_tasks("r1")
    assert (row.task, row.state, row.agent, row.fencing) == ("naïve", "committed", "a1", 2**40)


@pytest.mark.parametrize("process", [True, False])
def test_store_writer_puts_blobs_before_the_batches_after_them(store, process):
    import hashlib

    from headwater.checkpoint.signing import SigningKey

    store.create_run(f.run("r1"))
    writer = StoreWriter(store, SigningKey.generate(), process=process)
    data = b"full environment export\n"
    writer.put_blobs([(data, "text/plain", "env_export")])
    ck = f.checkpoint("r1", "t", 1)
    writer.submit([ck], [], [], [])
    writer.close()
    assert store.artifacts.get_bytes(hashlib.sha256(data).hexdigest()) == data
    assert store.get_checkpoint(ck.id).id == ck.id
