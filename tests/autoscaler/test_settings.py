"""The autoscaler's settings as the stack passes them: empty variables mean the defaults."""

from __future__ import annotations

import pytest

from autoscaler.settings import AutoscaleSettings


def test_empty_variables_from_the_stack_file_take_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTOSCALE_MIN_REPLICAS", "")
    monkeypatch.setenv("AUTOSCALE_TARGET_RPS_PER_REPLICA", "")
    monkeypatch.setenv("AUTOSCALE_MAX_REPLICAS", "3")
    monkeypatch.setenv("AUTOSCALE_ENABLED", "true")
    settings = AutoscaleSettings()
    defaults = AutoscaleSettings.model_fields
    assert settings.min_replicas == defaults["min_replicas"].default
    assert settings.target_rps_per_replica == defaults["target_rps_per_replica"].default
    assert (settings.max_replicas, settings.enabled) == (3, True)


def test_a_bad_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSCALE_TARGET_RPS_PER_REPLICA", "-5")
    with pytest.raises(ValueError, match="target_rps_per_replica"):
        AutoscaleSettings()
