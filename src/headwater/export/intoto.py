"""in-toto attestations: a SLSA Provenance v1 statement per checkpoint, in DSSE.

Each checkpoint becomes one in-toto Statement v1 whose predicate is SLSA
Provenance v1, serialised as canonical JSON and wrapped in a DSSE envelope
signed with the workspace's Ed25519 store key. Mapping of the bundle:

=========================  ===============================================
subject                    every output artifact (``<task>/<name>``, its
                           sha256) and the bundle itself
                           (``checkpoint/<id>.json``, sha256 = the id)
buildDefinition.           workflow, run, campaign, task, attempt, params,
externalParameters         seed, branch, speculative inputs, spec diff
buildDefinition.           the environment fingerprint, and the stored
internalParameters         environment summary when the store has it
buildDefinition.           task code (task hash, git commit), the lock file,
resolvedDependencies       every input artifact, every shared-asset
                           version, every upstream checkpoint
runDetails.builder         ``urn:headwater:builder:<signing key id>`` and
                           the headwater version
runDetails.metadata        invocation id ``urn:headwater:invocation:
                           <run>/<task>/<attempt>``, start and end times
runDetails.byproducts      the claim/intent summary, heavy captures, and
                           the checkpoint itself with its own signature
=========================  ===============================================

The statement is built as plain JSON, never through the attestation
library's protobuf classes, which would turn every integer (seeds, sizes)
into a float. Several checkpoints make an attestation bundle: JSON Lines,
one DSSE envelope per line, the in-toto convention for ``.intoto.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headwater.checkpoint.canonical import canonical_json, hash_obj
from headwater.checkpoint.signing import SigningKey
from headwater.errors import HeadwaterError, IntegrityError
from headwater.export._deps import need
from headwater.export.source import Selection, urn
from headwater.store import CheckpointRecord

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = urn("buildtype", "checkpoint:v1")
FEATURE = "export to in-toto"

_HEX = re.compile(r"[0-9a-f]{64}\Z")


def _version() -> str:
    from headwater import __version__

    return __version__


def statement(sel: Selection, ck: CheckpointRecord) -> dict:
    """The in-toto Statement v1 (SLSA Provenance v1) for one checkpoint, as JSON."""
    b = ck.doc
    m = b["manifest"]
    run = sel.run_of(ck)
    subjects = [{"name": f"{b['task']}/{a['name']}", "digest": {"sha256": a["sha256"]}} for a in b["artifacts"]]
    subjects.append({"name": f"checkpoint/{ck.id}.json", "digest": {"sha256": ck.id}})

    external: dict[str, Any] = {
        "workflow": b["workflow"], "run": b["run"], "campaign": run.campaign, "task": b["task"],
        "attempt": b["attempt"], "params": m["params"], "seed": m["seed"], "specDiff": b["spec_diff"],
    }
    for key in ("branch", "speculative"):
        if key in m:
            external[key] = m[key]
    internal: dict[str, Any] = {"environment": b["env"]}
    if ck.env_fp in sel.envs:
        internal["environmentSummary"] = sel.envs[ck.env_fp]

    code = m["code"]
    deps: list[dict[str, Any]] = []
    task_dep: dict[str, Any] = {"name": f"task:{b['task']}", "uri": urn("task", f"{b['workflow']}/{b['task']}")}
    if _HEX.match(code["task_hash"]):
        task_dep["digest"] = {"sha256": code["task_hash"]}
    else:
        task_dep["annotations"] = {"taskHash": code["task_hash"]}
    deps.append(task_dep)
    if code.get("commit"):
        deps.append({"name": "commit", "digest": {"gitCommit": code["commit"]},
                     "annotations": {"dirty": bool(code.get("dirty", False))}})
    lock = b["env"].get("lock")
    if isinstance(lock, dict) and lock.get("sha256"):
        deps.append({"name": f"lock:{lock.get('file', 'lock')}", "digest": {"sha256": lock["sha256"]}})
    uris = {i.sha256: i for i in ck.inputs}
    for ref, sha in sorted(m["inputs"].items()):
        dep: dict[str, Any] = {"name": f"input:{ref}", "digest": {"sha256": sha}}
        if sha in uris:
            dep["uri"] = uris[sha].uri
            dep["mediaType"] = uris[sha].media_type
        deps.append(dep)
    for asset, version in sorted((m.get("versions") or {}).items()):
        deps.append({"name": f"asset:{asset}", "uri": urn("asset", f"{asset}@{version}"),
                     "annotations": {"version": version}})
    for parent in sorted(set(b["parents"]) | set(m.get("upstream") or [])):
        dep = {"name": f"checkpoint:{parent}", "uri": urn("checkpoint", parent), "digest": {"sha256": parent}}
        ref = sel.refs.get(parent)
        if ref is not None:
            dep["annotations"] = {"run": ref.run, "task": ref.task, "attempt": ref.attempt}
        deps.append(dep)

    byproducts: list[dict[str, Any]] = [
        {"name": "intent", "mediaType": "application/json", "digest": {"sha256": hash_obj(b["intent"])},
         "annotations": b["intent"]},
        {"name": "checkpoint", "uri": urn("checkpoint", ck.id), "digest": {"sha256": ck.id},
         "mediaType": "application/json",
         "annotations": {"status": b["status"], "prev": b["prev"], "parents": b["parents"],
                         "signature": ck.signature, "keyId": ck.key_id}},
    ]
    for name, sha in sorted(((b.get("heavy") or {}).get("artifacts") or {}).items()):
        byproducts.append({"name": f"heavy:{name}", "digest": {"sha256": sha}})

    metadata = {"invocationId": urn("invocation", f"{b['run']}/{b['task']}/{b['attempt']}"),
                "startedOn": b["time"]["start"], "finishedOn": b["time"]["end"]}
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": internal,
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": urn("builder", ck.key_id), "version": {"headwater": _version()}},
                "metadata": metadata,
                "byproducts": byproducts,
            },
        },
    }


def _sslib_key(public_hex: str, keyid: str) -> Any:
    signer = need("securesystemslib.signer", FEATURE)
    return signer.SSlibKey(keyid, "ed25519", "ed25519", {"public": public_hex})


def _signer(key: SigningKey) -> Any:
    """A securesystemslib Signer that signs with a headwater store key."""
    signer = need("securesystemslib.signer", FEATURE)

    class StoreKeySigner(signer.Signer):
        def __init__(self) -> None:
            self._public = _sslib_key(key.public_hex, key.key_id)

        @property
        def public_key(self) -> Any:
            return self._public

        def sign(self, payload: bytes) -> Any:
            return signer.Signature(self._public.keyid, key.sign(payload))

        @classmethod
        def from_priv_key_uri(cls, priv_key_uri: str, public_key: Any, secrets_handler: Any = None) -> Any:
            raise ValueError("a headwater store key is opened with its workspace, not from a key URI")

    return StoreKeySigner()


def envelope(stmt: dict, key: SigningKey) -> dict:
    """``stmt`` as canonical JSON in a DSSE envelope signed by ``key``."""
    dsse = need("securesystemslib.dsse", FEATURE)
    env = dsse.Envelope(payload=canonical_json(stmt), payload_type=PAYLOAD_TYPE, signatures={})
    env.sign(_signer(key))
    return env.to_dict()


def attest(sel: Selection, key: SigningKey) -> list[dict]:
    """One signed DSSE envelope per selected checkpoint, in selection order."""
    return [envelope(statement(sel, ck), key) for ck in sel.checkpoints]


def dumps(envelopes: list[dict], *, bundle: bool) -> str:
    """One envelope as a JSON document, or an in-toto bundle (JSON Lines)."""
    if bundle:
        return "".join(json.dumps(e, sort_keys=True) + "\n" for e in envelopes)
    if len(envelopes) != 1:
        raise HeadwaterError(f"{len(envelopes)} attestations make a bundle; write them as .intoto.jsonl")
    return json.dumps(envelopes[0], indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------------
# verifying


def load_envelopes(path: str | Path) -> list[dict]:
    """Read one DSSE envelope (JSON) or an in-toto bundle (JSON Lines)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, dict):
        return [whole]
    envelopes = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise IntegrityError(f"{path}: line {n} is not JSON ({exc})", subject=str(path)) from None
        if not isinstance(item, dict):
            raise IntegrityError(f"{path}: line {n} is not a DSSE envelope", subject=str(path))
        envelopes.append(item)
    if not envelopes:
        raise IntegrityError(f"{path}: no attestation in the file", subject=str(path))
    return envelopes


def load_public_key(path: str | Path) -> str:
    """The raw Ed25519 public key (hex) in a PEM file or a 64-hex-digit file.

    A PEM private key (such as the workspace's ``signing.key``) is accepted
    too; only its public half is used.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    raw = Path(path).read_bytes().strip()
    try:
        if raw.startswith(b"-----BEGIN") and b"PRIVATE" in raw.split(b"\n", 1)[0]:
            private = serialization.load_pem_private_key(raw, password=None)
            if not isinstance(private, Ed25519PrivateKey):
                raise ValueError("not an Ed25519 key")
            public = private.public_key()
        elif raw.startswith(b"-----BEGIN"):
            public = serialization.load_pem_public_key(raw)
            if not isinstance(public, Ed25519PublicKey):
                raise ValueError("not an Ed25519 key")
        else:
            text = raw.decode("ascii")
            if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
                raise ValueError("expected PEM or 64 hex digits")
            return text.lower()
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path}: not a readable Ed25519 public key ({exc})", subject=str(path)) from None
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw_public.hex()


def public_pem(public_hex: str) -> str:
    """The PEM (SubjectPublicKeyInfo) form of a raw Ed25519 public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@dataclass
class Checked:
    """What verifying one envelope found. ``problems`` empty means valid."""

    index: int
    subjects: list[dict] = field(default_factory=list)
    invocation: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class AttestationReport:
    """The result of ``headwater attest verify``."""

    path: str
    key_id: str
    envelopes: list[Checked] = field(default_factory=list)
    missing_subjects: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.envelopes) and all(e.ok for e in self.envelopes) and not self.missing_subjects

    def to_json(self) -> dict:
        return {
            "ok": self.ok, "path": self.path, "key_id": self.key_id,
            "attestations": [{"index": e.index, "ok": e.ok, "invocation": e.invocation,
                              "subjects": e.subjects, "problems": e.problems} for e in self.envelopes],
            "missing_subjects": self.missing_subjects,
        }


def _check_statement(payload: bytes, checked: Checked) -> None:
    try:
        stmt = json.loads(payload)
    except ValueError:
        checked.problems.append("payload is not JSON")
        return
    if not isinstance(stmt, dict):
        checked.problems.append("payload is not a JSON object")
        return
    checked.subjects = [s for s in stmt.get("subject") or [] if isinstance(s, dict)]
    if stmt.get("predicateType") != PREDICATE_TYPE:
        checked.problems.append(f"predicateType is {stmt.get('predicateType')!r}, not {PREDICATE_TYPE}")
    meta = ((stmt.get("predicate") or {}).get("runDetails") or {}).get("metadata") or {}
    checked.invocation = meta.get("invocationId")
    json_format = need("google.protobuf.json_format", FEATURE)
    statement_pb2 = need("in_toto_attestation.v1.statement_pb2", FEATURE)
    statement_mod = need("in_toto_attestation.v1.statement", FEATURE)
    provenance_pb2 = need("in_toto_attestation.predicates.provenance.v1.provenance_pb2", FEATURE)
    try:
        pb = json_format.ParseDict(stmt, statement_pb2.Statement())
        statement_mod.Statement.copy_from_pb(pb).validate()
        json_format.ParseDict(stmt.get("predicate") or {}, provenance_pb2.Provenance())
    except (json_format.ParseError, ValueError, TypeError) as exc:
        checked.problems.append(f"not a valid in-toto SLSA provenance statement: {exc}")


def verify(path: str | Path, public_hex: str, subjects: Iterable[str | Path] = ()) -> AttestationReport:
    """Check every envelope in ``path`` against the Ed25519 key ``public_hex``.

    An envelope is valid when its DSSE signature verifies under the key
    (securesystemslib), its payload type is in-toto's, and its payload is an
    in-toto Statement v1 (in-toto-attestation ``Statement.validate``) whose
    predicate parses as SLSA Provenance v1. Any change to a signed byte, a
    subject digest included, breaks the signature. Each file in
    ``subjects`` must hash to a subject digest of some valid envelope.
    """
    dsse = need("securesystemslib.dsse", FEATURE)
    exceptions = need("securesystemslib.exceptions", FEATURE)
    keyid = hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]
    key = _sslib_key(public_hex, keyid)
    report = AttestationReport(str(path), keyid)
    for index, raw in enumerate(load_envelopes(path)):
        checked = Checked(index)
        report.envelopes.append(checked)
        try:
            env = dsse.Envelope.from_dict(json.loads(json.dumps(raw)))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            checked.problems.append(f"not a DSSE envelope: {exc!r}")
            continue
        if env.payload_type != PAYLOAD_TYPE:
            checked.problems.append(f"payloadType is {env.payload_type!r}, not {PAYLOAD_TYPE}")
        try:
            env.verify([key], 1)
        except (exceptions.VerificationError, ValueError):
            checked.problems.append(f"DSSE signature does not verify under key {keyid}")
        _check_statement(env.payload, checked)
    attested = {s.get("digest", {}).get("sha256") for e in report.envelopes if e.ok for s in e.subjects}
    for file in subjects:
        digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()
        if digest not in attested:
            report.missing_subjects.append(str(file))
    return report
