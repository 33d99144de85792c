"""headwater: provenance, speculative verification and fleet oversight for
long scientific workflows run by agents.

The public API is what ``__all__`` lists; everything else is internal.
"""

from headwater.errors import HeadwaterError, IntegrityError, NotFound, RunError, SpecError, StoreError
from headwater.runtime.context import Context
from headwater.runtime.coordinator import RunOptions, RunSummary, resume_run, run_workflow
from headwater.runtime.workspace import Workspace, open_workspace
from headwater.spec import Workflow, load_workflow, quorum
from headwater.store import open_store

__version__ = "0.1.0"

__all__ = [
    "Context",
    "HeadwaterError",
    "IntegrityError",
    "NotFound",
    "RunError",
    "RunOptions",
    "RunSummary",
    "SpecError",
    "StoreError",
    "Workflow",
    "Workspace",
    "load_workflow",
    "open_store",
    "open_workspace",
    "quorum",
    "resume_run",
    "run_workflow",
]
