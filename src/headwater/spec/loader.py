"""Load a workflow spec from a ``.py`` or ``.yaml``/``.yml`` file.

A Python spec is imported with :mod:`importlib` under a module name derived
from the file's absolute path (``_headwater_spec_<stem>_<hash>``). The name
is therefore unique per file -- two ``flow.py`` in different directories do
not clash -- and the same in every process that loads the same path, which
lets a worker process re-import a spec and find its task functions under the
names a coordinator recorded. A file already imported is not imported again:
loading it twice returns the same workflow object. While the module runs, its
directory is first on ``sys.path`` so it can import helper modules beside it.

The workflow is chosen among the module's globals that are ``Workflow``
instances: the only one, or the one whose name (or variable name) is
``name``. Loading sets ``source_file`` to the absolute path and validates
before returning, so a workflow that loads is one that can run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType

from headwater.errors import SpecError
from headwater.spec.workflow import Workflow

MODULE_PREFIX = "_headwater_spec_"


def module_name_for(path: str | os.PathLike[str]) -> str:
    """The module name a Python spec at ``path`` is imported under."""
    absolute = str(Path(path).resolve())
    stem = re.sub(r"\W", "_", Path(absolute).stem) or "spec"
    digest = hashlib.sha256(absolute.encode("utf-8")).hexdigest()[:16]
    return f"{MODULE_PREFIX}{stem}_{digest}"


def load_workflow(path: str | os.PathLike[str], name: str | None = None) -> Workflow:
    """Load, select and validate the workflow defined in ``path``."""
    file = str(Path(path).resolve())
    if not os.path.exists(file):
        raise SpecError("no such file", file=file)
    if os.path.isdir(file):
        raise SpecError("is a directory; expected a .py, .yaml or .yml spec file", file=file)
    suffix = Path(file).suffix.lower()
    if suffix == ".py":
        wf = _select(_import(file), name, file)
    elif suffix in (".yaml", ".yml"):
        wf = _load_yaml(file)
        if name is not None and wf.name != name:
            raise SpecError(f"no workflow named {name!r}; this file defines {wf.name!r}", file=file)
    else:
        raise SpecError(
            f"unsupported spec file type {suffix or '(none)'!r}; expected .py, .yaml or .yml", file=file
        )
    wf.source_file = file
    wf.validate(file=file)
    return wf


def _load_yaml(file: str) -> Workflow:
    from headwater.spec.yaml_spec import parse_yaml

    try:
        with open(file, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec: {exc}", file=file) from None
    return parse_yaml(text, file=file)


def _import(file: str) -> ModuleType:
    """Import the spec module once per content; a failed import leaves nothing behind.

    Loading an unchanged file again returns the module already imported (its
    workflow objects and functions stay the same objects); a file whose bytes
    changed since is imported afresh, so a resumed or reproduced run sees the
    code as it is on disk now.
    """
    module_name = module_name_for(file)
    try:
        with open(file, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc}", file=file) from None
    existing = sys.modules.get(module_name)
    if existing is not None and getattr(existing, "__headwater_digest__", None) == digest:
        return existing
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise SpecError("cannot import this file as a Python module", file=file)
    module = importlib.util.module_from_spec(spec)
    module.__headwater_digest__ = digest
    directory = os.path.dirname(file)
    sys.modules[module_name] = module
    sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except SpecError as exc:
        sys.modules.pop(module_name, None)
        raise SpecError(exc.detail, file=exc.file or file, task=exc.task, field=exc.field) from exc
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module_name, None)
        raise SpecError(
            f"importing the spec failed{_line_in(exc, file)}: {type(exc).__name__}: {exc}", file=file
        ) from exc
    finally:
        if sys.path and sys.path[0] == directory:
            del sys.path[0]
        elif directory in sys.path:
            sys.path.remove(directory)
    return module


def _line_in(exc: BaseException, file: str) -> str:
    """`` at line N`` for the deepest traceback frame in ``file``, or ``""``."""
    if isinstance(exc, SyntaxError) and exc.lineno and exc.filename:
        if Path(exc.filename).resolve() == Path(file):
            return f" at line {exc.lineno}"
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == file:
            line = frame.lineno
    return f" at line {line}" if line else ""


def _select(module: ModuleType, name: str | None, file: str) -> Workflow:
    found: list[tuple[str, Workflow]] = []
    for variable, value in vars(module).items():
        if isinstance(value, Workflow) and not any(value is wf for _, wf in found):
            found.append((variable, value))
    if name is not None:
        for variable, wf in found:
            if wf.name == name:
                return wf
        for variable, wf in found:
            if variable == name:
                return wf
        names = ", ".join(repr(wf.name) for _, wf in found) or "none"
        raise SpecError(f"no workflow named {name!r}; this file defines: {names}", file=file)
    if not found:
        raise SpecError("defines no Workflow; create one with Workflow('name')", file=file)
    if len(found) > 1:
        names = ", ".join(repr(wf.name) for _, wf in found)
        raise SpecError(f"defines several workflows ({names}); choose one by name", file=file)
    return found[0][1]
