"""The :class:`Context` every task receives, and the record it fills.

A task talks to headwater only through its context: it reads params, its
seed and its input artifacts, and it saves outputs, states claims, declares
the shared assets it uses, and records what its profile asks for (numerical
settings and invariants for simulations, transforms, cohort and table schemas
for analyses). Everything the task reports lands in a :class:`TaskOutcome`,
a plain picklable record that the agent sends back to the coordinator, which
turns it into the checkpoint bundle.

Shared implementations are called through the context (``ctx.call``), which
is where oversight routing (reroutes, pins, canaries) and N-version
redundancy take effect and where the version used is recorded;
:func:`scan_task` finds, without running a task, the distributions its code
uses and the asset references written into it.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from headwater.checkpoint.profiles import check_invariant, table_schema, transform_record
from headwater.errors import HeadwaterError
from headwater.runtime import serialize
from headwater.store.artifacts import ArtifactStore
from headwater.store.records import ArtifactRecord, AssetUse, ClaimRecord


class InvariantViolated(HeadwaterError):
    """A task recorded an invariant that does not hold; the task fails."""


@dataclass
class InputRef:
    """An upstream artifact visible to a task as ``"task/name"``."""

    ref: str
    sha256: str
    media_type: str
    size: int = 0
    uri: str = ""


@dataclass
class TaskOutcome:
    """Everything a task reported through its context, plus how it ended."""

    outputs: list[ArtifactRecord] = field(default_factory=list)
    claims: list[ClaimRecord] = field(default_factory=list)
    uses: list[AssetUse] = field(default_factory=list)
    invariants: list[dict] = field(default_factory=list)
    numerics: dict = field(default_factory=dict)
    transforms: list[dict] = field(default_factory=list)
    cohort: str | None = None
    schemas: dict = field(default_factory=dict)
    branch: str | None = None
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    started: float = 0.0
    finished: float = 0.0
    redundancy: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def invariant_violated(self) -> bool:
        return any(not inv["ok"] for inv in self.invariants)


ClaimLookup = Callable[[str], tuple[Any, str] | None]


class Context:
    """What a running task sees: params, seed, inputs, and the recording methods.

    ``claim_lookup(key)`` returns ``(value, version)`` of the committed claim
    currently published under ``key``, or None; it is how ``ctx.use`` resolves
    claims to the version current at that time.
    """

    def __init__(
        self,
        *,
        run_id: str,
        task: str,
        attempt: int,
        params: dict[str, Any],
        seed: int,
        inputs: dict[str, InputRef],
        artifacts: ArtifactStore,
        workdir: Path,
        claim_lookup: ClaimLookup | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.run_id = run_id
        self.task = task
        self.attempt = attempt
        self.params = dict(params)
        self.seed = seed
        self.inputs = dict(inputs)
        self._workdir = workdir
        self._log = logger
        self.outcome = TaskOutcome()
        self._artifacts = artifacts
        self._claim_lookup = claim_lookup
        self._rng = None

    @property
    def log(self) -> logging.Logger:
        """The task's logger, ``headwater.task.<task>`` unless one was given (created on first use)."""
        if self._log is None:
            self._log = logging.getLogger(f"headwater.task.{self.task}")
        return self._log

    @property
    def workdir(self) -> Path:
        """The task's private scratch directory, created on first use."""
        self._workdir.mkdir(parents=True, exist_ok=True)
        return self._workdir

    # -- reading -----------------------------------------------------------
    @property
    def rng(self):
        """A numpy Generator seeded with this task's seed (created on first use)."""
        if self._rng is None:
            import numpy as np

            self._rng = np.random.default_rng(self.seed)
        return self._rng

    def _input(self, name: str) -> InputRef:
        if name in self.inputs:
            return self.inputs[name]
        matches = [ref for key, ref in self.inputs.items() if key.split("/", 1)[-1] == name]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(sorted(self.inputs)) or "none"
        if matches:
            raise KeyError(
                f"task {self.task!r}: input {name!r} is ambiguous; use one of "
                + ", ".join(m.ref for m in matches)
            )
        raise KeyError(f"task {self.task!r}: no input named {name!r} (inputs: {known})")

    def load(self, name: str) -> Any:
        """Load an upstream artifact (``"task/name"`` or an unambiguous ``"name"``)."""
        ref = self._input(name)
        return serialize.decode(self._artifacts.get_bytes(ref.sha256), ref.media_type)

    def path(self, name: str) -> Path:
        """A local file holding an upstream artifact's bytes."""
        ref = self._input(name)
        local = self._artifacts.local_path(ref.sha256)
        if local is not None:
            return local
        dest = self.workdir / "inputs" / ref.ref.replace("/", "__")
        dest.parent.mkdir(parents=True, exist_ok=True)
        return self._artifacts.materialize(ref.sha256, dest)

    # -- recording ---------------------------------------------------------
    def save(self, name: str, obj: Any, media_type: str | None = None) -> ArtifactRecord:
        """Store an output artifact under ``name`` (content-addressed)."""
        if any(o.name == name for o in self.outcome.outputs):
            raise ValueError(f"task {self.task!r} saved {name!r} twice")
        data, guessed = serialize.encode(obj)
        record = self._artifacts.put_bytes(data, media_type or guessed, name=name)
        self.outcome.outputs.append(record)
        if serialize._is_dataframe(obj):
            self.outcome.schemas[name] = table_schema(obj)
        return record

    def claim(self, key: str, value: Any, uncertainty: float | None = None, units: str | None = None) -> None:
        """State a scientific claim this task concludes (published once committed)."""
        value = serialize.plain(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"task {self.task!r}: claim {key!r} is not a finite number")
        unc = None if uncertainty is None else float(uncertainty)
        self.outcome.claims.append(ClaimRecord(key=key, value=value, uncertainty=unc, units=units))

    def use(self, ref: str) -> Any:
        """Declare the use of a shared asset; for a claim, return its current value.

        ``ref`` is ``"claim:KEY"``, ``"lib:NAME"`` or ``"KIND:NAME@VERSION"``.
        Library versions come from the installed distribution.
        """
        kind, _, rest = ref.partition(":")
        if not rest:
            raise ValueError(f"task {self.task!r}: asset reference {ref!r} must look like 'kind:name'")
        name, _, version = rest.partition("@")
        value: Any = None
        if kind == "claim":
            found = self._claim_lookup(name) if self._claim_lookup else None
            if found is None:
                raise KeyError(f"task {self.task!r}: no committed claim {name!r} to use")
            value, version = found
        elif kind == "lib" and not version:
            version = _distribution_version(name)
        self.outcome.uses.append(AssetUse(kind=kind, name=name, version=version or "unversioned", direction="consumed"))
        return value

    def call(self, ref: str, *args: Any, **kwargs: Any) -> Any:
        """Call the shared implementation ``ref`` (``"lib:NAME"``) with the arguments.

        The implementation and version come from oversight routing (the
        default implementation's newest version, unless a pin, canary or
        policy reroute says otherwise) and are recorded as a use of
        ``lib:NAME/IMPL@VERSION``. ``"lib:NAME/IMPL"`` asks for one
        implementation, ``"@VERSION"`` for one version. When redundancy is on
        for the asset, a sampled share of calls also runs on a second
        implementation and whether the two agree is recorded.
        """
        from headwater.oversight import registry, routing
        from headwater.oversight.monitors import values_agree

        kind, _, rest = ref.partition(":")
        if kind != "lib" or not rest:
            raise ValueError(f"task {self.task!r}: ctx.call takes 'lib:NAME', got {ref!r}")
        name, _, version = rest.partition("@")
        asset, _, impl = name.partition("/")
        reg = getattr(self, "implementations", None) or registry.implementations
        cands = [c for c in reg.candidates(asset)
                 if (not impl or c.name == name) and (not version or c.version == version)]
        if not cands:
            raise KeyError(f"task {self.task!r}: no implementation registered as {ref!r}")
        route = getattr(self._claim_lookup, "route", None)
        choice = route("lib", cands) if route is not None else routing.choose("lib", cands)
        if choice is None:
            raise HeadwaterError(f"task {self.task!r}: no version of {ref} may be served (all retracted or under test)")
        result = reg.get(choice.name, choice.version).fn(*args, **kwargs)
        use = AssetUse(kind="lib", name=choice.name, version=choice.version, direction="consumed")
        if use not in self.outcome.uses:
            self.outcome.uses.append(use)
        self._calls = getattr(self, "_calls", 0) + 1
        red = reg.redundancy_of(asset)
        if red is not None and not impl and red.sampled(self.run_id, self.task, self.attempt, self._calls):
            alt = getattr(self._claim_lookup, "alternative", None)
            other = alt("lib", cands, choice) if alt is not None else \
                routing.choose("lib", [c for c in cands if c.name != choice.name])
            if other is not None and other.name != choice.name:
                second = reg.get(other.name, other.version).fn(*args, **kwargs)
                self.outcome.redundancy.append({
                    "asset": f"lib:{asset}", "primary": f"{choice.name}@{choice.version}",
                    "secondary": f"{other.name}@{other.version}",
                    "agree": values_agree(result, second, red.rtol, red.atol), "call": self._calls,
                })
        return result

    def invariant(self, name: str, value: Any, expected: Any = None, tol: float = 0.0) -> bool:
        """Record an invariant; a violated one fails the task when it returns."""
        result = check_invariant(name, serialize.plain(value), serialize.plain(expected), tol)
        self.outcome.invariants.append(result)
        return bool(result["ok"])

    def numerics(self, **settings: Any) -> None:
        """Simulation profile: solver, tolerances, time step, grid, RNG strategy."""
        self.outcome.numerics.update(serialize.plain(settings))

    def transform(self, op: str, dataset: str, rows_in: int | None = None, rows_out: int | None = None, columns=None) -> None:
        """Analysis profile: one step of the transform manifest."""
        cols = list(columns) if columns is not None else None
        self.outcome.transforms.append(transform_record(op, dataset, rows_in=rows_in, rows_out=rows_out, columns=cols))

    def cohort(self, text: str) -> None:
        """Analysis profile: the cohort / selection definition, as text."""
        self.outcome.cohort = str(text)


@dataclass(frozen=True)
class TaskScan:
    """What a task's code reveals before it runs (see :func:`scan_task`)."""

    libraries: dict[str, str]
    refs: tuple[str, ...]


_REF = re.compile(r"^(claim|lib|dataset|model|compute):[^\s:@][^\s]*$")


def scan_task(fn: Callable[..., Any] | None, depth: int = 3) -> TaskScan:
    """The distributions ``fn``'s code uses (name -> installed version) and the
    asset references (``"claim:g"``, ``"lib:fft"``) written in it as strings.

    Reads the bytecode: module globals it loads (``np`` bound to numpy),
    objects imported from a package (``solve_ivp`` from scipy), ``import``
    statements inside it, and, up to ``depth`` calls deep, functions of its
    own module that it calls. The standard library is not reported.
    """
    if fn is None or not hasattr(fn, "__code__"):
        return TaskScan({}, ())
    return _scan(fn, depth)


@functools.lru_cache(maxsize=256)
def _scan(fn: Callable[..., Any], depth: int) -> TaskScan:
    import sys
    import types

    modules: set[str] = set()
    refs: list[str] = []
    seen: set[int] = set()
    home = getattr(fn, "__module__", None) or ""

    def visit(code: types.CodeType, glob: dict, level: int) -> None:
        if id(code) in seen:
            return
        seen.add(id(code))
        for opname, argval in _loads(code):
            if opname == "IMPORT_NAME":
                modules.add(argval.split(".")[0])
            else:
                obj = glob.get(argval)
                if isinstance(obj, types.ModuleType):
                    modules.add(obj.__name__.split(".")[0])
                elif obj is not None:
                    mod = getattr(obj, "__module__", None) or ""
                    if mod and mod != home:
                        modules.add(mod.split(".")[0])
                    elif isinstance(obj, types.FunctionType) and level < depth:
                        visit(obj.__code__, obj.__globals__, level + 1)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                visit(const, glob, level)
            elif isinstance(const, str) and _REF.match(const):
                refs.append(const)

    visit(fn.__code__, getattr(fn, "__globals__", {}), 0)
    skip = set(sys.stdlib_module_names) | {"builtins", "__main__", home.split(".")[0]}
    libraries: dict[str, str] = {}
    for module in sorted(modules - skip):
        for dist in _distributions(module):
            libraries[dist] = _distribution_version(dist)
    return TaskScan(libraries, tuple(dict.fromkeys(refs)))


def _loads(code: Any) -> list[tuple[str, str]]:
    """``(opname, name)`` of the ``IMPORT_NAME``, ``LOAD_GLOBAL`` and
    ``LOAD_NAME`` instructions of ``code``, in order, as
    :func:`dis.get_instructions` gives them (``argval``).

    Read straight from the bytecode: ``dis`` builds a full instruction
    object per opcode, which made scanning a task's functions cost more
    than the task's first checkpoint. Python 3.11+ layout: two bytes per
    unit, ``EXTENDED_ARG`` prefixes, inline caches as zero units, and
    ``LOAD_GLOBAL``'s name index shifted left by one.
    """
    import dis

    wanted = {dis.opmap["IMPORT_NAME"]: "IMPORT_NAME", dis.opmap["LOAD_GLOBAL"]: "LOAD_GLOBAL",
              dis.opmap["LOAD_NAME"]: "LOAD_NAME"}
    extended, global_op = dis.opmap["EXTENDED_ARG"], dis.opmap["LOAD_GLOBAL"]
    raw, names = code.co_code, code.co_names
    out: list[tuple[str, str]] = []
    ext = 0
    for i in range(0, len(raw), 2):
        op = raw[i]
        if op == extended:
            ext = (ext | raw[i + 1]) << 8
            continue
        arg, ext = ext | raw[i + 1], 0
        if op in wanted:
            out.append((wanted[op], names[arg >> 1 if op == global_op else arg]))
    return out


def _distributions(module: str) -> tuple[str, ...]:
    """The installed distributions that provide top-level module ``module``."""
    from headwater.checkpoint.env import module_distributions

    return tuple(sorted(module_distributions().get(module, [])))


def _distribution_version(module_or_dist: str) -> str:
    """Installed version of a distribution (or of the one providing a module),
    from the process-wide package list of the environment fingerprint."""
    from headwater.checkpoint.env import current_packages, module_distributions, normalise_name

    packages = current_packages()
    name = normalise_name(module_or_dist)
    if name in packages:
        return packages[name]
    for dist in module_distributions().get(module_or_dist, []):
        if dist in packages:
            return packages[dist]
    return "unknown"
