"""The values a workflow spec is made of.

A spec is plain, frozen data. ``Param`` declares a run parameter, ``Quorum``
how many verifier sign-offs a task needs, ``Intent`` what a task is for, and
``TaskSpec`` everything the scheduler, the runtime and the checkpoint writer
need to know about one task. Nothing here runs a task or touches the disk
(``inspect.getsource`` reads through ``linecache``, the one exception, and
only to hash a task's code).

Two derived values are fixed when a ``TaskSpec`` is built, so a spec can be
compared with a later version of itself:

* ``source_hash`` -- sha256 of the task's code. For a Python task that is the
  dedented source of its function *without its decorator lines*, so changing
  ``@wf.task(retries=2)`` to ``retries=3`` shows up once, as a change of the
  ``retries`` field, and not a second time as a code change. For a shell step
  it is the hash of the command together with its inputs and outputs. When a
  function's source cannot be read (a REPL, ``exec``), the hash falls back to
  its compiled code, which is stable for one Python version.
* ``verifier_hash`` -- the same for the verifier (function or command), so a
  changed verifier is a visible change of the spec.

Intent (goal, assumptions, conclusion) is what a checkpoint's claim summary
reports for a task. It comes from the decorator's ``goal=``/``assumptions=``/
``concludes=`` when given, each field on its own, and otherwise from the
function's docstring::

    Goal: Fit the decay rate.
    Assumptions:
    - counts are Poisson
    - background is flat
    Concludes: the half-life in seconds

Without such sections the docstring's first paragraph is the goal; without a
docstring the goal is the task's name made readable.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import math
import os
import pathlib
import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from headwater.checkpoint.canonical import hash_obj, sha256_hex

PARAM_TYPES: tuple[str, ...] = ("int", "float", "str", "bool", "path")
"""The parameter types a spec may declare."""

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class _Required:
    """Type of :data:`REQUIRED`: one instance, pickles and copies as itself."""

    _instance: _Required | None = None

    def __new__(cls) -> _Required:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of a parameter that has none: a run must give a value."""


@dataclass(frozen=True)
class Param:
    """A run parameter: its name, type (one of :data:`PARAM_TYPES`), default and help."""

    name: str
    type: str
    default: Any = REQUIRED
    help: str = ""

    @property
    def required(self) -> bool:
        """True when a run must give this parameter a value."""
        return self.default is REQUIRED


@dataclass(frozen=True)
class Quorum:
    """Verification quorum: ``k`` approvals commit a task, ``reject`` rejections refute it.

    Approvals count only from distinct agents other than the producer; that
    rule belongs to the scheduler, this is just the threshold. ``k == 0``
    means the task commits as soon as it finishes.
    """

    k: int
    reject: int = 1


def quorum(k: int, reject: int = 1) -> Quorum:
    """Build a :class:`Quorum`; reads well in ``@wf.task(verify=quorum(2, reject=2))``."""
    return Quorum(k, reject)


@dataclass(frozen=True)
class Intent:
    """What a task sets out to do, what it takes for granted, and what it concludes."""

    goal: str
    assumptions: tuple[str, ...] = ()
    concludes: str = ""


_NO_INTENT = Intent("")


def _as_names(value: Any) -> Any:
    """A str or a collection of str as a de-duplicated tuple; anything else unchanged.

    Sets are sorted so their order does not depend on string hashing. Values
    of other types are left alone for validation to report with context.
    """
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (set, frozenset)):
        try:
            return tuple(sorted(value))
        except TypeError:
            return tuple(value)
    if isinstance(value, (list, tuple)):
        try:
            return tuple(dict.fromkeys(value))
        except TypeError:
            return tuple(value)
    return value


@dataclass(frozen=True)
class TaskSpec:
    """One task of a workflow, as declared.

    A task is either a Python function ``fn(ctx)`` (returning ``None``, or
    the name of the chosen branch when ``branches`` is set) or a shell
    ``command`` whose ``inputs`` name upstream outputs as ``"task/output"``
    and whose ``outputs`` map output names to relative file names. The
    command's placeholders are ``{inputs[name]}``, ``{outputs[name]}``,
    ``{params[name]}`` and ``{seed}``.

    ``verifier`` is a function ``(ctx, bundle_view) -> bool | str`` (``True``
    approves, ``False`` or a string rejects with that reason) or a shell
    command (exit status 0 approves). ``verifier_role`` is the role of the
    agents allowed to sign off, ``pools`` the compute pools the task may run
    on, ``timeout`` seconds per attempt.

    Collections given as lists are stored as tuples; ``intent`` defaults to
    the humanised name and ``source_hash`` is computed when not given, so
    ``TaskSpec("fit", fn=fit)`` is complete. Types are checked by
    ``Workflow.validate``, not here, so that errors can name the spec file.
    """

    name: str
    role: str = "worker"
    after: tuple[str, ...] = ()
    quorum: Quorum = Quorum(0)
    uses: tuple[str, ...] = ()
    retries: int = 0
    priority: int = 0
    branches: tuple[str, ...] = ()
    intent: Intent = _NO_INTENT
    fn: Callable[..., Any] | None = None
    command: str | None = None
    inputs: Mapping[str, str] = field(default_factory=dict, hash=False)
    outputs: Mapping[str, str] = field(default_factory=dict, hash=False)
    verifier: Callable[..., Any] | str | None = None
    verifier_role: str = "verifier"
    pools: tuple[str, ...] = ()
    timeout: float | None = None
    source_hash: str = ""
    verifier_hash: str = field(default="", init=False)

    def __post_init__(self) -> None:
        for name in ("after", "uses", "branches", "pools"):
            object.__setattr__(self, name, _as_names(getattr(self, name)))
        for name in ("inputs", "outputs"):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, {})
            elif isinstance(value, Mapping):
                object.__setattr__(self, name, dict(value))
        if self.intent is _NO_INTENT:
            object.__setattr__(self, "intent", Intent(humanise(self.name)))
        if not self.source_hash:
            if self.fn is not None:
                object.__setattr__(self, "source_hash", function_source_hash(self.fn))
            elif isinstance(self.command, str):
                object.__setattr__(
                    self, "source_hash", command_source_hash(self.command, self.inputs, self.outputs)
                )
        if callable(self.verifier):
            object.__setattr__(self, "verifier_hash", function_source_hash(self.verifier))
        elif isinstance(self.verifier, str):
            object.__setattr__(self, "verifier_hash", sha256_hex(self.verifier.encode("utf-8")))

    @property
    def verify(self) -> int:
        """Approvals needed to commit (``quorum.k``)."""
        return self.quorum.k

    @property
    def kind(self) -> str:
        """``"python"``, ``"command"``, or ``"none"`` for a task with neither."""
        if self.fn is not None:
            return "python"
        if self.command is not None:
            return "command"
        return "none"


def humanise(name: str) -> str:
    """``"fit_decay-rate"`` -> ``"Fit decay rate"``: the goal of a task that states none."""
    words = re.sub(r"[_\-\s]+", " ", str(name)).strip()
    return words[:1].upper() + words[1:] if words else str(name)


# ---------------------------------------------------------------- source hashes


def command_source_hash(
    command: str, inputs: Mapping[str, str] | None = None, outputs: Mapping[str, str] | None = None
) -> str:
    """Hash of a shell step: its command with its inputs and outputs."""
    def plain(value: Any) -> Any:
        if value is None:
            return {}
        return dict(value) if isinstance(value, Mapping) else value

    return hash_obj({"command": command, "inputs": plain(inputs), "outputs": plain(outputs)})


def function_source_hash(fn: Callable[..., Any]) -> str:
    """sha256 of a function's dedented source without decorator lines.

    A callable object is hashed by its class's source. When no source can be
    read, the compiled code is hashed instead (see :func:`_code_fingerprint`).
    """
    target = fn if inspect.isroutine(fn) or inspect.isclass(fn) else type(fn)
    try:
        source = textwrap.dedent(inspect.getsource(target))
    except (OSError, TypeError):
        code = getattr(inspect.unwrap(target), "__code__", None)
        if code is None:
            return sha256_hex(f"{target.__module__}.{target.__qualname__}".encode("utf-8"))
        digest = hashlib.sha256()
        _code_fingerprint(code, digest)
        return digest.hexdigest()
    return sha256_hex(_strip_decorators(source).encode("utf-8"))


def _strip_decorators(source: str) -> str:
    """Drop the decorator lines in front of a ``def`` or ``class``; other source as is."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    if not tree.body:
        return source
    node = tree.body[0]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.decorator_list:
        return "".join(source.splitlines(keepends=True)[node.lineno - 1 :])
    return source


def _code_fingerprint(code: Any, digest: Any) -> None:
    """Feed a code object's bytecode, names and constants (recursively) into ``digest``.

    Frozenset constants are sorted so the fingerprint does not depend on
    string hash randomisation.
    """
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode("utf-8"))
    for const in code.co_consts:
        if inspect.iscode(const):
            _code_fingerprint(const, digest)
        elif isinstance(const, frozenset):
            digest.update(repr(sorted(map(repr, const))).encode("utf-8"))
        else:
            digest.update(repr(const).encode("utf-8"))


# ---------------------------------------------------------------- intent


_SECTION = re.compile(r"^(goal|assumptions|concludes)\s*:\s*(.*)$", re.IGNORECASE)
_BULLET = re.compile(r"^\s*[-*]\s+(.*)$")


def parse_docstring_intent(doc: str | None) -> tuple[str | None, tuple[str, ...] | None, str | None]:
    """Goal, assumptions and conclusion stated in a docstring; ``None`` for each one absent.

    Sections start at an unindented ``Goal:``, ``Assumptions:`` or
    ``Concludes:`` line (any case), may carry text on the same line, and end
    at the first blank line after some text or at the next section.
    Assumptions are ``-``/``*`` bullets (indented lines continue a bullet,
    and a bullet after a blank line continues the list) or else one
    assumption. With no ``Goal:`` section the first paragraph
    before any section is the goal.
    """
    if not doc or not doc.strip():
        return None, None, None
    sections: dict[str, list[str]] = {}
    preamble: list[str] = []
    current: list[str] | None = preamble
    last: list[str] | None = None
    for line in inspect.cleandoc(doc).splitlines():
        match = _SECTION.match(line)
        if match:
            current = sections.setdefault(match.group(1).lower(), [])
            if match.group(2).strip():
                current.append(match.group(2).strip())
            continue
        if not line.strip():
            if current:
                last, current = current, None
            continue
        resumes_list = last is not None and last is sections.get("assumptions")
        if current is None and resumes_list and _BULLET.match(line):
            current = last
        if current is not None:
            current.append(line)

    goal_lines = sections.get("goal") or preamble
    goal = " ".join(part.strip() for part in goal_lines) or None
    assumptions = None
    if "assumptions" in sections:
        assumptions = _bullets(sections["assumptions"])
    concludes = None
    if "concludes" in sections:
        concludes = " ".join(part.strip() for part in sections["concludes"])
    return goal, assumptions, concludes


def _bullets(lines: list[str]) -> tuple[str, ...]:
    """Bullet items of a section, or its whole text as one item when it has no bullets."""
    if not any(_BULLET.match(line) for line in lines):
        text = " ".join(line.strip() for line in lines)
        return (text,) if text else ()
    items: list[str] = []
    for line in lines:
        match = _BULLET.match(line)
        if match:
            items.append(match.group(1).strip())
        elif items:
            items[-1] = f"{items[-1]} {line.strip()}"
        else:
            items.append(line.strip())
    return tuple(items)


def make_intent(
    name: str,
    doc: str | None,
    goal: str | None = None,
    assumptions: str | Any = None,
    concludes: str | None = None,
) -> Intent:
    """Intent of a task: explicit fields first, then the docstring, then the name."""
    doc_goal, doc_assumptions, doc_concludes = parse_docstring_intent(doc)
    if goal is None:
        goal = doc_goal or humanise(name)
    if assumptions is None:
        assumptions = doc_assumptions or ()
    elif isinstance(assumptions, str):
        assumptions = (assumptions,)
    else:
        assumptions = tuple(assumptions)
    if concludes is None:
        concludes = doc_concludes or ""
    return Intent(goal=goal, assumptions=assumptions, concludes=concludes)


# ---------------------------------------------------------------- parameter values


def param_type_name(type_: Any) -> Any:
    """``int``/``float``/``str``/``bool``/``pathlib.Path`` -> their spec names; strings as given."""
    if isinstance(type_, str):
        return type_
    if isinstance(type_, type) and issubclass(type_, pathlib.PurePath):
        return "path"
    try:
        return {int: "int", float: "float", str: "str", bool: "bool"}.get(type_, type_)
    except TypeError:
        return type_


def normalise_default(type_name: str, default: Any) -> Any:
    """Store defaults in their canonical form: ints as floats for float params, paths as str."""
    if default is REQUIRED:
        return default
    if type_name == "float" and isinstance(default, int) and not isinstance(default, bool):
        return float(default)
    if type_name == "path" and isinstance(default, os.PathLike):
        return os.fspath(default)
    return default


def _expected(type_name: str, value: Any) -> str | None:
    """What ``value`` should have been (``"int"``, ``"finite float"``), or ``None`` if it fits."""
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "path": isinstance(value, str) and value != "",
    }.get(type_name, False)
    if not ok:
        return "non-empty path" if type_name == "path" and value == "" else type_name
    if type_name == "float" and not math.isfinite(value):
        return "finite float"
    return None


def check_value(type_name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid value of ``type_name``, or ``None`` when it is.

    Values here are already typed (defaults, or coerced CLI input): bool is
    not an int, an int is a float, a path is a non-empty str. NaN and
    infinity are refused because canonical JSON has no form for them.
    """
    expected = _expected(type_name, value)
    if expected is None:
        return None
    return f"expected {expected}, got {value!r} ({type(value).__name__})"


def coerce_value(type_name: str, value: Any) -> Any:
    """Turn a CLI string or typed value into a value of ``type_name``.

    Strings are parsed ("3" -> 3, "0.5" -> 0.5, "yes"/"no"/"true"/"false"/
    "1"/"0" -> bool); typed values must already fit (an int is accepted for a
    float and widened). Raises ``ValueError`` naming the expected type and
    the value given.
    """
    given = value
    if isinstance(value, os.PathLike) and type_name in ("path", "str"):
        value = os.fspath(value)
    if isinstance(value, str) and type_name in ("int", "float", "bool"):
        text = value.strip()
        try:
            if type_name == "int":
                value = int(text)
            elif type_name == "float":
                value = float(text)
            elif text.lower() in _TRUE | _FALSE:
                value = text.lower() in _TRUE
            else:
                raise ValueError(text)
        except ValueError:
            raise ValueError(f"expected {type_name}, got {given!r}") from None
    expected = _expected(type_name, value)
    if expected is not None:
        raise ValueError(f"expected {expected}, got {given!r} ({type(given).__name__})")
    return normalise_default(type_name, value)
