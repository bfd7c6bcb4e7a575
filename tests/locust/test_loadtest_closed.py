"""The workshop's per-second outcomes: recorded per generator, merged over generators, summed
over the hold with successes and refusals timed apart."""

from __future__ import annotations

import pytest

from loadtest import closed_model as closed


def test_outcome_kinds() -> None:
    kind = closed.outcome_kind
    assert kind(200, False, None) == closed.OK
    assert kind(200, False, "species missing") == closed.INVALID
    assert kind(503, False, None) == closed.REFUSED
    assert kind(502, False, None) == "HTTP 502"
    assert kind(0, False, None) == closed.CONNECTION_ERROR
    assert kind(0, True, None) == closed.TIMEOUT


def test_outcomes_of_locusts_request_event() -> None:
    """A user's own locustfile: what its users' requests count as, from the request event."""
    assert closed.event_outcome_kind(200, None) == closed.OK
    # No exception: the user's file counted it a success, whatever the status.
    assert closed.event_outcome_kind(201, None) == closed.OK
    assert closed.event_outcome_kind(503, RuntimeError("503 Server Error")) == closed.REFUSED
    assert closed.event_outcome_kind(500, RuntimeError("500")) == "HTTP 500"
    assert closed.event_outcome_kind(0, ConnectionRefusedError()) == closed.CONNECTION_ERROR
    assert closed.event_outcome_kind(0, TimeoutError()) == closed.TIMEOUT

    class ReadTimeout(OSError):  # what requests raises, by its name
        pass

    assert closed.event_outcome_kind(0, ReadTimeout()) == closed.TIMEOUT
    # A 200 the user's file failed (catch_response): an invalid answer.
    assert closed.event_outcome_kind(200, RuntimeError("wrong species")) == closed.INVALID


def test_only_finished_seconds_leave_the_recorder_until_the_end() -> None:
    recorder = closed.WindowRecorder()
    recorder.record(100.2, 0.010, closed.OK)
    recorder.record(100.9, 0.030, closed.OK)
    recorder.record(101.5, 0.002, closed.REFUSED)
    sent = recorder.flush(101.7, users=50)
    assert [w["second"] for w in sent] == [100]
    assert sent[0]["counts"] == {closed.OK: 2} and sent[0]["users"] == 50
    assert recorder.flush(101.8, users=50) == []  # nothing is sent twice
    (last,) = recorder.flush(101.9, users=40, final=True)
    assert last["second"] == 101 and last["counts"] == {closed.REFUSED: 1}


def test_quiet_seconds_are_sent_with_their_user_count() -> None:
    recorder = closed.WindowRecorder(started=200.5)
    assert recorder.flush(200.9, users=10) == []
    recorder.record(202.5, 0.5, closed.OK)
    sent = recorder.flush(203.1, users=20)
    assert [(w["second"], w["counts"], w["users"]) for w in sent] == [
        (200, {}, 20),
        (201, {}, 20),
        (202, {closed.OK: 1}, 20),
    ]
    assert [w["second"] for w in recorder.flush(205.2, users=20)] == [203, 204]


def test_merge_and_summarise_over_two_generators() -> None:
    a, b = closed.WindowRecorder(), closed.WindowRecorder()
    for second in range(10, 20):
        for i in range(10):  # 10 successes per second at 10..100 ms
            a.record(second + 0.05 * i, 0.010 * (i + 1), closed.OK)
        b.record(second + 0.5, 0.001, closed.REFUSED)
        b.record(second + 0.6, 0.002, closed.REFUSED)
        b.record(second + 0.7, 5.0, closed.TIMEOUT)
    messages = a.flush(19.5, users=100, final=True) + b.flush(19.5, users=100, final=True)
    windows = closed.merge_windows(messages)
    assert [w.second for w in windows] == list(range(10, 20))
    assert windows[0].users == 200 and windows[0].answered == 13
    # [12.3, 17.9): whole seconds 13..16 only.
    summary = closed.summarise(windows, 12.3, 17.9)
    assert summary.seconds == 4
    assert summary.counts == {closed.OK: 40, closed.REFUSED: 8, closed.TIMEOUT: 4}
    assert summary.served_rps == 10 and summary.answered_rps == 13
    # Successes alone: the p95 of 10..100 ms is 100 ms, untouched by the fast refusals.
    assert summary.ok_p95_ms == pytest.approx(100, rel=0.01)
    assert summary.ok_p50_ms == pytest.approx(50, rel=0.01)
    assert summary.refused_p95_ms == pytest.approx(2, rel=0.01)
    assert summary.share(closed.REFUSED) == pytest.approx(8 / 52)
    assert summary.users == 200


def test_summary_of_nothing() -> None:
    summary = closed.summarise([], 0, 10)
    assert summary.answered == 0 and summary.served_rps == 0 and summary.ok_p95_ms is None
