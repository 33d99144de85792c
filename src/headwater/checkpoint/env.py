"""The environment fingerprint: what a bundle says about where it ran.

This is the one module of :mod:`headwater.checkpoint` that reads the machine
(``/proc``, installed distributions, lockfiles, ``.git``). Everything it
learns is condensed into :class:`EnvFingerprint`:

``summary``
    A few short facts worth seeing in every bundle: Python version and
    implementation, platform string, machine, CPU model and count, GPU model
    when an NVIDIA driver reports one, the container or image when there is
    one, and the lockfile hash.
``packages``
    Every installed distribution, normalised name -> version. This is stored
    once per fingerprint (the store's env snapshot table), not in bundles.
``fp``
    One sha256 over the summary and the package list. Equal fingerprints
    mean "same interpreter, same packages, same lock, same kind of machine";
    a change fires the ``env_changed`` heavy-capture trigger and invalidates
    cache keys.
``hardware_class``
    16 hex digits over CPU model and GPU model only, so moving between two
    nodes of the same type is not a hardware change, but moving from a CPU
    node to a GPU node is.

A container *instance* id (from ``/proc/self/cgroup`` or mountinfo) changes
every time a container starts, so it is shown in the summary but enters the
fingerprint only as its kind ("docker", "kubepods"); an image id given in
``HEADWATER_IMAGE_ID`` identifies content and enters it in full. Without
this, every run in a fresh container would look like a new environment and
never hit the cache.

Reading all installed distributions takes tens of milliseconds, so the work
is done once per process and per project directory and cached; the
environment of a running interpreter does not change under it. Which
distribution installs which module is also kept in a file between processes
(:func:`set_cache_file`), keyed on paths and mtimes, because one run per
process is the normal use. :func:`clear_cache` forgets everything held in
the process (tests use it).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from headwater.checkpoint.canonical import hash_obj, sha256_hex

LOCKFILES = ("uv.lock", "poetry.lock", "pylock.toml", "Pipfile.lock", "pixi.lock")
"""Single lockfiles looked for in a project directory, first found wins;
after them come all ``requirements*.txt`` files, hashed together."""

GIT_TIMEOUT = 2.0
"""Seconds ``git status`` may take before the dirty flag is recorded as unknown."""

_lock = threading.Lock()
_fingerprints: dict[str, EnvFingerprint] = {}
_machine_cache: dict[str, Any] = {}
_packages_cache: dict[str, dict[str, str]] = {}
_git_cache: dict[str, dict[str, Any]] = {}

_CONTAINER_ID = re.compile(
    r"(docker|kubepods|libpod|containerd|crio)[^\n]*?(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])"
)
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?\Z")
_RECORD_TOP = re.compile(r"^[^,/\r\n]*", re.MULTILINE)
"""The first path component of a ``RECORD`` line (its path is the first CSV field)."""


@dataclass(frozen=True)
class EnvFingerprint:
    """What is known about the environment; see the module docstring.

    Instances are shared through the process-wide cache: treat ``summary``
    and ``packages`` as read-only.
    """

    summary: dict[str, Any]
    packages: dict[str, str]
    fp: str
    hardware_class: str

    def bundle_part(self) -> dict[str, Any]:
        """The bundle's ``env`` section: ``fp``, ``hw`` and the summary."""
        return {"fp": self.fp, "hw": self.hardware_class, **self.summary}


def normalise_name(name: str) -> str:
    """A distribution name in PEP 503 normal form (``Foo_Bar`` -> ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _cpu_model(cpuinfo: Path) -> str:
    """CPU model from ``/proc/cpuinfo``, else what ``platform`` knows."""
    text = _read(cpuinfo) or ""
    fallback = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and value:
            return value
        if key in ("Hardware", "Model", "cpu model", "uarch") and value and fallback is None:
            fallback = value
    return fallback or platform.processor() or platform.machine() or "unknown"


def _gpu_model(nvidia: Path) -> str | None:
    """GPU model(s) reported by the NVIDIA driver, independent of
    ``CUDA_VISIBLE_DEVICES`` (which hides devices from CUDA, not from the
    machine). Several identical GPUs read as ``"4x NVIDIA A100"``."""
    try:
        boards = sorted(p for p in (nvidia / "gpus").iterdir())
    except OSError:
        return None
    models: list[str] = []
    for board in boards:
        for line in (_read(board / "information") or "").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model" and value.strip():
                models.append(value.strip())
    if not models:
        return None
    parts = []
    for model in sorted(set(models)):
        n = models.count(model)
        parts.append(f"{n}x {model}" if n > 1 else model)
    return ", ".join(parts)


def _container(root: Path, environ: Any) -> tuple[str | None, str | None]:
    """``(shown, stable)`` container description; see the module docstring."""
    image = environ.get("HEADWATER_IMAGE_ID")
    if image:
        return image, image
    for rel in ("proc/self/cgroup", "proc/self/mountinfo"):
        match = _CONTAINER_ID.search(_read(root / rel) or "")
        if match:
            kind = "kubepods" if match.group(1) == "kubepods" else match.group(1)
            return f"{kind}:{match.group(2)[:12]}", kind
    if (root / ".dockerenv").exists():
        return "docker", "docker"
    if (root / "run/.containerenv").exists():
        return "podman", "podman"
    return None, None


def _machine(root: Path = Path("/"), environ: Any = os.environ) -> dict[str, Any]:
    """Facts about the interpreter and machine; ``stable`` is for hashing."""
    shown, stable = _container(root, environ)
    summary: dict[str, Any] = {
        "python": platform.python_version(),
        "impl": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(root / "proc/cpuinfo"),
        "cpus": os.cpu_count() or 1,
    }
    gpu = _gpu_model(root / "proc/driver/nvidia")
    if gpu:
        summary["gpu"] = gpu
    if shown:
        summary["container"] = shown
    return {"summary": summary, "stable_container": stable}


def installed_packages() -> dict[str, str]:
    """Every importable distribution, normalised name -> version.

    When a name is installed twice on ``sys.path`` the first wins, as it
    does for ``import``. Reading every distribution's METADATA costs about
    half a second on a typical scientific environment, so the names and
    versions are taken from the ``NAME-VERSION.dist-info`` directory names
    that installers write (PEP 427 / PEP 376); only directories whose name
    does not carry a version (``.egg-info`` in a source tree) are read.
    """
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for item in names:
            if item.endswith(".dist-info"):
                stem = item[: -len(".dist-info")]
                name, sep, version = stem.partition("-")
                if sep and version:
                    found.setdefault(normalise_name(name), version)
                    continue
            if item.endswith((".dist-info", ".egg-info")):
                try:
                    dist = metadata.PathDistribution(Path(entry or ".") / item)
                    name = dist.metadata["Name"] if dist.metadata else None
                except (OSError, ValueError):
                    name = None
                if name:
                    found.setdefault(normalise_name(name), dist.version or "")
    return dict(sorted(found.items()))


def module_distributions() -> dict[str, list[str]]:
    """Top-level importable module -> normalised names of the distributions
    that install it, like ``importlib.metadata.packages_distributions`` but
    reading only each ``dist-info``'s ``top_level.txt`` or the first path
    component of its ``RECORD`` lines (no per-file objects), so it costs
    milliseconds rather than most of a second.

    Cached per process, keyed on the ``sys.path`` entries and their
    modification times: installing or removing a distribution adds or
    removes a ``dist-info`` directory, which changes its directory's mtime,
    and a changed ``sys.path`` is a different key, so the answer is built
    again instead of going stale (a key costs one ``stat`` per entry). A
    rebuild reads only the ``dist-info`` directories not seen before (by
    path and mtime), so an entry that changes often for other reasons (the
    script's directory in ``/tmp``) costs a listing, not a re-read.

    With a cache file set (:func:`set_cache_file`; a workspace sets one in
    its directory) the same two levels outlive the process: the answer under
    its ``sys.path`` key, and the top-level modules of every ``dist-info``
    directory under its path and mtime. One ``headwater run`` per process is
    the normal use, and reading every ``dist-info`` again in each would cost
    more than the rest of a small run's provenance."""
    key = _path_key()
    cached = _machine_cache.get("modules")
    if cached is not None and cached[0] == key:
        return cached[1]
    seen: dict[tuple[str, int], set[str]] = _machine_cache.setdefault("dist_tops", {})
    answers: dict[tuple, dict[str, list[str]]] = _machine_cache.setdefault("answers", {})
    if _cache_file is not None and _machine_cache.get("loaded_from") != _cache_file:
        _machine_cache["loaded_from"] = _cache_file
        stored_answers, stored_tops = _load_module_cache(_cache_file)
        for stamp, tops in stored_tops.items():
            seen.setdefault(stamp, tops)
        for stored_key, stored in stored_answers.items():
            answers.setdefault(stored_key, stored)
        if key in stored_answers:
            _machine_cache["modules"] = (key, stored_answers[key])
            return stored_answers[key]
    found: dict[str, list[str]] = {}
    current: dict[tuple[str, int], set[str]] = {}
    read = False
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for item in names:
            if not item.endswith(".dist-info"):
                continue
            dist = normalise_name(item[: -len(".dist-info")].partition("-")[0])
            base = os.path.join(entry or ".", item)
            try:
                stamp = (os.path.abspath(base), os.stat(base).st_mtime_ns)
            except OSError:
                continue
            if stamp not in seen:
                seen[stamp] = _top_level_modules(Path(base))
                read = True
            current[stamp] = seen[stamp]
            for top in sorted(seen[stamp]):
                if dist not in found.setdefault(top, []):
                    found[top].append(dist)
    _machine_cache["modules"] = (key, found)
    if _cache_file is not None and (read or answers.get(key) != found):
        answers.pop(key, None)
        answers[key] = found
        for stale in list(answers)[:-MODULE_CACHE_ANSWERS]:
            del answers[stale]
        _save_module_cache(_cache_file, answers, current, seen)
    return found


MODULE_CACHE_FORMAT = 1
"""Version of the module cache file's layout; a file of another version is rebuilt."""

MODULE_CACHE_ANSWERS = 4
"""Answers (one per ``sys.path`` key) the cache file keeps, newest first: the
``headwater`` command and a script importing headwater see different
``sys.path[0]`` entries, and each should find its own."""

_cache_file: Path | None = None


def set_cache_file(path: str | os.PathLike | None) -> None:
    """Keep :func:`module_distributions`' answers in ``path`` across
    processes (``None``: in this process only). The file is content-keyed
    (paths and mtimes), so any process of any interpreter may share it."""
    global _cache_file
    _cache_file = Path(path).absolute() if path is not None else None


def _load_module_cache(path: Path) -> tuple[dict[tuple, dict[str, list[str]]], dict[tuple[str, int], set[str]]]:
    """``({sys.path key: answer}, {dist-info stamp: tops})`` from the cache
    file, answers oldest first; a missing, unreadable or malformed file
    reads as empty (it is rebuilt)."""
    try:
        doc = json.loads(path.read_bytes())
        if doc.get("format") != MODULE_CACHE_FORMAT:
            return {}, {}
        answers = {
            tuple((str(p), int(m)) for p, m in answer["path_key"]):
                {str(top): [str(d) for d in dists] for top, dists in answer["modules"].items()}
            for answer in reversed(doc["answers"])
        }
        tops = {(str(p), int(m)): {str(t) for t in names} for p, m, names in doc["dists"]}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}, {}
    return answers, tops


def _save_module_cache(path: Path, answers: dict[tuple, dict[str, list[str]]],
                       current: dict[tuple[str, int], set[str]], seen: dict[tuple[str, int], set[str]]) -> None:
    """Write ``answers`` (oldest first, the current one last) to the cache
    file atomically (a temporary file renamed over it), so concurrent runs
    read either the old or the new file whole. Entries of
    ``dist-info`` directories under the current ``sys.path`` entries are the
    ones just listed (older versions of them are dropped); entries under
    other directories (another interpreter sharing the file) are kept.
    Failing to write costs only the next process a rebuild."""
    newest = list(answers.items())[::-1]
    dirs = {p for p, _ in newest[0][0]}
    kept = dict(current)
    for stamp, tops in seen.items():
        if stamp not in kept and os.path.dirname(stamp[0]) not in dirs:
            kept[stamp] = tops
    doc = {
        "format": MODULE_CACHE_FORMAT,
        "answers": [{"path_key": [list(k) for k in key], "modules": modules} for key, modules in newest],
        "dists": [[p, m, sorted(tops)] for (p, m), tops in sorted(kept.items())],
    }
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _top_level_modules(base: Path) -> set[str]:
    """The top-level modules one ``dist-info`` directory says its distribution installs."""
    top_level = _read(base / "top_level.txt")
    if top_level is not None:
        return {line.strip() for line in top_level.splitlines() if line.strip()}
    tops: set[str] = set()
    # The first path component of every line, deduplicated before anything
    # else is done with it (RECORDs run to thousands of lines that share a
    # handful of them).
    for first in set(_RECORD_TOP.findall(_read(base / "RECORD") or "")):
        if first.endswith(".py"):
            first = first[:-3]
        if first.isidentifier() and first != "__pycache__":
            tops.add(first)
    return tops


def _path_key() -> tuple[tuple[str, int], ...]:
    """``sys.path`` with each entry's mtime (ns; -1 when it cannot be read);
    the entry is made absolute, as ``""`` (the working directory) would
    otherwise name a different directory after a ``chdir``."""
    out = []
    for entry in sys.path:
        path = os.path.abspath(entry or ".")
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            mtime = -1
        out.append((path, mtime))
    return tuple(out)


def _lock_part(project_dir: Path, packages: dict[str, str]) -> dict[str, str]:
    """``{"file", "sha256"}`` of the project's lock, or of the installed set.

    A single lockfile is hashed as its raw bytes, so the value matches
    ``sha256sum``. Several ``requirements*.txt`` are hashed together as a
    sorted list of (name, sha256) pairs. With no lockfile, the sorted
    ``name==version`` list of installed distributions stands in.
    """
    for name in LOCKFILES:
        path = project_dir / name
        if path.is_file():
            return {"file": name, "sha256": sha256_hex(path.read_bytes())}
    reqs = sorted(p for p in project_dir.glob("requirements*.txt") if p.is_file())
    if len(reqs) == 1:
        return {"file": reqs[0].name, "sha256": sha256_hex(reqs[0].read_bytes())}
    if reqs:
        pairs = [[p.name, sha256_hex(p.read_bytes())] for p in reqs]
        return {"file": ",".join(p.name for p in reqs), "sha256": hash_obj(pairs)}
    listing = "\n".join(f"{n}=={v}" for n, v in sorted(packages.items()))
    return {"file": "installed-distributions", "sha256": sha256_hex(listing.encode("utf-8"))}


def _compose(machine: dict[str, Any], packages: dict[str, str], lock: dict[str, str]) -> EnvFingerprint:
    summary = dict(machine["summary"], lock=lock)
    stable = dict(summary)
    stable.pop("container", None)
    if machine["stable_container"]:
        stable["container"] = machine["stable_container"]
    fp = hash_obj({"summary": stable, "packages": packages})
    hardware = hash_obj({"cpu": summary["cpu"], "gpu": summary.get("gpu")})[:16]
    return EnvFingerprint(summary=summary, packages=packages, fp=fp, hardware_class=hardware)


def fingerprint(project_dir: str | Path | None = None) -> EnvFingerprint:
    """The environment fingerprint, with the lock taken from ``project_dir``.

    ``None`` means the current working directory. Cached per resolved
    project directory; the machine facts and package list are read once per
    process whatever the directory.
    """
    directory = Path(project_dir if project_dir is not None else Path.cwd()).resolve()
    key = str(directory)
    with _lock:
        cached = _fingerprints.get(key)
        if cached is not None:
            return cached
        if "m" not in _machine_cache:
            _machine_cache["m"] = _machine()
        packages = _packages_once()
        result = _compose(_machine_cache["m"], packages, _lock_part(directory, packages))
        _fingerprints[key] = result
        return result


def current_packages() -> dict[str, str]:
    """:func:`installed_packages`, read once per process and shared with
    :func:`fingerprint` (callers must not change it)."""
    with _lock:
        return _packages_once()


def _packages_once() -> dict[str, str]:
    """The process's package list; the caller holds ``_lock``."""
    if "p" not in _packages_cache:
        _packages_cache["p"] = installed_packages()
    return _packages_cache["p"]


def clear_cache() -> None:
    """Forget every cached fingerprint, machine reading and git state."""
    with _lock:
        _fingerprints.clear()
        _machine_cache.clear()
        _packages_cache.clear()
        _git_cache.clear()


def full_export(fp: EnvFingerprint) -> str:
    """A human-readable, deterministic export of the whole environment.

    This is the heavy capture stored (by hash) when a trigger fires: the
    summary, then every installed distribution as ``name==version``, one a
    line, in name order, so two exports diff cleanly with any text tool.
    """
    lines = [
        "# headwater environment export",
        f"fingerprint: {fp.fp}",
        f"hardware_class: {fp.hardware_class}",
    ]
    for key in sorted(fp.summary):
        value = fp.summary[key]
        if isinstance(value, dict):
            value = " ".join(f"{k}={value[k]}" for k in sorted(value))
        lines.append(f"{key}: {value}")
    lines.append("")
    lines.append(f"# packages ({len(fp.packages)})")
    lines.extend(f"{name}=={version}" for name, version in sorted(fp.packages.items()))
    return "\n".join(lines) + "\n"


def diff_packages(old: dict[str, str], new: dict[str, str]) -> dict[str, dict]:
    """What changed between two package lists (name -> version).

    Returns ``{"added": {name: ver}, "removed": {name: ver}, "changed":
    {name: [old_ver, new_ver]}}``, each sorted by name. Names are compared in
    normal form, so ``Foo_Bar`` and ``foo-bar`` are the same package.
    """
    a = {normalise_name(k): v for k, v in old.items()}
    b = {normalise_name(k): v for k, v in new.items()}
    return {
        "added": {n: b[n] for n in sorted(b.keys() - a.keys())},
        "removed": {n: a[n] for n in sorted(a.keys() - b.keys())},
        "changed": {n: [a[n], b[n]] for n in sorted(a.keys() & b.keys()) if a[n] != b[n]},
    }


# --------------------------------------------------------------------------
# git


def _find_repo(path: Path) -> tuple[Path, Path] | None:
    """``(work tree root, git dir)`` for the repository holding ``path``."""
    for candidate in (path, *path.parents):
        dot = candidate / ".git"
        if dot.is_dir():
            return candidate, dot
        if dot.is_file():
            text = _read(dot) or ""
            if text.startswith("gitdir:"):
                gitdir = Path(text[len("gitdir:"):].strip())
                return candidate, (gitdir if gitdir.is_absolute() else candidate / gitdir)
    return None


def _head_commit(gitdir: Path) -> str | None:
    """Resolve HEAD by reading files: loose ref, then packed-refs."""
    head = (_read(gitdir / "HEAD") or "").strip()
    if not head.startswith("ref:"):
        return head if _SHA.match(head) else None
    ref = head[len("ref:"):].strip()
    common = gitdir
    commondir = _read(gitdir / "commondir")
    if commondir:
        common = (gitdir / commondir.strip()).resolve()
    for base in (gitdir, common):
        value = (_read(base / ref) or "").strip()
        if _SHA.match(value):
            return value
    for line in (_read(common / "packed-refs") or "").splitlines():
        sha, _, name = line.partition(" ")
        if name.strip() == ref and _SHA.match(sha):
            return sha
    return None


def _git(root: Path, gitdir: Path, *args: str) -> str | None:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    try:
        done = subprocess.run(
            ["git", f"--git-dir={gitdir}", f"--work-tree={root}", "--no-optional-locks", *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(path: str | Path) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` for the repo at ``path``.

    The commit is read straight from ``.git`` (no process), falling back to
    ``git rev-parse`` for layouts the file reader does not know. Dirtiness
    needs ``git status``, run with a short timeout and without optional
    locks so it never writes to the user's repository; untracked files do
    not count (outputs and the ``.headwater`` directory would otherwise make
    every checkout dirty). Either value is None when it cannot be known, and
    both are None outside a repository. Cached per repository root.
    """
    found = _find_repo(Path(path).resolve())
    if found is None:
        return {"commit": None, "dirty": None}
    root, gitdir = found
    key = str(root)
    with _lock:
        if key in _git_cache:
            return dict(_git_cache[key])
    commit = _head_commit(gitdir)
    if commit is None:
        out = _git(root, gitdir, "rev-parse", "--verify", "-q", "HEAD")
        commit = out.strip() if out and _SHA.match(out.strip()) else None
    status = _git(root, gitdir, "status", "--porcelain", "--untracked-files=no")
    state = {"commit": commit, "dirty": None if status is None else bool(status.strip())}
    with _lock:
        _git_cache[key] = state
    return dict(state)
