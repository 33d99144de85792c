"""Checkpoint bundles: the provenance record written at every stage boundary.

The public names are listed in ``__all__``; the submodules are:

``canonical``  canonical JSON and hashing (the byte form everything is over)
``bundle``     building, validating and identifying version-1 bundles; spec
               diffs, heavy-capture triggers, cache keys and task seeds
``signing``    Ed25519 keys and signatures
``env``        the environment fingerprint and git state (reads the machine)
``profiles``   simulation and analysis profile parts
``verify``     integrity checks of one checkpoint and of a run's hash chain

All but ``env`` are pure: no clock, no disk, no subprocess.
"""

from headwater.checkpoint.bundle import (
    HEAVY_TRIGGERS,
    STATUSES,
    VERSION,
    build_bundle,
    bundle_bytes,
    bundle_id,
    cache_key,
    decode_bundle,
    derive_seed,
    heavy_triggers,
    load_bundle,
    make_spec_diff,
    validate_bundle,
)
from headwater.checkpoint.canonical import canonical_json, hash_obj, sha256_hex, to_jsonable
from headwater.checkpoint.env import (
    EnvFingerprint,
    clear_cache,
    diff_packages,
    fingerprint,
    full_export,
    git_state,
)
from headwater.checkpoint.profiles import (
    analysis_part,
    check_invariant,
    simulation_part,
    table_schema,
    transform_record,
    violated,
)
from headwater.checkpoint.signing import SigningKey, load_or_create, verify_signature
from headwater.checkpoint.verify import check_chain, check_checkpoint, seal

__all__ = [
    "HEAVY_TRIGGERS",
    "STATUSES",
    "VERSION",
    "EnvFingerprint",
    "SigningKey",
    "analysis_part",
    "build_bundle",
    "bundle_bytes",
    "bundle_id",
    "cache_key",
    "canonical_json",
    "check_chain",
    "check_checkpoint",
    "check_invariant",
    "clear_cache",
    "decode_bundle",
    "derive_seed",
    "diff_packages",
    "fingerprint",
    "full_export",
    "git_state",
    "hash_obj",
    "heavy_triggers",
    "load_bundle",
    "load_or_create",
    "make_spec_diff",
    "seal",
    "sha256_hex",
    "simulation_part",
    "table_schema",
    "to_jsonable",
    "transform_record",
    "validate_bundle",
    "verify_signature",
    "violated",
]
