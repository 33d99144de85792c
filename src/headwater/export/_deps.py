"""Importing the standards' libraries only when an export asks for them.

Every library here belongs to the ``export`` extra. A missing one becomes
:class:`~headwater.errors.OptionalDependency`, which names the export that
needed it and the ``pip install`` that brings it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from headwater.errors import OptionalDependency


def need(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise OptionalDependency for ``feature``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise OptionalDependency(feature, "export") from None
