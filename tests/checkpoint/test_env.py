from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from headwater.checkpoint import env as E
from headwater.checkpoint.canonical import hash_obj


@pytest.fixture(autouse=True)
def fresh_cache():
    E.set_cache_file(None)
    E.clear_cache()
    yield
    E.set_cache_file(None)
    E.clear_cache()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# fingerprint


def test_fingerprint_is_stable_and_cached(tmp_path):
    (tmp_path / "uv.lock").write_text("version = 1\n")
    first = E.fingerprint(tmp_path)
    assert E.fingerprint(str(tmp_path)) is first
    E.clear_cache()
    again = E.fingerprint(tmp_path)
    assert again is not first and again == first
    assert len(first.fp) == 64 and len(first.hardware_class) == 16
    assert first.summary["python"].count(".") == 2
    assert first.packages and all(name == E.normalise_name(name) for name in first.packages)


def test_lockfile_content_changes_the_fingerprint_not_the_hardware(tmp_path):
    lock = tmp_path / "uv.lock"
    lock.write_text("version = 1\n")
    before = E.fingerprint(tmp_path)
    assert before.summary["lock"] == {"file": "uv.lock", "sha256": sha(b"version = 1\n")}
    lock.write_text("version = 1\n[[package]]\nname = \"numpy\"\n")
    assert E.fingerprint(tmp_path).fp == before.fp  # cached for the process
    E.clear_cache()
    after = E.fingerprint(tmp_path)
    assert after.fp != before.fp
    assert after.hardware_class == before.hardware_class
    assert after.packages == before.packages


def test_project_dirs_are_cached_separately(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "poetry.lock").write_text("a")
    (b / "poetry.lock").write_text("b")
    assert E.fingerprint(a).fp != E.fingerprint(b).fp


def test_lock_precedence_and_requirements_hashed_together(tmp_path):
    (tmp_path / "requirements.txt").write_text("numpy==1.26.4\n")
    single = E._lock_part(tmp_path, {})
    assert single == {"file": "requirements.txt", "sha256": sha(b"numpy==1.26.4\n")}

    (tmp_path / "requirements-dev.txt").write_text("pytest\n")
    both = E._lock_part(tmp_path, {})
    assert both["file"] == "requirements-dev.txt,requirements.txt"
    assert both["sha256"] == hash_obj([["requirements-dev.txt", sha(b"pytest\n")],
                                       ["requirements.txt", sha(b"numpy==1.26.4\n")]])

    (tmp_path / "requirements-dev.txt").write_text("pytest>=8\n")
    assert E._lock_part(tmp_path, {})["sha256"] != both["sha256"]

    (tmp_path / "poetry.lock").write_text("p")
    assert E._lock_part(tmp_path, {})["file"] == "poetry.lock"
    (tmp_path / "uv.lock").write_text("u")
    assert E._lock_part(tmp_path, {}) == {"file": "uv.lock", "sha256": sha(b"u")}


def test_without_lockfile_the_installed_set_is_hashed(tmp_path):
    fp = E.fingerprint(tmp_path)
    listing = "\n".join(f"{n}=={v}" for n, v in sorted(fp.packages.items()))
    assert fp.summary["lock"] == {"file": "installed-distributions", "sha256": sha(listing.encode())}


def test_bundle_part_has_fp_hw_and_summary(tmp_path):
    fp = E.fingerprint(tmp_path)
    part = fp.bundle_part()
    assert part["fp"] == fp.fp and part["hw"] == fp.hardware_class
    assert part["lock"] == fp.summary["lock"] and part["python"] == fp.summary["python"]


def test_container_instance_id_stays_out_of_the_fingerprint():
    packages = {"numpy": "1.26.4"}
    lock = {"file": "uv.lock", "sha256": "0" * 64}
    summary = {"python": "3.11.7", "cpu": "X", "cpus": 8}

    def machine(container, stable):
        m = {"summary": dict(summary), "stable_container": stable}
        if container:
            m["summary"]["container"] = container
        return m

    one = E._compose(machine("docker:aaaaaaaaaaaa", "docker"), packages, lock)
    two = E._compose(machine("docker:bbbbbbbbbbbb", "docker"), packages, lock)
    bare = E._compose(machine(None, None), packages, lock)
    image = E._compose(machine("sha256:feed", "sha256:feed"), packages, lock)
    other_image = E._compose(machine("sha256:beef", "sha256:beef"), packages, lock)
    assert one.fp == two.fp
    assert one.summary["container"] == "docker:aaaaaaaaaaaa"
    assert len({one.fp, bare.fp, image.fp, other_image.fp}) == 4
    newer = E._compose(machine(None, None), {"numpy": "2.0.0"}, lock)
    assert newer.fp != bare.fp and newer.hardware_class == bare.hardware_class


# --------------------------------------------------------------------------
# reading the machine, from a fake root


def test_cpu_model_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n")
    assert E._cpu_model(info) == "Intel(R) Xeon(R) Gold 6338"
    info.write_text("processor\t: 0\nHardware\t: BCM2835\n")
    assert E._cpu_model(info) == "BCM2835"
    assert E._cpu_model(tmp_path / "absent")  # falls back to platform, never empty


def test_gpu_models_from_the_nvidia_driver(tmp_path):
    nvidia = tmp_path / "nvidia"
    assert E._gpu_model(nvidia) is None
    for i, model in enumerate(["NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB", "NVIDIA T4"]):
        board = nvidia / "gpus" / f"0000:0{i}:00.0"
        board.mkdir(parents=True)
        (board / "information").write_text(f"Model: \t\t {model}\nIRQ:   42\n")
    assert E._gpu_model(nvidia) == "2x NVIDIA A100-SXM4-80GB, NVIDIA T4"


def test_container_detection(tmp_path):
    cid = "0123456789abcdef" * 4
    assert E._container(tmp_path, {}) == (None, None)
    (tmp_path / ".dockerenv").write_text("")
    assert E._container(tmp_path, {}) == ("docker", "docker")
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text(
        f"12:memory:/kubepods/burstable/pod1234/{cid}\n0::/\n")
    assert E._container(tmp_path, {}) == ("kubepods:0123456789ab", "kubepods")
    assert E._container(tmp_path, {"HEADWATER_IMAGE_ID": "sha256:feed"}) == ("sha256:feed", "sha256:feed")


# --------------------------------------------------------------------------
# exports and diffs


def test_full_export_lists_every_package_in_order(tmp_path):
    fp = E.fingerprint(tmp_path)
    text = E.full_export(fp)
    assert E.full_export(fp) == text
    assert f"fingerprint: {fp.fp}" in text and f"hardware_class: {fp.hardware_class}" in text
    lines = [ln for ln in text.splitlines() if "==" in ln]
    assert lines == [f"{n}=={v}" for n, v in sorted(fp.packages.items())]


def test_diff_packages():
    old = {"numpy": "1.26.4", "Pandas": "2.1.0", "scipy": "1.11.0"}
    new = {"numpy": "2.0.0", "pandas": "2.1.0", "scikit_learn": "1.4.0"}
    assert E.diff_packages(old, new) == {
        "added": {"scikit-learn": "1.4.0"},
        "removed": {"scipy": "1.11.0"},
        "changed": {"numpy": ["1.26.4", "2.0.0"]},
    }
    assert E.diff_packages(new, new) == {"added": {}, "removed": {}, "changed": {}}


# --------------------------------------------------------------------------
# git state, from hand-made .git directories (no git command is run on them
# that could write)


SHA1 = "9fceb02d0ae598e95dc970b74767f19372d61af8"
SHA2 = "e338b5c47e085a25d1eadd67b10b839809175b01"


def fake_repo(root: Path) -> Path:
    git = root / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    return git


def test_git_state_outside_a_repository(tmp_path):
    assert E.git_state(tmp_path) == {"commit": None, "dirty": None}


def test_git_state_reads_a_loose_ref_from_a_subdirectory(tmp_path):
    git = fake_repo(tmp_path)
    (git / "refs" / "heads" / "main").write_text(SHA1 + "\n")
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    state = E.git_state(sub)
    assert state["commit"] == SHA1
    assert state["dirty"] is None  # git cannot read this hand-made repository


def test_git_state_packed_refs_detached_head_and_cache(tmp_path):
    git = fake_repo(tmp_path)
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{SHA2} refs/heads/main\n")
    assert E.git_state(tmp_path)["commit"] == SHA2
    (git / "HEAD").write_text(SHA1 + "\n")
    assert E.git_state(tmp_path)["commit"] == SHA2  # cached per repository root
    E.clear_cache()
    assert E.git_state(tmp_path)["commit"] == SHA1


def test_git_state_follows_a_worktree_gitdir_file(tmp_path):
    main = tmp_path / "main"
    git = fake_repo(main)
    (git / "refs" / "heads" / "feature").write_text(SHA2 + "\n")
    wt_git = git / "worktrees" / "wt"
    wt_git.mkdir(parents=True)
    (wt_git / "HEAD").write_text("ref: refs/heads/feature\n")
    (wt_git / "commondir").write_text("../..\n")
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {wt_git}\n")
    assert E.git_state(wt)["commit"] == SHA2


def test_module_distributions_is_cached_until_a_path_entry_changes(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr("sys.path", [str(site)])
    assert E.module_distributions() == {}
    first = E.module_distributions()
    assert E.module_distributions() is first  # nothing changed: no second scan
    info = site / "hw_demo_pkg-1.0.dist-info"
    info.mkdir()
    (info / "top_level.txt").write_text("hw_demo\n")
    os.utime(site, ns=(10**18, 10**18))  # an mtime the previous one cannot equal, whatever the clock's grain
    assert E.module_distributions() == {"hw_demo": ["hw-demo-pkg"]}
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setattr("sys.path", [str(other)])
    assert E.module_distributions() == {}  # a changed sys.path is a new key


def test_a_busy_path_entry_is_listed_again_but_its_distributions_are_not_reread(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "hw_demo_pkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "RECORD").write_text("hw_demo/__init__.py,sha256=x,1\nhw_demo/a.py,,\nhw_demo-1.0.dist-info/RECORD,,\n")
    monkeypatch.setattr("sys.path", [str(site)])
    reads: list[str] = []
    real = E._top_level_modules
    monkeypatch.setattr(E, "_top_level_modules", lambda base: reads.append(base.name) or real(base))
    assert E.module_distributions() == {"hw_demo": ["hw-demo-pkg"]}
    (site / "scratch.txt").write_text("")  # the entry changes, its distributions do not
    os.utime(site, ns=(10**18, 10**18))
    assert E.module_distributions() == {"hw_demo": ["hw-demo-pkg"]}
    assert reads == ["hw_demo_pkg-1.0.dist-info"]


# --------------------------------------------------------------------------
# the module cache file (one process per run)


def make_site(root: Path) -> Path:
    """A ``sys.path`` entry with distributions named three ways: by
    ``top_level.txt``, by ``RECORD`` only, and two sharing one module."""
    site = root / "site"
    a = site / "hw_alpha-1.0.dist-info"
    a.mkdir(parents=True)
    (a / "top_level.txt").write_text("hw_alpha\nhw_shared\n")
    b = site / "hw_beta-2.0.dist-info"
    b.mkdir()
    (b / "RECORD").write_text("hw_beta/__init__.py,,\nhw_beta_mod.py,,\nhw_beta-2.0.dist-info/RECORD,,\n")
    c = site / "hw_gamma-0.1.dist-info"
    c.mkdir()
    (c / "top_level.txt").write_text("hw_shared\n")
    return site


def new_process(monkeypatch) -> list[str]:
    """Forget the in-process cache, as a new process starts without it, and
    return the list of ``dist-info`` directories read from then on."""
    E.clear_cache()
    reads: list[str] = []
    real = E._top_level_modules
    monkeypatch.setattr(E, "_top_level_modules", lambda base: reads.append(base.name) or real(base))
    return reads


def test_a_cache_file_hit_is_the_fresh_answer_without_reading_any_distribution(tmp_path, monkeypatch):
    site = make_site(tmp_path)
    monkeypatch.setattr("sys.path", [str(site), str(tmp_path / "missing")])
    fresh = E.module_distributions()
    assert fresh == {"hw_alpha": ["hw-alpha"], "hw_shared": ["hw-alpha", "hw-gamma"],
                     "hw_beta": ["hw-beta"], "hw_beta_mod": ["hw-beta"]}
    cache = tmp_path / "ws" / "env-modules.json"
    cache.parent.mkdir()
    E.set_cache_file(cache)
    E.clear_cache()
    assert E.module_distributions() == fresh
    assert cache.is_file()
    reads = new_process(monkeypatch)
    saves: list[object] = []
    monkeypatch.setattr(E, "_save_module_cache", lambda *a: saves.append(a))
    listed: list[str] = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listed.append(path) or real_listdir(path))
    assert E.module_distributions() == fresh
    assert reads == [] and saves == [] and listed == []  # nothing read, listed or written


def test_the_cache_file_matches_a_fresh_scan_of_this_interpreter(tmp_path):
    fresh = E.module_distributions()
    E.set_cache_file(tmp_path / "env-modules.json")
    E.clear_cache()
    assert E.module_distributions() == fresh
    E.clear_cache()
    assert E.module_distributions() == fresh
    assert E.module_distributions().get("pytest") == ["pytest"]


def test_a_new_distribution_or_a_changed_one_is_read_in_the_next_process(tmp_path, monkeypatch):
    site = make_site(tmp_path)
    monkeypatch.setattr("sys.path", [str(site)])
    E.set_cache_file(tmp_path / "env-modules.json")
    E.module_distributions()
    new = site / "hw_delta-3.0.dist-info"
    new.mkdir()
    (new / "top_level.txt").write_text("hw_delta\n")
    os.utime(site, ns=(10**18, 10**18))
    reads = new_process(monkeypatch)
    assert E.module_distributions()["hw_delta"] == ["hw-delta"]
    assert reads == ["hw_delta-3.0.dist-info"]  # the others come from the file
    changed = site / "hw_alpha-1.0.dist-info"
    (changed / "top_level.txt").write_text("hw_alpha2\n")
    os.utime(changed, ns=(10**18, 10**18))
    os.utime(site, ns=(10**18 + 1, 10**18 + 1))
    reads = new_process(monkeypatch)
    found = E.module_distributions()
    assert reads == ["hw_alpha-1.0.dist-info"]
    assert found["hw_alpha2"] == ["hw-alpha"] and "hw_alpha" not in found
    assert found["hw_shared"] == ["hw-gamma"]


def test_a_changed_path_entry_rebuilds_the_answer_and_each_key_keeps_its_own(tmp_path, monkeypatch):
    site = make_site(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    E.set_cache_file(tmp_path / "env-modules.json")
    monkeypatch.setattr("sys.path", [str(site)])
    first = E.module_distributions()
    monkeypatch.setattr("sys.path", [str(other), str(site)])
    assert E.module_distributions() == first
    (other / "scratch.txt").write_text("")  # the entry changes, no distribution does
    os.utime(other, ns=(10**18, 10**18))
    new_process(monkeypatch)
    assert E.module_distributions() == first
    monkeypatch.setattr("sys.path", [str(site)])
    reads = new_process(monkeypatch)
    saves: list[object] = []
    monkeypatch.setattr(E, "_save_module_cache", lambda *a: saves.append(a))
    assert E.module_distributions() == first
    assert reads == [] and saves == []  # the first key's answer is still in the file


@pytest.mark.parametrize("content", [
    b"\x00\xffnot json",
    b'{"format": 1, "answers": [{"path_key": [["x"]]}], "dists": []}',
    b'{"format": 1, "answers": [], "dists": [["/a", "notanint", []]]}',
    b"[]",
    b'{"format": 99, "answers": [], "dists": []}',
    b'{"format": 1, "answers": [',
])
def test_a_corrupt_cache_file_is_rebuilt_not_fatal(tmp_path, monkeypatch, content):
    site = make_site(tmp_path)
    monkeypatch.setattr("sys.path", [str(site)])
    fresh = E.module_distributions()
    cache = tmp_path / "env-modules.json"
    cache.write_bytes(content)
    E.set_cache_file(cache)
    reads = new_process(monkeypatch)
    assert E.module_distributions() == fresh
    assert len(reads) == 3
    reads = new_process(monkeypatch)
    assert E.module_distributions() == fresh
    assert reads == []  # the rebuilt file serves the next process


def test_an_unwritable_cache_file_costs_only_the_cache(tmp_path, monkeypatch):
    site = make_site(tmp_path)
    monkeypatch.setattr("sys.path", [str(site)])
    E.set_cache_file(tmp_path / "no-such-dir" / "env-modules.json")
    assert E.module_distributions()["hw_beta"] == ["hw-beta"]
    assert not (tmp_path / "no-such-dir").exists()
    assert list(tmp_path.iterdir()) == [site]


def test_a_workspace_keeps_the_module_cache_in_its_directory(tmp_path):
    from headwater.runtime.workspace import MODULE_CACHE, open_workspace

    ws = open_workspace(tmp_path / ".headwater")
    try:
        E.clear_cache()
        E.module_distributions()
        assert (ws.root / MODULE_CACHE).is_file()
    finally:
        ws.close()


def test_current_packages_is_the_fingerprints_list():
    assert E.current_packages() is E.fingerprint().packages
    assert E.current_packages()["pytest"]


def test_the_cache_file_keeps_only_the_newest_answers(tmp_path, monkeypatch):
    site = make_site(tmp_path)
    cache = tmp_path / "env-modules.json"
    E.set_cache_file(cache)
    entries = []
    for i in range(E.MODULE_CACHE_ANSWERS + 2):
        entry = tmp_path / f"entry{i}"
        entry.mkdir()
        entries.append(str(entry))
        monkeypatch.setattr("sys.path", [entries[-1], str(site)])
        E.module_distributions()
    kept = [answer["path_key"][0][0] for answer in json.loads(cache.read_text())["answers"]]
    assert kept == entries[::-1][: E.MODULE_CACHE_ANSWERS]
