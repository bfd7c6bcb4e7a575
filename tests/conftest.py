"""Runs fast unit tests first, then integration tests (real processes), then Swarm tests, then
the multi-node cluster tests (engines in network namespaces)."""

from __future__ import annotations

import pytest

_STAGE_ORDER = {"unit": 0, "integration": 1, "swarm": 2, "cluster": 3}


def _stage(item: pytest.Item) -> str:
    if item.get_closest_marker("cluster"):
        return "cluster"
    if item.get_closest_marker("swarm"):
        return "swarm"
    if item.get_closest_marker("integration"):
        return "integration"
    return "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Stable sort: within a stage, pytest's own file order is kept.
    items.sort(key=lambda item: _STAGE_ORDER[_stage(item)])
