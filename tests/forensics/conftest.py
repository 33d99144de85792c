from tests.runtime.conftest import write_wf, ws  # noqa: F401  shared fixtures
