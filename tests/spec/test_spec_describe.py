"""Spec description, hashes and diffs; topological order and the graph."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.checkpoint.canonical import canonical_json, hash_obj
from headwater.errors import SpecError
from headwater.spec import Workflow, diff_specs


def noop(ctx):
    return None


def build(*, alpha: float = 0.5, variant: int = 1, retries: int = 0, extra: bool = False) -> Workflow:
    """The same workflow each call, with one thing changeable at a time."""
    wf = Workflow("decay", profile="simulation", tags=["physics", "demo"], description="toy")
    wf.param("alpha", "float", default=alpha, help="rate")
    wf.param("label", "str")

    @wf.task(uses=["lib:numpy"])
    def simulate(ctx):
        """Goal: Simulate decays."""
        return None

    if variant == 1:

        @wf.task(after=simulate, verify=2, retries=retries)
        def solve(ctx):
            return None

    else:

        @wf.task(after=simulate, verify=2, retries=retries)
        def solve(ctx):
            return "changed"

    @wf.verifier(solve)
    def check(ctx, bundle):
        return True

    wf.add_command_task("report", "echo done > {outputs[r]}", after=["solve", "simulate"], outputs={"r": "r.txt"})
    if extra:
        wf.task(noop, name="new_task", after="solve")
    return wf


def test_description_is_canonical_json_and_complete():
    wf = build()
    doc = wf.describe()
    assert json.loads(canonical_json(doc)) == doc
    assert doc["name"] == "decay" and doc["profile"] == "simulation"
    assert doc["tags"] == ["demo", "physics"]
    assert doc["params"]["alpha"] == {"type": "float", "required": False, "default": 0.5, "help": "rate"}
    assert doc["params"]["label"] == {"type": "str", "required": True, "default": None, "help": ""}
    solve = doc["tasks"]["solve"]
    assert solve["after"] == ["simulate"]
    assert solve["quorum"] == {"k": 2, "reject": 1}
    assert solve["kind"] == "python"
    assert solve["verifier"] == {"kind": "python", "source_hash": wf.tasks["solve"].verifier_hash}
    assert solve["source_hash"] == wf.tasks["solve"].source_hash
    assert solve["task_hash"] == wf.task_hash("solve")
    assert "fn" not in solve
    assert doc["tasks"]["simulate"]["intent"]["goal"] == "Simulate decays."
    assert doc["tasks"]["simulate"]["uses"] == ["lib:numpy"]
    report = doc["tasks"]["report"]
    assert report["kind"] == "command" and report["outputs"] == {"r": "r.txt"}
    assert report["after"] == ["simulate", "solve"]
    assert wf.spec_hash() == hash_obj(doc)


def test_identical_definitions_hash_identically():
    first, second = build(), build()
    assert first.describe() == second.describe()
    assert first.spec_hash() == second.spec_hash()
    assert diff_specs(first.describe(), second.describe()) == []


def test_param_default_change_changes_the_hash_and_only_that_path():
    old, new = build(), build(alpha=0.75)
    assert old.spec_hash() != new.spec_hash()
    assert diff_specs(old.describe(), new.describe()) == ["params.alpha.default"]
    for name in old.tasks:
        assert old.task_hash(name) == new.task_hash(name)


def test_task_body_change_changes_its_source_hash_only():
    old, new = build(), build(variant=2)
    assert old.spec_hash() != new.spec_hash()
    assert diff_specs(old.describe(), new.describe()) == ["tasks.solve.source_hash"]
    assert old.task_hash("solve") != new.task_hash("solve")
    assert old.task_hash("simulate") == new.task_hash("simulate")
    assert old.task_hash("report") == new.task_hash("report")


def test_decorator_option_change_is_a_field_change_not_a_code_change():
    old, new = build(), build(retries=2)
    assert diff_specs(old.describe(), new.describe()) == ["tasks.solve.retries"]


def test_adding_a_task_leaves_the_other_task_hashes_alone():
    old, new = build(), build(extra=True)
    assert diff_specs(old.describe(), new.describe()) == ["tasks.new_task"]
    assert diff_specs(new.describe(), old.describe()) == ["tasks.new_task"]
    for name in old.tasks:
        assert old.task_hash(name) == new.task_hash(name)


def test_diff_specs_paths_are_dotted_sorted_and_type_aware():
    old = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "tasks": {"t": {"retries": 0, "task_hash": "h1"}}}
    new = {"a": 1.0, "b": {"c": [1, 3], "e": "y"}, "tasks": {"t": {"retries": 1, "task_hash": "h2"}}}
    assert diff_specs(old, new) == ["a", "b.c", "b.d", "b.e", "tasks.t.retries"]
    only_hash = {"tasks": {"t": {"retries": 0, "task_hash": "h3"}}}
    assert diff_specs({"tasks": {"t": {"retries": 0, "task_hash": "h1"}}}, only_hash) == ["tasks.t.task_hash"]
    assert diff_specs(old, old) == []


def test_describe_changes_with_profile_and_tags():
    base = build().describe()
    other = build()
    other.profile = "analysis"
    other.tags = ("physics",)
    assert diff_specs(base, other.describe()) == ["profile", "tags"]


def test_a_changed_verifier_is_a_visible_change():
    def with_verifier(command: str) -> Workflow:
        wf = Workflow("w")
        wf.task(noop, name="solve", verifier=command)
        return wf

    old, new = with_verifier("test -s out.txt"), with_verifier("test -f out.txt")
    assert diff_specs(old.describe(), new.describe()) == ["tasks.solve.verifier.command"]
    assert old.task_hash("solve") != new.task_hash("solve")


def test_task_hash_of_unknown_task():
    with pytest.raises(SpecError) as info:
        build().task_hash("slove")
    assert (info.value.task, info.value.field) == ("slove", "name")
    assert "did you mean 'solve'?" in str(info.value)


# ------------------------------------------------------------------ graph


def diamond() -> Workflow:
    wf = Workflow("w")
    wf.task(noop, name="c")
    wf.task(noop, name="a", after="c")
    wf.task(noop, name="b", after="c")
    wf.task(noop, name="d", after=["b", "a"])
    wf.task(noop, name="e")
    return wf


def test_topo_order_breaks_ties_by_declaration_order():
    wf = diamond()
    assert wf.topo_order() == ["c", "a", "b", "d", "e"]
    assert wf.topo_order() == diamond().topo_order()


def test_topo_order_does_not_need_dependencies_declared_first():
    wf = Workflow("w")
    wf.task(noop, name="last", after="first")
    wf.task(noop, name="first")
    wf.task(noop, name="free")
    assert wf.topo_order() == ["first", "last", "free"]


def test_downstream_and_upstream_are_transitive():
    wf = diamond()
    assert wf.downstream("c") == {"a", "b", "d"}
    assert wf.downstream("a") == {"d"}
    assert wf.downstream("e") == set()
    assert wf.upstream("d") == {"a", "b", "c"}
    with pytest.raises(SpecError):
        wf.downstream("zz")


@st.composite
def dags(draw):
    size = draw(st.integers(min_value=1, max_value=12))
    pairs = [(i, j) for i in range(size) for j in range(i + 1, size)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=30)) if pairs else []
    declared = draw(st.permutations(range(size)))
    return size, edges, declared


def dag_workflow(size, edges, declared, extra_edges=()) -> Workflow:
    after: dict[int, list[str]] = {i: [] for i in range(size)}
    for i, j in list(edges) + list(extra_edges):
        after[j].append(f"t{i}")
    wf = Workflow("dag")
    for i in declared:
        wf.task(noop, name=f"t{i}", after=after[i])
    return wf


@settings(max_examples=60, deadline=None, derandomize=True)
@given(dags())
def test_random_dags_validate_and_topo_order_respects_every_edge(dag):
    size, edges, declared = dag
    wf = dag_workflow(size, edges, declared)
    wf.validate()
    order = wf.topo_order()
    assert sorted(order) == sorted(f"t{i}" for i in range(size))
    position = {name: k for k, name in enumerate(order)}
    for i, j in edges:
        assert position[f"t{i}"] < position[f"t{j}"]
    assert order == dag_workflow(size, edges, declared).topo_order()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(dags(), st.data())
def test_a_back_edge_makes_a_cycle_error(dag, data):
    size, edges, declared = dag
    if edges:
        i, j = data.draw(st.sampled_from(edges))
    else:
        i = j = data.draw(st.integers(min_value=0, max_value=size - 1))
    wf = dag_workflow(size, edges, declared, extra_edges=[(j, i)])
    with pytest.raises(SpecError) as info:
        wf.validate(file="dag.py")
    err = info.value
    assert err.field == "after" and err.file == "dag.py"
    assert "dependency cycle" in str(err)
    cycle = str(err).split("dependency cycle: ")[1].split(" (")[0].split(" -> ")
    assert cycle[0] == cycle[-1] == err.task
    for before, later in zip(cycle, cycle[1:]):
        assert before in wf.tasks[later].after
    with pytest.raises(SpecError):
        wf.topo_order()
