from __future__ import annotations

import copy
import json
from typing import Any, Iterator

import pytest

from headwater.checkpoint import bundle as B
from headwater.errors import IntegrityError
from tests.checkpoint.conftest import bundle_kwargs, h


def leaves(obj: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, path + (i,))
    else:
        yield path


def changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if value is None:
        return "x"
    return value + "0"


def set_at(obj: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def get_at(obj: Any, path: tuple) -> Any:
    for key in path:
        obj = obj[key]
    return obj


# --------------------------------------------------------------------------
# round trip, identity, shape


def test_round_trip_and_stable_id(sample):
    data = B.bundle_bytes(sample)
    assert B.decode_bundle(data) == sample
    assert B.bundle_id(data) == B.bundle_id(sample) == B.bundle_id(B.build_bundle(**bundle_kwargs()))
    assert B.load_bundle(data, expected_id=B.bundle_id(data)) == sample
    assert len(B.bundle_id(sample)) == 64


def test_every_field_changes_the_id(sample):
    base = B.bundle_id(sample)
    paths = list(leaves(sample))
    assert len(paths) > 80
    seen = {base}
    for path in paths:
        mutated = copy.deepcopy(sample)
        set_at(mutated, path, changed(get_at(sample, path)))
        new = B.bundle_id(mutated)
        assert new not in seen, path
        seen.add(new)


def test_insertion_order_does_not_matter():
    kw = bundle_kwargs()
    kw["manifest"] = dict(reversed(list(kw["manifest"].items())))
    kw["manifest"]["params"] = dict(reversed(list(kw["manifest"]["params"].items())))
    kw["env"] = dict(reversed(list(kw["env"].items())))
    assert B.bundle_id(B.build_bundle(**kw)) == B.bundle_id(B.build_bundle(**bundle_kwargs()))


def test_bundle_is_detached_from_caller_objects():
    kw = bundle_kwargs()
    bundle = B.build_bundle(**kw)
    before = B.bundle_id(bundle)
    kw["manifest"]["params"]["alpha"] = 99
    kw["intent"]["claims"].append({"key": "late", "value": 1})
    assert B.bundle_id(bundle) == before


def test_empty_optional_fields_are_omitted_but_prev_null_is_kept():
    bundle = B.build_bundle(**bundle_kwargs(
        prev=None, parents=[], profile=None, heavy=None, cache_hit=None, error=None,
        intent={"goal": "g", "assumptions": [], "concludes": None, "claims": [{"key": "k", "value": None}]},
        manifest={**bundle_kwargs()["manifest"], "versions": {}, "upstream": [], "branch": None},
        artifacts=[{"name": "a", "sha256": h("a"), "uri": None, "media_type": None}],
    ))
    assert bundle["prev"] is None and bundle["parents"] == []
    assert not {"profile", "heavy", "cache", "error"} & bundle.keys()
    assert not {"versions", "upstream", "branch"} & bundle["manifest"].keys()
    assert bundle["intent"] == {"goal": "g", "claims": [{"key": "k", "value": None}]}
    assert bundle["artifacts"] == [{"name": "a", "sha256": h("a")}]


def test_parents_sorted_and_deduplicated():
    bundle = B.build_bundle(**bundle_kwargs(parents=[h("b"), h("a"), h("b")]))
    assert bundle["parents"] == sorted([h("a"), h("b")])


def test_times_are_iso_utc_and_duration():
    bundle = B.build_bundle(**bundle_kwargs(started=0.0, finished=90.1234))
    assert bundle["time"] == {
        "start": "1970-01-01T00:00:00.000Z", "end": "1970-01-01T00:01:30.123Z", "secs": 90.123,
    }


def test_optional_sections_are_recorded():
    bundle = B.build_bundle(**bundle_kwargs(
        status="failed", error="solver diverged at step 1200", cache_hit=h("cached"),
        heavy={"triggers": ["failed"],
               "artifacts": {"stdout": h("o"), "stderr": h("e"), "env_export": h("x")}},
    ))
    assert bundle["cache"] == {"hit": h("cached")}
    assert bundle["error"] == "solver diverged at step 1200"
    assert bundle["heavy"]["triggers"] == ["failed"]


def test_numpy_values_are_normalised():
    np = pytest.importorskip("numpy")
    kw = bundle_kwargs()
    kw["manifest"]["params"].update(
        alpha=np.float64(0.35), n_steps=np.int64(20000), grid=np.array([256, 256, 64])
    )
    assert B.bundle_id(B.build_bundle(**kw)) == B.bundle_id(B.build_bundle(**bundle_kwargs()))


def test_representative_bundle_stays_under_4_kib(sample):
    size = len(B.bundle_bytes(sample))
    assert size < 4096, size


# --------------------------------------------------------------------------
# validation names the field


def _mutate(bundle: dict, path: tuple, value: Any) -> dict:
    out = copy.deepcopy(bundle)
    if value is KeyError:
        parent = get_at(out, path[:-1])
        del parent[path[-1]]
    else:
        set_at(out, path, value)
    return out


@pytest.mark.parametrize(
    ("path", "value", "field", "problem"),
    [
        (("manifest", "seed"), "42", "manifest.seed", "must be an integer"),
        (("manifest", "seed"), True, "manifest.seed", "must be an integer"),
        (("manifest", "seed"), KeyError, "manifest.seed", "is missing"),
        (("env", "fp"), KeyError, "env.fp", "is missing"),
        (("env", "lock", "sha256"), "abc", "env.lock.sha256", "sha256"),
        (("parents",), sorted([h("a"), h("b")], reverse=True), "parents", "sorted"),
        (("prev",), "not-a-hash", "prev", "sha256"),
        (("attempt",), 0, "attempt", ">= 1"),
        (("v",), 2, "v", "must be 1"),
        (("status",), "Committed!", "status", "lowercase"),
        (("artifacts", 1, "sha256"), "0" * 63, "artifacts[1].sha256", "sha256"),
        (("artifacts", 0, "size"), -1, "artifacts[0].size", "non-negative"),
        (("intent", "claims", 2, "key"), KeyError, "intent.claims[2].key", "is missing"),
        (("intent", "claims", 0, "uncertainty"), "big", "intent.claims[0].uncertainty", "number"),
        (("manifest", "inputs", "prepare/mesh.msh"), "x", "manifest.inputs.prepare/mesh.msh", "sha256"),
        (("manifest", "code", "dirty"), "no", "manifest.code.dirty", "true or false"),
        (("profile", "invariants", 1, "ok"), "yes", "profile.invariants[1].ok", "true or false"),
        (("time", "secs"), -0.5, "time.secs", "non-negative"),
        (("time", "start"), "yesterday", "time.start", "ISO 8601"),
        (("spec_diff", "changed"), "params.alpha", "spec_diff.changed", "list"),
        (("surprise",), 1, "surprise", "not part of bundle version 1"),
    ],
)
def test_validate_names_the_field(sample, path, value, field, problem):
    bad = _mutate(sample, path, value)
    with pytest.raises(IntegrityError) as info:
        B.validate_bundle(bad)
    message = str(info.value)
    assert f"field '{field}'" in message
    assert problem in message
    assert message.startswith(f"bundle {B.bundle_id(bad)[:12]}…")
    assert info.value.subject == B.bundle_id(bad)


def test_validate_uses_the_given_label(sample):
    with pytest.raises(IntegrityError, match=r"^checkpoint 1234: field 'run'"):
        B.validate_bundle(_mutate(sample, ("run",), ""), where="checkpoint 1234")


def test_validate_rejects_a_non_object():
    with pytest.raises(IntegrityError, match="must be a JSON object"):
        B.validate_bundle([1, 2])  # type: ignore[arg-type]


def test_build_names_a_field_without_json_form():
    kw = bundle_kwargs()
    kw["manifest"]["params"]["alpha"] = float("nan")
    with pytest.raises(IntegrityError, match=r"field 'manifest\.params\.alpha'.*finite"):
        B.build_bundle(**kw)


def test_build_rejects_finished_before_started():
    with pytest.raises(IntegrityError, match="time.secs"):
        B.build_bundle(**bundle_kwargs(started=100.0, finished=99.0))


def test_build_rejects_non_finite_times():
    with pytest.raises(IntegrityError, match="started"):
        B.build_bundle(**bundle_kwargs(started=float("nan")))


# --------------------------------------------------------------------------
# decoding stored bytes


def test_decode_rejects_non_canonical_bytes(sample):
    pretty = json.dumps(sample, indent=1, sort_keys=True).encode()
    with pytest.raises(IntegrityError, match="not canonical"):
        B.decode_bundle(pretty)
    unsorted = json.dumps(dict(reversed(list(sample.items()))), separators=(",", ":")).encode()
    with pytest.raises(IntegrityError, match="not canonical"):
        B.decode_bundle(unsorted)


@pytest.mark.parametrize("data", [b'{"a":NaN}', b"\xff\xfe", b"[1]", b"{"])
def test_decode_rejects_non_json(data):
    with pytest.raises(IntegrityError, match="bundle bytes"):
        B.decode_bundle(data)


def test_load_checks_expected_id(sample):
    with pytest.raises(IntegrityError, match="do not hash to its id"):
        B.load_bundle(B.bundle_bytes(sample), expected_id=h("other"))


# --------------------------------------------------------------------------
# spec diff, heavy triggers, cache key, seeds


def _manifest(**over: Any) -> dict:
    m = {"code": {"task_hash": "c1"}, "seed": 1, "params": {"a": 1, "b": [1, 2], "c": "x"}}
    m.update(over)
    return m


def test_spec_diff_lists_changes_in_fixed_order():
    old = _manifest()
    new = _manifest(code={"task_hash": "c2"}, seed=2, params={"a": 1.0, "b": [1, 2], "d": None})
    diff = B.make_spec_diff(against=h("p"), prev_manifest=old, manifest=new, prev_env_fp="e1",
                            env_fp="e2", spec_changed=True, why="new forcing")
    assert diff == {"against": h("p"),
                    "changed": ["params.a", "params.c", "params.d", "code", "seed", "spec", "env"],
                    "why": "new forcing"}


def test_spec_diff_of_identical_manifests_is_empty():
    diff = B.make_spec_diff(against=h("p"), prev_manifest=_manifest(), manifest=_manifest(),
                            prev_env_fp="e", env_fp="e", spec_changed=False, why=None)
    assert diff == {"against": h("p"), "changed": []}


def test_spec_diff_without_previous_reports_only_spec():
    diff = B.make_spec_diff(against=None, prev_manifest=None, manifest=_manifest(),
                            prev_env_fp=None, env_fp="e", spec_changed=True, why="")
    assert diff == {"against": None, "changed": ["spec"]}


def test_heavy_triggers_fixed_order_and_names():
    assert B.heavy_triggers(first_in_campaign=True, env_changed=True, hardware_changed=True,
                            failed=True, invariant_violated=True) == list(B.HEAVY_TRIGGERS)
    assert B.HEAVY_TRIGGERS == ("first_in_campaign", "env_changed", "hardware_changed", "failed",
                                "invariant_violated")
    fired = B.heavy_triggers(first_in_campaign=False, env_changed=False, hardware_changed=True,
                             failed=False, invariant_violated=True)
    assert fired == ["hardware_changed", "invariant_violated"]
    assert B.heavy_triggers(first_in_campaign=False, env_changed=False, hardware_changed=False,
                            failed=False, invariant_violated=False) == []


def test_cache_key_changes_with_each_ingredient():
    base = dict(task_hash="t", inputs={"a/x": h("x")}, params={"alpha": 1}, seed=7, env_fp="e")
    key = B.cache_key(**base)
    assert key == B.cache_key(**dict(base, inputs={"a/x": h("x")}))
    variants = [
        dict(base, task_hash="t2"),
        dict(base, inputs={"a/x": h("y")}),
        dict(base, inputs={"a/y": h("x")}),
        dict(base, params={"alpha": 2}),
        dict(base, params={"alpha": 1, "beta": 0}),
        dict(base, seed=8),
        dict(base, env_fp="e2"),
    ]
    keys = {B.cache_key(**v) for v in variants}
    assert key not in keys and len(keys) == len(variants)


def test_derive_seed_is_deterministic_and_distinct():
    seeds = {B.derive_seed(42, f"task{i}") for i in range(500)}
    assert len(seeds) == 500
    assert all(0 <= s < 2**63 for s in seeds)
    assert B.derive_seed(42, "fit") == B.derive_seed(42, "fit")
    assert B.derive_seed(42, "fit") != B.derive_seed(43, "fit")
    assert B.derive_seed(42, "fit", attempt=3) == B.derive_seed(42, "fit", attempt=1)
    assert B.derive_seed(42, "fit", 2, per_attempt=True) != B.derive_seed(42, "fit", 3, per_attempt=True)
    assert B.derive_seed(0, "fit") == 2193829512451236423


def test_derive_seed_rejects_bad_arguments():
    with pytest.raises(ValueError):
        B.derive_seed(1, "t", attempt=0)
    with pytest.raises(ValueError):
        B.derive_seed("1", "t")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("override", "field"),
    [({"parents": "abc"}, "parents"), ({"artifacts": None}, "artifacts"), ({"attempt": "1"}, "attempt"),
     ({"manifest": None}, "manifest"), ({"env": {"python": "3.11"}}, "env.fp")],
)
def test_build_reports_mistyped_arguments(override, field):
    with pytest.raises(IntegrityError, match=rf"^bundle for run .* field '{field}'"):
        B.build_bundle(**bundle_kwargs(**override))


def test_bundle_times_match_datetime_isoformat_to_the_millisecond():
    import random
    from datetime import datetime, timezone

    from headwater.checkpoint.bundle import _iso

    rng = random.Random(7)
    edges = [0.0, 1.9999995, 1.9999996, 1_700_000_000.0009995, 1_700_000_000.9999996, -1.5]
    for seconds in edges + [rng.uniform(0, 4e9) for _ in range(2000)]:
        expected = datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="milliseconds")
        assert _iso(seconds) == expected.replace("+00:00", "Z"), seconds


def test_plain_cache_key_equals_cache_key():
    args = dict(task_hash="t" * 64, inputs={"a/x": "ab" * 32}, params={"alpha": 0.5, "n": [1, 2]}, seed=3,
                env_fp="e" * 64)
    assert B.plain_cache_key(**args) == B.cache_key(**args)
    assert B.plain_cache_key(**{**args, "seed": 4}) != B.cache_key(**args)
