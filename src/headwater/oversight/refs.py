"""Naming shared assets and their versions: ``KIND:NAME[@VERSION|@RANGE]``.

An asset is one shared thing many workflows depend on: a cross-workflow
``claim`` (named by its key), a ``lib`` (a Python distribution, or a shared
implementation called through ``ctx.call``), a ``dataset``, a ``model`` or a
``compute`` pool. Each has versions. A claim's version is the producing
checkpoint's id cut to 12 hex digits; a library's is the distribution's
version; a shared implementation is named ``NAME/IMPL`` (``lib:fft/numpy``)
so that ``lib:fft`` selects every implementation registered under ``fft``.

Version ranges follow OSV's ``ranges[].events``: a list of ``introduced``,
``fixed`` and ``last_affected`` versions, read in version order. On the
command line a range is written ``@>=1.2,<1.4`` (introduced 1.2, fixed 1.4),
``@>=1.2,<=1.3`` (last affected 1.3), ``@>=1.2`` or ``@<1.4``.

Versions are ordered by :func:`version_key`, which reads dotted releases the
way PEP 440 and SemVer agree on (``1.10 > 1.9``, ``1.0rc1 < 1.0``). Versions
that are opaque ids (claim versions) have no meaningful order of their own;
callers pass a key giving the order in which they were first seen.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

KINDS: tuple[str, ...] = ("claim", "lib", "dataset", "model", "compute")
"""Asset kinds. ``lib`` covers libraries and shared implementations."""

_PRE = {"dev": -4, "a": -3, "alpha": -3, "b": -2, "beta": -2, "rc": -1, "c": -1, "pre": -1, "preview": -1}
_POST = frozenset({"post", "r", "rev"})
_TOKEN = re.compile(r"\d+|[a-z]+")
_RELEASE = re.compile(r"^(\d+(?:\.\d+)*)(.*)$")


class RefError(ValueError):
    """An asset reference or version range that cannot be parsed."""


def version_key(version: str) -> tuple:
    """A sort key that orders release versions as PEP 440 and SemVer agree on.

    The leading dotted release compares number by number with trailing
    zeros ignored (``1.10 > 1.9``, ``1.0 == 1``); after it, pre-release
    tags (``dev``, ``a``, ``b``, ``rc``, or any text, as SemVer's
    ``-alpha``) sort before the bare release and ``post`` after it. A local
    or build suffix (``+...``) is ignored. Every string has a key.
    """
    text = version.strip().lower().split("+", 1)[0]
    if text[:1] == "v" and text[1:2].isdigit():
        text = text[1:]
    m = _RELEASE.match(text)
    release: list[int] = [int(x) for x in m.group(1).split(".")] if m else []
    rest = m.group(2) if m else text
    while release and release[-1] == 0:
        release.pop()
    suffix: list[tuple[float, Any]] = []
    for token in _TOKEN.findall(rest):
        if token.isdigit():
            suffix.append((2, int(token)))
        elif token in _PRE:
            suffix.append((0, _PRE[token]))
        elif token in _POST:
            suffix.append((3, 0))
        else:
            suffix.append((1, token))
    suffix.append((1.5, ""))  # the bare release: after pre-releases, before post-releases
    return (tuple(release), tuple(suffix))


@dataclass(frozen=True)
class VersionRange:
    """An OSV-style affected range: ``events`` are ``(type, version)`` pairs.

    ``type`` is ``introduced``, ``fixed`` or ``last_affected``;
    ``introduced`` ``"0"`` means "from the first version". A version is
    affected when, reading the events in version order, the last event at or
    below it is an ``introduced`` (or a ``last_affected`` equal to it).
    """

    events: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        for kind, _ in self.events:
            if kind not in ("introduced", "fixed", "last_affected"):
                raise RefError(f"range event {kind!r}: expected introduced, fixed or last_affected")
        if not any(kind == "introduced" for kind, _ in self.events):
            object.__setattr__(self, "events", (("introduced", "0"),) + tuple(self.events))

    @classmethod
    def between(cls, introduced: str | None = None, fixed: str | None = None,
                last_affected: str | None = None) -> VersionRange:
        events = [("introduced", introduced or "0")]
        if fixed:
            events.append(("fixed", fixed))
        if last_affected:
            events.append(("last_affected", last_affected))
        return cls(tuple(events))

    def contains(self, version: str, key: Callable[[str], Any] = version_key) -> bool:
        """Whether ``version`` is affected, with versions ordered by ``key``."""
        v = key(version)
        affected = ("introduced", "0") in self.events
        order = {"introduced": 0, "last_affected": 1, "fixed": 2}
        events = [(key(b), order[kind], kind) for kind, b in self.events if (kind, b) != ("introduced", "0")]
        for b, _, kind in sorted(events, key=lambda e: (e[0], e[1])):
            if kind == "introduced" and v >= b:
                affected = True
            elif kind == "fixed" and v >= b:
                affected = False
            elif kind == "last_affected" and v > b:
                affected = False
        return affected

    def to_osv(self) -> dict:
        """The ``ranges[]`` entry OSV would write for this range."""
        return {"type": "ECOSYSTEM", "events": [{kind: version} for kind, version in self.events]}

    def __str__(self) -> str:
        parts = []
        for kind, version in self.events:
            if kind == "introduced" and version != "0":
                parts.append(f">={version}")
            elif kind == "fixed":
                parts.append(f"<{version}")
            elif kind == "last_affected":
                parts.append(f"<={version}")
        return ",".join(parts) or "*"


@dataclass(frozen=True)
class AssetRef:
    """``kind:name``, optionally narrowed to one ``version`` or a ``range``.

    With neither, the reference means every version of the asset. ``name``
    may be a group (``fft`` selects ``fft/numpy`` and ``fft/scipy``) or a
    glob (``scipy*``).
    """

    kind: str
    name: str
    version: str | None = None
    range: VersionRange | None = field(default=None, compare=True)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RefError(f"asset kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if not self.name:
            raise RefError("an asset reference needs a name, e.g. claim:g or lib:numpy")
        if self.version is not None and self.range is not None:
            raise RefError("give a version or a range, not both")

    @property
    def key(self) -> str:
        """``kind:name`` without any version."""
        return f"{self.kind}:{self.name}"

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.key}@{self.version}"
        if self.range is not None:
            return f"{self.key}@{self.range}"
        return self.key

    def at(self, version: str) -> AssetRef:
        return AssetRef(self.kind, self.name, version)

    def matches_name(self, name: str) -> bool:
        """Whether an asset called ``name`` (of this kind) is selected by this ref."""
        if name == self.name or name.startswith(self.name + "/"):
            return True
        return any(c in self.name for c in "*?[") and fnmatch.fnmatchcase(name, self.name)

    def matches(self, kind: str, name: str, version: str,
                key: Callable[[str], Any] = version_key) -> bool:
        """Whether the asset version ``kind:name@version`` is selected."""
        if kind != self.kind or not self.matches_name(name):
            return False
        if self.version is not None:
            return version == self.version or (len(self.version) >= 4 and kind == "claim"
                                               and version.startswith(self.version))
        if self.range is not None:
            return self.range.contains(version, key)
        return True


def parse_range(text: str) -> VersionRange:
    """``>=1.2,<1.4`` and friends (see the module docstring) as a range."""
    introduced = fixed = last = None
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.startswith(">="):
            introduced = part[2:].strip()
        elif part.startswith("<="):
            last = part[2:].strip()
        elif part.startswith("<"):
            fixed = part[1:].strip()
        else:
            raise RefError(f"range part {part!r}: expected >=VERSION, <VERSION or <=VERSION")
    return VersionRange.between(introduced, fixed, last)


def parse_ref(text: str, *, introduced: str | None = None, fixed: str | None = None) -> AssetRef:
    """Parse ``KIND:NAME[@VERSION|@RANGE]``; ``introduced``/``fixed`` add a range.

    >>> str(parse_ref("lib:numpy@>=1.2,<1.4"))
    'lib:numpy@>=1.2,<1.4'
    """
    kind, sep, rest = text.strip().partition(":")
    if not sep:
        raise RefError(f"asset reference {text!r} must look like KIND:NAME, e.g. claim:g or lib:numpy@1.26")
    name, at, spec = rest.partition("@")
    version = rng = None
    if at:
        if not spec:
            raise RefError(f"asset reference {text!r}: nothing after '@'")
        if spec[0] in "<>":
            rng = parse_range(spec)
        else:
            version = spec
    if introduced or fixed:
        if version is not None:
            raise RefError(f"{text!r} names one version; --introduced/--fixed need a bare KIND:NAME")
        rng = VersionRange.between(introduced, fixed)
    return AssetRef(kind, name.strip(), version, rng)


def sorted_versions(versions: Iterable[str], key: Callable[[str], Any] = version_key) -> list[str]:
    """Versions oldest first under ``key``."""
    return sorted(set(versions), key=key)
