"""The step watcher prints each step of a growing step log once, and waits for a line still
being written."""

from __future__ import annotations

import json
from pathlib import Path

from matrix.measure.trial import StepWatcher


def test_each_step_is_said_once_and_a_partial_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "steps.jsonl"
    said: list[str] = []
    watcher = StepWatcher(log, said.append)
    watcher.poll()  # no log yet
    step = {
        "event": "step",
        "histogram": "",
        "index": 0,
        "rate": 100.0,
        "throughput_rps": 99.6,
        "p95": 12.5,
        "passed": True,
    }
    end = json.dumps({"event": "end", "outcome": "converged"})
    log.write_text(json.dumps({"event": "start"}) + "\n" + json.dumps(step) + "\n" + end[:10])
    watcher.poll()
    watcher.poll()
    assert said == ["step 0: offered 100 req/s, served 100, p95 12.5 ms: pass"]
    with log.open("a") as handle:
        handle.write(end[10:] + "\n")
    watcher.poll()
    assert said[1:] == ["search over (converged)"]
