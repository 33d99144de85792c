import textwrap
from pathlib import Path

import pytest

from headwater.runtime import open_workspace
from headwater.spec import load_workflow


@pytest.fixture
def ws(tmp_path):
    workspace = open_workspace(tmp_path / ".headwater")
    yield workspace
    workspace.close()


@pytest.fixture
def write_wf(tmp_path):
    """Write a workflow module into tmp_path and load it."""
    counter = {"n": 0}

    def make(source: str, name: str | None = None):
        counter["n"] += 1
        path = tmp_path / f"wf_{counter['n']}.py"
        path.write_text(textwrap.dedent(source))
        return load_workflow(path, name)

    return make
