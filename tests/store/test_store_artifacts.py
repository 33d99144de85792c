"""The content-addressed artifact store, on a local directory and on memory://."""

from __future__ import annotations

import hashlib
import os
import uuid

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.errors import NotFound
from headwater.store import ArtifactStore
from headwater.store import artifacts as artifacts_module


@pytest.fixture(params=["local", "memory"])
def arts(request, tmp_path):
    if request.param == "local":
        yield ArtifactStore(tmp_path / "art")
        return
    store = ArtifactStore(f"memory://hw-test-{uuid.uuid4().hex}")
    yield store
    store.fs.rm(store.root, recursive=True)


def _visible(store: ArtifactStore) -> list[str]:
    """Every file under objects/, temporaries included."""
    return sorted(store.fs.find(f"{store.root}/objects", withdirs=False))


def test_round_trip(arts):
    data = b"\x00\x01 hello \xff" * 100
    rec = arts.put_bytes(data, "application/x-test", name="blob")
    assert rec.sha256 == hashlib.sha256(data).hexdigest()
    assert (rec.size, rec.media_type, rec.name) == (len(data), "application/x-test", "blob")
    assert rec.uri == arts.uri(rec.sha256)
    assert arts.exists(rec.sha256) and arts.verify(rec.sha256)
    assert arts.get_bytes(rec.sha256) == data
    with arts.open(rec.sha256) as fh:
        assert fh.read() == data
    assert _visible(arts) == [f"{arts.root}/objects/{rec.sha256[:2]}/{rec.sha256[2:]}"]


def test_same_content_is_stored_once_and_not_rewritten(arts):
    first = arts.put_bytes(b"same", name="a")
    before = arts.fs.info(f"{arts.root}/objects/{first.sha256[:2]}/{first.sha256[2:]}")
    second = arts.put_bytes(b"same", "text/plain", name="b")
    after = arts.fs.info(f"{arts.root}/objects/{first.sha256[:2]}/{first.sha256[2:]}")
    assert second.sha256 == first.sha256 and (second.name, second.media_type) == ("b", "text/plain")
    assert len(_visible(arts)) == 1
    for key in ("ino", "mtime", "created"):
        assert before.get(key) == after.get(key)


def test_put_file_streams_and_guesses_the_media_type(arts, tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts_module, "CHUNK_SIZE", 7)
    data = bytes(range(256)) * 3
    guesses = (("a.json", "application/json"), ("b.csv", "text/csv"), ("c.zzzq", "application/octet-stream"))
    for name, expected in guesses:
        path = tmp_path / name
        path.write_bytes(data + name.encode())
        rec = arts.put_file(path, name=name)
        assert rec.media_type == expected and rec.name == name
        assert rec.sha256 == hashlib.sha256(data + name.encode()).hexdigest()
        assert rec.size == len(data) + len(name)
        assert arts.get_bytes(rec.sha256) == data + name.encode()
    explicit = arts.put_file(tmp_path / "a.json", media_type="text/plain")
    assert explicit.media_type == "text/plain"
    assert len(_visible(arts)) == 3


def test_put_file_of_known_content_leaves_one_object(arts, tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"payload")
    assert arts.put_bytes(b"payload").sha256 == arts.put_file(path).sha256
    assert len(_visible(arts)) == 1


def test_a_failed_write_leaves_no_object_and_no_temporary(arts, tmp_path, monkeypatch):
    def fail(*_args, **_kwargs):
        raise OSError("disk on fire")

    # Fail after the bytes went to the temporary file, before publication.
    if arts.is_local:
        monkeypatch.setattr(os, "fsync", fail)
    else:
        monkeypatch.setattr(arts.fs, "mv", fail)
    src = tmp_path / "big.bin"
    src.write_bytes(b"y" * 10_000)
    with pytest.raises(OSError, match="disk on fire"):
        arts.put_bytes(b"x" * 10_000)
    with pytest.raises(OSError, match="disk on fire"):
        arts.put_file(src)
    assert _visible(arts) == []
    assert not arts.exists(hashlib.sha256(b"x" * 10_000).hexdigest())
    monkeypatch.undo()
    assert arts.verify(arts.put_bytes(b"x" * 10_000).sha256)


def test_a_failing_source_mid_copy_leaves_nothing(arts, tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts_module, "CHUNK_SIZE", 4)
    src = tmp_path / "src.bin"
    src.write_bytes(b"abcdefgh" * 10)
    real_sha256 = hashlib.sha256
    chunks = []

    class FailsOnThirdChunk:
        """sha256 whose third update raises, as a read error mid-copy would."""

        def __init__(self):
            self._h = real_sha256()

        def update(self, chunk):
            chunks.append(chunk)
            if len(chunks) == 3:
                raise OSError("source vanished")
            self._h.update(chunk)

        def hexdigest(self):
            return self._h.hexdigest()

    monkeypatch.setattr(artifacts_module.hashlib, "sha256", FailsOnThirdChunk)
    with pytest.raises(OSError, match="source vanished"):
        arts.put_file(src)
    assert _visible(arts) == []


def test_verify_detects_a_modified_object(arts):
    rec = arts.put_bytes(b"original bytes")
    path = f"{arts.root}/objects/{rec.sha256[:2]}/{rec.sha256[2:]}"
    if arts.is_local:
        os.chmod(path, 0o644)
    arts.fs.pipe_file(path, b"original bytez")
    assert arts.exists(rec.sha256)
    assert not arts.verify(rec.sha256)


def test_missing_and_malformed_ids(arts):
    missing = hashlib.sha256(b"never stored").hexdigest()
    for sha in (missing, "not-a-hash", "../../etc/passwd"):
        assert not arts.exists(sha) and not arts.verify(sha)
        with pytest.raises(NotFound) as info:
            arts.get_bytes(sha)
        assert info.value.kind == "artifact"
        with pytest.raises(NotFound):
            arts.open(sha)


def test_local_path_and_materialize(arts, tmp_path):
    rec = arts.put_bytes(b"materialize me")
    dest = tmp_path / "work" / "sub" / "input.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"stale")
    assert arts.materialize(rec.sha256, dest) == dest
    assert dest.read_bytes() == b"materialize me"
    assert [p.name for p in dest.parent.iterdir()] == ["input.bin"]
    if arts.is_local:
        local = arts.local_path(rec.sha256)
        assert local.read_bytes() == b"materialize me"
        assert os.stat(local).st_ino == os.stat(dest).st_ino  # hardlinked
        assert not os.access(local, os.W_OK) or os.geteuid() == 0
        assert not (os.stat(local).st_mode & 0o222)
        with pytest.raises(NotFound):
            arts.local_path(hashlib.sha256(b"nope").hexdigest())
    else:
        assert arts.local_path(rec.sha256) is None
    with pytest.raises(NotFound):
        arts.materialize(hashlib.sha256(b"nope").hexdigest(), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_uris_open_the_object_with_fsspec(tmp_path):
    local = ArtifactStore(f"file://{tmp_path / 'a'}")
    rec = local.put_bytes(b"u")
    assert rec.uri == (tmp_path / "a" / "objects" / rec.sha256[:2] / rec.sha256[2:]).as_uri()
    mem = ArtifactStore(f"memory://hw-uri-{uuid.uuid4().hex}")
    try:
        mem_rec = mem.put_bytes(b"u")
        assert mem_rec.uri.startswith("memory://")
        for uri in (rec.uri, mem_rec.uri):
            with fsspec.open(uri, "rb") as fh:
                assert fh.read() == b"u"
    finally:
        mem.fs.rm(mem.root, recursive=True)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=2048), min_size=1, max_size=5))
def test_any_bytes_round_trip_on_memory(blobs):
    store = ArtifactStore(f"memory://hw-prop-{uuid.uuid4().hex}")
    try:
        records = [store.put_bytes(b) for b in blobs]
        for blob, rec in zip(blobs, records):
            assert store.get_bytes(rec.sha256) == blob and store.verify(rec.sha256)
        assert len(_visible(store)) == len(set(blobs))
    finally:
        store.fs.rm(store.root, recursive=True)
