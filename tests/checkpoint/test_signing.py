from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from headwater.checkpoint.signing import SigningKey, load_or_create, verify_signature
from headwater.errors import IntegrityError, NotFound

DATA = b'{"v":1,"run":"r1","task":"fit"}'


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def flip(hex_or_bytes, index: int):
    if isinstance(hex_or_bytes, str):
        raw = bytearray(bytes.fromhex(hex_or_bytes))
        raw[index] ^= 0x01
        return raw.hex()
    raw = bytearray(hex_or_bytes)
    raw[index] ^= 0x01
    return bytes(raw)


def test_sign_and_verify_round_trip(key):
    sig = key.sign(DATA)
    assert len(sig) == 128 and int(sig, 16) >= 0
    assert verify_signature(key.public_hex, DATA, sig)
    assert key.sign(DATA) == sig  # Ed25519 is deterministic


@pytest.mark.parametrize("index", [0, 7, len(DATA) - 1])
def test_flipped_data_byte_fails(key, index):
    assert not verify_signature(key.public_hex, flip(DATA, index), key.sign(DATA))


@pytest.mark.parametrize("index", [0, 31, 32, 63])
def test_flipped_signature_byte_fails(key, index):
    assert not verify_signature(key.public_hex, DATA, flip(key.sign(DATA), index))


def test_other_key_fails(key):
    other = SigningKey.generate()
    assert other.key_id != key.key_id
    assert not verify_signature(other.public_hex, DATA, key.sign(DATA))


@pytest.mark.parametrize(
    ("public", "data", "sig"),
    [
        ("zz", DATA, "00" * 64),
        ("00" * 31, DATA, "00" * 64),
        (None, DATA, "00" * 64),
        ("VALID", DATA, "not hex"),
        ("VALID", DATA, "00" * 63),
        ("VALID", DATA, None),
        ("VALID", "a string, not bytes", "SIG"),
        ("VALID", None, "SIG"),
        (["list"], DATA, "SIG"),
    ],
)
def test_malformed_input_is_false_never_an_exception(key, public, data, sig):
    public = key.public_hex if public == "VALID" else public
    sig = key.sign(DATA) if sig == "SIG" else sig
    assert verify_signature(public, data, sig) is False


def test_key_id_is_prefix_of_public_key_hash(key):
    import hashlib

    assert key.key_id == hashlib.sha256(bytes.fromhex(key.public_hex)).hexdigest()[:16]
    assert "PRIVATE" not in repr(key)


@pytest.mark.parametrize("fmt", ["pem", "hex"])
def test_save_and_load_with_owner_only_mode(tmp_path, key, fmt):
    path = tmp_path / "deep" / "er" / "signing.key"
    key.save(path, fmt=fmt)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = SigningKey.load(path)
    assert loaded.public_hex == key.public_hex
    assert verify_signature(key.public_hex, DATA, loaded.sign(DATA))
    assert [p.name for p in path.parent.iterdir()] == ["signing.key"]


def test_save_replaces_an_existing_key(tmp_path, key):
    path = tmp_path / "k"
    SigningKey.generate().save(path)
    key.save(path)
    assert SigningKey.load(path).key_id == key.key_id


def test_save_rejects_unknown_format(tmp_path, key):
    with pytest.raises(ValueError):
        key.save(tmp_path / "k", fmt="der")


def test_load_missing_and_garbage(tmp_path):
    with pytest.raises(NotFound):
        SigningKey.load(tmp_path / "absent.key")
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    with pytest.raises(IntegrityError):
        SigningKey.load(bad)


def test_load_rejects_a_non_ed25519_key(tmp_path):
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "ec.key"
    path.write_bytes(pem)
    with pytest.raises(IntegrityError, match="not an Ed25519"):
        SigningKey.load(path)


def test_load_or_create_creates_once_then_loads(tmp_path):
    path = tmp_path / ".headwater" / "signing.key"
    first = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_or_create(path)
    assert first.key_id == second.key_id
    assert sorted(p.name for p in path.parent.iterdir()) == ["signing.key"]
