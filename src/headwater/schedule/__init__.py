"""Pure scheduling core: task states, verification quorum, speculation depth,
branch prediction and flush, scoreboard and recheck policies.

The design is described in :mod:`headwater.schedule.scheduler`.
"""

from headwater.schedule.depth import MAX_DEPTH
from headwater.schedule.recheck import Adaptive, Backoff, Eager, RecheckInfo, RecheckPolicy, recheck_policy
from headwater.schedule.scheduler import Scheduler
from headwater.schedule.scoreboard import Scoreboard, TaskBoard
from headwater.schedule.states import (
    FINAL_STATES,
    LIVE_STATES,
    Action,
    Cancel,
    Commit,
    Fail,
    Lease,
    Requeue,
    RunFinished,
    Skip,
    Squash,
    State,
    TaskDef,
)

__all__ = [
    "FINAL_STATES",
    "LIVE_STATES",
    "MAX_DEPTH",
    "Action",
    "Adaptive",
    "Backoff",
    "Cancel",
    "Commit",
    "Eager",
    "Fail",
    "Lease",
    "RecheckInfo",
    "RecheckPolicy",
    "Requeue",
    "RunFinished",
    "Scheduler",
    "Scoreboard",
    "Skip",
    "Squash",
    "State",
    "TaskBoard",
    "TaskDef",
    "recheck_policy",
]
