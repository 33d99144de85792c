"""YAML specs: the happy path and every kind of error, each naming file, task and field."""

from __future__ import annotations

import textwrap

import pytest

from headwater.errors import SpecError
from headwater.spec import REQUIRED, Intent, Quorum, load_workflow

WORDCOUNT = r"""
name: wordcount
profile: analysis
tags: [demo]
description: Count words in a fetched text.
params:
  n: {type: int, default: 3, help: "how many lines"}
  label: {type: str}
tasks:
  - name: fetch
    run: "printf 'a b\\nc\\n' > {outputs[data]}"
    outputs: {data: data.txt}
    goal: "Fetch the text"
  - name: count
    after: [fetch]
    inputs: {data: fetch/data}
    run: "head -n {params[n]} {inputs[data]} | wc -w > {outputs[count]}"
    outputs: {count: count.txt}
    verify: 1
    retries: 2
    role: worker
    uses: ["lib:coreutils"]
    assumptions: words are separated by whitespace
    concludes: the word count
  - name: review
    after: count
    run: "cat {inputs[c]}"
    inputs: {c: count/count}
    verify: {k: 2, reject: 2}
    verifier: "test -s {inputs[c]}"
    verifier_role: referee
    pools: gpu
    timeout: 30
    priority: -1
"""


def write(tmp_path, text: str, name: str = "flow.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path, text: str, name: str = "flow.yaml") -> SpecError:
    path = write(tmp_path, text, name)
    with pytest.raises(SpecError) as info:
        load_workflow(path)
    assert info.value.file == str(path.resolve())
    return info.value


def test_yaml_happy_path(tmp_path):
    path = write(tmp_path, WORDCOUNT)
    wf = load_workflow(path)
    assert wf.source_file == str(path.resolve())
    assert (wf.name, wf.profile, wf.tags) == ("wordcount", "analysis", ("demo",))
    assert wf.description == "Count words in a fetched text."
    assert wf.params["n"].type == "int" and wf.params["n"].default == 3
    assert wf.params["n"].help == "how many lines"
    assert wf.params["label"].default is REQUIRED
    assert list(wf.tasks) == ["fetch", "count", "review"]
    fetch, count, review = (wf.tasks[n] for n in ("fetch", "count", "review"))
    assert fetch.command == "printf 'a b\\nc\\n' > {outputs[data]}"
    assert fetch.outputs == {"data": "data.txt"}
    assert fetch.intent == Intent("Fetch the text", (), "")
    assert count.after == ("fetch",) and count.inputs == {"data": "fetch/data"}
    assert (count.quorum, count.retries, count.role, count.uses) == (Quorum(1), 2, "worker", ("lib:coreutils",))
    assert count.intent == Intent("Count", ("words are separated by whitespace",), "the word count")
    assert review.after == ("count",) and review.quorum == Quorum(2, 2)
    assert review.verifier == "test -s {inputs[c]}" and review.verifier_role == "referee"
    assert (review.pools, review.timeout, review.priority) == (("gpu",), 30.0, -1)
    assert all(t.fn is None and len(t.source_hash) == 64 for t in wf.tasks.values())
    assert wf.topo_order() == ["fetch", "count", "review"]
    assert wf.resolve_params({"label": "x"}) == {"n": 3, "label": "x"}


def test_yaml_and_yml_describe_the_same_spec(tmp_path):
    first = load_workflow(write(tmp_path, WORDCOUNT, "a.yaml"))
    second = load_workflow(write(tmp_path, WORDCOUNT, "b.yml"))
    assert first.spec_hash() == second.spec_hash()


def test_yaml_branches(tmp_path):
    wf = load_workflow(
        write(
            tmp_path,
            """
            name: pick
            tasks:
              - {name: decide, run: "echo fast", branches: [fast, slow]}
              - {name: fast, run: "true", after: decide}
              - {name: slow, run: "true", after: decide}
            """,
        )
    )
    assert wf.tasks["decide"].branches == ("fast", "slow")


def test_yaml_syntax_error_names_the_line(tmp_path):
    err = load_error(tmp_path, "name: x\ntasks:\n  - name: a\n    run: [unclosed\n")
    assert "YAML syntax error at line 5" in str(err)
    assert "flow sequence started at line 4" in str(err)
    assert err.task is None
    err = load_error(tmp_path, "name: x\n  bad: indent\n")
    assert "YAML syntax error at line 2" in str(err)


def test_yaml_repeated_key_is_an_error(tmp_path):
    err = load_error(tmp_path, "name: x\ntasks:\n  - name: a\n    run: one\n    run: two\n")
    assert "'run' appears twice" in str(err) and "line 5" in str(err)


def test_yaml_top_level_must_be_a_mapping(tmp_path):
    assert "top level" in str(load_error(tmp_path, "- a\n- b\n"))
    assert "top level" in str(load_error(tmp_path, ""))


@pytest.mark.parametrize(
    ("task_yaml", "task", "field", "fragment"),
    [
        ("{name: a, runn: x}", "a", "runn", "unknown field 'runn' (did you mean 'run'?)"),
        ("{name: a}", "a", "run", "missing required field 'run'"),
        ("{name: a, run: x, retries: '2'}", "a", "retries", "valid integer, got '2'"),
        ("{name: a, run: x, retries: true}", "a", "retries", "valid integer"),
        ("{name: a, run: x, verify: many}", "a", "verify", "verify must be an integer k or a mapping"),
        ("{name: a, run: x, verify: {k: 2, rejects: 1}}", "a", "verify.rejects", "did you mean 'reject'?"),
        ("{name: a, run: x, after: [b, 3]}", "a", "after[1]", "valid string"),
        ("{name: a, run: x, outputs: [a.txt]}", "a", "outputs", "valid dictionary"),
        ("{run: x}", None, "tasks[1].name", "missing required field 'name'"),
    ],
)
def test_yaml_structure_errors_name_task_and_field(tmp_path, task_yaml, task, field, fragment):
    err = load_error(tmp_path, f"name: x\ntasks:\n  - {{name: ok, run: 'true'}}\n  - {task_yaml}\n")
    assert (err.task, err.field) == (task, field)
    assert fragment in str(err)


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("name: x\ntasks: []\n", "tasks", "at least 1"),
        ("name: x\n", "tasks", "missing required field 'tasks'"),
        ("tasks: [{name: a, run: x}]\n", "name", "missing required field 'name'"),
        ("name: x\nprofile: simulate\ntasks: [{name: a, run: x}]\n", "profile", "'simulation' or 'analysis'"),
        ("name: x\nversion: 2\ntasks: [{name: a, run: x}]\n", "version", "unknown field 'version'"),
        ("name: x\nparams: {n: {type: integer}}\ntasks: [{name: a, run: x}]\n", "params.n.type", "'int'"),
        ("name: x\nparams: {n: {type: int, defualt: 1}}\ntasks: [{name: a, run: x}]\n",
         "params.n.defualt", "did you mean 'default'?"),
    ],
)
def test_yaml_workflow_level_errors(tmp_path, text, field, fragment):
    err = load_error(tmp_path, text)
    assert err.task is None and err.field == field
    assert fragment in str(err)


def test_yaml_duplicate_task_names(tmp_path):
    err = load_error(
        tmp_path, "name: x\ntasks:\n  - {name: a, run: x}\n  - {name: b, run: y}\n  - {name: a, run: z}\n"
    )
    assert (err.task, err.field) == ("a", "name")
    assert "tasks[0] and tasks[2]" in str(err)


def test_yaml_meaning_errors_come_from_validation_with_the_file(tmp_path):
    err = load_error(tmp_path, "name: x\ntasks:\n  - {name: fetch, run: x}\n  - {name: b, run: y, after: fech}\n")
    assert (err.task, err.field) == ("b", "after")
    assert "did you mean 'fetch'?" in str(err)
    err = load_error(tmp_path, "name: x\nparams: {n: {type: int, default: 0.5}}\ntasks: [{name: a, run: x}]\n")
    assert (err.task, err.field) == (None, "params.n.default")
    err = load_error(tmp_path, "name: x\ntasks: [{name: a, run: 'cat {inputs[d]}'}]\n")
    assert (err.task, err.field) == ("a", "command")
    err = load_error(tmp_path, "name: x\ntasks: [{name: a, run: x, verify: -1}]\n")
    assert (err.task, err.field) == ("a", "verify")


def test_yaml_name_selection(tmp_path):
    path = write(tmp_path, WORDCOUNT)
    assert load_workflow(path, name="wordcount").name == "wordcount"
    with pytest.raises(SpecError) as info:
        load_workflow(path, name="other")
    assert "'other'" in str(info.value) and "'wordcount'" in str(info.value)
