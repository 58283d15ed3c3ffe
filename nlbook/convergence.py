"""Chapters 3–7 — when has a model trained long enough? The budget-doubling rule every record follows.

A training run follows its schedule (warm-up, then cosine decay to zero) to the end, so the schedule itself
decides when a run stops — and a run can look finished inside its own schedule while a longer schedule would
still gain a lot: in the last quarter of a cosine schedule the learning rate is below 15 % of its peak, so
the curve flattens whether or not the model has learned what it can. The only way to know is to try more.

**The rule.** An arm (one model with one recipe) trains all its seeds at a budget of ``E`` epochs, then all
seeds again *from scratch* with ``2E`` (a full new schedule). It is *converged* when doubling the budget raised
the mean **validation** accuracy over seeds by less than :data:`MIN_GAIN` (half a point: 25 of 5,000
validation images); a drop counts as converged too — more training did not help. Otherwise the budget doubles
again, up to :data:`MAX_DOUBLINGS` doublings (``4E``). An arm that still gains at the cap is *not converged*:
its numbers are lower bounds. The test split never takes part: it is scored once per run, at the end.

:func:`train_until_converged` applies the rule to any function that trains every seed at a given budget.
It is a low layer: the standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

__all__ = ["MAX_DOUBLINGS", "MIN_GAIN", "RULE", "mean_val_acc", "train_until_converged"]

MIN_GAIN = (
    0.005  # half a point of validation accuracy: 25 of the 5,000 validation images
)
MAX_DOUBLINGS = 2  # budgets E, 2E and 4E: at most four times an arm's base budget
RULE = {
    "criterion": (
        "an arm is converged when training every seed from scratch with twice the epochs (a full new schedule) "
        "raises the mean validation accuracy over seeds by less than min_gain (a drop counts as converged)"
    ),
    "budget_rule": (
        "every seed trains at the arm's base epochs, then at twice that; while the doubling gained min_gain or "
        "more, the epochs double again, up to max_doublings times; the runs shown are those of the last budget, "
        "every budget's runs are kept; an arm still gaining at the cap is not converged (a lower bound)"
    ),
    "decided_on": "validation accuracy (the test split is scored once per run, after its last epoch)",
    "min_gain": MIN_GAIN,
    "max_doublings": MAX_DOUBLINGS,
}


def _int(where: str, name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
        raise ValueError(f"{where}: {name} must be an int >= {least}, got {value!r}")
    return int(value)


def mean_val_acc(
    runs: Sequence[Mapping[str, Any]], where: str = "mean_val_acc"
) -> float:
    """Mean over seeds of each run's ``final_val_acc`` (a fraction in [0, 1])."""
    if (
        isinstance(runs, (str, bytes, Mapping))
        or not isinstance(runs, Sequence)
        or not runs
    ):
        raise ValueError(
            f"{where}: runs must be a non-empty list of runs, got {runs!r:.80}"
        )
    values = []
    for run in runs:
        value = run.get("final_val_acc") if isinstance(run, Mapping) else None
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not 0 <= value <= 1
        ):
            raise ValueError(
                f"{where}: every run needs final_val_acc, a fraction in [0, 1] (not percent), got {value!r}"
            )
        values.append(float(value))
    return math.fsum(values) / len(values)


def train_until_converged(
    train_seeds: Callable[[int], list[dict[str, Any]]],
    base_epochs: int,
    *,
    min_gain: float = MIN_GAIN,
    max_doublings: int = MAX_DOUBLINGS,
) -> dict[str, Any]:
    """The rule (module docstring) applied to ``train_seeds(epochs)``, which trains every seed from scratch at
    that budget and returns their runs (each with ``final_val_acc``).

    Returns the arm's ``budget`` entry: ``base_epochs``, ``max_epochs``, ``epochs`` (of the runs shown: the last
    budget), ``converged``, ``gain`` (of the last doubling) and ``budgets`` — every budget tried, each with its
    ``epochs``, ``mean_val_acc``, ``gain`` over the budget before it (``None`` for the first) and ``runs``.
    """
    base_epochs = _int("train_until_converged", "base_epochs", base_epochs, 1)
    max_doublings = _int("train_until_converged", "max_doublings", max_doublings, 1)
    if (
        isinstance(min_gain, bool)
        or not isinstance(min_gain, Real)
        or not 0 < min_gain < 1
    ):
        raise ValueError(
            f"train_until_converged: min_gain must be a fraction of accuracy in (0, 1), got {min_gain!r}"
        )
    budgets: list[dict[str, Any]] = []
    epochs, converged = base_epochs, False
    for _ in range(max_doublings + 1):
        runs = train_seeds(epochs)
        mean = mean_val_acc(runs, "train_until_converged (what train_seeds returned)")
        gain = None if not budgets else mean - budgets[-1]["mean_val_acc"]
        budgets.append(
            {"epochs": epochs, "mean_val_acc": mean, "gain": gain, "runs": runs}
        )
        if gain is not None and gain < min_gain:
            converged = True
            break
        epochs *= 2
    return {
        "base_epochs": base_epochs,
        "max_epochs": base_epochs * 2**max_doublings,
        "epochs": budgets[-1]["epochs"],
        "converged": converged,
        "gain": budgets[-1]["gain"],
        "min_gain": float(min_gain),
        "budgets": budgets,
    }
