from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.checkpoint import bundle as B
from headwater.checkpoint.signing import SigningKey
from headwater.checkpoint.verify import check_chain, check_checkpoint, seal
from tests.checkpoint.conftest import bundle_kwargs, h, make_chain

KEY = SigningKey.generate()
SEALED = seal(B.build_bundle(**bundle_kwargs()), KEY)


# --------------------------------------------------------------------------
# one checkpoint


def test_sealed_checkpoint_is_intact():
    cid, data, sig = SEALED
    assert cid == B.bundle_id(data)
    assert check_checkpoint(cid, data, sig, KEY.public_hex) == []


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.data())
def test_any_flipped_byte_is_detected(data):
    cid, stored, sig = SEALED
    position = data.draw(st.integers(0, len(stored) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    tampered = bytearray(stored)
    tampered[position] ^= mask
    problems = check_checkpoint(cid, bytes(tampered), sig, KEY.public_hex)
    assert "bundle bytes do not hash to its id" in problems
    assert any("signature" in p for p in problems)


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(st.integers(0, len(SEALED[1]) - 1))
def test_recomputing_the_id_after_tampering_still_fails_the_signature(position):
    _, stored, sig = SEALED
    tampered = bytearray(stored)
    tampered[position] ^= 0x20
    tampered = bytes(tampered)
    problems = check_checkpoint(B.bundle_id(tampered), tampered, sig, KEY.public_hex)
    assert problems and "bundle bytes do not hash to its id" not in problems
    assert any("signature" in p for p in problems)


def test_bad_signature_alone():
    cid, data, _ = SEALED
    other = SigningKey.generate()
    assert check_checkpoint(cid, data, other.sign(data), KEY.public_hex) == [
        "signature does not match the bundle bytes and public key"
    ]
    assert len(check_checkpoint(cid, data, "00" * 64, KEY.public_hex)) == 1
    assert len(check_checkpoint(cid, data, "garbage", KEY.public_hex)) == 1
    assert len(check_checkpoint(cid, data, SEALED[2], other.public_hex)) == 1


def test_non_canonical_bytes_are_reported_even_when_signed():
    pretty = json.dumps(B.decode_bundle(SEALED[1]), indent=2, sort_keys=True).encode()
    problems = check_checkpoint(B.bundle_id(pretty), pretty, KEY.sign(pretty), KEY.public_hex)
    assert problems == ["bundle bytes are not canonical JSON"]


def test_signed_but_invalid_bundle_is_reported():
    bad = copy.deepcopy(B.decode_bundle(SEALED[1]))
    bad["manifest"]["seed"] = "42"
    cid, data, sig = seal(bad, KEY)
    problems = check_checkpoint(cid, data, sig, KEY.public_hex)
    assert len(problems) == 1 and "field 'manifest.seed' must be an integer" in problems[0]
    assert problems[0].startswith(f"bundle {cid[:12]}")


@pytest.mark.parametrize("stored", [b"", b"\x00\xff", b"[]", "not bytes"])
def test_garbage_never_raises(stored):
    problems = check_checkpoint(SEALED[0], stored, SEALED[2], KEY.public_hex)
    assert problems


# --------------------------------------------------------------------------
# the chain of a run


@pytest.fixture(scope="module")
def chain() -> list[tuple[str, dict]]:
    return make_chain("run-a", 5)


def test_intact_chain(chain):
    assert check_chain(chain) == []
    assert check_chain(chain[:1]) == []
    assert check_chain([]) == []


def test_removed_checkpoint_breaks_at_its_successor(chain):
    for i in range(1, 4):
        broken = chain[:i] + chain[i + 1:]
        problems = check_chain(broken)
        assert problems[0][0] == chain[i + 1][0]
        assert "missing from the chain" in problems[0][1]


def test_removed_first_checkpoint(chain):
    problems = check_chain(chain[1:])
    expected = f"first checkpoint's prev {chain[0][0][:12]}… is not a known checkpoint"
    assert problems[0] == (chain[1][0], expected)
    assert check_chain(chain[1:], known=[chain[0][0]]) == []


def test_reordered_checkpoints(chain):
    swapped = [chain[0], chain[2], chain[1], chain[3], chain[4]]
    problems = check_chain(swapped)
    assert problems[0][0] == chain[2][0]
    assert {cid for cid, _ in problems} >= {chain[2][0], chain[1][0]}

    reversed_chain = list(reversed(chain))
    first = check_chain(reversed_chain)[0]
    assert first[0] == chain[4][0] and "appears later" in first[1]


def test_foreign_checkpoint_is_reported_and_skipped(chain):
    foreign = make_chain("run-b", 1, start_prev=chain[1][0])[0]
    spliced = chain[:2] + [foreign] + chain[2:]
    problems = check_chain(spliced)
    assert problems == [(foreign[0], "belongs to run 'run-b', not 'run-a'")]


def test_foreign_checkpoint_replacing_one(chain):
    foreign = make_chain("run-b", 1, start_prev=chain[1][0])[0]
    spliced = chain[:2] + [foreign] + chain[3:]
    problems = check_chain(spliced)
    assert problems[0][0] == foreign[0]
    assert problems[1][0] == chain[3][0] and "missing" in problems[1][1]


def test_unknown_and_late_parents(chain):
    kw = bundle_kwargs(run="run-a", task="extra", prev=chain[-1][0], parents=[h("nowhere")])
    orphan = B.build_bundle(**kw)
    problems = check_chain(chain + [(B.bundle_id(orphan), orphan)])
    assert problems == [(B.bundle_id(orphan), f"parent {h('nowhere')[:12]}… is not a known checkpoint")]
    assert check_chain(chain + [(B.bundle_id(orphan), orphan)], known=[h("nowhere")]) == []


def test_altered_bundle_and_duplicate(chain):
    altered = copy.deepcopy(chain[2][1])
    altered["status"] = "committed"
    problems = check_chain(chain[:2] + [(chain[2][0], altered)] + chain[3:])
    assert problems == [(chain[2][0], "id does not match the bundle's hash")]
    duplicated = check_chain(chain[:3] + [chain[2]] + chain[3:])
    assert duplicated == [(chain[2][0], "appears more than once in the chain")]
