"""Chapters 3–7 — how sure are we? Comparing two models over a few training seeds with Welch's t-test.

Two models trained with three to five seeds each give two small samples of test accuracies. Whether their means
differ by more than the seeds' own scatter is the question of a two-sample t-test; Welch's form does not assume
that both models scatter equally (a Transformer's seeds often spread more than a ResNet's). :func:`compare`
returns the verdict the book prints — "better", "worse" or "no detectable difference" at the level ``alpha`` —
with the difference in points *and* in test images, the p-value, and the smallest difference these seeds could
have detected at that level (the critical t times the standard error: a difference smaller than that can never
be significant with this many seeds and this scatter, whatever its true size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from scipy import stats as _scipy_stats

__all__ = ["ALPHA", "Comparison", "compare"]

ALPHA = 0.05  # the level of every verdict in the book (two-sided)


@dataclass(frozen=True)
class Comparison:
    """Arm ``a`` against arm ``b`` (higher is better). Accuracies are fractions; ``*_points`` are percentage
    points; ``*_images`` count test images (``None`` without ``test_size``)."""

    word: str  # "better", "worse" or "no detectable difference"
    mean_a: float
    mean_b: float
    sd_a: float  # sample standard deviations (n − 1) over seeds
    sd_b: float
    n_a: int
    n_b: int
    difference: float  # mean_a − mean_b
    se: float  # standard error of the difference, sqrt(sd_a²/n_a + sd_b²/n_b)
    df: float  # Welch–Satterthwaite degrees of freedom
    p: float  # two-sided p-value
    alpha: float
    detectable: float  # the smallest |difference| significant at alpha with these spreads and seeds
    test_size: int | None = None

    @property
    def significant(self) -> bool:
        return self.p < self.alpha

    @property
    def difference_points(self) -> float:
        return 100 * self.difference

    @property
    def detectable_points(self) -> float:
        return 100 * self.detectable

    @property
    def difference_images(self) -> float | None:
        return None if self.test_size is None else self.difference * self.test_size

    @property
    def detectable_images(self) -> float | None:
        return None if self.test_size is None else self.detectable * self.test_size

    def __str__(self) -> str:
        return self.word


def _sample(values: Any, name: str) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(
            f"compare: {name} must be a list of per-seed accuracies, got {type(values).__name__}"
        )
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
            raise ValueError(f"compare: {name} must hold finite numbers, got {v!r}")
        out.append(float(v))
    if len(out) < 2:
        raise ValueError(
            f"compare: {name} needs at least 2 seeds to have a spread, got {len(out)}"
        )
    return out


def compare(
    a: Sequence[float],
    b: Sequence[float],
    *,
    alpha: float = ALPHA,
    test_size: int | None = None,
) -> Comparison:
    """Welch's two-sided t-test of mean(a) against mean(b) at level ``alpha`` (module docstring).

    When both arms have zero spread (every seed identical) the t statistic is undefined; its limit decides:
    equal means are "no detectable difference" (p = 1), unequal ones differ (p = 0), and ``detectable`` is 0.
    """
    a, b = _sample(a, "a"), _sample(b, "b")
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0 < alpha < 0.5:
        raise ValueError(f"compare: alpha must be a level in (0, 0.5), got {alpha!r}")
    if test_size is not None and (
        isinstance(test_size, bool)
        or not isinstance(test_size, Integral)
        or test_size < 1
    ):
        raise ValueError(
            f"compare: test_size must be a positive int (images) or None, got {test_size!r}"
        )
    na, nb = len(a), len(b)
    ma, mb = math.fsum(a) / na, math.fsum(b) / nb
    va = math.fsum((v - ma) ** 2 for v in a) / (na - 1)
    vb = math.fsum((v - mb) ** 2 for v in b) / (nb - 1)
    difference = ma - mb
    se = math.sqrt(va / na + vb / nb)
    if se == 0:
        df, p, detectable = float(na + nb - 2), (1.0 if difference == 0 else 0.0), 0.0
    else:
        # Welch–Satterthwaite; scipy's ttest_ind(equal_var=False) computes the same p
        df = (va / na + vb / nb) ** 2 / (
            (va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1)
        )
        p = float(2 * _scipy_stats.t.sf(abs(difference) / se, df))
        detectable = float(_scipy_stats.t.ppf(1 - alpha / 2, df)) * se
    word = (
        "no detectable difference"
        if p >= alpha
        else ("better" if difference > 0 else "worse")
    )
    return Comparison(
        word,
        ma,
        mb,
        math.sqrt(va),
        math.sqrt(vb),
        na,
        nb,
        difference,
        se,
        df,
        p,
        float(alpha),
        detectable,
        None if test_size is None else int(test_size),
    )
