"""Compiling task definitions: validation errors and the derived ordering data."""

from __future__ import annotations

import pytest

from headwater.errors import RunError
from headwater.schedule import Scheduler, TaskDef
from headwater.schedule.graph import compile_graph
from headwater.schedule.depth import ADAPTIVE_START

from .helpers import T


@pytest.mark.parametrize(
    ("tasks", "task", "fragment"),
    [
        ([T("a", "nope")], "a", "unknown dependency 'nope'"),
        ([T("a", "a")], "a", "itself"),
        ([T("a", "b"), T("b", "a")], "a", "cycle"),
        ([T("a"), T("b", "a"), T("c", "b"), T("a2", "c", "d"), T("d", "a2")], "a2", "cycle"),
        ([T("a"), T("a")], "a", "declared twice"),
        ([T("d", branches=("x",))], "d", "branch 'x' is not a task"),
        ([T("d", branches=("d",))], "d", "its own branch"),
        ([T("d", branches=("x", "x")), T("x")], "d", "listed twice"),
        ([T("d", branches=("x",)), T("e", branches=("x",)), T("x")], "x", "alternative of both"),
        ([T("d", "y", branches=("x",)), T("x"), T("y", "x")], "d", "cycle"),
        ([T("a", verify=-1)], "a", "verify"),
        ([T("a", reject=0)], "a", "reject"),
        ([T("a", retries=-1)], "a", "retries"),
        ([T("a", expected_duration=float("nan"))], "a", "expected_duration"),
    ],
)
def test_bad_definitions_raise_run_error_naming_the_task(tasks, task, fragment):
    with pytest.raises(RunError) as err:
        Scheduler(tasks)
    assert err.value.task == task
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"speculate": -1}, "speculate"),
        ({"speculate": 9}, "speculate"),
        ({"speculate": "sometimes"}, "speculate"),
        ({"speculate": True}, "speculate"),
        ({"predict": "oracle"}, "predict"),
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"backoff": (1.0, 0.5, 10.0)}, "backoff"),
        ({"max_lost": -1}, "max_lost"),
    ],
)
def test_bad_options_raise_run_error(kwargs, fragment):
    with pytest.raises(RunError, match=fragment):
        Scheduler([T("a")], **kwargs)


def test_speculate_accepts_words_and_digits():
    assert Scheduler([T("a")], speculate="off").speculation_depth() == 0
    assert Scheduler([T("a")], speculate="3").speculation_depth() == 3
    assert Scheduler([T("a")], speculate="adaptive").speculation_depth() == ADAPTIVE_START


def test_critical_path_topological_order_and_folded_decider():
    g = compile_graph([
        T("a", expected_duration=2.0),
        T("d", "a", branches=("x", "y")),
        T("x", "d", "a", expected_duration=5.0),
        T("y", "d"),
        T("z", "x", "y", "x"),
    ])
    i = g.index
    assert g.controller[i["x"]] == i["d"] and g.controller[i["y"]] == i["d"]
    assert g.parents[i["x"]] == (i["a"],)  # the decider is a control edge, not a data edge
    assert g.parents[i["y"]] == ()
    assert g.parents[i["z"]] == (i["x"], i["y"])  # duplicates dropped
    assert g.alternatives[i["d"]] == (i["x"], i["y"])
    assert g.critical[i["z"]] == 1.0
    assert g.critical[i["x"]] == 6.0
    assert g.critical[i["d"]] == 7.0
    assert g.critical[i["a"]] == 9.0
    assert list(g.topo) == [i[n] for n in ("a", "d", "x", "y", "z")]
    assert g.keys[i["a"]] == (0, -9.0, 0)


def test_empty_run_is_done_and_reports_once():
    s = Scheduler([])
    assert s.done and s.status == "succeeded"
    assert [type(a).__name__ for a in s.expire(0.0)] == ["RunFinished"]
    assert s.expire(1.0) == []


def test_taskdef_defaults():
    d = TaskDef("a")
    assert (d.role, d.verify, d.reject, d.verifier_role, d.expected_duration) == ("worker", 0, 1, "verifier", 1.0)
