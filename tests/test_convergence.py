"""The budget-doubling rule (nlbook.convergence) and Welch's verdicts (nlbook.stats)."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from nlbook.convergence import MAX_DOUBLINGS, MIN_GAIN, mean_val_acc, train_until_converged
from nlbook.stats import compare


def fake_trainer(curve):
    """train_seeds for a model whose mean validation accuracy at ``epochs`` is ``curve(epochs)`` (3 seeds)."""
    calls = []

    def train_seeds(epochs):
        calls.append(epochs)
        return [{"seed": s, "final_val_acc": curve(epochs) + d} for s, d in enumerate((-0.001, 0.0, 0.001))]

    return train_seeds, calls


def test_a_doubling_that_still_gains_is_not_converged_until_it_stops():
    # the ViT of the old digits records: 43.5 -> 69.3 -> 90.1 % at 1x, 2x, 4x: never converged under the cap
    table = {30: 0.435, 60: 0.693, 120: 0.901}
    train_seeds, calls = fake_trainer(table.__getitem__)
    budget = train_until_converged(train_seeds, 30)
    assert calls == [30, 60, 120] and budget["epochs"] == 120
    assert budget["converged"] is False and budget["gain"] == pytest.approx(0.208)
    assert [b["gain"] for b in budget["budgets"]][0] is None


def test_converged_when_doubling_gains_less_than_min_gain():
    table = {10: 0.900, 20: 0.903, 40: 0.904}
    train_seeds, calls = fake_trainer(table.__getitem__)
    budget = train_until_converged(train_seeds, 10)
    assert calls == [10, 20] and budget["converged"] is True and budget["epochs"] == 20
    assert budget["gain"] == pytest.approx(0.003) and len(budget["budgets"][-1]["runs"]) == 3


def test_a_drop_counts_as_converged_and_the_threshold_is_strict():
    train_seeds, _ = fake_trainer({10: 0.90, 20: 0.88}.__getitem__)
    assert train_until_converged(train_seeds, 10)["converged"] is True
    train_seeds, calls = fake_trainer({10: 0.90, 20: 0.90 + MIN_GAIN + 1e-9, 40: 0.95}.__getitem__)
    assert train_until_converged(train_seeds, 10)["epochs"] == 40 and calls == [10, 20, 40]


def test_the_cap_is_max_doublings():
    train_seeds, calls = fake_trainer(lambda e: min(0.99, e / 100))
    budget = train_until_converged(train_seeds, 5)
    assert calls == [5 * 2**k for k in range(MAX_DOUBLINGS + 1)] and budget["max_epochs"] == 5 * 2**MAX_DOUBLINGS


@pytest.mark.parametrize(
    "runs, message",
    [
        ([], "non-empty list"),
        ([{"final_val_acc": 91.0}], "fraction in \\[0, 1\\] \\(not percent\\)"),
        ([{"final_test_acc": 0.9}], "needs final_val_acc"),
        ("0.9", "non-empty list"),
    ],
)
def test_mean_val_acc_rejects_bad_runs(runs, message):
    with pytest.raises(ValueError, match=message):
        mean_val_acc(runs)


@pytest.mark.parametrize("kw, message", [({"base_epochs": 0}, "base_epochs"), ({"min_gain": 0.5 * 100}, "min_gain")])
def test_train_until_converged_checks_its_arguments(kw, message):
    train_seeds, calls = fake_trainer(lambda e: 0.9)
    with pytest.raises(ValueError, match=message):
        train_until_converged(train_seeds, **({"base_epochs": 10} | kw))
    assert calls == []  # before anything trains


# ----------------------------------------------------------------------------------------------- Welch


def test_compare_matches_scipy_welch():
    a, b = [0.912, 0.905, 0.917, 0.909], [0.897, 0.902, 0.889]
    c = compare(a, b, test_size=10_000)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert c.difference / c.se == pytest.approx(ref.statistic, rel=1e-10)
    assert c.word == ("better" if ref.pvalue < 0.05 else "no detectable difference")
    assert c.difference_images == pytest.approx(c.difference * 10_000)
    assert c.difference_points == pytest.approx(100 * (sum(a) / 4 - sum(b) / 3))


def test_detectable_is_the_difference_at_which_p_equals_alpha():
    a, b = [0.90, 0.91, 0.92], [0.80, 0.82, 0.81]
    c = compare(a, b)
    shifted = [v + (c.mean_a - c.mean_b) - c.detectable for v in b]  # b moved to exactly `detectable` below a
    assert compare(a, shifted).p == pytest.approx(0.05, rel=1e-6)


def test_two_standard_errors_is_not_significant_with_three_seeds():
    # the old rule called a difference of just over 2 SE "better"; with 3 seeds each Welch's p is about 0.1
    a, b = [1.0, 2.0, 3.0], [3.1, 4.1, 5.1]
    c = compare(b, a)
    assert c.difference > 2 * c.se and c.word == "no detectable difference" and c.p > 0.05


def test_worse_and_better_are_symmetric():
    a, b = [0.80, 0.81, 0.79], [0.90, 0.91, 0.89]
    assert compare(a, b).word == "worse" and compare(b, a).word == "better"
    assert math.isclose(compare(a, b).p, compare(b, a).p)


def test_zero_spread_is_decided_by_the_limit():
    assert compare([0.9, 0.9, 0.9], [0.9, 0.9, 0.9]).word == "no detectable difference"
    assert compare([0.9, 0.9, 0.9], [0.8, 0.8, 0.8]).word == "better"


@pytest.mark.parametrize(
    "a, b, kw, error, message",
    [
        ([0.9], [0.8, 0.7], {}, ValueError, "a needs at least 2 seeds"),
        ("0.9", [0.8, 0.7], {}, TypeError, "a must be a list"),
        ([0.9, float("nan")], [0.8, 0.7], {}, ValueError, "finite"),
        ([0.9, 0.8], [0.8, 0.7], {"alpha": 5}, ValueError, "alpha"),
        ([0.9, 0.8], [0.8, 0.7], {"test_size": 0}, ValueError, "test_size"),
    ],
)
def test_compare_rejects_bad_input(a, b, kw, error, message):
    with pytest.raises(error, match=message):
        compare(a, b, **kw)
