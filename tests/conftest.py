"""Shared fixtures: the real data folder (skipped with a reason when absent), a fresh plugin host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ../shared/data relative to the project root (CI clones the project beside shared/).
SHARED_DATA = Path(os.environ.get("ATOMIZER_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


#: Set (as .ci/run does) to make a missing shared data folder a failure instead of a skip.
REQUIRE_DATA = os.environ.get("ATOMIZER_REQUIRE_DATA") == "1"


def shared_data_path(*parts: str) -> Path:
    """A path under the shared real-data folder; skips the calling test when it is absent.

    With ``ATOMIZER_REQUIRE_DATA=1`` (CI) a missing folder fails the test instead, so real-data
    tests can never be skipped silently where the data is supposed to be.
    """
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        reason = f"real data not found at {path} (the shared data folder is absent on this machine)"
        if REQUIRE_DATA:
            pytest.fail(reason + "; ATOMIZER_REQUIRE_DATA=1 requires it")
        pytest.skip(reason)
    return path


def needs_package(module: str) -> None:
    """Skip when an optional data package (tensorly, earthlib) is absent; fail under CI's flag."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        reason = f"{module} is not installed (pip install 'atomizer[data]')"
        if REQUIRE_DATA:
            pytest.fail(reason + "; ATOMIZER_REQUIRE_DATA=1 requires it")
        pytest.skip(reason)


@pytest.fixture
def shared_data() -> Path:
    return shared_data_path()


@pytest.fixture
def host(monkeypatch, tmp_path):
    """A plugin host that sees only built-ins (no user folders, no installed third-party plugins)."""
    from atomizer.plugins.host import PluginHost

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ATOMIZER_SENSOR_PATH", raising=False)
    return PluginHost(load_entrypoints=False)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Small tensors are slower with several threads on a busy 2-core machine; tests use one."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_terminal_summary(terminalreporter):
    """Counts of the hostile-input tests (tests/hostile.py), when any ran."""
    import sys

    hostile = sys.modules.get("hostile") or sys.modules.get("tests.hostile")
    tally = getattr(hostile, "TALLY", None)
    if tally:
        terminalreporter.write_sep("-", "hostile inputs")
        terminalreporter.write_line(
            ", ".join(f"{k}: {v}" for k, v in sorted(tally.items(), key=lambda kv: -kv[1]))
        )
