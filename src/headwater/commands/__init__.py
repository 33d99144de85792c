"""Command groups beyond the core CLI, one module per area.

Each module listed in :data:`MODULES` defines ``register(app)``, which adds
its commands to the ``headwater`` Typer app. Keeping areas in their own
modules keeps ``cli.py`` small and each area's commands next to each other.
"""

from __future__ import annotations

import importlib

import typer

MODULES: tuple[str, ...] = ("export", "sched", "oversight", "study", "server", "fleetq")


def register_all(app: typer.Typer) -> None:
    for name in MODULES:
        importlib.import_module(f"headwater.commands.{name}").register(app)
