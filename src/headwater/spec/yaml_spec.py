"""Workflow specs written in YAML: the same workflow as shell-command steps.

The format::

    name: wordcount
    profile: analysis            # optional: simulation | analysis
    tags: [demo]
    description: Count words.
    params:
      n: {type: int, default: 3, help: "how many"}
      label: {type: str}         # no default: required
    tasks:
      - name: fetch
        run: "printf 'a b\\nc\\n' > {outputs[data]}"
        outputs: {data: data.txt}
        goal: Fetch the text
      - name: count
        after: [fetch]
        inputs: {data: fetch/data}
        run: "wc -w < {inputs[data]} > {outputs[count]}"
        outputs: {count: count.txt}
        verify: 1                # or {k: 2, reject: 1}
        retries: 2
        role: worker
        uses: ["lib:coreutils"]

Each task takes ``name`` and ``run`` (required) and optionally ``after``,
``inputs``, ``outputs``, ``verify``, ``retries``, ``priority``, ``role``,
``uses``, ``branches``, ``goal``, ``assumptions`` (a string or a list),
``concludes``, ``verifier`` (a shell command; exit status 0 approves),
``verifier_role``, ``pools`` and ``timeout`` (seconds). ``after``, ``uses``
and ``pools`` also accept a single string.

Placeholders in ``run`` and ``verifier`` are ``{inputs[name]}``,
``{outputs[name]}``, ``{params[name]}`` and ``{seed}``; literal braces are
written ``{{`` and ``}}`` (as in ``awk '{{print $1}}'``).

Branches: a task with ``branches: [a, b]`` decides which alternative runs.
Its command prints the chosen branch's name as the *last line of its
standard output*; every alternative lists the deciding task in ``after``.
Only the chosen alternative and what follows it run; the scheduler may run
the others speculatively and flushes them once the choice is known.

Parsing is in three steps, each with its own errors: YAML syntax (safe
loading; the error names the line, and a key repeated in one mapping is an
error rather than silently overwritten), structure (pydantic models with
``extra="forbid"`` and strict types; the first error names the task by its
``name`` and the field as a dotted path inside it, with "did you mean" for
misspelt keys), then meaning (``Workflow.validate``, which the loader runs).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from headwater.errors import SpecError
from headwater.spec.model import REQUIRED, Quorum
from headwater.spec.workflow import Workflow


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _QuorumModel(_Model):
    k: int
    reject: int = 1


class _ParamModel(_Model):
    type: Literal["int", "float", "str", "bool", "path"]
    default: Any = None
    help: str = ""


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _TaskModel(_Model):
    name: str
    run: str
    after: list[str] = []
    inputs: dict[str, str] = {}
    outputs: dict[str, str] = {}
    verify: _QuorumModel = _QuorumModel(k=0)
    retries: int = 0
    priority: int = 0
    role: str = "worker"
    uses: list[str] = []
    branches: list[str] = []
    goal: str | None = None
    assumptions: list[str] | None = None
    concludes: str | None = None
    verifier: str | None = None
    verifier_role: str = "verifier"
    pools: list[str] = []
    timeout: float | None = None

    @field_validator("after", "uses", "pools", "assumptions", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return _one_or_many(value)

    @field_validator("verify", mode="before")
    @classmethod
    def _quorum(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"k": value}
        if isinstance(value, dict):
            return value
        raise ValueError(f"verify must be an integer k or a mapping {{k: ..., reject: ...}}, got {value!r}")


class _SpecModel(_Model):
    name: str
    profile: Literal["simulation", "analysis"] | None = None
    tags: list[str] = []
    description: str = ""
    params: dict[str, _ParamModel] = {}
    tasks: list[_TaskModel] = Field(min_length=1)

    @field_validator("tags", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return _one_or_many(value)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated within one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (first on line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, file: str | None = None) -> Workflow:
    """Build a workflow from YAML text; structural errors raise ``SpecError``.

    The result is not yet validated for meaning (unknown ``after`` names,
    cycles, placeholders): :func:`headwater.spec.load_workflow` does that.
    """
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError(_yaml_message(exc), file=file) from None
    if not isinstance(data, dict):
        raise SpecError(
            f"expected a mapping with 'name' and 'tasks' at the top level, got {type(data).__name__}",
            file=file,
        )
    try:
        model = _SpecModel.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, data, file) from None

    names: dict[str, int] = {}
    for index, task in enumerate(model.tasks):
        if task.name in names:
            raise SpecError(
                f"task {task.name!r} is declared twice (tasks[{names[task.name]}] and tasks[{index}])",
                file=file,
                task=task.name,
                field="name",
            )
        names[task.name] = index

    try:
        wf = Workflow(model.name, profile=model.profile, tags=model.tags, description=model.description)
        wf.source_file = file
        for name, param in model.params.items():
            default = param.default if "default" in param.model_fields_set else REQUIRED
            wf.param(name, param.type, default=default, help=param.help)
        for task in model.tasks:
            wf.add_command_task(
                task.name,
                task.run,
                after=task.after,
                inputs=task.inputs,
                outputs=task.outputs,
                role=task.role,
                verify=Quorum(task.verify.k, task.verify.reject),
                uses=task.uses,
                retries=task.retries,
                priority=task.priority,
                branches=task.branches,
                goal=task.goal,
                assumptions=task.assumptions,
                concludes=task.concludes,
                verifier=task.verifier,
                verifier_role=task.verifier_role,
                pools=task.pools,
                timeout=task.timeout,
            )
    except SpecError as exc:
        raise SpecError(exc.detail, file=file, task=exc.task, field=exc.field) from None
    return wf


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        problem = f"{problem} ({context} started at line {context_mark.line + 1})"
    if mark is not None:
        return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"YAML syntax error: {problem}"


_MODEL_AT = {
    (): _SpecModel,
    ("tasks",): _TaskModel,
    ("params",): _ParamModel,
    ("tasks", "verify"): _QuorumModel,
}


def _translate(exc: ValidationError, data: dict[str, Any], file: str | None) -> SpecError:
    """The first pydantic error (unknown keys first) as a ``SpecError`` naming task and field."""
    errors = exc.errors(include_url=False)
    # an unknown key usually explains a "missing" one beside it (runn vs run)
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc: Sequence[Any] = error["loc"]
    task: str | None = None
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        raw = data.get("tasks")
        item = raw[loc[1]] if isinstance(raw, list) and loc[1] < len(raw) else None
        raw_name = item.get("name") if isinstance(item, dict) else None
        if isinstance(raw_name, str):
            task = raw_name
            field = _dotted(loc[2:]) or None
        else:
            field = _dotted(loc)
    else:
        field = _dotted(loc) or None

    message = _message(error, loc)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return SpecError(message, file=file, task=task, field=field)


def _dotted(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _message(error: dict[str, Any], loc: Sequence[Any]) -> str:
    kind = error["type"]
    key = loc[-1] if loc else ""
    if kind == "missing":
        return f"missing required field {key!r}"
    if kind == "extra_forbidden":
        shape = tuple(part for part in loc[:-1] if isinstance(part, str))
        if shape[:1] == ("params",):
            shape = ("params",)
        model = _MODEL_AT.get(shape)
        hint = ""
        if model is not None:
            allowed = list(model.model_fields)
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; allowed: {', '.join(allowed)}"
        return f"unknown field {key!r}{hint}"
    message = error["msg"]
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    given = repr(error.get("input"))
    if len(given) > 60:
        given = given[:57] + "..."
    return f"{message}, got {given}"
