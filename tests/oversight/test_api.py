"""The oversight core's public surface, and its purity: no store, runtime or I/O imports."""

import ast
import sys
from pathlib import Path

import headwater.oversight as oversight


def test_every_public_name_exists_and_nothing_private_leaks():
    for name in oversight.__all__:
        assert hasattr(oversight, name), name
    assert len(set(oversight.__all__)) == len(oversight.__all__)
    assert not [n for n in oversight.__all__ if n.startswith("_")]


def test_the_core_imports_nothing_but_the_standard_library_and_itself():
    """The core is pure: no store, runtime, database or clock; numpy only lazily, for arrays."""
    allowed = set(sys.stdlib_module_names) - {"sqlite3", "time", "os", "socket", "subprocess"}
    for path in sorted(Path(oversight.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = top in allowed or name.startswith("headwater.oversight") or name == "headwater.errors"
                lazy_numpy = top == "numpy" and node.col_offset > 0
                assert ok or lazy_numpy, f"{path.name} imports {name}"
