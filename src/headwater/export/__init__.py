"""Checkpoints in the standards' formats, each checked by the standard's own tools.

``source``       what an export covers: a :class:`~headwater.export.source.Selection`
                 of checkpoints read from the store (one, a run, a campaign,
                 a workflow, an asset's blast radius, or an explicit set)
``intoto``       in-toto Statement v1 + SLSA Provenance v1 in DSSE envelopes,
                 signed with the store key; verification
``rocrate``      Process Run / Provenance Run RO-Crates (profiles 0.5, RO-Crate 1.1)
``openlineage``  OpenLineage RunEvents with standard and ``headwater_`` facets
``prov``         W3C PROV documents, PROV-JSON and PROV-N

The standards' libraries belong to the ``export`` extra and are imported
only when an export runs; without them an export raises
:class:`~headwater.errors.OptionalDependency`. ``docs/export.md`` maps the
five bundle parts onto each standard.
"""

from headwater.export.source import (
    Selection,
    select,
    select_asset,
    select_campaign,
    select_checkpoint,
    select_checkpoints,
    select_run,
    select_workflow,
)

__all__ = [
    "Selection",
    "select",
    "select_asset",
    "select_campaign",
    "select_checkpoint",
    "select_checkpoints",
    "select_run",
    "select_workflow",
]
