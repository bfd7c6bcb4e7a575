"""python -m stack.ctl, the waits scripts/stack_up.sh calls, against the fake engine and a
stand-in API on loopback: what converged and what is ready, and clear errors when not."""

from __future__ import annotations

from typing import Any

import pytest

from stack import ctl as stackctl
from stack.engine import ServiceResources
from tests.stack.fake_engine import FakeEngine
from tests.stack.ready_server import ReadyServer

TWO_REPLICAS = ServiceResources(
    replicas=2,
    limit_nano_cpus=10**9,
    limit_memory_bytes=2**29,
    reserve_nano_cpus=0,
    reserve_memory_bytes=0,
)


def _engine(**kwargs: Any) -> FakeEngine:
    return FakeEngine(TWO_REPLICAS, update_config={}, stack="lab", **kwargs)


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stackctl, "READY_INTERVAL_S", 0.0)
    monkeypatch.setattr(stackctl, "CONVERGE_INTERVAL_S", 0.0)


def test_converged_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert stackctl.main(["wait-converged", "lab", "5"], _engine()) == 0
    assert "stack lab converged: api 2/2 completed  nginx 1/1" in capsys.readouterr().err


def test_a_stack_that_does_not_converge_names_the_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        stackctl.main(["wait-converged", "lab", "0.05"], _engine(unschedulable_replicas=[2])) == 1
    )
    err = capsys.readouterr().err
    assert "lab_api.1 pending no suitable node" in err
    assert "error: timed out after 0.05s: stack lab still pending: api 0/2 updating" in err


def test_a_stack_that_is_not_deployed(capsys: pytest.CaptureFixture[str]) -> None:
    assert stackctl.main(["wait-converged", "other", "5"], _engine()) == 1
    assert "stack other has no services (was it deployed?)" in capsys.readouterr().err


def test_ready_when_the_api_answers_and_nginx_sees_every_replica(
    ready_server: ReadyServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{ready_server.port}/ready"
    assert stackctl.main(["wait-ready", "lab", url, "10"], _engine()) == 0
    assert "status 200, Nginx sees 2/2 api replicas" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("down", "upstreams", "expected"),
    [
        (False, 1, "status 200, Nginx sees 1/2 api replicas"),
        (True, None, "status 503, Nginx sees 2/2 api replicas"),
    ],
)
def test_not_ready_says_what_it_saw_last(
    ready_server: ReadyServer,
    down: bool,
    upstreams: int | None,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ready_server.down = down
    url = f"http://127.0.0.1:{ready_server.port}/ready"
    assert stackctl.main(["wait-ready", "lab", url, "0.2"], _engine(nginx_upstreams=upstreams)) == 1
    err = capsys.readouterr().err
    assert expected in err and "docker service logs lab_nginx" in err


def test_memory_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    assert stackctl.main(["memory-bytes", "48M"]) == 0
    assert capsys.readouterr().out == f"{48 * 2**20}\n"
    assert stackctl.main(["memory-bytes", "lots"]) == 2
    assert "'lots' is not a memory size" in capsys.readouterr().err


def test_bad_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        stackctl.main(["wait-converged", "lab", "soon"])
    assert exit_info.value.code == 2
    assert "not a number of seconds" in capsys.readouterr().err
