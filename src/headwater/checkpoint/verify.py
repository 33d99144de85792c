"""Integrity checks over stored checkpoints, for ``headwater verify``.

Two questions, answered without I/O so the CLI, the server and the tests can
ask them of whatever the store returns:

* Is one stored checkpoint intact? :func:`check_checkpoint` recomputes the
  id from the stored bytes, insists the bytes are canonical JSON (one value,
  one byte form), checks the Ed25519 signature over those bytes, and
  validates the bundle's fields.
* Is a run's history intact? :func:`check_chain` walks the checkpoints of
  one run in write order and checks the hash chain: each ``prev`` names the
  checkpoint written just before it, every parent was written earlier, and
  no checkpoint of another run has been slipped in. Because ids are content
  hashes and each bundle names its predecessor's id, removing, reordering
  or altering a checkpoint breaks the chain at that point.

Both return lists of problems instead of raising, so a verifier can report
everything wrong with a store in one pass; the first problem in the list is
the earliest break.

The writing side is :func:`seal`: it is the one place that decides what a
checkpoint signature covers (the canonical bundle bytes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from headwater.checkpoint.bundle import bundle_bytes, bundle_id, decode_bundle, validate_bundle
from headwater.checkpoint.signing import SigningKey, verify_signature
from headwater.errors import IntegrityError


def seal(bundle: dict, key: SigningKey) -> tuple[str, bytes, str]:
    """``(checkpoint id, canonical bytes, signature hex)`` for a built bundle.

    The signature covers exactly the bytes the id hashes, which are exactly
    the bytes to store; :func:`check_checkpoint` undoes this.
    """
    data = bundle_bytes(bundle)
    return bundle_id(data), data, key.sign(data)


def check_checkpoint(ckpt_id: str, stored_bytes: bytes, signature: str, public_hex: str) -> list[str]:
    """Every problem with one stored checkpoint; empty when it is intact.

    Problems, in this order: the bytes do not hash to ``ckpt_id``; the bytes
    are not JSON or not canonical JSON; the signature is not ``public_hex``'s
    over the bytes; the bundle fails :func:`validate_bundle`. Never raises on
    malformed input.
    """
    problems: list[str] = []
    if not isinstance(stored_bytes, (bytes, bytearray, memoryview)):
        return ["stored bundle is not bytes"]
    data = bytes(stored_bytes)
    if bundle_id(data) != ckpt_id:
        problems.append("bundle bytes do not hash to its id")
    bundle = None
    try:
        bundle = decode_bundle(data)
    except IntegrityError as exc:
        problems.append(str(exc))
    if not verify_signature(public_hex, data, signature):
        problems.append("signature does not match the bundle bytes and public key")
    if bundle is not None:
        label = f"bundle {ckpt_id[:12]}…" if isinstance(ckpt_id, str) else "bundle"
        try:
            validate_bundle(bundle, where=label)
        except IntegrityError as exc:
            problems.append(str(exc))
    return problems


def _short(ckpt_id: object) -> str:
    return f"{ckpt_id[:12]}…" if isinstance(ckpt_id, str) and len(ckpt_id) > 12 else repr(ckpt_id)


def check_chain(
    checkpoints: list[tuple[str, dict]],
    *,
    known: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """Check the hash chain of one run; ``(checkpoint id, problem)`` pairs.

    ``checkpoints`` are ``(id, bundle)`` in write order. The run is the one
    most of them name. For each checkpoint:

    * its id must be the hash of its bundle, and appear only once;
    * it must belong to that run (a foreign checkpoint is reported and then
      skipped, so the checkpoints around it are judged against each other);
    * ``prev`` must be the id of the previous checkpoint of the run in the
      list; for the first, ``prev`` must be null or one of ``known``;
    * every parent must be an id seen earlier in the list or in ``known``.

    ``known`` holds ids verified elsewhere: checkpoints of the same run
    before the listed segment (when verifying a suffix of a resumed run) and
    upstream checkpoints of other runs. Pairs come in list order, so the
    first pair is the earliest break.
    """
    known_ids = set(known)
    problems: list[tuple[str, str]] = []
    runs = Counter(b.get("run") for _, b in checkpoints if isinstance(b, dict))
    run = runs.most_common(1)[0][0] if runs else None
    all_ids = {cid for cid, _ in checkpoints}
    seen: set[str] = set()
    foreign: set[str] = set()
    previous: str | None = None
    first = True
    for cid, bundle in checkpoints:
        if not isinstance(bundle, dict):
            problems.append((cid, "bundle is not a JSON object"))
            continue
        try:
            if bundle_id(bundle) != cid:
                problems.append((cid, "id does not match the bundle's hash"))
        except (TypeError, ValueError):
            problems.append((cid, "bundle has no canonical JSON form"))
        if cid in seen:
            problems.append((cid, "appears more than once in the chain"))
            continue
        if bundle.get("run") != run:
            problems.append((cid, f"belongs to run {bundle.get('run')!r}, not {run!r}"))
            foreign.add(cid)
            continue
        prev = bundle.get("prev")
        if first:
            if prev is not None and prev not in known_ids:
                where = "appears later in the chain" if prev in all_ids else "is not a known checkpoint"
                problems.append((cid, f"first checkpoint's prev {_short(prev)} {where}"))
        elif prev != previous:
            if prev is None:
                detail = "prev is null but this is not the first checkpoint of the run"
            elif prev in foreign:
                detail = f"prev {_short(prev)} is a checkpoint of another run"
            elif prev in seen:
                detail = f"prev {_short(prev)} is not the previous checkpoint {_short(previous)} (reordered?)"
            elif prev in all_ids:
                detail = f"prev {_short(prev)} appears later in the chain (reordered?)"
            else:
                detail = f"prev {_short(prev)} is missing from the chain (removed?)"
            problems.append((cid, detail))
        for parent in bundle.get("parents") or []:
            if parent in seen or parent in known_ids:
                continue
            if parent in foreign:
                problems.append((cid, f"parent {_short(parent)} is a foreign checkpoint in this chain"))
            elif parent in all_ids:
                problems.append((cid, f"parent {_short(parent)} is written after its child"))
            else:
                problems.append((cid, f"parent {_short(parent)} is not a known checkpoint"))
        seen.add(cid)
        previous = cid
        first = False
    return problems
