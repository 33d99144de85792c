"""The HTTP API (FastAPI): remote agents claim and submit work, people read
runs, checkpoints and assets, operators act on the fleet. See
:mod:`headwater.server.app` and ``docs/distributed.md``.

Needs the ``server`` extra (FastAPI, uvicorn, httpx, prometheus-client).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """Build the API app; see :func:`headwater.server.app.create_app`."""
    try:
        from headwater.server.app import create_app as build
    except ModuleNotFoundError as exc:
        from headwater.errors import OptionalDependency

        raise OptionalDependency("the HTTP API", "server") from exc
    return build(*args, **kwargs)
