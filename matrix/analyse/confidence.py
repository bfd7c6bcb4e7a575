"""How sure a cell's knee is, and how sure the difference between two cells is.

The method (matrix/README.md, "Confidence, not ranges"): a Student t interval on the logarithms
of the trial knees. Logarithms, because a knee is a positive rate whose trial-to-trial spread
grows with its size, and because cells are compared by their ratio (a difference of logs). The
t distribution, because a cell has 2 to 6 trials: with so few, a bootstrap can only resample
among a handful of values (with 2 trials its percentile interval is the min-max range, which
covers the true knee about half the time), while the t interval widens for small samples as it
should. Two cells: Welch's t interval on the difference of their mean log knees (unequal
spreads and trial counts), exponentiated into an interval of the ratio.

Pure Python: the quantiles of t come from a table (and an expansion beyond it); the tests check
them against scipy.stats.t."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# A search reports one of a few discrete rates (its steps), so two trials often land on the
# same one and give a zero-width interval from a spread estimated on one difference: the
# stopping rule wants a third.
MIN_TRIALS_TO_CONVERGE = 3
# Two-sided 95 %: the 0.975 quantile of Student's t with df = 1 .. 30 degrees of freedom.
_T975 = (
    12.706205,
    4.302653,
    3.182446,
    2.776445,
    2.570582,
    2.446912,
    2.364624,
    2.306004,
    2.262157,
    2.228139,
    2.200985,
    2.178813,
    2.160369,
    2.144787,
    2.131450,
    2.119905,
    2.109816,
    2.100922,
    2.093024,
    2.085963,
    2.079614,
    2.073873,
    2.068658,
    2.063899,
    2.059539,
    2.055529,
    2.051831,
    2.048407,
    2.045230,
    2.042272,
)
_Z975 = 1.959964


def t_quantile_975(df: float) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (a fractional df, as
    Welch's gives, is rounded down: the wider, safer interval)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, not {df:g}")
    whole = int(math.floor(df + 1e-9))
    if whole <= len(_T975):
        return _T975[whole - 1]
    # Cornish-Fisher expansion around the normal quantile: within 1e-5 of the exact value
    # beyond 30 degrees of freedom.
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * whole)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * whole**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * whole**3)
    )


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


def knee_interval(knees: Sequence[float]) -> Interval | None:
    """95 % t interval of the typical knee (the geometric mean of the trials), None with fewer
    than two trials or a trial that served nothing (no logarithm: the cell is not steady)."""
    if len(knees) < 2 or min(knees) <= 0:
        return None
    logs = [math.log(k) for k in knees]
    mean = statistics.fmean(logs)
    half = t_quantile_975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return Interval(math.exp(mean), math.exp(mean - half), math.exp(mean + half))


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float]) -> Interval | None:
    """95 % Welch interval of the ratio of two cells' typical knees, None when either cell has
    fewer than two trials or a trial that served nothing."""
    if len(numerator) < 2 or len(denominator) < 2 or min(*numerator, *denominator) <= 0:
        return None
    a = [math.log(k) for k in numerator]
    b = [math.log(k) for k in denominator]
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    centre = statistics.fmean(a) - statistics.fmean(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(math.exp(centre), math.exp(centre), math.exp(centre))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile_975(df) * se
    return Interval(math.exp(centre), math.exp(centre - half), math.exp(centre + half))


def converged(knees: Sequence[float], target: float) -> bool:
    """Whether the knee's 95 % interval lies within +-`target` of the trials' median, from at
    least MIN_TRIALS_TO_CONVERGE trials: the adaptive trials' stopping rule."""
    if len(knees) < MIN_TRIALS_TO_CONVERGE:
        return False
    interval = knee_interval(knees)
    return interval is not None and interval.within(target, of=statistics.median(knees))
