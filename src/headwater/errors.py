"""The exceptions headwater raises.

Every error is a :class:`HeadwaterError`; each carries, as attributes, the
file, field, run, task or checkpoint at fault, and its message names them so a
user knows what to fix without a traceback::

    HeadwaterError
      +-- SpecError            a workflow spec is malformed (file, task, field)
      +-- StoreError           the store cannot do what was asked
      |     +-- NotFound       no run / checkpoint / artifact with that id
      +-- IntegrityError       a bundle, signature or artifact does not match
      +-- RunError             a run cannot start, resume or finish
      +-- OptionalDependency   an extra is needed: says which pip install to run
"""

from __future__ import annotations


class HeadwaterError(Exception):
    """Root of every error headwater raises on purpose."""


class SpecError(HeadwaterError):
    """A workflow spec is malformed. Names the file, task and field at fault."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        task: str | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.task = task
        self.field = field
        self.detail = message
        where = []
        if file:
            where.append(str(file))
        if task:
            where.append(f"task {task!r}")
        if field:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class StoreError(HeadwaterError):
    """The store cannot do what was asked (bad URL, failed migration, ...)."""


class NotFound(StoreError):
    """No object of ``kind`` with identifier ``ident``."""

    def __init__(self, kind: str, ident: str, hint: str = "") -> None:
        self.kind = kind
        self.ident = ident
        msg = f"no {kind} {ident!r}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class IntegrityError(HeadwaterError):
    """A stored bundle, signature, hash chain or artifact does not match.

    ``subject`` is the checkpoint id or artifact hash at fault.
    """

    def __init__(self, message: str, *, subject: str | None = None) -> None:
        self.subject = subject
        super().__init__(message)


class RunError(HeadwaterError):
    """A run cannot start, resume or finish. ``run_id``/``task`` name it."""

    def __init__(self, message: str, *, run_id: str | None = None, task: str | None = None) -> None:
        self.run_id = run_id
        self.task = task
        super().__init__(message)


class OptionalDependency(HeadwaterError):
    """A feature needs an extra that is not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(f"{feature} needs the '{extra}' extra: pip install 'headwater[{extra}]'")
