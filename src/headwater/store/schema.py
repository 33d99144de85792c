"""The store schema: one SQLAlchemy Core ``MetaData`` for SQLite and PostgreSQL.

Only portable types are used (``String``, ``Text``, ``Integer``,
``BigInteger``, ``Float``, ``Boolean``, ``JSON``, ``LargeBinary``), so the same
tables exist on both dialects. Timestamps are Unix seconds as ``Float``
(double precision on both). Every constraint and index has an explicit name,
so the Alembic migrations in :mod:`headwater.store.migrations` can create the
same objects and ``alembic.autogenerate.compare_metadata`` reports no
difference between a migrated database and this module.

Layout, following the data model in ARCHITECTURE.md:

* ``campaign``, ``workflow_spec`` (spec versions by content hash), ``run``;
* ``task_instance``: the current state of each task of a run;
* ``checkpoint``: the signed bundle (canonical JSON bytes) plus the columns
  queried on (workflow, task, status, cache key, run order ``seq``);
* ``artifact`` (one row per distinct sha256) and ``checkpoint_artifact``
  linking checkpoints to the artifacts they consumed (``in``) and produced
  (``out``), in order (``pos``);
* ``claim_value`` and ``asset_use``: what a checkpoint published and which
  shared asset versions it used;
* ``env_snapshot``: one row per distinct environment fingerprint;
* ``event``: the append-only event / audit log;
* oversight (migration 0002): ``asset``, ``asset_version`` (status of
  versions that have one), ``asset_pin``, ``policy`` (versioned, with its
  rollout mode), ``canary``, ``checkpoint_mark`` (sandboxed results) and
  ``audit`` (every oversight action, naming the policy or signal behind it).

Foreign keys tie checkpoints and task instances to their run, and
checkpoint children (links, claims, asset uses) to their checkpoint; a
checkpoint's ``parents``/``prev`` and the event log's ids are deliberately
not constrained, since they may name checkpoints or runs from other stores
(imports) or ones not yet written.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# An autoincrementing 64-bit key. SQLite only autoincrements a column declared
# exactly INTEGER PRIMARY KEY (the rowid alias), hence the variant.
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

campaign = sa.Table(
    "campaign",
    metadata,
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("name", name="pk_campaign"),
)

workflow_spec = sa.Table(
    "workflow_spec",
    metadata,
    sa.Column("spec_hash", sa.String(), nullable=False),
    sa.Column("workflow", sa.String(), nullable=False),
    sa.Column("spec", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("spec_hash", name="pk_workflow_spec"),
    sa.Index("ix_workflow_spec_workflow_created", "workflow", "created_at"),
)

run = sa.Table(
    "run",
    metadata,
    sa.Column("id", sa.String(), nullable=False),
    sa.Column("workflow", sa.String(), nullable=False),
    sa.Column("spec_hash", sa.String(), nullable=False),
    sa.Column("campaign", sa.String(), nullable=False),
    sa.Column("params", sa.JSON(), nullable=False),
    sa.Column("seed", sa.BigInteger(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("why", sa.Text(), nullable=True),
    sa.Column("source", sa.Text(), nullable=True),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("finished_at", sa.Float(), nullable=True),
    sa.Column("options", sa.JSON(), nullable=False),
    sa.Column("tags", sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_run"),
    sa.ForeignKeyConstraint(["campaign"], ["campaign.name"], name="fk_run_campaign"),
    sa.Index("ix_run_workflow_created", "workflow", "created_at"),
    sa.Index("ix_run_created", "created_at"),
    sa.Index("ix_run_campaign", "campaign"),
)

task_instance = sa.Table(
    "task_instance",
    metadata,
    sa.Column("run_id", sa.String(), nullable=False),
    sa.Column("task", sa.String(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(), nullable=False),
    sa.Column("agent", sa.String(), nullable=True),
    sa.Column("fencing", sa.BigInteger(), nullable=True),
    sa.Column("lease_expiry", sa.Float(), nullable=True),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("checkpoint_id", sa.String(), nullable=True),
    sa.PrimaryKeyConstraint("run_id", "task", name="pk_task_instance"),
    sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_task_instance_run"),
)

checkpoint = sa.Table(
    "checkpoint",
    metadata,
    sa.Column("id", sa.String(), nullable=False),
    sa.Column("run_id", sa.String(), nullable=False),
    sa.Column("workflow", sa.String(), nullable=False),
    sa.Column("task", sa.String(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("bundle", sa.LargeBinary(), nullable=False),
    sa.Column("signature", sa.Text(), nullable=False),
    sa.Column("key_id", sa.String(), nullable=False),
    sa.Column("parents", sa.JSON(), nullable=False),
    sa.Column("prev", sa.String(), nullable=True),
    sa.Column("cache_key", sa.String(), nullable=True),
    sa.Column("env_fp", sa.String(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("cache_valid", sa.Boolean(), nullable=False),
    sa.Column("status_reason", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_checkpoint"),
    sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_checkpoint_run"),
    sa.Index("ix_checkpoint_cache_key", "cache_key"),
    sa.Index("ix_checkpoint_workflow_task_created", "workflow", "task", "created_at"),
    sa.Index("ix_checkpoint_run_seq", "run_id", "seq", unique=True),
    # Covering for lineage walks: a checkpoint's run and place without reading its bundle (0002).
    sa.Index("ix_checkpoint_lineage", "id", "run_id", "workflow", "task", "status", "seq"),
)

artifact = sa.Table(
    "artifact",
    metadata,
    sa.Column("sha256", sa.String(), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("media_type", sa.String(), nullable=False),
    sa.Column("uri", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("sha256", name="pk_artifact"),
)

# The primary key (checkpoint_id, direction, pos) is also the index by
# checkpoint: it serves "the inputs and outputs of these checkpoints" in order.
checkpoint_artifact = sa.Table(
    "checkpoint_artifact",
    metadata,
    sa.Column("checkpoint_id", sa.String(), nullable=False),
    sa.Column("direction", sa.String(), nullable=False),
    sa.Column("pos", sa.Integer(), nullable=False),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("sha256", sa.String(), nullable=False),
    sa.PrimaryKeyConstraint("checkpoint_id", "direction", "pos", name="pk_checkpoint_artifact"),
    sa.ForeignKeyConstraint(
        ["checkpoint_id"], ["checkpoint.id"], name="fk_checkpoint_artifact_checkpoint"
    ),
    sa.ForeignKeyConstraint(["sha256"], ["artifact.sha256"], name="fk_checkpoint_artifact_artifact"),
    # Covering for lineage: who consumed these bytes (migration 0002).
    sa.Index("ix_checkpoint_artifact_lineage", "sha256", "direction", "checkpoint_id"),
)

claim_value = sa.Table(
    "claim_value",
    metadata,
    sa.Column("id", AutoId, nullable=False, autoincrement=True),
    sa.Column("checkpoint_id", sa.String(), nullable=False),
    sa.Column("key", sa.String(), nullable=False),
    sa.Column("value", sa.JSON(), nullable=True),
    sa.Column("uncertainty", sa.Float(), nullable=True),
    sa.Column("units", sa.String(), nullable=True),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_claim_value"),
    sa.ForeignKeyConstraint(["checkpoint_id"], ["checkpoint.id"], name="fk_claim_value_checkpoint"),
    sa.Index("ix_claim_value_key", "key"),
    sa.Index("ix_claim_value_lineage", "checkpoint_id", "key"),
)

asset_use = sa.Table(
    "asset_use",
    metadata,
    sa.Column("id", AutoId, nullable=False, autoincrement=True),
    sa.Column("checkpoint_id", sa.String(), nullable=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("version", sa.String(), nullable=False),
    sa.Column("direction", sa.String(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_asset_use"),
    sa.ForeignKeyConstraint(["checkpoint_id"], ["checkpoint.id"], name="fk_asset_use_checkpoint"),
    sa.Index("ix_asset_use_lineage", "kind", "name", "version", "direction", "checkpoint_id"),
    sa.Index("ix_asset_use_checkpoint", "checkpoint_id"),
)

env_snapshot = sa.Table(
    "env_snapshot",
    metadata,
    sa.Column("fingerprint", sa.String(), nullable=False),
    sa.Column("summary", sa.JSON(), nullable=False),
    sa.Column("packages", sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint("fingerprint", name="pk_env_snapshot"),
)

event = sa.Table(
    "event",
    metadata,
    sa.Column("id", AutoId, nullable=False, autoincrement=True),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("run_id", sa.String(), nullable=True),
    sa.Column("task", sa.String(), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=True),
    sa.Column("agent", sa.String(), nullable=True),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_event"),
    sa.Index("ix_event_run_id", "run_id"),
    sa.Index("ix_event_kind", "kind"),
)

# ---------------------------------------------------------------- oversight
# Shared assets, their versions' statuses, pins, policies, canaries, checkpoint
# trust marks and the oversight audit log (migration 0002). Asset versions
# that were merely used have no row: a version without one is trusted.

asset = sa.Table(
    "asset",
    metadata,
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint("kind", "name", name="pk_asset"),
)

asset_version = sa.Table(
    "asset_version",
    metadata,
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("version", sa.String(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("kind", "name", "version", name="pk_asset_version"),
    sa.Index("ix_asset_version_status", "status"),
)

asset_pin = sa.Table(
    "asset_pin",
    metadata,
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("scope", sa.String(), nullable=False),
    sa.Column("version", sa.String(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("kind", "name", "scope", name="pk_asset_pin"),
)

policy = sa.Table(
    "policy",
    metadata,
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("mode", sa.String(), nullable=False),
    sa.Column("share", sa.Float(), nullable=False),
    sa.Column("body", sa.JSON(), nullable=False),
    sa.Column("digest", sa.String(), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("name", "version", name="pk_policy"),
)

canary = sa.Table(
    "canary",
    metadata,
    sa.Column("id", AutoId, nullable=False, autoincrement=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("version", sa.String(), nullable=False),
    sa.Column("baseline", sa.String(), nullable=True),
    sa.Column("metrics", sa.JSON(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("verdict", sa.JSON(), nullable=True),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("decided_at", sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_canary"),
    sa.Index("ix_canary_asset", "kind", "name", "version"),
)

# No foreign key to checkpoint: a mark is written when the runtime decides to
# sandbox, which may be before the checkpoint's batch reaches the store.
checkpoint_mark = sa.Table(
    "checkpoint_mark",
    metadata,
    sa.Column("checkpoint_id", sa.String(), nullable=False),
    sa.Column("mark", sa.String(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("checkpoint_id", name="pk_checkpoint_mark"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", AutoId, nullable=False, autoincrement=True),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("actor", sa.String(), nullable=False),
    sa.Column("action", sa.String(), nullable=False),
    sa.Column("subject", sa.String(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("cause", sa.String(), nullable=True),
    sa.Column("policy", sa.String(), nullable=True),
    sa.Column("policy_version", sa.Integer(), nullable=True),
    sa.Column("mode", sa.String(), nullable=True),
    sa.Column("run_id", sa.String(), nullable=True),
    sa.Column("task", sa.String(), nullable=True),
    sa.Column("signal", sa.JSON(), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_audit"),
    sa.Index("ix_audit_subject", "subject"),
    sa.Index("ix_audit_run_id", "run_id"),
    sa.Index("ix_audit_ts", "ts"),
)

# ------------------------------------------------------------------ queue
# The shared work queue (migration 0003): one ``queue_run`` row per run
# served from the store (its ``version`` grows with every result, failure and reap),
# one ``queue_task`` row per task (current attempt, counters, edges), the
# claimable ``queue_item`` rows (one per run attempt, ``k`` per verification),
# verifiers' ``queue_verdict`` rows (one per verifier and attempt, which is
# what keeps verifiers distinct) and the ``queue_lease`` log whose ids are
# the fencing tokens.

queue_run = sa.Table(
    "queue_run",
    metadata,
    sa.Column("run_id", sa.String(), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("total", sa.Integer(), nullable=False),
    sa.Column("final", sa.Integer(), nullable=False),
    sa.Column("options", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("run_id", name="pk_queue_run"),
    sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_queue_run_run"),
    sa.Index("ix_queue_run_status", "status"),
)

queue_task = sa.Table(
    "queue_task",
    metadata,
    sa.Column("run_id", sa.String(), nullable=False),
    sa.Column("task", sa.String(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(), nullable=False),
    sa.Column("role", sa.String(), nullable=False),
    sa.Column("verifier_role", sa.String(), nullable=False),
    sa.Column("verify", sa.Integer(), nullable=False),
    sa.Column("reject", sa.Integer(), nullable=False),
    sa.Column("retries", sa.Integer(), nullable=False),
    sa.Column("priority", sa.Integer(), nullable=False),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("refutations", sa.Integer(), nullable=False),
    sa.Column("deps", sa.JSON(), nullable=False),
    sa.Column("dependents", sa.JSON(), nullable=False),
    sa.Column("branches", sa.JSON(), nullable=False),
    sa.Column("waiting", sa.Integer(), nullable=False),
    sa.Column("skipped_inputs", sa.Integer(), nullable=False),
    sa.Column("producer", sa.String(), nullable=True),
    sa.Column("checkpoint_id", sa.String(), nullable=True),
    sa.Column("decision", sa.String(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("run_id", "task", name="pk_queue_task"),
    sa.ForeignKeyConstraint(["run_id"], ["queue_run.run_id"], name="fk_queue_task_queue_run"),
    sa.Index("ix_queue_task_run_state", "run_id", "state"),
)

queue_item = sa.Table(
    "queue_item",
    metadata,
    sa.Column("id", AutoId, nullable=False, autoincrement=True),
    sa.Column("run_id", sa.String(), nullable=False),
    sa.Column("task", sa.String(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("role", sa.String(), nullable=False),
    sa.Column("state", sa.String(), nullable=False),
    sa.Column("priority", sa.Integer(), nullable=False),
    sa.Column("not_before", sa.Float(), nullable=False),
    sa.Column("token", sa.BigInteger(), nullable=True),
    sa.Column("holder", sa.String(), nullable=True),
    sa.Column("lease_expiry", sa.Float(), nullable=True),
    sa.Column("producer", sa.String(), nullable=True),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_queue_item"),
    sa.ForeignKeyConstraint(["run_id", "task"], ["queue_task.run_id", "queue_task.task"],
                            name="fk_queue_item_queue_task"),
    sa.Index("ix_queue_item_claim", "state", "role", "priority", "id"),
    sa.Index("ix_queue_item_expiry", "state", "lease_expiry"),
    sa.Index("ix_queue_item_task", "run_id", "task", "attempt"),
    sa.Index("ix_queue_item_token", "token", unique=True),
)

queue_verdict = sa.Table(
    "queue_verdict",
    metadata,
    sa.Column("run_id", sa.String(), nullable=False),
    sa.Column("task", sa.String(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("verifier", sa.String(), nullable=False),
    sa.Column("approve", sa.Boolean(), nullable=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("token", sa.BigInteger(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("run_id", "task", "attempt", "verifier", name="pk_queue_verdict"),
)

queue_lease = sa.Table(
    "queue_lease",
    metadata,
    sa.Column("token", AutoId, nullable=False, autoincrement=True),
    sa.Column("item_id", sa.BigInteger(), nullable=False),
    sa.Column("holder", sa.String(), nullable=False),
    sa.Column("granted_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("token", name="pk_queue_lease"),
)

# ---------------------------------------------------------------- API tokens
# Bearer tokens of the HTTP API (only a hash of each secret) and the Ed25519
# public keys remote agents register under them (migration 0004).

api_token = sa.Table(
    "api_token",
    metadata,
    sa.Column("id", sa.String(), nullable=False),
    sa.Column("secret_hash", sa.String(), nullable=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("roles", sa.JSON(), nullable=False),
    sa.Column("scope_kind", sa.String(), nullable=True),
    sa.Column("scope_value", sa.String(), nullable=True),
    sa.Column("label", sa.Text(), nullable=True),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("revoked_at", sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_api_token"),
)

agent_key = sa.Table(
    "agent_key",
    metadata,
    sa.Column("agent", sa.String(), nullable=False),
    sa.Column("token_id", sa.String(), nullable=False),
    sa.Column("public_hex", sa.String(), nullable=False),
    sa.Column("key_id", sa.String(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("agent", "key_id", name="pk_agent_key"),
    sa.ForeignKeyConstraint(["token_id"], ["api_token.id"], name="fk_agent_key_token"),
    sa.Index("ix_agent_key_token", "token_id"),
    sa.Index("ix_agent_key_key_id", "key_id"),
)

# The lineage index (0005): derived from checkpoint, checkpoint_artifact,
# claim_value and asset_use, append-only, caught up by every blast-radius
# query (headwater.store.assets.LineageIndex). A node is a checkpoint under a
# small integer id, with the labels of its outputs (a JSON array of
# ``artifact:<sha256>`` and ``claim:KEY@VERSION``); an edge is a checkpoint
# (``child``) that follows ``parent`` through the output ``via``; an asset is
# a version some checkpoint recorded, and a use a node that consumed it.
lineage_node = sa.Table(
    "lineage_node",
    metadata,
    sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
    sa.Column("checkpoint_id", sa.String(), nullable=False),
    sa.Column("outputs", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_lineage_node"),
    sa.UniqueConstraint("checkpoint_id", name="uq_lineage_node_checkpoint"),
)

lineage_edge = sa.Table(
    "lineage_edge",
    metadata,
    sa.Column("parent", sa.Integer(), nullable=False),
    sa.Column("via", sa.String(), nullable=False),
    sa.Column("child", sa.Integer(), nullable=False),
    sa.Index("ix_lineage_edge_parent", "parent", "child", "via"),
)

lineage_asset = sa.Table(
    "lineage_asset",
    metadata,
    sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("version", sa.String(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_lineage_asset"),
    sa.UniqueConstraint("kind", "name", "version", name="uq_lineage_asset"),
)

lineage_use = sa.Table(
    "lineage_use",
    metadata,
    sa.Column("asset", sa.Integer(), nullable=False),
    sa.Column("node", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("asset", "node", name="pk_lineage_use"),
)
