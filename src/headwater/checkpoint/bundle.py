"""The checkpoint bundle, version 1: what is recorded at every stage boundary.

A bundle is the thin, always-present provenance record of one task attempt.
It carries the five parts that pay for themselves at every checkpoint (run
manifest, spec diff, environment fingerprint, claim/intent summary, artifact
index), plus a domain profile (simulation or analysis) and, only when a
trigger fired, the hashes of heavy captures (full environment export, logs).
Heavy data and artifacts themselves never live in the bundle; the bundle
points at them by hash, so its size scales with the number of checkpoints,
not with the size of the data. A typical bundle is 2-4 KB of canonical JSON.

Shape (canonical JSON, keys sorted when serialised)::

    v          1
    run        run id                 workflow  workflow name
    task       task name              attempt   1, 2, ...
    status     "provisional" | "verified" | "committed" | "failed" | ...
    parents    sorted bundle hashes of the upstream checkpoints (lineage DAG)
    prev       hash of the checkpoint written just before in the same run, or
               null for the first: the hash chain that makes a run's history
               tamper-evident and totally ordered
    manifest   inputs {"<task>/<name>": sha256}, outputs {name: sha256},
               code {task_hash, commit, dirty}, seed, params, and when used:
               versions {"dataset:x": "1.2"}, upstream [ids], branch,
               speculative [provisional inputs assumed, each a string or a
               small list such as [task, attempt]]
    spec_diff  against (id or null), changed ["params.alpha", "code", ...], why
    env        fp (fingerprint hash), hw (hardware class), python, platform,
               cpu, gpu, container, lock {file, sha256}
    intent     goal, assumptions [...], concludes, claims [{key, value,
               uncertainty, units}]
    artifacts  [{name, uri, sha256, size, media_type}]
    profile    {"kind": "simulation", numerics, invariants}
               | {"kind": "analysis", transforms, cohort, schemas}   optional
    heavy      {triggers [...], artifacts {name: sha256}}             optional
    time       start, end (ISO 8601 UTC), secs
    cache      {hit: id of the checkpoint whose outputs were reused}  optional
    error      message                                                optional

Empty and null optional fields are omitted (``prev`` and
``spec_diff.against`` stay, as explicit nulls: "first in the run" and "no
baseline" are facts worth recording). A checkpoint's id IS the sha256 of its
canonical bytes, so ids are content addresses: two equal bundles have one id,
and any change to any field gives a different id.

Everything here is pure: times arrive as unix seconds from the caller, and
nothing reads the clock, the disk or the machine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from datetime import datetime, timezone
from typing import Any

from headwater.checkpoint.canonical import NotJSON, canonical_json, hash_obj, sha256_hex, to_jsonable
from headwater.errors import IntegrityError

VERSION = 1
"""The bundle format version this module writes and reads."""

STATUSES = ("provisional", "verified", "committed", "refuted", "squashed", "failed")
"""The statuses the runtime writes. Validation accepts any lowercase word, so a
newer writer's status does not make an old reader call a bundle corrupt."""

HEAVY_TRIGGERS = (
    "first_in_campaign",
    "env_changed",
    "hardware_changed",
    "failed",
    "invariant_violated",
)
"""Stable names of the events that call for a heavy capture, in their order."""

_TOP_REQUIRED = (
    "v", "run", "workflow", "task", "attempt", "status", "parents", "prev",
    "manifest", "spec_diff", "env", "intent", "artifacts", "time",
)
_TOP_OPTIONAL = ("profile", "heavy", "cache", "error")
_TOP_KEYS = frozenset(_TOP_REQUIRED + _TOP_OPTIONAL)
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_STATUS = re.compile(r"[a-z][a-z_]*\Z")


# --------------------------------------------------------------------------
# building


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (dict, list, tuple, str)) and len(value) == 0)


def _compact(part: Any, keep: tuple[str, ...] = ()) -> Any:
    """Drop null and empty entries of a dict, except the keys in ``keep``."""
    if not isinstance(part, dict):
        return part
    return {k: v for k, v in part.items() if k in keep or not _empty(v)}


def _sorted_ids(ids: Any) -> Any:
    """Sorted and de-duplicated when the items allow it, else as given."""
    if not isinstance(ids, (list, tuple)):
        return ids
    try:
        return sorted(set(ids))
    except TypeError:
        pass
    try:
        items = sorted(ids)
    except TypeError:
        return ids
    return [x for i, x in enumerate(items) if i == 0 or x != items[i - 1]]


def _iso(seconds: float) -> str:
    """ISO 8601 UTC to the millisecond, as ``datetime.isoformat`` writes it.

    Two of these go into every bundle, so the text of the whole second is
    remembered: the microseconds are rounded half-even exactly as
    :meth:`datetime.fromtimestamp` rounds them, and a datetime is only
    built when the second changes.
    """
    if not seconds >= 0:
        return _iso_slow(seconds)
    frac, whole = math.modf(seconds)
    micro = round(frac * 1e6)
    if micro >= 1_000_000:
        micro -= 1_000_000
        whole += 1.0
    return f"{_second_text(int(whole))}.{micro // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second_text(second: int) -> str:
    return _iso_slow(second)[:-5]


def _iso_slow(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time_part(started: Any, finished: Any, label: str) -> dict[str, Any]:
    for name, value in (("started", started), ("finished", finished)):
        if not _is_num(value) or not math.isfinite(value):
            raise IntegrityError(f"{label}: {name} must be finite unix seconds, got {value!r}")
    return {"start": _iso(started), "end": _iso(finished), "secs": round(finished - started, 3)}


def build_bundle(
    *,
    run: str,
    workflow: str,
    task: str,
    attempt: int,
    status: str,
    parents: list[str],
    prev: str | None,
    manifest: dict,
    spec_diff: dict,
    env: dict,
    intent: dict,
    artifacts: list[dict],
    profile: dict | None = None,
    heavy: dict | None = None,
    started: float,
    finished: float,
    cache_hit: str | None = None,
    error: str | None = None,
) -> dict:
    """Assemble, normalise and validate a version-1 bundle.

    The result is a plain deep copy (tuples become lists, numpy scalars
    become numbers), compacted (empty optional fields dropped), with
    ``parents`` sorted and de-duplicated, so equal inputs always give equal
    bytes. ``started``/``finished`` are unix seconds supplied by the caller;
    they become ISO 8601 UTC strings to the millisecond and a duration.
    Raises :class:`IntegrityError` naming the first field that is missing,
    mistyped or has no JSON form.
    """
    label = f"bundle for run {run!r} task {task!r}"
    manifest = _compact(manifest, keep=("inputs", "outputs", "code", "seed", "params"))
    if isinstance(manifest, dict):
        if isinstance(manifest.get("code"), dict):
            manifest["code"] = _compact(manifest["code"], keep=("task_hash",))
        for key in ("upstream", "speculative"):
            if key in manifest:
                manifest[key] = _sorted_ids(manifest[key])
    intent = _compact(intent)
    if isinstance(intent, dict) and isinstance(intent.get("claims"), list):
        intent["claims"] = [_compact(c, keep=("key", "value")) for c in intent["claims"]]
    bundle: dict[str, Any] = {
        "v": VERSION,
        "run": run,
        "workflow": workflow,
        "task": task,
        "attempt": attempt,
        "status": status,
        "parents": _sorted_ids(parents),
        "prev": prev,
        "manifest": manifest,
        "spec_diff": _compact(spec_diff, keep=("against", "changed")),
        "env": _compact(env, keep=("fp",)),
        "intent": intent,
        "artifacts": (
            [_compact(a, keep=("name", "sha256")) for a in artifacts]
            if isinstance(artifacts, (list, tuple)) else artifacts
        ),
        "time": _time_part(started, finished, label),
    }
    if profile:
        bundle["profile"] = _compact(profile, keep=("kind",))
    if heavy:
        bundle["heavy"] = _compact(heavy, keep=("triggers",))
    if cache_hit:
        bundle["cache"] = {"hit": cache_hit}
    if error:
        bundle["error"] = error
    try:
        bundle = to_jsonable(bundle)
    except NotJSON as exc:
        raise IntegrityError(f"{label}: field {exc.path!r}: {exc.problem}") from None
    validate_bundle(bundle, where=label)
    return bundle


def bundle_bytes(bundle: dict) -> bytes:
    """The canonical bytes of a bundle: what is stored, hashed and signed."""
    return canonical_json(bundle)


def bundle_id(bundle_or_bytes: dict | bytes | bytearray | memoryview) -> str:
    """A checkpoint's id: the sha256 hex of its bundle's canonical bytes."""
    if isinstance(bundle_or_bytes, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bundle_or_bytes).hexdigest()
    return sha256_hex(canonical_json(bundle_or_bytes))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_bundle(data: bytes) -> dict:
    """Parse stored bundle bytes, insisting they are canonical JSON.

    Canonical means: re-serialising the parsed value gives exactly the same
    bytes. This rejects whitespace, unsorted or duplicate keys, escapes
    written differently and NaN, so a stored bundle has one byte form and its
    hash is meaningful. Does not validate the fields; see :func:`load_bundle`.
    """
    try:
        obj = json.loads(bytes(data).decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"bundle bytes are not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise IntegrityError("bundle bytes are not a JSON object")
    if canonical_json(obj) != bytes(data):
        raise IntegrityError("bundle bytes are not canonical JSON")
    return obj


def load_bundle(data: bytes, *, expected_id: str | None = None) -> dict:
    """Decode, check against ``expected_id`` when given, and validate."""
    actual = bundle_id(data)
    if expected_id is not None and actual != expected_id:
        raise IntegrityError("bundle bytes do not hash to its id", subject=expected_id)
    bundle = decode_bundle(data)
    validate_bundle(bundle, where=f"bundle {actual[:12]}…")
    return bundle


# --------------------------------------------------------------------------
# validation


class _Invalid(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field = field
        self.problem = problem


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _need(part: dict, key: str, field: str) -> Any:
    if key not in part:
        raise _Invalid(field, "is missing")
    return part[key]


def _str(x: Any, field: str, *, empty: bool = False) -> None:
    if not isinstance(x, str) or (not empty and not x):
        raise _Invalid(field, "must be a non-empty string")


def _hex(x: Any, field: str) -> None:
    if not isinstance(x, str) or not _HEX64.match(x):
        raise _Invalid(field, "must be a sha256 hex digest (64 lowercase hex digits)")


def _dict(x: Any, field: str) -> dict:
    if not isinstance(x, dict):
        raise _Invalid(field, "must be an object")
    return x


def _list(x: Any, field: str) -> list:
    if not isinstance(x, list):
        raise _Invalid(field, "must be a list")
    return x


def _str_list(x: Any, field: str) -> None:
    for i, item in enumerate(_list(x, field)):
        _str(item, f"{field}[{i}]")


def _hex_map(x: Any, field: str) -> None:
    for key, value in _dict(x, field).items():
        _str(key, f"{field} key")
        _hex(value, f"{field}.{key}")


def _opt(part: dict, key: str, field: str, check: Any) -> None:
    if key in part:
        check(part[key], f"{field}.{key}")


def _check_manifest(m: dict) -> None:
    _hex_map(_need(m, "inputs", "manifest.inputs"), "manifest.inputs")
    _hex_map(_need(m, "outputs", "manifest.outputs"), "manifest.outputs")
    code = _dict(_need(m, "code", "manifest.code"), "manifest.code")
    _str(_need(code, "task_hash", "manifest.code.task_hash"), "manifest.code.task_hash")
    _opt(code, "commit", "manifest.code", _str)
    if "dirty" in code and not isinstance(code["dirty"], bool):
        raise _Invalid("manifest.code.dirty", "must be true or false")
    if not _is_int(_need(m, "seed", "manifest.seed")):
        raise _Invalid("manifest.seed", "must be an integer")
    _dict(_need(m, "params", "manifest.params"), "manifest.params")
    if "versions" in m:
        for key, value in _dict(m["versions"], "manifest.versions").items():
            _str(value, f"manifest.versions.{key}")
    if "upstream" in m:
        for i, item in enumerate(_list(m["upstream"], "manifest.upstream")):
            _hex(item, f"manifest.upstream[{i}]")
    _opt(m, "branch", "manifest", _str)
    _opt(m, "speculative", "manifest", _list)


def _check_env(e: dict) -> None:
    _str(_need(e, "fp", "env.fp"), "env.fp")
    for key in ("hw", "python", "impl", "platform", "machine", "cpu", "gpu", "container"):
        _opt(e, key, "env", _str)
    if "cpus" in e and not _is_int(e["cpus"]):
        raise _Invalid("env.cpus", "must be an integer")
    if "lock" in e:
        lock = _dict(e["lock"], "env.lock")
        _str(_need(lock, "file", "env.lock.file"), "env.lock.file")
        _hex(_need(lock, "sha256", "env.lock.sha256"), "env.lock.sha256")


def _check_intent(it: dict) -> None:
    _opt(it, "goal", "intent", _str)
    _opt(it, "concludes", "intent", _str)
    _opt(it, "assumptions", "intent", _str_list)
    for i, claim in enumerate(_list(it.get("claims", []), "intent.claims")):
        field = f"intent.claims[{i}]"
        _dict(claim, field)
        _str(_need(claim, "key", f"{field}.key"), f"{field}.key")
        _need(claim, "value", f"{field}.value")
        if "uncertainty" in claim and not _is_num(claim["uncertainty"]):
            raise _Invalid(f"{field}.uncertainty", "must be a number")
        _opt(claim, "units", field, _str)


def _check_artifacts(arts: list) -> None:
    for i, art in enumerate(arts):
        field = f"artifacts[{i}]"
        _dict(art, field)
        _str(_need(art, "name", f"{field}.name"), f"{field}.name")
        _hex(_need(art, "sha256", f"{field}.sha256"), f"{field}.sha256")
        _opt(art, "uri", field, _str)
        _opt(art, "media_type", field, _str)
        if "size" in art and not (_is_int(art["size"]) and art["size"] >= 0):
            raise _Invalid(f"{field}.size", "must be a non-negative integer")


def _check_profile(p: dict) -> None:
    kind = _need(p, "kind", "profile.kind")
    _str(kind, "profile.kind")
    if kind == "simulation":
        _opt(p, "numerics", "profile", _dict)
        for i, inv in enumerate(_list(p.get("invariants", []), "profile.invariants")):
            field = f"profile.invariants[{i}]"
            _dict(inv, field)
            _str(_need(inv, "name", f"{field}.name"), f"{field}.name")
            if not isinstance(_need(inv, "ok", f"{field}.ok"), bool):
                raise _Invalid(f"{field}.ok", "must be true or false")
    elif kind == "analysis":
        for i, tr in enumerate(_list(p.get("transforms", []), "profile.transforms")):
            field = f"profile.transforms[{i}]"
            _str(_need(_dict(tr, field), "op", f"{field}.op"), f"{field}.op")
        _opt(p, "cohort", "profile", _str)
        for name, schema in _dict(p.get("schemas", {}), "profile.schemas").items():
            _dict(schema, f"profile.schemas.{name}")


def _check_time(t: dict) -> None:
    for key in ("start", "end"):
        value = _need(t, key, f"time.{key}")
        try:
            datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise _Invalid(f"time.{key}", "must be an ISO 8601 timestamp") from None
    secs = _need(t, "secs", "time.secs")
    if not _is_num(secs) or secs < 0:
        raise _Invalid("time.secs", "must be a non-negative number (finished before started?)")


def _check(b: Any) -> None:
    if not isinstance(b, dict):
        raise _Invalid("", "must be a JSON object")
    unknown = sorted(set(b) - _TOP_KEYS)
    if unknown:
        raise _Invalid(unknown[0], f"is not part of bundle version {VERSION}")
    v = _need(b, "v", "v")
    if not _is_int(v) or v != VERSION:
        raise _Invalid("v", f"must be {VERSION} (this headwater reads bundle version {VERSION})")
    for key in ("run", "workflow", "task"):
        _str(_need(b, key, key), key)
    attempt = _need(b, "attempt", "attempt")
    if not _is_int(attempt) or attempt < 1:
        raise _Invalid("attempt", "must be an integer >= 1")
    status = _need(b, "status", "status")
    if not isinstance(status, str) or not _STATUS.match(status):
        raise _Invalid("status", "must be a lowercase word such as 'committed'")
    parents = _list(_need(b, "parents", "parents"), "parents")
    for i, parent in enumerate(parents):
        _hex(parent, f"parents[{i}]")
    if parents != sorted(set(parents)):
        raise _Invalid("parents", "must be sorted and free of duplicates")
    prev = _need(b, "prev", "prev")
    if prev is not None:
        _hex(prev, "prev")
    _check_manifest(_dict(_need(b, "manifest", "manifest"), "manifest"))
    sd = _dict(_need(b, "spec_diff", "spec_diff"), "spec_diff")
    if _need(sd, "against", "spec_diff.against") is not None:
        _hex(sd["against"], "spec_diff.against")
    _str_list(_need(sd, "changed", "spec_diff.changed"), "spec_diff.changed")
    _opt(sd, "why", "spec_diff", _str)
    _check_env(_dict(_need(b, "env", "env"), "env"))
    _check_intent(_dict(_need(b, "intent", "intent"), "intent"))
    _check_artifacts(_list(_need(b, "artifacts", "artifacts"), "artifacts"))
    if "profile" in b:
        _check_profile(_dict(b["profile"], "profile"))
    if "heavy" in b:
        heavy = _dict(b["heavy"], "heavy")
        _str_list(_need(heavy, "triggers", "heavy.triggers"), "heavy.triggers")
        _opt(heavy, "artifacts", "heavy", _hex_map)
    _check_time(_dict(_need(b, "time", "time"), "time"))
    if "cache" in b:
        _hex(_need(_dict(b["cache"], "cache"), "hit", "cache.hit"), "cache.hit")
    if "error" in b:
        _str(b["error"], "error")


def validate_bundle(bundle: dict, *, where: str = "") -> None:
    """Raise :class:`IntegrityError` naming the first missing or mistyped field.

    ``where`` labels the bundle in the message (for example the checkpoint
    id or "bundle for run 'r1' task 'fit'"); by default the label is the
    first 12 hex digits of the bundle's own hash. Unknown top-level fields are
    rejected (a version-1 reader must not silently ignore what it cannot
    interpret); unknown keys inside sections are tolerated, so sections can
    grow without a version bump.
    """
    try:
        _check(bundle)
    except _Invalid as exc:
        subject = None
        if not where:
            try:
                subject = bundle_id(bundle)
                where = f"bundle {subject[:12]}…"
            except (TypeError, ValueError):
                where = "bundle"
        if exc.field:
            message = f"{where}: field {exc.field!r} {exc.problem}"
        else:
            message = f"{where}: {exc.problem}"
        raise IntegrityError(message, subject=subject or where) from None


# --------------------------------------------------------------------------
# pure helpers the runtime calls while assembling a bundle


def _same(a: Any, b: Any) -> bool:
    try:
        return canonical_json(to_jsonable(a)) == canonical_json(to_jsonable(b))
    except (TypeError, ValueError):
        return a == b


def make_spec_diff(
    *,
    against: str | None,
    prev_manifest: dict | None,
    manifest: dict,
    prev_env_fp: str | None,
    env_fp: str,
    spec_changed: bool,
    why: str | None,
) -> dict:
    """What changed since the checkpoint ``against``, as a short list of names.

    Names, in this order: ``params.<key>`` for every parameter added,
    removed or changed (sorted; values compared by canonical JSON, so ``1``
    and ``1.0`` differ as they would in a hash), ``code`` when the task hash
    changed, ``seed``, ``spec`` when the caller says the workflow spec
    changed, and ``env`` when the environment fingerprint changed. Without a
    previous manifest only ``spec`` and ``env`` can be reported. The diff
    stays deliberately small (names and one line of why); the values
    themselves are in the two bundles, and ``headwater diff`` shows them.
    """
    changed: list[str] = []
    if prev_manifest is not None:
        old = prev_manifest.get("params") or {}
        new = manifest.get("params") or {}
        for key in sorted(set(old) | set(new)):
            if key not in old or key not in new or not _same(old[key], new[key]):
                changed.append(f"params.{key}")
        old_code = (prev_manifest.get("code") or {}).get("task_hash")
        new_code = (manifest.get("code") or {}).get("task_hash")
        if old_code != new_code:
            changed.append("code")
        if prev_manifest.get("seed") != manifest.get("seed"):
            changed.append("seed")
    if spec_changed:
        changed.append("spec")
    if prev_env_fp is not None and prev_env_fp != env_fp:
        changed.append("env")
    diff: dict[str, Any] = {"against": against, "changed": changed}
    if why:
        diff["why"] = why
    return diff


def heavy_triggers(
    *,
    first_in_campaign: bool,
    env_changed: bool,
    hardware_changed: bool,
    failed: bool,
    invariant_violated: bool,
) -> list[str]:
    """Names of the heavy-capture triggers that fired, in a fixed order.

    Heavy captures (full environment export, stdout/stderr) are what the
    minimal bundle deliberately leaves out; they are worth their cost only
    at the points where forensics most often needs them: the first
    checkpoint of a campaign, a change of environment or hardware class, a
    failure, and a violated invariant. An empty list means "stay light".
    """
    fired = (first_in_campaign, env_changed, hardware_changed, failed, invariant_violated)
    return [name for name, on in zip(HEAVY_TRIGGERS, fired) if on]


def cache_key(*, task_hash: str, inputs: dict, params: dict, seed: int, env_fp: str) -> str:
    """The key under which a task's outputs may be reused.

    Everything that can change a deterministic task's outputs is in it: the
    task's code, the hashes of its inputs, its parameters, its seed and the
    environment fingerprint. Leaving any of them out would let a cached
    result stand in for a computation that would have come out differently.
    """
    return plain_cache_key(task_hash, to_jsonable(inputs), to_jsonable(params), seed, env_fp)


def plain_cache_key(task_hash: str, inputs: dict, params: Any, seed: int, env_fp: str) -> str:
    """:func:`cache_key` for ``inputs`` and ``params`` that are plain JSON already
    (as the runtime prepares them once per run): no copy, just the hash."""
    return hash_obj({"k": "headwater.cache.v1", "task": task_hash, "inputs": inputs, "params": params,
                     "seed": seed, "env": env_fp})


def derive_seed(run_seed: int, task: str, attempt: int = 1, *, per_attempt: bool = False) -> int:
    """A task's seed: 63 bits of sha256 over the run seed and the task name.

    The attempt number does not enter by default, on purpose: a retry after
    a transient failure, a verifier re-executing the task, and ``headwater
    reproduce`` must all draw the same random numbers as the original
    attempt, or their outputs cannot be compared byte for byte. Pass
    ``per_attempt=True`` for the rare task that wants fresh randomness on
    every attempt (for instance restarts of a stochastic optimiser); the
    bundle records the seed actually used either way. 63 bits keep the value
    a non-negative signed 64-bit integer, which every RNG and database column
    accepts.
    """
    if not _is_int(run_seed) or not _is_int(attempt) or attempt < 1:
        raise ValueError("derive_seed needs an integer run_seed and an attempt >= 1")
    material: list[Any] = ["headwater.seed", run_seed, task]
    if per_attempt:
        material.append(attempt)
    digest = hashlib.sha256(canonical_json(material)).digest()
    return int.from_bytes(digest[:8], "big") >> 1
