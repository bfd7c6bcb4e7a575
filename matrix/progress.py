"""The run's progress: one readable line per step, with elapsed time and an estimate of what is
left."""

from __future__ import annotations

import time


class Progress:
    """One readable line per step, with elapsed time and an estimate of what is left."""

    def __init__(self, cells: int, seconds_per_cell: float) -> None:
        self.cells = cells
        self.estimate = seconds_per_cell
        self.started = time.monotonic()
        self.cell_started = self.started
        self.done_durations: list[float] = []
        self.position = 0

    def start_cell(self, position: int) -> None:
        self.position = position
        self.cell_started = time.monotonic()

    def finish_cell(self) -> None:
        self.done_durations.append(time.monotonic() - self.cell_started)

    def _left(self) -> float:
        per_cell = (
            sum(self.done_durations) / len(self.done_durations)
            if self.done_durations
            else self.estimate
        )
        current = max(0.0, per_cell - (time.monotonic() - self.cell_started))
        return current + per_cell * max(0, self.cells - self.position)

    def line(self, cell_id: str, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(
            f"[{_clock(elapsed)} elapsed, ~{_clock(self._left())} left] "
            f"cell {self.position}/{self.cells} {cell_id}: {message}",
            flush=True,
        )

    def note(self, message: str) -> None:
        print(f"[{_clock(time.monotonic() - self.started)} elapsed] {message}", flush=True)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
