"""The cascade study: when does infrastructure-level oversight beat per-workflow oversight?

A discrete-event simulator, in simulated time, of a fleet of workflows that
share libraries, datasets, models, reference claims and compute pools and
consume each other's claims. Silent errors are planted in shared assets and
in single workflows; each replicate plays the same fleet under four
strategies (none, per-workflow, infrastructure, both). The simulator drives
the real cores: each workflow run is a :class:`headwater.schedule.Scheduler`,
and infrastructure oversight is decided by :mod:`headwater.oversight`
(dispatch decisions, breaker, monitors, canaries, blast radius, taint,
policy rollout).

* :mod:`~headwater.study.params` -- every parameter and its default;
* :mod:`~headwater.study.fleet` -- the fleet and all its random draws;
* :mod:`~headwater.study.sim` -- the event loop around the scheduling core;
* :mod:`~headwater.study.infra` -- the oversight core applied to the fleet;
* :mod:`~headwater.study.ledger` -- outcomes, counted so they reconcile;
* :mod:`~headwater.study.sweep` -- regimes and parallel replicates;
* :mod:`~headwater.study.analysis` -- paired comparisons, bootstrap intervals;
* :mod:`~headwater.study.report` -- markdown, JSON and plots.
"""

from headwater.study.fleet import Fleet, make_fleet
from headwater.study.ledger import Outcome, ReconcileError
from headwater.study.params import STRATEGIES, Params
from headwater.study.run import run_study
from headwater.study.sim import simulate

__all__ = ["STRATEGIES", "Fleet", "Outcome", "Params", "ReconcileError", "make_fleet", "run_study", "simulate"]
