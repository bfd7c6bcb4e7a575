"""The matrix tests drive the stack's tooling: they share its fixtures."""

import pytest

from matrix import runner
from tests.stack.conftest import ready_server

__all__ = ["ready_server"]

# A fixed host speed index: the real one starts a server and loads it for seconds
# (tests/matrix/test_host_facts.py measures it once).
FIXED_SPEED_INDEX_US = 150.0


@pytest.fixture(autouse=True)
def fixed_speed_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "speed_index_us", lambda: FIXED_SPEED_INDEX_US)
