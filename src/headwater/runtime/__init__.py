"""The shell that runs real work: coordinator loop, agents, executors, workspace."""

from headwater.runtime.context import Context, TaskOutcome
from headwater.runtime.coordinator import RunOptions, RunSummary, TaskSummary, resume_run, run_workflow
from headwater.runtime.workspace import Workspace, open_workspace

__all__ = [
    "Context", "RunOptions", "RunSummary", "TaskOutcome", "TaskSummary", "Workspace",
    "open_workspace", "resume_run", "run_workflow",
]
