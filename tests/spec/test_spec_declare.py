"""Declaring workflows in Python: decorator forms, intent, the spec values."""

from __future__ import annotations

import copy
import pathlib
import pickle

import pytest

import headwater.spec as spec_pkg
from headwater.errors import SpecError
from headwater.spec import REQUIRED, Intent, Param, Quorum, TaskSpec, Workflow, quorum
from headwater.spec.model import function_source_hash, parse_docstring_intent


def noop(ctx):
    return None


def test_public_names_are_exactly_the_documented_api():
    assert sorted(spec_pkg.__all__) == sorted(
        ["REQUIRED", "Param", "Quorum", "quorum", "Intent", "TaskSpec", "Workflow", "diff_specs", "load_workflow"]
    )
    for name in spec_pkg.__all__:
        assert hasattr(spec_pkg, name)


def test_bare_decorator_registers_and_returns_the_function_unchanged():
    wf = Workflow("w")

    @wf.task
    def fetch(ctx):
        return "fetched"

    assert fetch(None) == "fetched"
    assert fetch.__name__ == "fetch"
    spec = wf.tasks["fetch"]
    assert spec.fn is fetch
    assert spec.role == "worker" and spec.quorum == Quorum(0) and spec.verify == 0


def test_called_decorator_takes_every_option():
    wf = Workflow("w")

    @wf.task
    def prepare(ctx):
        pass

    @wf.task(
        name="fit_model",
        role="analyst",
        after=prepare,
        verify=quorum(2, reject=2),
        uses=["lib:numpy", "claim:g"],
        retries=3,
        priority=-1,
        verifier_role="referee",
        pools=("gpu", "cpu"),
        timeout=30,
    )
    def fit(ctx):
        pass

    spec = wf.tasks["fit_model"]
    assert "fit" not in wf.tasks
    assert spec.fn is fit
    assert spec.role == "analyst"
    assert spec.after == ("prepare",)
    assert spec.quorum == Quorum(2, 2) and spec.verify == 2
    assert spec.uses == ("lib:numpy", "claim:g")
    assert (spec.retries, spec.priority, spec.timeout) == (3, -1, 30)
    assert spec.verifier_role == "referee" and spec.pools == ("gpu", "cpu")
    assert list(wf.tasks) == ["prepare", "fit_model"]


def test_empty_parentheses_decorator_works():
    wf = Workflow("w")

    @wf.task()
    def only(ctx):
        pass

    assert list(wf.tasks) == ["only"]


def test_after_accepts_a_name_a_function_or_a_mix_and_uses_declared_names():
    wf = Workflow("w")
    wf.task(noop, name="a")

    @wf.task(name="renamed")
    def b(ctx):
        pass

    @wf.task(after="a")
    def c(ctx):
        pass

    @wf.task(after=[b, "a", "a"])
    def d(ctx):
        pass

    assert wf.tasks["c"].after == ("a",)
    assert wf.tasks["d"].after == ("renamed", "a")
    wf.validate()


def test_verify_takes_an_int_or_a_quorum_but_nothing_else():
    wf = Workflow("w")
    wf.task(noop, name="a", verify=2)
    wf.task(noop, name="b", verify=Quorum(3, reject=2))
    assert wf.tasks["a"].quorum == Quorum(2, 1)
    assert wf.tasks["b"].verify == 3
    with pytest.raises(SpecError) as info:
        wf.task(noop, name="c", verify="two")
    assert (info.value.task, info.value.field) == ("c", "verify")
    assert "'two'" in str(info.value)
    with pytest.raises(SpecError):
        wf.task(noop, name="d", verify=True)


def test_duplicate_task_name_fails_when_decorated_and_names_the_defining_file():
    wf = Workflow("w")
    wf.task(noop, name="solve")
    with pytest.raises(SpecError) as info:

        @wf.task(name="solve")
        def other(ctx):
            pass

    err = info.value
    assert (err.task, err.field) == ("solve", "name")
    assert err.file == __file__
    assert "already declared" in str(err)
    assert wf.tasks["solve"].fn is noop


def test_a_string_passed_as_the_function_gets_a_hint():
    wf = Workflow("w")
    with pytest.raises(SpecError) as info:
        wf.task("solve")
    assert "name='solve'" in str(info.value)


def test_after_of_an_unsupported_type_fails_at_declaration():
    wf = Workflow("w")
    with pytest.raises(SpecError) as info:
        wf.task(noop, name="a", after=5)
    assert (info.value.task, info.value.field) == ("a", "after")


def test_verifier_decorator_attaches_to_a_declared_task():
    wf = Workflow("w")

    @wf.task
    def solve(ctx):
        pass

    @wf.verifier(solve)
    def check(ctx, bundle):
        return True

    def second(ctx, bundle):
        return True

    assert check(None, None) is True
    spec = wf.tasks["solve"]
    assert spec.verifier is check
    assert spec.verifier_hash == function_source_hash(check)
    assert spec.source_hash == function_source_hash(solve)
    with pytest.raises(SpecError) as info:
        wf.verifier("solve")(second)
    assert (info.value.task, info.value.field) == ("solve", "verifier")
    assert "already has a verifier" in str(info.value)


def test_verifier_for_an_undeclared_task_names_it_and_suggests():
    wf = Workflow("w")
    wf.task(noop, name="solve")
    with pytest.raises(SpecError) as info:

        @wf.verifier("solv")
        def check(ctx, bundle):
            return True

    err = info.value
    assert (err.task, err.field, err.file) == ("solv", "verifier", __file__)
    assert "did you mean 'solve'" in str(err)


def test_profile_and_workflow_fields():
    wf = Workflow("w", profile="simulation", tags=["a", "b", "a"], description="d")
    assert (wf.name, wf.profile, wf.tags, wf.description) == ("w", "simulation", ("a", "b"), "d")
    assert Workflow("w", profile="analysis").profile == "analysis"
    assert wf.source_file is None
    with pytest.raises(SpecError) as info:
        Workflow("w", profile="simulations")
    assert info.value.field == "profile"
    assert "'simulations'" in str(info.value)
    with pytest.raises(SpecError) as info:
        Workflow("")
    assert info.value.field == "name"


def test_param_accepts_python_types_and_normalises_defaults():
    wf = Workflow("w")
    wf.param("n", int, default=3)
    wf.param("alpha", float, default=1)
    wf.param("flag", bool, default=False)
    wf.param("label", str)
    wf.param("data", pathlib.Path, default=pathlib.Path("data/in.csv"), help="input")
    wf.param("beta")
    assert wf.params["n"] == Param("n", "int", 3)
    assert wf.params["alpha"].default == 1.0 and isinstance(wf.params["alpha"].default, float)
    assert wf.params["flag"].type == "bool"
    assert wf.params["label"].default is REQUIRED and wf.params["label"].required
    assert wf.params["data"] == Param("data", "path", "data/in.csv", "input")
    assert wf.params["beta"].type == "float" and wf.params["beta"].required
    with pytest.raises(SpecError) as info:
        wf.param("n", int)
    assert info.value.field == "params.n"


def test_required_is_a_singleton_that_survives_copy_and_pickle():
    assert repr(REQUIRED) == "REQUIRED"
    assert copy.deepcopy(REQUIRED) is REQUIRED
    assert pickle.loads(pickle.dumps(REQUIRED)) is REQUIRED
    assert pickle.loads(pickle.dumps(Param("x", "int"))).required


def test_taskspec_built_directly_is_complete():
    spec = TaskSpec("fit_decay-rate", after=["a", "b", "a"], fn=noop)
    assert spec.after == ("a", "b")
    assert spec.intent == Intent("Fit decay rate", (), "")
    assert spec.source_hash == function_source_hash(noop)
    assert spec.kind == "python"
    command = TaskSpec("c", command="echo {outputs[x]}", outputs={"x": "x.txt"})
    assert command.kind == "command" and len(command.source_hash) == 64
    moved = TaskSpec("c", command="echo {outputs[x]}", outputs={"x": "y.txt"})
    assert moved.source_hash != command.source_hash


# ------------------------------------------------------------------ intent


def test_intent_from_docstring_sections():
    wf = Workflow("w")

    @wf.task
    def fit(ctx):
        """Goal: Fit the decay rate
        to the counts.

        Assumptions:
        - counts are Poisson
        - the background is flat
          over the window

        Concludes: the half-life in seconds
        """

    assert wf.tasks["fit"].intent == Intent(
        goal="Fit the decay rate to the counts.",
        assumptions=("counts are Poisson", "the background is flat over the window"),
        concludes="the half-life in seconds",
    )


def test_intent_one_line_assumption_and_first_paragraph_goal():
    goal, assumptions, concludes = parse_docstring_intent(
        """Clean the table.

        Drops rows with missing labels.

        Assumptions: labels are never legitimately empty
        """
    )
    assert goal == "Clean the table."
    assert assumptions == ("labels are never legitimately empty",)
    assert concludes is None


def test_assumption_bullets_may_be_separated_by_blank_lines():
    goal, assumptions, concludes = parse_docstring_intent(
        """Assumptions:
        - first

        - second
          continued

        Not an assumption: a later paragraph.
        """
    )
    assert goal is None
    assert assumptions == ("first", "second continued")
    assert concludes is None


def test_intent_without_sections_is_the_first_paragraph():
    wf = Workflow("w")

    @wf.task
    def clean(ctx):
        """Remove outliers
        beyond five sigma.

        Goal-like words in later paragraphs are ignored.
        """

    assert wf.tasks["clean"].intent == Intent("Remove outliers beyond five sigma.", (), "")


def test_intent_without_docstring_humanises_the_name():
    wf = Workflow("w")
    wf.task(noop, name="load_raw_data")
    assert wf.tasks["load_raw_data"].intent == Intent("Load raw data", (), "")


def test_decorator_intent_fields_override_the_docstring_one_by_one():
    wf = Workflow("w")

    @wf.task(goal="Explicit goal", assumptions="one assumption")
    def a(ctx):
        """Goal: docstring goal

        Assumptions:
        - docstring assumption

        Concludes: docstring conclusion
        """

    @wf.task(assumptions=["x", "y"], concludes="z")
    def b(ctx):
        """Docstring goal."""

    assert wf.tasks["a"].intent == Intent("Explicit goal", ("one assumption",), "docstring conclusion")
    assert wf.tasks["b"].intent == Intent("Docstring goal.", ("x", "y"), "z")


# ------------------------------------------------------------------ source hashes


def declare_once(wf):
    @wf.task(retries=1)
    def solve(ctx):
        return 1


def declare_with_other_options(wf):
    @wf.task(retries=5, priority=2)
    def solve(ctx):
        return 1


def declare_other_body(wf):
    @wf.task(retries=1)
    def solve(ctx):
        return 2


def test_source_hash_ignores_decorator_arguments_but_not_the_body():
    hashes = []
    for declare in (declare_once, declare_with_other_options, declare_other_body):
        wf = Workflow("w")
        declare(wf)
        hashes.append(wf.tasks["solve"].source_hash)
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


def test_source_hash_falls_back_to_compiled_code_without_source():
    namespace: dict = {}
    exec("def f(ctx):\n    return {'a', 'b'}\n", namespace)
    exec("def g(ctx):\n    return {'a', 'c'}\n", namespace)
    first = function_source_hash(namespace["f"])
    assert len(first) == 64
    assert first == function_source_hash(namespace["f"])
    assert first != function_source_hash(namespace["g"])
