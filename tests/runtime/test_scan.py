"""Reading a task's code for the names it loads, without running it."""

import dis
import json
import types

import headwater.runtime.coordinator as coordinator_module
from headwater.runtime.context import _loads

WANTED = ("IMPORT_NAME", "LOAD_GLOBAL", "LOAD_NAME")


def _codes(code, seen):
    if isinstance(code, types.CodeType) and id(code) not in seen:
        seen.add(id(code))
        yield code
        for const in code.co_consts:
            yield from _codes(const, seen)


def _module_code(module):
    with open(module.__file__, encoding="utf-8") as fh:
        return compile(fh.read(), module.__file__, "exec")


def test_loads_match_dis_on_whole_modules():
    checked = 0
    for module in (json.encoder, dis, coordinator_module):
        for code in _codes(_module_code(module), set()):
            expected = [(i.opname, str(i.argval)) for i in dis.get_instructions(code) if i.opname in WANTED]
            assert _loads(code) == expected, code
            checked += 1
    assert checked > 100


def test_loads_read_specialised_functions_as_written():
    def hot(x):
        import math

        return json.dumps({"a": x}) + str(math.floor(x)) + repr(coordinator_module.FOLLOW_MAX)

    for i in range(2000):  # long enough for the interpreter to specialise it
        hot(i)
    expected = [(i.opname, str(i.argval)) for i in dis.get_instructions(hot.__code__) if i.opname in WANTED]
    assert _loads(hot.__code__) == expected
    assert ("IMPORT_NAME", "math") in expected and ("LOAD_GLOBAL", "json") in expected


def test_many_names_need_extended_arguments():
    names = [f"g{i}" for i in range(300)]
    source = "def f():\n    return [" + ", ".join(names) + "]\n"
    space: dict = {}
    exec(compile(source, "<many>", "exec"), space)
    loads = _loads(space["f"].__code__)
    assert [name for _, name in loads] == names
