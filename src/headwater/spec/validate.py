"""Checks a workflow spec before anything runs.

``validate_workflow`` walks a :class:`~headwater.spec.workflow.Workflow` in a
fixed order and raises the first problem as a :class:`SpecError` whose
``file``, ``task`` and ``field`` say where to look:

1. parameters: names, types, defaults that fit their type
   (``params.X``, ``params.X.type``, ``params.X.default``);
2. each task on its own, in declaration order: name, role, quorum, retries,
   priority, timeout, asset refs, the function or command and the verifier;
3. the graph: every ``after`` names a declared task (with a "did you mean"
   from :mod:`difflib`), and there is no cycle (the message shows it as
   ``a -> b -> a``, where ``x -> y`` means ``y`` runs after ``x``);
4. branches: at least two targets, each a declared task that lists the
   deciding task in its ``after``;
5. shell steps: each input ``"task/output"`` names an upstream task and one
   of its declared outputs, and every ``{placeholder}`` in a command refers to
   a declared input, output or parameter, or to ``{seed}``.

The graph helpers (:func:`find_cycle`, :func:`topo_order`, :func:`ancestors`,
:func:`descendants`) work on the ``tasks`` mapping alone and ignore names in
``after`` that are not declared, so they can also be used on a spec that has
not been validated.
"""

from __future__ import annotations

import difflib
import heapq
import inspect
import math
import re
import string
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from headwater.errors import SpecError
from headwater.spec.model import PARAM_TYPES, REQUIRED, Quorum, TaskSpec, check_value

if TYPE_CHECKING:
    from headwater.spec.workflow import Workflow

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
"""Task and output names: usable in dotted diff paths and in ``task/output`` refs."""

ASSET_REF_RE = re.compile(r"^[a-z][a-z0-9_]*:\S.*$")
"""Asset refs in ``uses``: ``kind:name`` such as ``lib:numpy`` or ``claim:g``."""

_PLACEHOLDER_RE = re.compile(r"^(inputs|outputs|params)\[([^\[\]]+)\]$")


def suggest(name: str, known: Iterable[str]) -> str:
    """A hint for a misspelt name: the closest known name, or the known names."""
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if not known:
        return " (none are declared)"
    shown = ", ".join(repr(k) for k in known[:10])
    more = ", ..." if len(known) > 10 else ""
    return f" (declared: {shown}{more})"


# ---------------------------------------------------------------- graph helpers


def _deps(tasks: Mapping[str, TaskSpec], name: str) -> list[str]:
    after = tasks[name].after
    if not isinstance(after, tuple):
        return []
    return [dep for dep in after if isinstance(dep, str) and dep in tasks]


def find_cycle(tasks: Mapping[str, TaskSpec]) -> list[str] | None:
    """A dependency cycle as ``[a, b, ..., a]`` in run order, or ``None``.

    Depth-first search in declaration order, so the same spec always reports
    the same cycle; the path is rotated to start at its earliest-declared task.
    """
    order = {name: i for i, name in enumerate(tasks)}
    state: dict[str, int] = {}
    for root in tasks:
        if root in state:
            continue
        stack: list[tuple[str, Iterable[str]]] = [(root, iter(_deps(tasks, root)))]
        path = [root]
        state[root] = 1
        while stack:
            node, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            if state.get(dep) == 1:
                # path runs from dependents down to dependencies; reverse for run order
                cycle = path[path.index(dep) :][::-1]
                start = min(range(len(cycle)), key=lambda i: order[cycle[i]])
                cycle = cycle[start:] + cycle[:start]
                return cycle + [cycle[0]]
            if dep not in state:
                state[dep] = 1
                path.append(dep)
                stack.append((dep, iter(_deps(tasks, dep))))
    return None


def cycle_error(tasks: Mapping[str, TaskSpec], cycle: list[str], file: str | None) -> SpecError:
    """The error for a dependency cycle, attributed to the cycle's first task."""
    return SpecError(
        "dependency cycle: " + " -> ".join(cycle) + " (each task runs after the one before it)",
        file=file,
        task=cycle[0],
        field="after",
    )


def topo_order(tasks: Mapping[str, TaskSpec], file: str | None = None) -> list[str]:
    """Kahn's algorithm; among ready tasks the earliest declared comes first.

    Raises the cycle error when the graph has a cycle.
    """
    index = {name: i for i, name in enumerate(tasks)}
    waiting = {name: len(set(_deps(tasks, name))) for name in tasks}
    dependents: dict[str, list[str]] = {name: [] for name in tasks}
    for name in tasks:
        for dep in set(_deps(tasks, name)):
            dependents[dep].append(name)
    ready = [index[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    names = list(tasks)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for child in dependents[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, index[child])
    if len(order) != len(tasks):
        cycle = find_cycle(tasks)
        assert cycle is not None
        raise cycle_error(tasks, cycle, file)
    return order


def ancestors(tasks: Mapping[str, TaskSpec], name: str) -> set[str]:
    """Every task ``name`` runs after, directly or transitively."""
    seen: set[str] = set()
    todo = list(_deps(tasks, name))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(_deps(tasks, dep))
    seen.discard(name)
    return seen


def descendants(tasks: Mapping[str, TaskSpec], name: str) -> set[str]:
    """Every task that runs after ``name``, directly or transitively."""
    dependents: dict[str, list[str]] = {n: [] for n in tasks}
    for n in tasks:
        for dep in _deps(tasks, n):
            dependents[dep].append(n)
    seen: set[str] = set()
    todo = list(dependents.get(name, ()))
    while todo:
        child = todo.pop()
        if child not in seen:
            seen.add(child)
            todo.extend(dependents[child])
    seen.discard(name)
    return seen


# ---------------------------------------------------------------- placeholders


def placeholders(command: str) -> list[tuple[str, str | None]]:
    """The ``{...}`` fields of a command as ``(kind, key)`` pairs.

    ``{inputs[x]}`` -> ``("inputs", "x")``, ``{seed}`` -> ``("seed", None)``.
    Raises ``ValueError`` for malformed braces and for any other field.
    """
    found: list[tuple[str, str | None]] = []
    for _literal, field_name, format_spec, _conversion in string.Formatter().parse(command):
        if field_name is None:
            continue
        if format_spec and "{" in format_spec:
            raise ValueError(f"nested placeholder in format spec {format_spec!r}")
        if field_name == "seed":
            found.append(("seed", None))
            continue
        match = _PLACEHOLDER_RE.match(field_name)
        if not match:
            raise ValueError(
                f"unknown placeholder {{{field_name}}}; use {{inputs[name]}}, {{outputs[name]}}, "
                "{params[name]} or {seed}, and write {{ and }} for literal braces"
            )
        found.append((match.group(1), match.group(2)))
    return found


# ---------------------------------------------------------------- the checks


def validate_workflow(wf: Workflow, file: str | None = None) -> None:
    """Raise the first problem of ``wf`` as a :class:`SpecError`; return when it is sound."""
    _check_params(wf, file)
    # Many tasks often share one function (a generated fan-out): its
    # signature is read once per validation, keyed by the object, which the
    # workflow keeps alive (and unchanged) for the length of this call.
    accepts: dict[tuple[int, int], bool] = {}
    for spec in wf.tasks.values():
        _check_task(wf, spec, file, accepts)
    tasks = wf.tasks
    for spec in tasks.values():
        for dep in spec.after:
            if dep not in tasks:
                raise SpecError(
                    f"runs after {dep!r}, which is not a declared task"
                    + suggest(dep, [n for n in tasks if n != spec.name]),
                    file=file,
                    task=spec.name,
                    field="after",
                )
    cycle = find_cycle(tasks)
    if cycle:
        raise cycle_error(tasks, cycle, file)
    for spec in tasks.values():
        _check_branches(tasks, spec, file)
    for spec in tasks.values():
        _check_io(wf, spec, file)


def _check_params(wf: Workflow, file: str | None) -> None:
    for name, param in wf.params.items():
        where = f"params.{name}"
        if not isinstance(name, str) or not name.isidentifier():
            raise SpecError(
                f"parameter name {name!r} must be a Python identifier", file=file, field=where
            )
        if param.type not in PARAM_TYPES:
            raise SpecError(
                f"unknown type {param.type!r}; expected one of {', '.join(PARAM_TYPES)}",
                file=file,
                field=f"{where}.type",
            )
        if param.default is not REQUIRED:
            problem = check_value(param.type, param.default)
            if problem:
                raise SpecError(
                    f"default does not match type: {problem}", file=file, field=f"{where}.default"
                )
        if not isinstance(param.help, str):
            raise SpecError("help must be a string", file=file, field=f"{where}.help")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_str_tuple(value: Any, file: str | None, task: str, field: str, what: str) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        raise SpecError(f"{field} must be a list of {what}, got {value!r}", file=file, task=task, field=field)


def _check_task(wf: Workflow, spec: TaskSpec, file: str | None,
                accepts: dict[tuple[int, int], bool] | None = None) -> None:
    name = spec.name

    def fail(message: str, field: str) -> SpecError:
        return SpecError(message, file=file, task=str(name), field=field)

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise fail(
            f"task name {name!r} must start with a letter or _ and contain only letters, digits, _ and -",
            "name",
        )
    for field in ("role", "verifier_role"):
        value = getattr(spec, field)
        if not isinstance(value, str) or not value.strip():
            raise fail(f"{field} must be a non-empty string, got {value!r}", field)
    _check_str_tuple(spec.after, file, name, "after", "task names")
    quorum = spec.quorum
    if not isinstance(quorum, Quorum) or not _is_int(quorum.k) or not _is_int(quorum.reject):
        raise fail(f"verify must be an int or quorum(k, reject), got {quorum!r}", "verify")
    if quorum.k < 0:
        raise fail(f"verify needs k >= 0 approvals, got k={quorum.k}", "verify")
    if quorum.reject < 1:
        raise fail(f"a quorum needs reject >= 1 rejections to refute, got reject={quorum.reject}", "verify")
    if not _is_int(spec.retries):
        raise fail(f"retries must be an int, got {spec.retries!r}", "retries")
    if spec.retries < 0:
        raise fail(f"retries must be >= 0, got {spec.retries}", "retries")
    if not _is_int(spec.priority):
        raise fail(f"priority must be an int, got {spec.priority!r}", "priority")
    if spec.timeout is not None:
        ok = isinstance(spec.timeout, (int, float)) and not isinstance(spec.timeout, bool)
        if not ok or not math.isfinite(spec.timeout) or spec.timeout <= 0:
            raise fail(f"timeout must be a positive number of seconds, got {spec.timeout!r}", "timeout")
    _check_str_tuple(spec.uses, file, name, "uses", "asset refs")
    for ref in spec.uses:
        if not ASSET_REF_RE.match(ref):
            raise fail(f"asset ref {ref!r} must look like kind:name, e.g. 'lib:numpy'", "uses")
    _check_str_tuple(spec.pools, file, name, "pools", "pool names")
    _check_str_tuple(spec.branches, file, name, "branches", "task names")
    if spec.branches and len(spec.branches) < 2:
        raise fail(
            f"a branching task needs at least 2 alternatives, got {list(spec.branches)}", "branches"
        )
    _check_body(spec, fail, accepts)
    _check_verifier(spec, fail, accepts)


def _check_body(spec: TaskSpec, fail: Any, accepts: dict[tuple[int, int], bool] | None = None) -> None:
    if spec.fn is not None and spec.command is not None:
        raise fail("a task has either a function or a command, not both", "command")
    if spec.fn is None and spec.command is None:
        raise fail("a task needs a function or a command", "command")
    if spec.fn is not None:
        if not callable(spec.fn):
            raise fail(f"fn must be callable, got {spec.fn!r}", "fn")
        if not _accepts(spec.fn, 1, accepts):
            raise fail("a task function takes one argument, the context: fn(ctx)", "fn")
        if spec.inputs or spec.outputs:
            field = "inputs" if spec.inputs else "outputs"
            raise fail("only command tasks declare inputs and outputs", field)
        return
    if not isinstance(spec.command, str) or not spec.command.strip():
        raise fail(f"command must be a non-empty string, got {spec.command!r}", "command")
    for field in ("inputs", "outputs"):
        mapping = getattr(spec, field)
        if not isinstance(mapping, dict):
            raise fail(f"{field} must be a mapping of names to strings, got {mapping!r}", field)
        for key, value in mapping.items():
            if not isinstance(key, str) or not NAME_RE.match(key):
                raise fail(f"{field} name {key!r} must be letters, digits, _ and -", field)
            if not isinstance(value, str) or not value:
                raise fail(f"{field}[{key!r}] must be a non-empty string, got {value!r}", f"{field}.{key}")
    seen: dict[str, str] = {}
    for key, filename in spec.outputs.items():
        if not _is_relative_file(filename):
            raise fail(
                f"output file {filename!r} must be a relative path inside the task's directory",
                f"outputs.{key}",
            )
        if filename in seen:
            raise fail(f"outputs {seen[filename]!r} and {key!r} both write {filename!r}", f"outputs.{key}")
        seen[filename] = key


def _is_relative_file(filename: str) -> bool:
    posix, windows = PurePosixPath(filename), PureWindowsPath(filename)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return False
    return ".." not in posix.parts and ".." not in windows.parts and posix.name not in ("", ".")


def _accepts(fn: Any, count: int, seen: dict[tuple[int, int], bool] | None = None) -> bool:
    """Whether ``fn`` can be called with ``count`` positional arguments (True when unknowable).

    ``seen`` remembers answers by ``(id(fn), count)``; the caller keeps every
    ``fn`` alive while it uses the dict, so an id is never reused in it."""
    if seen is None:
        return _bindable(fn, count)
    key = (id(fn), count)
    if key not in seen:
        seen[key] = _bindable(fn, count)
    return seen[key]


def _bindable(fn: Any, count: int) -> bool:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True


def _check_verifier(spec: TaskSpec, fail: Any, accepts: dict[tuple[int, int], bool] | None = None) -> None:
    verifier = spec.verifier
    if verifier is None:
        return
    if isinstance(verifier, str):
        if not verifier.strip():
            raise fail("a verifier command must not be empty", "verifier")
        return
    if not callable(verifier):
        raise fail(f"verifier must be a function or a shell command, got {verifier!r}", "verifier")
    if not _accepts(verifier, 2, accepts):
        raise fail("a verifier function takes two arguments: verifier(ctx, bundle_view)", "verifier")


def _check_branches(tasks: Mapping[str, TaskSpec], spec: TaskSpec, file: str | None) -> None:
    for target in spec.branches:
        if target not in tasks:
            raise SpecError(
                f"branch target {target!r} is not a declared task"
                + suggest(target, [n for n in tasks if n != spec.name]),
                file=file,
                task=spec.name,
                field="branches",
            )
        if spec.name not in tasks[target].after:
            raise SpecError(
                f"branch target {target!r} must list {spec.name!r} in its after, "
                f"since {spec.name!r} decides whether it runs",
                file=file,
                task=spec.name,
                field="branches",
            )


def _check_io(wf: Workflow, spec: TaskSpec, file: str | None) -> None:
    tasks = wf.tasks

    def fail(message: str, field: str) -> SpecError:
        return SpecError(message, file=file, task=spec.name, field=field)

    if spec.command is None:
        if isinstance(spec.verifier, str):
            _check_placeholders(wf, spec, spec.verifier, "verifier", fail)
        return
    upstream = ancestors(tasks, spec.name)
    for local, ref in spec.inputs.items():
        field = f"inputs.{local}"
        producer, sep, output = ref.partition("/")
        if not sep or not producer or not output or "/" in output:
            raise fail(f"input {ref!r} must be written task/output", field)
        if producer not in tasks:
            raise fail(
                f"input {ref!r} names {producer!r}, which is not a declared task"
                + suggest(producer, sorted(upstream)),
                field,
            )
        if producer not in upstream:
            raise fail(
                f"input {ref!r} comes from {producer!r}, which is not upstream of {spec.name!r}; "
                f"add {producer!r} to after",
                field,
            )
        declared = tasks[producer].outputs
        if output not in declared:
            raise fail(
                f"input {ref!r}: task {producer!r} declares no output {output!r}"
                + suggest(output, list(declared)),
                field,
            )
    _check_placeholders(wf, spec, spec.command, "command", fail)
    if isinstance(spec.verifier, str):
        _check_placeholders(wf, spec, spec.verifier, "verifier", fail)


def _check_placeholders(wf: Workflow, spec: TaskSpec, command: str, field: str, fail: Any) -> None:
    try:
        found = placeholders(command)
    except ValueError as exc:
        raise fail(f"bad placeholder in {field}: {exc}", field) from None
    declared = {"inputs": spec.inputs, "outputs": spec.outputs, "params": wf.params}
    for kind, key in found:
        if kind == "seed":
            continue
        assert key is not None
        if key not in declared[kind]:
            what = {"inputs": "input", "outputs": "output", "params": "parameter"}[kind]
            raise fail(
                f"{{{kind}[{key}]}} refers to no declared {what}" + suggest(key, list(declared[kind])),
                field,
            )
