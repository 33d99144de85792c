"""Shared implementations: several implementations behind one asset name.

A workflow module (or a library it imports) registers implementations::

    from headwater.oversight import implementation

    @implementation("integrate", "rk4", version="1.1", default=True)
    def rk4(f, y0, t):
        ...

    @implementation("integrate", "euler", version="1.0")
    def euler(f, y0, t):
        ...

and tasks call the asset, not a function: ``ctx.call("lib:integrate", f,
y0, t)``. The context resolves the call through oversight routing (so
reroutes, pins and canaries take effect there), records the version used as
``lib:integrate/rk4@1.1``, and, when redundancy is on for the asset, runs a
sampled share of calls on a second implementation and records whether the
two agree.

Registration is per process and happens at import time, like entry points;
agents are forked after the workflow is imported, so they see the same
registry. :data:`implementations` is the default registry; a context can be
given another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from headwater.oversight.refs import version_key
from headwater.oversight.routing import Candidate
from headwater.oversight.status import OversightError


@dataclass(frozen=True)
class Implementation:
    """One registered implementation version of a shared asset."""

    asset: str
    impl: str
    version: str
    fn: Callable[..., Any]
    rank: int

    @property
    def name(self) -> str:
        """The asset name uses are recorded under: ``asset/impl``."""
        return f"{self.asset}/{self.impl}"


@dataclass(frozen=True)
class Redundancy:
    """Run ``share`` of calls on a second implementation; compare within tolerances."""

    share: float
    rtol: float = 1e-9
    atol: float = 0.0

    def sampled(self, *key: object) -> bool:
        h = hashlib.sha256("\x00".join(map(str, key)).encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64 < self.share


def _asset_name(name: str) -> str:
    kind, sep, rest = name.partition(":")
    if sep:
        if kind != "lib":
            raise OversightError(f"shared implementations are lib assets; got {name!r}")
        return rest
    return name


class Implementations:
    """A registry of implementations by asset name (see the module docstring)."""

    def __init__(self) -> None:
        self._by_asset: dict[str, dict[tuple[str, str], Implementation]] = {}
        self._default: dict[str, str] = {}
        self._redundancy: dict[str, Redundancy] = {}

    def register(self, asset: str, impl: str, fn: Callable[..., Any], *, version: str = "1",
                 default: bool = False) -> Implementation:
        """Register ``fn`` as version ``version`` of implementation ``impl`` of ``asset``.

        The first implementation registered for an asset is its default
        unless another says ``default=True``. Registering the same
        (impl, version) again replaces the function (a reloaded module).
        """
        asset = _asset_name(asset)
        if "/" in asset or "/" in impl or "@" in impl:
            raise OversightError(f"implementation names cannot contain '/' or '@': {asset}/{impl}")
        table = self._by_asset.setdefault(asset, {})
        if default or asset not in self._default:
            self._default[asset] = impl
        entry = Implementation(asset, impl, str(version), fn, 0)
        table[(impl, str(version))] = entry
        return entry

    def redundancy(self, asset: str, share: float, *, rtol: float = 1e-9, atol: float = 0.0) -> None:
        """Run ``share`` of the calls of ``asset`` on two implementations and compare."""
        if not 0.0 <= share <= 1.0:
            raise OversightError(f"redundancy share must be within [0, 1], got {share}")
        self._redundancy[_asset_name(asset)] = Redundancy(share, rtol, atol)

    def redundancy_of(self, asset: str) -> Redundancy | None:
        return self._redundancy.get(_asset_name(asset))

    def assets(self) -> list[str]:
        return sorted(self._by_asset)

    def of(self, asset: str) -> list[Implementation]:
        """Every registered version of every implementation of ``asset``, ranked:
        the default implementation first, then in registration order."""
        asset = _asset_name(asset)
        table = self._by_asset.get(asset)
        if not table:
            known = ", ".join(self.assets()) or "none"
            raise OversightError(f"no implementation registered for lib:{asset} (registered: {known})",
                                 subject=f"lib:{asset}")
        impls = list(dict.fromkeys(i for i, _ in table))
        default = self._default[asset]
        order = [default] + [i for i in impls if i != default]
        return [Implementation(e.asset, e.impl, e.version, e.fn, order.index(e.impl)) for e in table.values()]

    def candidates(self, asset: str) -> list[Candidate]:
        """Routing candidates (all trusted; the caller sets statuses)."""
        entries = self.of(asset)
        out = []
        for e in entries:
            same = sorted((x.version for x in entries if x.impl == e.impl), key=version_key)
            out.append(Candidate(e.name, e.version, order=same.index(e.version), rank=e.rank))
        return out

    def get(self, name: str, version: str) -> Implementation:
        """The implementation recorded as ``asset/impl`` at ``version``."""
        asset, _, impl = name.partition("/")
        for e in self.of(asset):
            if e.impl == impl and e.version == version:
                return e
        raise OversightError(f"lib:{name}@{version} is not registered in this process", subject=f"lib:{name}")

    def decorator(self, asset: str, impl: str | None = None, *, version: str = "1",
                  default: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.register(asset, impl or fn.__name__, fn, version=version, default=default)
            return fn
        return wrap


implementations = Implementations()
"""The process-wide default registry used by ``ctx.call``."""


def implementation(asset: str, impl: str | None = None, *, version: str = "1",
                   default: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a function in :data:`implementations`; returns it unchanged."""
    return implementations.decorator(asset, impl, version=version, default=default)
