"""Asset references, version order and OSV-style ranges."""

import pytest

from headwater.oversight import AssetRef, RefError, VersionRange, parse_ref, version_key


def test_version_order_follows_pep440_and_semver():
    order = ["0.9", "1.0.dev1", "1.0a1", "1.0-beta", "1.0rc1", "1.0", "1.0.post1", "1.1", "1.9", "1.10", "2"]
    assert sorted(reversed(order), key=version_key) == order
    assert version_key("1.0") == version_key("1") == version_key("v1.0.0")
    assert version_key("1.2+local") == version_key("1.2")


@pytest.mark.parametrize(("events", "inside", "outside"), [
    ((("introduced", "1.2"), ("fixed", "1.4")), ["1.2", "1.3.9", "1.3"], ["1.1", "1.4", "2.0"]),
    ((("introduced", "0"), ("fixed", "1.4")), ["0.1", "1.0"], ["1.4"]),
    ((("introduced", "1.2"), ("last_affected", "1.3")), ["1.2", "1.3"], ["1.3.1", "1.1"]),
    ((("introduced", "1.0"), ("fixed", "1.1"), ("introduced", "2.0")), ["1.0", "2.0", "3"], ["1.1", "1.5"]),
])
def test_osv_ranges(events, inside, outside):
    rng = VersionRange(events)
    assert all(rng.contains(v) for v in inside), [v for v in inside if not rng.contains(v)]
    assert not any(rng.contains(v) for v in outside)


def test_range_with_a_custom_order_for_opaque_versions():
    seen = {"c0ffee": 1, "beef00": 2, "f00d11": 3}
    rng = VersionRange.between("beef00")
    assert [v for v in seen if rng.contains(v, key=seen.get)] == ["beef00", "f00d11"]


def test_parse_refs():
    r = parse_ref("lib:numpy@>=1.2,<1.4")
    assert (r.kind, r.name, r.version) == ("lib", "numpy", None)
    assert r.range.to_osv() == {"type": "ECOSYSTEM", "events": [{"introduced": "1.2"}, {"fixed": "1.4"}]}
    assert str(r) == "lib:numpy@>=1.2,<1.4"
    assert str(parse_ref("lib:numpy", introduced="1.2", fixed="1.4")) == "lib:numpy@>=1.2,<1.4"
    assert parse_ref("claim:tower.height@3f2a9c").version == "3f2a9c"
    assert str(parse_ref("compute:gpu-a")) == "compute:gpu-a"
    for bad in ("numpy", "widget:x", "lib:", "lib:x@", "lib:x@>1"):
        with pytest.raises(RefError):
            parse_ref(bad)
    with pytest.raises(RefError, match="--introduced"):
        parse_ref("lib:x@1.0", introduced="0.9")


def test_matching_groups_globs_versions_and_claim_prefixes():
    group = AssetRef("lib", "integrate")
    assert group.matches("lib", "integrate/rk4", "1.1") and group.matches("lib", "integrate", "x")
    assert not group.matches("lib", "integrated", "1") and not group.matches("claim", "integrate", "1")
    assert AssetRef("lib", "scipy*").matches("lib", "scipy-stubs", "1")
    assert AssetRef("claim", "g", "3f2a").matches("claim", "g", "3f2a9c1b0d4e")
    assert not AssetRef("lib", "x", "1.0").matches("lib", "x", "1.0.1")
    assert AssetRef("lib", "x", range=VersionRange.between("1.0", "2")).matches("lib", "x", "1.5")
