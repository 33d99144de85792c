"""Every validation error names the file, the task and the field at fault."""

from __future__ import annotations

import pytest

from headwater.errors import SpecError
from headwater.spec import Quorum, Workflow

FILE = "/specs/flow.py"


def noop(ctx):
    return None


def check(ctx, bundle):
    return True


def error_of(wf: Workflow, file: str | None = FILE) -> SpecError:
    with pytest.raises(SpecError) as info:
        wf.validate(file=file)
    return info.value


def assert_at(err: SpecError, task: str | None, field: str | None, *fragments: str) -> None:
    assert err.file == FILE
    assert err.task == task
    assert err.field == field
    text = str(err)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"


def chain(*names: str, **after: str | list[str]) -> Workflow:
    wf = Workflow("w")
    for name in names:
        wf.task(noop, name=name, after=after.get(name, ()))
    return wf


def test_a_sound_workflow_validates():
    wf = chain("a", "b", "c", b="a", c=["a", "b"])
    wf.validate(file=FILE)


def test_validate_uses_source_file_when_no_file_is_given():
    wf = chain("a", a="nope")
    wf.source_file = FILE
    assert error_of(wf, file=None).file == FILE


# ------------------------------------------------------------------ after and cycles


def test_unknown_after_suggests_the_closest_name():
    err = error_of(chain("fetch", "clean", clean="fecth"))
    assert_at(err, "clean", "after", "'fecth'", "did you mean 'fetch'?")


def test_unknown_after_without_a_close_name_lists_declared_tasks():
    err = error_of(chain("fetch", "clean", clean="zzz"))
    assert_at(err, "clean", "after", "'zzz'", "declared: 'fetch'")


def test_two_task_cycle_is_shown_as_a_path():
    err = error_of(chain("a", "b", a="b", b="a"))
    assert_at(err, "a", "after", "a -> b -> a")


def test_three_task_cycle_is_shown_in_run_order():
    err = error_of(chain("start", "a", "b", "c", a=["start", "c"], b="a", c="b"))
    assert_at(err, "a", "after", "a -> b -> c -> a")


def test_self_dependency_is_a_cycle():
    err = error_of(chain("a", "b", b=["a", "b"]))
    assert_at(err, "b", "after", "b -> b")


def test_topo_order_on_a_cycle_raises_the_cycle_error():
    wf = chain("a", "b", a="b", b="a")
    with pytest.raises(SpecError) as info:
        wf.topo_order()
    assert info.value.field == "after" and "a -> b -> a" in str(info.value)


# ------------------------------------------------------------------ branches


def branching(*targets: str, target_after: str = "decide") -> Workflow:
    wf = Workflow("w")
    wf.task(noop, name="decide", branches=list(targets))
    wf.task(noop, name="fast", after=target_after)
    wf.task(noop, name="slow", after=target_after)
    return wf


def test_branches_to_dependent_tasks_validate():
    wf = branching("fast", "slow")
    wf.validate()
    assert wf.tasks["decide"].branches == ("fast", "slow")


def test_unknown_branch_target_is_named_with_a_suggestion():
    err = error_of(branching("fast", "slwo"))
    assert_at(err, "decide", "branches", "'slwo'", "did you mean 'slow'?")


def test_branch_target_must_run_after_the_deciding_task():
    wf = Workflow("w")
    wf.task(noop, name="start")
    wf.task(noop, name="decide", after="start", branches=["fast", "slow"])
    wf.task(noop, name="fast", after="decide")
    wf.task(noop, name="slow", after="start")
    err = error_of(wf)
    assert_at(err, "decide", "branches", "'slow'", "must list 'decide' in its after")


def test_a_branch_needs_two_alternatives():
    err = error_of(branching("fast"))
    assert_at(err, "decide", "branches", "at least 2")


# ------------------------------------------------------------------ per-task fields


@pytest.mark.parametrize(
    ("options", "field", "fragment"),
    [
        ({"retries": -1}, "retries", ">= 0"),
        ({"retries": "2"}, "retries", "must be an int"),
        ({"retries": 1.0}, "retries", "must be an int"),
        ({"priority": 1.5}, "priority", "must be an int"),
        ({"priority": None}, "priority", "must be an int"),
        ({"verify": -1}, "verify", "k >= 0"),
        ({"verify": Quorum(1, reject=0)}, "verify", "reject >= 1"),
        ({"verify": Quorum("2")}, "verify", "quorum(k, reject)"),
        ({"role": ""}, "role", "non-empty"),
        ({"role": "  "}, "role", "non-empty"),
        ({"verifier_role": ""}, "verifier_role", "non-empty"),
        ({"timeout": 0}, "timeout", "positive"),
        ({"timeout": "10"}, "timeout", "positive"),
        ({"uses": ["numpy"]}, "uses", "kind:name"),
        ({"uses": [3]}, "uses", "asset refs"),
        ({"pools": [""]}, "pools", "pool names"),
        ({"verifier": 42}, "verifier", "function or a shell command"),
        ({"verifier": "  "}, "verifier", "must not be empty"),
    ],
)
def test_bad_task_fields(options, field, fragment):
    wf = Workflow("w")
    wf.task(noop, name="ok")
    wf.task(noop, name="bad", **options)
    assert_at(error_of(wf), "bad", field, fragment)


def test_negative_priority_is_allowed():
    wf = Workflow("w")
    wf.task(noop, name="later", priority=-5)
    wf.validate()


def test_task_names_must_be_usable_in_refs_and_paths():
    wf = Workflow("w")
    wf.task(noop, name="has/slash")
    assert_at(error_of(wf), "has/slash", "name", "letters, digits")
    wf = Workflow("w")
    wf.task(lambda ctx: None)
    assert_at(error_of(wf), "<lambda>", "name")


def test_task_function_must_take_the_context():
    wf = Workflow("w")

    @wf.task
    def no_args():
        pass

    assert_at(error_of(wf), "no_args", "fn", "fn(ctx)")


def test_verifier_function_must_take_ctx_and_bundle():
    wf = Workflow("w")
    wf.task(noop, name="a", verifier=lambda ctx: True)
    assert_at(error_of(wf), "a", "verifier", "verifier(ctx, bundle_view)")
    wf = Workflow("w")
    wf.task(noop, name="a", verifier=check)
    wf.validate()


def test_a_function_shared_by_many_tasks_is_inspected_once_per_validation(monkeypatch):
    import inspect

    from headwater.spec import validate as V

    calls = []
    real = inspect.signature
    monkeypatch.setattr(V.inspect, "signature", lambda fn: calls.append(fn) or real(fn))
    wf = Workflow("w")
    for i in range(20):
        wf.task(noop, name=f"t{i}", verifier=check)
    wf.validate()
    assert calls.count(noop) == 1 and calls.count(check) == 1
    wf.validate()  # a new validation reads them again: a function can be redefined between two
    assert calls.count(noop) == 2


def test_a_bad_function_among_shared_ones_is_still_named():
    wf = Workflow("w")
    for i in range(3):
        wf.task(noop, name=f"t{i}")

    def no_args():
        pass

    wf.task(no_args, name="bad")
    wf.task(noop, name="t3", verifier=noop)
    assert_at(error_of(wf), "bad", "fn", "fn(ctx)")


# ------------------------------------------------------------------ params


@pytest.mark.parametrize(
    ("type_", "default", "fragment"),
    [
        ("int", "3", "expected int, got '3' (str)"),
        ("int", 2.5, "expected int, got 2.5"),
        ("int", True, "expected int, got True"),
        ("float", "0.5", "expected float, got '0.5'"),
        ("float", float("nan"), "expected finite float, got nan"),
        ("bool", 1, "expected bool, got 1"),
        ("str", 3, "expected str, got 3"),
        ("path", 3, "expected path, got 3"),
        ("path", "", "expected non-empty path"),
    ],
)
def test_param_default_must_match_its_type(type_, default, fragment):
    wf = Workflow("w")
    wf.param("x", type_, default=default)
    wf.task(noop, name="a")
    assert_at(error_of(wf), None, "params.x.default", fragment)


def test_param_type_must_be_known():
    wf = Workflow("w")
    wf.param("x", "complex", default=1)
    assert_at(error_of(wf), None, "params.x.type", "'complex'", "int, float, str, bool, path")
    wf = Workflow("w")
    wf.param("x", list)
    assert_at(error_of(wf), None, "params.x.type", "'list'")


def test_param_name_must_be_an_identifier():
    wf = Workflow("w")
    wf.param("bad-name", "int", default=1)
    assert_at(error_of(wf), None, "params.bad-name", "identifier")


# ------------------------------------------------------------------ command tasks


def pipeline(**count_options) -> Workflow:
    wf = Workflow("w")
    wf.param("n", "int", default=3)
    wf.add_command_task("fetch", "echo hi > {outputs[data]}", outputs={"data": "data.txt"})
    wf.add_command_task("split", "split {inputs[data]} {outputs[parts]}", after="fetch",
                        inputs={"data": "fetch/data"}, outputs={"parts": "parts"})
    options = {
        "after": "split",
        "inputs": {"data": "fetch/data", "parts": "split/parts"},
        "outputs": {"count": "count.txt"},
    }
    options.update(count_options)
    command = options.pop("command", "head -n {params[n]} {inputs[data]} > {outputs[count]} # {seed}")
    wf.add_command_task("count", command, **options)
    return wf


def test_sound_pipeline_validates_with_transitive_inputs():
    wf = pipeline()
    wf.validate()
    spec = wf.tasks["count"]
    assert spec.kind == "command"
    assert spec.inputs == {"data": "fetch/data", "parts": "split/parts"}


def test_input_from_a_task_that_is_not_upstream():
    wf = pipeline(after=())
    assert_at(error_of(wf), "count", "inputs.data", "'fetch'", "not upstream", "add 'fetch' to after")


def test_input_from_an_undeclared_task():
    wf = pipeline(inputs={"data": "fetc/data"})
    assert_at(error_of(wf), "count", "inputs.data", "'fetc'", "did you mean 'fetch'?")


def test_input_naming_an_undeclared_output():
    wf = pipeline(inputs={"data": "fetch/dta"})
    assert_at(error_of(wf), "count", "inputs.data", "declares no output 'dta'", "did you mean 'data'?")


def test_input_must_be_task_slash_output():
    wf = pipeline(inputs={"data": "fetch"})
    assert_at(error_of(wf), "count", "inputs.data", "task/output")


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        ("cat {inputs[dat]} > {outputs[count]}", "{inputs[dat]} refers to no declared input"),
        ("cat {inputs[data]} > {outputs[out]}", "{outputs[out]} refers to no declared output"),
        ("head -n {params[m]} > {outputs[count]}", "{params[m]} refers to no declared parameter"),
        ("awk '{print $1}' > {outputs[count]}", "unknown placeholder {print $1}"),
        ("echo {} > {outputs[count]}", "unknown placeholder {}"),
        ("echo {seed > {outputs[count]}", "bad placeholder"),
    ],
)
def test_command_placeholders_must_be_declared(command, fragment):
    assert_at(error_of(pipeline(command=command)), "count", "command", fragment)


def test_doubled_braces_are_literal():
    pipeline(command="awk '{{print $1}}' {inputs[data]} > {outputs[count]}").validate()


def test_verifier_command_placeholders_are_checked_too():
    wf = pipeline(verifier="test -s {outputs[cnt]}")
    assert_at(error_of(wf), "count", "verifier", "{outputs[cnt]}", "did you mean 'count'?")
    pipeline(verifier="test -s {outputs[count]}").validate()


@pytest.mark.parametrize("filename", ["/tmp/out.txt", "../out.txt", "a/../../b", "C:\\out.txt", "."])
def test_output_files_stay_inside_the_task_directory(filename):
    wf = pipeline(outputs={"count": filename}, command="echo > {outputs[count]}")
    assert_at(error_of(wf), "count", "outputs.count", "relative path")


def test_two_outputs_cannot_share_a_file():
    wf = pipeline(outputs={"count": "c.txt", "copy": "c.txt"}, command="echo > {outputs[count]}")
    assert_at(error_of(wf), "count", "outputs.copy", "both write 'c.txt'")


def test_empty_command_is_rejected():
    wf = Workflow("w")
    wf.add_command_task("run", "   ")
    assert_at(error_of(wf), "run", "command", "non-empty")


def test_duplicate_command_task_name():
    wf = Workflow("w")
    wf.add_command_task("run", "true")
    with pytest.raises(SpecError) as info:
        wf.add_command_task("run", "false")
    assert (info.value.task, info.value.field) == ("run", "name")
    assert wf.tasks["run"].command == "true"
