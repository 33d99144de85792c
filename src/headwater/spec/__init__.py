"""Workflow specs: declared in Python or YAML, validated, hashed and diffed.

A workflow is a :class:`Workflow` of parameters (:class:`Param`) and tasks
(:class:`TaskSpec`), each task with a verification :class:`Quorum` and an
:class:`Intent`. :func:`load_workflow` reads one from a ``.py`` or YAML file
and validates it; :meth:`Workflow.describe` gives its canonical description,
whose hash identifies the spec version and whose :func:`diff_specs` is the
spec diff a checkpoint records.

This package is part of the pure core: apart from reading a spec file and
importing a Python spec, it does no I/O.

Modules: ``model`` (the frozen values), ``workflow`` (declaring, hashing,
diffing), ``validate`` (checks and graph helpers), ``yaml_spec`` (the YAML
format), ``loader`` (files).
"""

from headwater.spec.loader import load_workflow
from headwater.spec.model import REQUIRED, Intent, Param, Quorum, TaskSpec, quorum
from headwater.spec.workflow import Workflow, diff_specs

__all__ = [
    "REQUIRED",
    "Intent",
    "Param",
    "Quorum",
    "TaskSpec",
    "Workflow",
    "diff_specs",
    "load_workflow",
    "quorum",
]
