"""A content-addressed artifact store over fsspec.

Every blob is stored once, under its sha256::

    <root>/objects/<first two hex digits>/<remaining 62 hex digits>

``root`` is a local directory or any fsspec URL (``memory://x``,
``file:///...``, ``s3://bucket/prefix`` with the matching fsspec backend).

Guarantees:

* **Atomic publication.** Bytes are written to a temporary, dot-prefixed
  name under ``objects/`` on the same filesystem, then renamed to the object
  name (``os.replace`` locally, ``fs.mv`` otherwise). If anything fails while
  writing, the temporary file is removed and the error propagates; a reader
  therefore sees either no object or the complete one, never a prefix. A
  process killed mid-write can leave a dot-prefixed temporary behind, never
  a partial object under an object name.
* **Write once.** An object that exists is not rewritten: ``put_*`` of known
  content only returns its record.
* **Durability (local).** The temporary file is fsync'ed before the rename,
  matching the SQLite store's ``synchronous=FULL``.
* **Read-only objects (local).** Objects are chmod'ed read-only, so that
  :meth:`ArtifactStore.materialize`, which hardlinks when it can, hands out
  files a task cannot modify in place by accident. A modified object is
  still detectable: :meth:`ArtifactStore.verify` re-hashes it.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from headwater.errors import NotFound
from headwater.store.records import ArtifactRecord

CHUNK_SIZE = 1 << 20
"""Bytes read and hashed at a time when streaming files in and out."""

DEFAULT_MEDIA_TYPE = "application/octet-stream"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class ArtifactStore:
    """Content-addressed blobs under ``url`` (a local path or an fsspec URL)."""

    def __init__(self, url: str | os.PathLike[str]) -> None:
        self.url = os.fspath(url)
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = root.rstrip("/") or "/"
        self._objects = f"{self.root}/objects"
        self.fs.makedirs(self._objects, exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # ---------------------------------------------------------------- writing

    def put_bytes(
        self, data: bytes, media_type: str = DEFAULT_MEDIA_TYPE, name: str = ""
    ) -> ArtifactRecord:
        """Store ``data`` (if not already stored) and return its record."""
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        dest = self._path(sha)
        if not self.fs.exists(dest):
            tmp = self._tmp_name(_parent(dest))
            self._write_then_publish(tmp, dest, lambda f: f.write(data))
        return ArtifactRecord(sha, len(data), media_type, self.uri(sha), name)

    def put_file(
        self, path: str | os.PathLike[str], media_type: str | None = None, name: str = ""
    ) -> ArtifactRecord:
        """Store the file at ``path``, streaming it once: hashed while copied.

        The hash is known only at the end, so the copy goes to a temporary
        name directly under ``objects/`` and is renamed into its object
        directory (or dropped, if that object already existed).
        ``media_type`` defaults to a guess from the file name.
        """
        path = os.fspath(path)
        if media_type is None:
            media_type = mimetypes.guess_type(path)[0] or DEFAULT_MEDIA_TYPE
        digest = hashlib.sha256()
        size = 0

        def copy(out: BinaryIO) -> None:
            nonlocal size
            with open(path, "rb") as src:
                while chunk := src.read(CHUNK_SIZE):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)

        tmp = self._tmp_name(self._objects)
        self._write_then_publish(tmp, lambda: self._path(digest.hexdigest()), copy)
        sha = digest.hexdigest()
        return ArtifactRecord(sha, size, media_type, self.uri(sha), name)

    # ---------------------------------------------------------------- reading

    def get_bytes(self, sha256: str) -> bytes:
        """The stored bytes; NotFound("artifact", sha256) when absent."""
        with self.open(sha256) as f:
            return f.read()

    def open(self, sha256: str) -> BinaryIO:
        """A binary file object reading the stored bytes (the caller closes it)."""
        path = self._path(sha256)
        try:
            if self.is_local:
                return open(path, "rb")
            return self.fs.open(path, "rb")
        except FileNotFoundError:
            raise NotFound("artifact", sha256, hint=f"not in {self.url}") from None

    def local_path(self, sha256: str) -> Path | None:
        """The object's file for a local store; None for other filesystems.

        Raises NotFound when a local store does not hold the object.
        """
        if not self.is_local:
            return None
        path = Path(self._path(sha256))
        if not path.is_file():
            raise NotFound("artifact", sha256, hint=f"not in {self.url}")
        return path

    def materialize(self, sha256: str, dest: str | os.PathLike[str]) -> Path:
        """Place the object's bytes at ``dest`` (parents created) and return it.

        Locally this hardlinks the (read-only) object when source and ``dest``
        share a filesystem, and copies otherwise. ``dest`` appears atomically
        and replaces any file already there.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.tmp"
        try:
            src = self.local_path(sha256)
            if src is not None:
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copyfile(src, tmp)
            else:
                with self.open(sha256) as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, CHUNK_SIZE)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def exists(self, sha256: str) -> bool:
        """Whether the object is stored (False for strings that are no sha256)."""
        if not _SHA256.fullmatch(sha256):
            return False
        return bool(self.fs.exists(self._path(sha256)))

    def verify(self, sha256: str) -> bool:
        """Re-hash the stored bytes: True only if present and intact."""
        if not self.exists(sha256):
            return False
        digest = hashlib.sha256()
        with self.open(sha256) as f:
            while chunk := f.read(CHUNK_SIZE):
                digest.update(chunk)
        return digest.hexdigest() == sha256

    def uri(self, sha256: str) -> str:
        """A URI for the object: ``file://...`` locally, the fsspec URL otherwise."""
        path = self._path(sha256)
        if self.is_local:
            return Path(path).as_uri()
        return self.fs.unstrip_protocol(path)

    # --------------------------------------------------------------- internal

    def _path(self, sha256: str) -> str:
        if not _SHA256.fullmatch(sha256):
            raise NotFound("artifact", sha256, hint="not a lowercase sha256 hex digest")
        return f"{self._objects}/{sha256[:2]}/{sha256[2:]}"

    @staticmethod
    def _tmp_name(directory: str) -> str:
        return f"{directory}/.tmp-{uuid.uuid4().hex}"

    def _write_then_publish(
        self,
        tmp: str,
        dest: str | Callable[[], str],
        write: Callable[[BinaryIO], object],
    ) -> None:
        """Write ``tmp`` with ``write``, then rename it to ``dest``.

        ``dest`` may be a callable evaluated after writing (when the name
        depends on the hash of what was written). On any failure ``tmp`` is
        removed before the error propagates.
        """
        try:
            self.fs.makedirs(_parent(tmp), exist_ok=True)
            if self.is_local:
                with open(tmp, "wb") as f:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, _READ_ONLY)
            else:
                with self.fs.open(tmp, "wb") as f:
                    write(f)
            final = dest() if callable(dest) else dest
            if self.fs.exists(final):
                self._discard(tmp)
                return
            self.fs.makedirs(_parent(final), exist_ok=True)
            if self.is_local:
                os.replace(tmp, final)
            else:
                self.fs.mv(tmp, final)
        except BaseException:
            self._discard(tmp)
            raise

    def _discard(self, tmp: str) -> None:
        try:
            if self.is_local:
                os.unlink(tmp)
            else:
                self.fs.rm(tmp)
        except FileNotFoundError:
            pass


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]
