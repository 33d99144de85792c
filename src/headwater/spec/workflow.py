"""``Workflow``: a named set of parameters and tasks, declared in Python or YAML.

In Python a workflow is declared with decorators that return the function
unchanged, so a task stays an ordinary importable, testable function::

    wf = Workflow("decay", profile="simulation", tags=["physics"])
    wf.param("n", int, default=1000)

    @wf.task(uses=["lib:numpy"])
    def simulate(ctx):
        "Goal: Simulate n decays."

    @wf.task(after=simulate, verify=2)
    def fit(ctx):
        ...

    @wf.verifier(fit)
    def check_fit(ctx, bundle):
        return bundle.claims["half_life"] > 0

YAML specs build the same object through :meth:`Workflow.add_command_task`.

Declaring is cheap and records facts; only a duplicate task name (and
arguments of a shape that cannot be stored at all) fail at declaration time.
Everything else is checked by :meth:`Workflow.validate`, which the loader
calls before returning, so errors can name the spec file.

The description (:meth:`Workflow.describe`) is the spec as canonical JSON:
the spec hash is its hash, each task's hash covers that task's own entry
only, and :func:`diff_specs` lists the dotted paths at which two
descriptions differ. These are what a checkpoint bundle records as the spec
and the spec diff.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from headwater.checkpoint.canonical import hash_obj
from headwater.errors import SpecError
from headwater.spec import validate as _validate
from headwater.spec.model import (
    REQUIRED,
    Param,
    Quorum,
    TaskSpec,
    coerce_value,
    make_intent,
    normalise_default,
    param_type_name,
)

PROFILES: tuple[str | None, ...] = (None, "simulation", "analysis")
"""Checkpoint profiles a workflow may declare; each adds its own bundle fields."""

SPEC_FORMAT = 1
"""Version of the :meth:`Workflow.describe` layout; part of every spec hash."""

_NOT_GIVEN: Any = object()


def _source_file(fn: Any) -> str | None:
    try:
        return inspect.getsourcefile(fn) or inspect.getfile(fn)
    except TypeError:
        return None


class Workflow:
    """A workflow spec: parameters and tasks in declaration order.

    ``tasks`` maps each name to its :class:`TaskSpec` in declaration order,
    which is the tie-break of :meth:`topo_order`. ``source_file`` is the
    absolute path the spec was loaded from (set by the loader), used by
    :meth:`validate` and :meth:`resolve_params` when no file is given.
    """

    def __init__(
        self,
        name: str,
        *,
        profile: str | None = None,
        tags: Iterable[str] = (),
        description: str = "",
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"a workflow needs a non-empty name, got {name!r}", field="name")
        if profile not in PROFILES:
            raise SpecError(
                f"profile must be 'simulation', 'analysis' or None, got {profile!r}", field="profile"
            )
        tag_list = [tags] if isinstance(tags, str) else list(tags)
        if not all(isinstance(tag, str) and tag for tag in tag_list):
            raise SpecError(f"tags must be non-empty strings, got {tag_list!r}", field="tags")
        if not isinstance(description, str):
            raise SpecError("description must be a string", field="description")
        self.name = name
        self.profile = profile
        self.tags: tuple[str, ...] = tuple(dict.fromkeys(tag_list))
        self.description = description
        self.params: dict[str, Param] = {}
        self.tasks: dict[str, TaskSpec] = {}
        self.source_file: str | None = None
        self._names_by_fn: dict[int, tuple[Callable[..., Any], str]] = {}

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, tasks={list(self.tasks)!r})"

    # ------------------------------------------------------------ declaring

    def param(self, name: str, type: Any = "float", default: Any = REQUIRED, help: str = "") -> None:
        """Declare a run parameter; ``type`` is a type name or ``int``/``float``/``str``/``bool``/``Path``."""
        if name in self.params:
            raise SpecError(f"parameter {name!r} is declared twice", field=f"params.{name}")
        type_name = param_type_name(type)
        if not isinstance(type_name, str):
            type_name = getattr(type_name, "__name__", repr(type_name))
        self.params[name] = Param(name, type_name, normalise_default(type_name, default), help)

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        role: str = "worker",
        after: Any = (),
        verify: int | Quorum = 0,
        uses: Iterable[str] | str = (),
        retries: int = 0,
        priority: int = 0,
        branches: Any = (),
        goal: str | None = None,
        assumptions: str | Iterable[str] | None = None,
        concludes: str | None = None,
        verifier: Callable[..., Any] | str | None = None,
        verifier_role: str = "verifier",
        pools: Iterable[str] | str = (),
        timeout: float | None = None,
    ) -> Any:
        """Declare a Python task; use as ``@wf.task`` or ``@wf.task(...)``.

        ``after`` and ``branches`` take task names, task functions, or an
        iterable of them. ``verify`` is ``k`` or a :class:`Quorum`. Intent
        fields not given are read from the docstring. Returns the function
        unchanged. A task name declared twice raises ``SpecError`` here.
        """
        options = dict(
            name=name, role=role, after=after, verify=verify, uses=uses, retries=retries,
            priority=priority, branches=branches, goal=goal, assumptions=assumptions,
            concludes=concludes, verifier=verifier, verifier_role=verifier_role, pools=pools,
            timeout=timeout,
        )
        if fn is None:
            return lambda f: self._add_function(f, **options)
        return self._add_function(fn, **options)

    def _add_function(self, fn: Any, *, name: str | None, **options: Any) -> Any:
        if isinstance(fn, str):
            raise SpecError(
                f"@task takes a function; to name the task write @task(name={fn!r})",
                task=fn,
                field="name",
            )
        if not callable(fn):
            raise SpecError(f"@task needs a function, got {fn!r}", field="fn")
        task_name = name if name is not None else getattr(fn, "__name__", repr(fn))
        file = _source_file(fn)
        spec = self._build(task_name, file, fn.__doc__, fn=fn, **options)
        self._names_by_fn[id(fn)] = (fn, task_name)
        self.tasks[task_name] = spec
        return fn

    def add_command_task(
        self,
        name: str,
        command: str,
        *,
        after: Any = (),
        inputs: Mapping[str, str] | None = None,
        outputs: Mapping[str, str] | None = None,
        role: str = "worker",
        verify: int | Quorum = 0,
        uses: Iterable[str] | str = (),
        retries: int = 0,
        priority: int = 0,
        branches: Any = (),
        goal: str | None = None,
        assumptions: str | Iterable[str] | None = None,
        concludes: str | None = None,
        verifier: Callable[..., Any] | str | None = None,
        verifier_role: str = "verifier",
        pools: Iterable[str] | str = (),
        timeout: float | None = None,
    ) -> TaskSpec:
        """Declare a shell step (what YAML specs are made of) and return its spec.

        ``inputs`` maps local names to ``"task/output"``; ``outputs`` maps
        output names to file names relative to the task's directory. A
        branching step prints the chosen branch's name as the last line of
        its standard output.
        """
        spec = self._build(
            name, self.source_file, None, command=command, inputs=inputs,
            outputs=outputs, after=after, role=role, verify=verify, uses=uses,
            retries=retries, priority=priority, branches=branches, goal=goal,
            assumptions=assumptions, concludes=concludes, verifier=verifier,
            verifier_role=verifier_role, pools=pools, timeout=timeout,
        )
        self.tasks[name] = spec
        return spec

    def _build(
        self,
        name: str,
        file: str | None,
        doc: str | None,
        *,
        after: Any,
        verify: Any,
        branches: Any,
        goal: str | None,
        assumptions: Any,
        concludes: str | None,
        **fields: Any,
    ) -> TaskSpec:
        if name in self.tasks:
            raise SpecError(
                f"a task named {name!r} is already declared", file=file, task=name, field="name"
            )
        if isinstance(verify, Quorum):
            quorum = verify
        elif isinstance(verify, int) and not isinstance(verify, bool):
            quorum = Quorum(verify)
        else:
            raise SpecError(
                f"verify must be an int or quorum(k, reject), got {verify!r}",
                file=file, task=name, field="verify",
            )
        if assumptions is not None and not isinstance(assumptions, str):
            assumptions = list(assumptions)
        return TaskSpec(
            name=name,
            after=self._task_refs(after, name, "after", file),
            quorum=quorum,
            branches=self._task_refs(branches, name, "branches", file),
            intent=make_intent(name, doc, goal, assumptions, concludes),
            **fields,
        )

    def _task_refs(self, value: Any, task: str, field: str, file: str | None) -> tuple[str, ...]:
        """Names from a name, a task function, or an iterable of either."""
        if isinstance(value, str) or callable(value):
            value = [value]
        try:
            items = list(value)
        except TypeError:
            raise SpecError(
                f"{field} takes task names or task functions, got {value!r}",
                file=file, task=task, field=field,
            ) from None
        names = []
        for item in items:
            if isinstance(item, str):
                names.append(item)
            elif callable(item):
                names.append(self._name_of(item))
            else:
                raise SpecError(
                    f"{field} takes task names or task functions, got {item!r}",
                    file=file, task=task, field=field,
                )
        return tuple(dict.fromkeys(names))

    def _name_of(self, fn: Callable[..., Any]) -> str:
        """The task name a function was declared under (its ``__name__`` if it was not)."""
        entry = self._names_by_fn.get(id(fn))
        if entry is not None and entry[0] is fn:
            return entry[1]
        return getattr(fn, "__name__", repr(fn))

    def verifier(self, task: str | Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator attaching ``verifier(ctx, bundle_view) -> bool | str`` to a declared task."""
        name = task if isinstance(task, str) else self._name_of(task)

        def attach(fn: Callable[..., Any]) -> Callable[..., Any]:
            file = _source_file(fn)
            if name not in self.tasks:
                raise SpecError(
                    f"no task named {name!r} to verify; declare the task first"
                    + _validate.suggest(name, self.tasks),
                    file=file, task=name, field="verifier",
                )
            if not callable(fn):
                raise SpecError(
                    f"a verifier must be a function, got {fn!r}", file=file, task=name, field="verifier"
                )
            if self.tasks[name].verifier is not None:
                raise SpecError("this task already has a verifier", file=file, task=name, field="verifier")
            self.tasks[name] = dataclasses.replace(self.tasks[name], verifier=fn)
            return fn

        return attach

    # ------------------------------------------------------------ checking

    def validate(self, file: str | None = None) -> None:
        """Raise the first problem of the spec as a ``SpecError`` naming file, task and field."""
        _validate.validate_workflow(self, file or self.source_file)

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Parameter values for a run: ``given`` coerced to the declared types, defaults filled in.

        CLI strings are parsed (``"3"`` -> 3, ``"yes"`` -> True). Unknown,
        missing and uncoercible parameters raise ``SpecError`` with field
        ``params.X``. The result is in declaration order.
        """
        file = self.source_file
        for key in given:
            if key not in self.params:
                raise SpecError(
                    f"unknown parameter {key!r}" + _validate.suggest(key, self.params),
                    file=file, field=f"params.{key}",
                )
        values: dict[str, Any] = {}
        for name, param in self.params.items():
            if name in given:
                try:
                    values[name] = coerce_value(param.type, given[name])
                except ValueError as exc:
                    raise SpecError(str(exc), file=file, field=f"params.{name}") from None
            elif param.required:
                raise SpecError(
                    f"parameter {name!r} ({param.type}) is required and has no default",
                    file=file, field=f"params.{name}",
                )
            else:
                values[name] = param.default
        return values

    # ------------------------------------------------------------ graph

    def topo_order(self) -> list[str]:
        """Task names so that each comes after its dependencies; ties by declaration order."""
        return _validate.topo_order(self.tasks, self.source_file)

    def downstream(self, name: str) -> set[str]:
        """Every task that runs after ``name``, directly or transitively."""
        self._require(name)
        return _validate.descendants(self.tasks, name)

    def upstream(self, name: str) -> set[str]:
        """Every task ``name`` runs after, directly or transitively."""
        self._require(name)
        return _validate.ancestors(self.tasks, name)

    def _require(self, name: str) -> None:
        if name not in self.tasks:
            raise SpecError(
                f"no task named {name!r}" + _validate.suggest(name, self.tasks),
                file=self.source_file, task=name, field="name",
            )

    # ------------------------------------------------------------ description

    def describe(self) -> dict[str, Any]:
        """The whole spec as canonical-JSON-able data (callables appear as their source hashes)."""
        tasks = {}
        for name, spec in self.tasks.items():
            entry = _task_entry(spec)
            entry["task_hash"] = hash_obj(entry)
            tasks[name] = entry
        return {
            "format": SPEC_FORMAT,
            "name": self.name,
            "profile": self.profile,
            "tags": sorted(self.tags),
            "description": self.description,
            "params": {
                name: {
                    "type": p.type,
                    "required": p.required,
                    "default": None if p.required else p.default,
                    "help": p.help,
                }
                for name, p in self.params.items()
            },
            "tasks": tasks,
        }

    def spec_hash(self) -> str:
        """sha256 of the canonical description: equal specs, equal hashes."""
        return hash_obj(self.describe())

    def task_hash(self, name: str) -> str:
        """Hash of one task's own entry; unaffected by changes to any other task."""
        self._require(name)
        return hash_obj(_task_entry(self.tasks[name]))


def _task_entry(spec: TaskSpec) -> dict[str, Any]:
    """One task's description: every field but the callables, plus its code hashes."""
    if callable(spec.verifier):
        verifier: Any = {"kind": "python", "source_hash": spec.verifier_hash}
    elif isinstance(spec.verifier, str):
        verifier = {"kind": "command", "command": spec.verifier}
    else:
        verifier = None
    timeout = spec.timeout
    if isinstance(timeout, int) and not isinstance(timeout, bool):
        timeout = float(timeout)
    return {
        "name": spec.name,
        "kind": spec.kind,
        "role": spec.role,
        "after": sorted(spec.after),
        "quorum": {"k": spec.quorum.k, "reject": spec.quorum.reject},
        "uses": sorted(spec.uses),
        "retries": spec.retries,
        "priority": spec.priority,
        "branches": list(spec.branches),
        "intent": {
            "goal": spec.intent.goal,
            "assumptions": list(spec.intent.assumptions),
            "concludes": spec.intent.concludes,
        },
        "command": spec.command,
        "inputs": dict(spec.inputs),
        "outputs": dict(spec.outputs),
        "verifier": verifier,
        "verifier_role": spec.verifier_role,
        "pools": list(spec.pools),
        "timeout": timeout,
        "source_hash": spec.source_hash,
    }


def diff_specs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Sorted dotted paths at which two :meth:`Workflow.describe` dicts differ.

    A key present on one side only is reported at its own path (a new task is
    ``tasks.<name>``); lists and scalars are compared whole. A task's
    ``task_hash`` is derived from its other fields, so it is reported only
    when nothing else in that task explains the change.
    """
    paths: list[str] = []
    _diff(old, new, (), paths)
    found = set(paths)
    kept = []
    for path in paths:
        parts = path.split(".")
        if len(parts) == 3 and parts[0] == "tasks" and parts[2] == "task_hash":
            prefix = f"tasks.{parts[1]}."
            if any(p.startswith(prefix) and p != path for p in found):
                continue
        kept.append(path)
    return sorted(kept)


def _diff(old: Any, new: Any, prefix: tuple[str, ...], out: list[str]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in set(old) | set(new):
            path = prefix + (str(key),)
            if key not in old or key not in new:
                out.append(".".join(path))
            elif old[key] != new[key] or type(old[key]) is not type(new[key]):
                _diff(old[key], new[key], path, out)
    elif old != new or type(old) is not type(new):
        out.append(".".join(prefix))
