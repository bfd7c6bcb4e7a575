"""How sure a cell's knee is, and how sure the difference between two cells is.

The method (matrix/README.md, "Confidence, not ranges"): a Student t interval on the logarithms
of the trial knees. Logarithms, because a knee is a positive rate whose trial-to-trial spread
grows with its size, and because cells are compared by their ratio (a difference of logs). The
t distribution, because a cell has 2 to 6 trials: with so few, a bootstrap can only resample
among a handful of values (with 2 trials its percentile interval is the min-max range, which
covers the true knee about half the time), while the t interval widens for small samples as it
should. Two cells: Welch's t interval on the difference of their mean log knees (unequal
spreads and trial counts), exponentiated into an interval of the ratio.

Neither interval is narrower than the search's resolution: a trial brackets its knee between a
rate that held and a failing one `resolution` above it (5 % in the quick matrix), so trials
that land on the same rate say the knee lies in that bracket, not that it is known exactly. The
half-width in logarithms is at least log(1 + resolution) for a knee, and for a ratio the two
cells' resolutions combined as independent errors (root of the sum of squares).

The quantiles of t come from scipy (installed with scikit-learn for the training)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

# A search reports one of a few discrete rates (its steps), so two trials often land on the
# same one and give a zero-width interval from a spread estimated on one difference: the
# stopping rule wants a third.
MIN_TRIALS_TO_CONVERGE = 3

# Why a cell's trials stopped (CellRecord.trials_ended, summary.csv, the report).
TRIALS_CONVERGED = "converged"  # the interval within +-ci_target of the median
TRIALS_BUDGET = "budget"  # another trial would have ended past cell_budget_seconds
TRIALS_MAX = "max trials"  # max_trials ran


def t_quantile_975(df: float) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (a fractional df, as
    Welch's gives, is rounded down: the wider, safer interval)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, not {df:g}")
    return float(stats.t.ppf(0.975, math.floor(df + 1e-9)))


@dataclass(frozen=True)
class Interval:
    """A 95 % interval around a central estimate."""

    centre: float
    low: float
    high: float

    def within(self, share: float, of: float | None = None) -> bool:
        """Whether both ends lie within +-`share` of `of` (default: the centre)."""
        ref = self.centre if of is None else of
        return self.low >= ref * (1 - share) - 1e-9 and self.high <= ref * (1 + share) + 1e-9

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def ratio_text(self) -> str:
        """A ratio with its interval as the reports print it: '0.88x (0.82-0.95)'."""
        return f"{self.centre:.2f}x ({self.low:.2f}-{self.high:.2f})"


def _around(centre: float, half: float) -> Interval:
    return Interval(math.exp(centre), math.exp(centre - half), math.exp(centre + half))


def _knee_half_width(sd: float, trials: int, resolution: float) -> float:
    """The knee interval's half-width in logs for `trials` trials of log spread `sd`: the t
    half-width, never narrower than the trials' bracket."""
    half = t_quantile_975(trials - 1) * sd / math.sqrt(trials)
    return max(half, math.log1p(resolution))


def knee_interval(knees: Sequence[float], resolution: float = 0.0) -> Interval | None:
    """95 % t interval of the typical knee (the geometric mean of the trials), at least
    +-`resolution` wide; None with fewer than two trials or a trial that served nothing (no
    logarithm: the cell is not steady)."""
    if len(knees) < 2 or min(knees) <= 0:
        return None
    logs = [math.log(k) for k in knees]
    half = _knee_half_width(statistics.stdev(logs), len(logs), resolution)
    return _around(statistics.fmean(logs), half)


def ratio_interval(
    numerator: Sequence[float],
    denominator: Sequence[float],
    resolutions: tuple[float, float] = (0.0, 0.0),
) -> Interval | None:
    """95 % Welch interval of the ratio of two cells' typical knees, at least as wide as their
    resolutions combined; None when either cell has fewer than two trials or a trial that
    served nothing."""
    if len(numerator) < 2 or len(denominator) < 2 or min(*numerator, *denominator) <= 0:
        return None
    a = [math.log(k) for k in numerator]
    b = [math.log(k) for k in denominator]
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    centre = statistics.fmean(a) - statistics.fmean(b)
    se = math.sqrt(va + vb)
    half = 0.0
    if se > 0:
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        half = t_quantile_975(df) * se
    floor = math.hypot(*(math.log1p(r) for r in resolutions))
    return _around(centre, max(half, floor))


def converged(knees: Sequence[float], target: float, resolution: float = 0.0) -> bool:
    """Whether the knee's 95 % interval lies within +-`target` of the trials' median, from at
    least MIN_TRIALS_TO_CONVERGE trials: the adaptive trials' stopping rule."""
    if len(knees) < MIN_TRIALS_TO_CONVERGE:
        return False
    interval = knee_interval(knees, resolution)
    return interval is not None and interval.within(target, of=statistics.median(knees))


# How far trials_needed looks: past this many trials a cell's spread, not its budget, is what
# keeps it undecided.
MOST_TRIALS_ESTIMATED = 20


def trials_needed(knees: Sequence[float], target: float, resolution: float = 0.0) -> int | None:
    """About how many trials, scattering as these did, would bring the knee's 95 % interval
    within +-`target` of the median, as `converged` asks: the smallest n (at least
    MIN_TRIALS_TO_CONVERGE and at least the trials run) whose half-width in logs, t(0.975, n-1)
    x sd / sqrt(n) or the trials' bracket if wider, fits between the median and +-`target` of
    it, the median staying where it lies now against the trials' mean. For the trials run this
    is exactly the stopping rule. An estimate beyond them: the next trials' spread is not known.
    None with fewer than two trials, a trial that served nothing, or none of up to
    MOST_TRIALS_ESTIMATED trials enough."""
    if len(knees) < 2 or min(knees) <= 0:
        return None
    logs = [math.log(k) for k in knees]
    offset = statistics.fmean(logs) - math.log(statistics.median(knees))
    limit = min(math.log1p(target) - offset, offset - math.log1p(-target))
    sd = statistics.stdev(logs)
    for n in range(max(len(knees), MIN_TRIALS_TO_CONVERGE), MOST_TRIALS_ESTIMATED + 1):
        if _knee_half_width(sd, n, resolution) <= limit + 1e-9:
            return n
    return None
