"""Loading Python spec files: import under a unique name, choose, validate."""

from __future__ import annotations

import sys
import textwrap

import pytest

from headwater.errors import SpecError
from headwater.spec import Workflow, load_workflow
from headwater.spec.loader import module_name_for

SIMPLE = """
from headwater.spec import Workflow

wf = Workflow({name!r})

@wf.task
def fetch(ctx):
    return None

@wf.task(after=fetch)
def {second}(ctx):
    return None
"""


def write(directory, text: str, name: str = "flow.py"):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(path, name=None) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_workflow(path, name)
    return info.value


def test_python_spec_loads_validated_with_absolute_source_file(tmp_path, monkeypatch):
    path = write(tmp_path, SIMPLE.format(name="simple", second="fit"))
    monkeypatch.chdir(tmp_path)
    wf = load_workflow("flow.py")
    assert isinstance(wf, Workflow)
    assert wf.name == "simple" and list(wf.tasks) == ["fetch", "fit"]
    assert wf.source_file == str(path.resolve())
    assert wf.tasks["fit"].after == ("fetch",)
    assert wf.tasks["fit"].fn(None) is None


def test_same_basename_in_two_directories_do_not_clash(tmp_path):
    first = write(tmp_path / "one", SIMPLE.format(name="one", second="alpha"))
    second = write(tmp_path / "two", SIMPLE.format(name="two", second="beta"))
    wf1, wf2 = load_workflow(first), load_workflow(second)
    assert (wf1.name, wf2.name) == ("one", "two")
    assert list(wf2.tasks) == ["fetch", "beta"]
    assert module_name_for(first) != module_name_for(second)
    assert wf1.tasks["fetch"].fn.__module__ == module_name_for(first)
    assert load_workflow(first) is wf1


def test_loading_twice_returns_the_imported_workflow(tmp_path):
    path = write(tmp_path, SIMPLE.format(name="once", second="fit"))
    assert load_workflow(path) is load_workflow(str(path))


def test_spec_directory_is_importable_during_import_only(tmp_path):
    write(tmp_path, "STEPS = ('a', 'b')\n", "spec_helpers_loader_test.py")
    path = write(
        tmp_path,
        """
        from headwater.spec import Workflow
        from spec_helpers_loader_test import STEPS

        wf = Workflow("helped")
        for step in STEPS:
            wf.add_command_task(step, "true")
        """,
    )
    before = list(sys.path)
    wf = load_workflow(path)
    assert list(wf.tasks) == ["a", "b"]
    assert sys.path == before


def test_choosing_among_several_workflows(tmp_path):
    path = write(
        tmp_path,
        """
        from headwater.spec import Workflow

        def noop(ctx):
            return None

        main = Workflow("main-flow")
        main.task(noop, name="a")
        alias = main
        side = Workflow("side-flow")
        side.task(noop, name="b")
        """,
    )
    err = load_error(path)
    assert err.file == str(path.resolve())
    assert "'main-flow'" in str(err) and "'side-flow'" in str(err) and "several" in str(err)
    assert list(load_workflow(path, "side-flow").tasks) == ["b"]
    assert load_workflow(path, "main") is load_workflow(path, "main-flow")
    err = load_error(path, "third")
    assert "no workflow named 'third'" in str(err) and "'main-flow'" in str(err)


def test_a_file_without_a_workflow(tmp_path):
    path = write(tmp_path, "x = 1\n")
    err = load_error(path)
    assert err.file == str(path.resolve()) and "no Workflow" in str(err)


def test_an_invalid_spec_fails_validation_on_load(tmp_path):
    path = write(
        tmp_path,
        """
        from headwater.spec import Workflow

        wf = Workflow("broken")

        @wf.task(after="fetc")
        def clean(ctx):
            return None

        @wf.task
        def fetch(ctx):
            return None
        """,
    )
    err = load_error(path)
    assert (err.file, err.task, err.field) == (str(path.resolve()), "clean", "after")
    assert "did you mean 'fetch'?" in str(err)


def test_import_errors_are_wrapped_and_leave_nothing_behind(tmp_path):
    path = write(tmp_path, "from headwater.spec import Workflow\nwf = Workflow('w')\n\nraise ValueError('boom')\n")
    err = load_error(path)
    assert err.file == str(path.resolve())
    assert "ValueError: boom" in str(err) and "line 4" in str(err)
    assert isinstance(err.__cause__, ValueError)
    assert module_name_for(path) not in sys.modules
    write(tmp_path, SIMPLE.format(name="fixed", second="fit"))
    assert load_workflow(path).name == "fixed"


def test_syntax_errors_name_the_line(tmp_path):
    path = write(tmp_path, "from headwater.spec import Workflow\n\ndef broken(:\n    pass\n")
    err = load_error(path)
    assert "SyntaxError" in str(err) and "line 3" in str(err)


def test_declaration_errors_keep_task_and_field(tmp_path):
    path = write(
        tmp_path,
        """
        from headwater.spec import Workflow

        wf = Workflow("dup")

        @wf.task
        def solve(ctx):
            return None

        @wf.task(name="solve")
        def again(ctx):
            return None
        """,
    )
    err = load_error(path)
    assert (err.file, err.task, err.field) == (str(path.resolve()), "solve", "name")


def test_missing_file_directory_and_unknown_suffix(tmp_path):
    err = load_error(tmp_path / "absent.py")
    assert err.file == str((tmp_path / "absent.py").resolve()) and "no such file" in str(err)
    err = load_error(tmp_path)
    assert "directory" in str(err)
    other = write(tmp_path, "{}", "flow.json")
    err = load_error(other)
    assert err.file == str(other.resolve()) and "'.json'" in str(err)
