"""Ed25519 signatures over checkpoint bundles.

A checkpoint is signed over its canonical bundle bytes (the same bytes its
id hashes), so a signature vouches for every field at once and a verifier
needs nothing but the stored bytes, the signature and the signer's public
key. Ed25519 was chosen because its signatures are small (64 bytes, 128 hex
characters), deterministic (no per-signature randomness to get wrong),
fast (tens of microseconds for a few-KB bundle, negligible beside writing
it) and available in ``cryptography`` without extra native dependencies.

Keys live in files readable only by their owner (mode 0600). A key file is
either unencrypted PKCS#8 PEM, as ``save`` writes by default, or the 32-byte
private seed as 64 hex digits (``fmt="hex"``), which is convenient to put in
a secret manager. A key is named by ``key_id``: the first 16 hex digits of
the sha256 of its raw public key, short enough to print and store beside
each signature.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from headwater.errors import IntegrityError, NotFound

_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw


class SigningKey:
    """An Ed25519 private key with the public half precomputed.

    Construct with :meth:`generate`, :meth:`load` or :func:`load_or_create`.
    ``repr`` never shows private material.
    """

    __slots__ = ("_private", "public_hex", "key_id")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        public_raw = private.public_key().public_bytes(_RAW, _RAW_PUBLIC)
        self.public_hex: str = public_raw.hex()
        self.key_id: str = key_id_of(self.public_hex)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key from the operating system's random source."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | Path) -> SigningKey:
        """Read a key file written by :meth:`save` (PEM or hex seed)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound("signing key", str(path), "create one with load_or_create()") from None
        text = data.strip()
        try:
            if text.startswith(b"-----BEGIN"):
                private = serialization.load_pem_private_key(text, password=None)
            else:
                private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text.decode("ascii")))
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"{path}: not a readable signing key ({exc})", subject=str(path)) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise IntegrityError(f"{path}: not an Ed25519 private key", subject=str(path))
        return cls(private)

    def _encoded(self, fmt: str) -> bytes:
        if fmt == "pem":
            return self._private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        if fmt == "hex":
            raw = self._private.private_bytes(
                _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            return raw.hex().encode("ascii") + b"\n"
        raise ValueError(f"unknown key format {fmt!r}; use 'pem' or 'hex'")

    def save(self, path: str | Path, *, fmt: str = "pem") -> None:
        """Write the key to ``path`` with mode 0600, creating parent dirs.

        The file is written to a temporary name beside ``path`` and renamed
        into place, so a reader never sees half a key and an existing key is
        replaced atomically.
        """
        _write_private(Path(path), self._encoded(fmt), exclusive=False)

    def sign(self, data: bytes) -> str:
        """The Ed25519 signature of ``data`` as 128 hex digits."""
        return self._private.sign(data).hex()


def _write_private(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write ``data`` to ``path`` readable by the owner only.

    With ``exclusive`` the final name is created with a hard link, which
    fails if it already exists: of two processes racing to create the same
    key, exactly one wins and the other gets :class:`FileExistsError`.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_or_create(path: str | Path) -> SigningKey:
    """Load the key at ``path``, or create and save a new one there.

    Safe against concurrent callers: if another process creates the key
    first, its key is loaded instead, so every process ends up signing with
    the key that is on disk.
    """
    path = Path(path)
    if path.exists():
        return SigningKey.load(path)
    key = SigningKey.generate()
    try:
        _write_private(path, key._encoded("pem"), exclusive=True)
    except FileExistsError:
        return SigningKey.load(path)
    return key


def key_id_of(public_hex: str) -> str:
    """The ``key_id`` of a public key given in hex: the first 16 hex digits of its sha256."""
    return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]


@lru_cache(maxsize=256)
def _public_key(public_hex: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))


def verify_signature(public_hex: str, data: bytes, signature_hex: str) -> bool:
    """True when ``signature_hex`` is ``public_hex``'s signature of ``data``.

    Never raises: a malformed key, signature or argument of the wrong type is
    simply not a valid signature. Public keys are parsed once and cached,
    since verifying a chain checks many signatures by the same few keys.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return False
    try:
        signature = bytes.fromhex(signature_hex)
        if len(signature) != 64:
            return False
        _public_key(public_hex).verify(signature, bytes(data))
    except InvalidSignature:
        return False
    except Exception:  # malformed hex, wrong-length key, wrong types
        return False
    return True
