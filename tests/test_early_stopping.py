# TRIM (helper for early_stopping): this is a copy of test_generalization.py; keep only what tests early_stopping, then delete this line.
"""Section C claims: the label-noise helper, the RATT formula, and verdicts that can fail.

Each verdict test builds a small table in which the claim holds, checks the verdict says
REPRODUCED, then breaks one number and checks the matching rule (and the verdict) fails.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from repro.claims import (
    early_stopping,
    generalization_gap,
    label_noise_order,
    no_free_lunch,
    ratt_bound,
)
from repro.data import randomize_labels
from repro.records import write_csv
from repro.runner import run_claim

# ------------------------------------------------------------------ label-noise helper


def test_randomize_labels_makes_exactly_the_chosen_share_wrong():
    labels = np.random.default_rng(0).integers(0, 10, size=500)
    noisy, index = randomize_labels(labels, 0.3, np.random.default_rng(1))
    assert len(index) == 150 and np.all(np.diff(index) > 0)
    assert np.all(noisy[index] != labels[index])  # every relabeled example is wrong
    untouched = np.setdiff1d(np.arange(500), index)
    assert np.array_equal(noisy[untouched], labels[untouched])
    assert set(np.unique(noisy[index])) <= set(range(10))
    again, _ = randomize_labels(labels, 0.3, np.random.default_rng(1))
    assert np.array_equal(noisy, again)


def test_randomize_labels_spreads_wrong_labels_over_all_other_classes():
    labels = np.zeros(9000, dtype="int64")
    noisy, index = randomize_labels(labels, 1.0, np.random.default_rng(2))
    counts = np.bincount(noisy[index], minlength=10)
    assert counts[0] == 0
    assert np.all(np.abs(counts[1:] - 1000) < 150)  # about 1/9 each


# -------------------------------------------------------------------------- RATT bound


def test_ratt_bound_matches_the_binary_formula():
    clean, random, n, m, delta = 0.05, 0.45, 658, 600, 0.005
    terms = ratt_bound.ratt_terms(clean, random, n, m, delta)
    expected_confidence = (np.sqrt(2) * 0.45 + 2 + 600 / 1316) * np.sqrt(np.log(800) / 600)
    assert terms["random_term"] == pytest.approx(0.1)
    assert terms["confidence_term"] == pytest.approx(expected_confidence)
    assert terms["bound"] == pytest.approx(0.05 + 0.1 + expected_confidence)


def test_ratt_bound_is_vacuous_once_random_labels_are_memorized():
    assert ratt_bound.ratt_terms(0.0, 0.0, 658, 600, 0.005)["bound"] > 1


# ------------------------------------------------------------------ invalid configs


@pytest.mark.parametrize(
    "module, change",
    [
        (generalization_gap, {"sizes": (100, 50)}),
        (generalization_gap, {"sizes": (40, 5000)}),
        (label_noise_order, {"noise_rates": (0.0, 0.4)}),
        (label_noise_order, {"mnist1d_noise_rate": 1.5}),
        (ratt_bound, {"delta": 0.0}),
        (ratt_bound, {"random_size": 5000}),
        (early_stopping, {"patiences": (5, 50)}),  # patience beyond max_epochs
        (early_stopping, {"train_size": 1200, "validation_size": 300}),
        (no_free_lunch, {"label_flip_rate": 0.5}),
    ],
)
def test_invalid_config_raises(module, change):
    with pytest.raises(ValueError):
        dataclasses.replace(module.PROFILES["full"], **change)


# ------------------------------------------------------- verdicts on built tables


def _outcomes(verdict) -> dict[str, str]:
    return {rule.name: rule.outcome for rule in verdict.rules}


def _failed(verdict) -> list[str]:
    return [rule.name for rule in verdict.rules if rule.outcome == "fail"]


def _wobble(seed: int, scale: float = 0.01) -> float:
    """A small per-seed difference, so that intervals over seeds have a width."""
    return scale * np.sin(seed + 1.0)


def _gap_table(seeds=range(5)):
    sizes = [40, 100, 250, 630, 1258]
    test = [0.2, 0.12, 0.07, 0.04, 0.025]
    return pd.DataFrame(
        [
            {
                "seed": s,
                "train_size": n,
                "train_error": 0.0,
                "test_error": t + _wobble(s, 0.002),
                "gap": t + _wobble(s, 0.002),
            }
            for s in seeds
            for n, t in zip(sizes, test, strict=True)
        ]
    )


def test_generalization_gap_verdict_holds_on_a_textbook_table(tmp_path):
    write_csv(_gap_table(), tmp_path / "errors.csv")
    verdict = generalization_gap.verdict(tmp_path)
    assert verdict.reproduced
    assert all(not rule.exact for rule in verdict.rules)  # every rule carries its interval


def test_generalization_gap_verdict_fails_when_the_net_does_not_fit(tmp_path):
    table = _gap_table()
    table.loc[table["train_size"] == 1258, "train_error"] = 0.05 + table["seed"] * 0.001
    write_csv(table, tmp_path / "errors.csv")
    verdict = generalization_gap.verdict(tmp_path)
    assert _failed(verdict) == [verdict.rules[0].name]


def test_generalization_gap_verdict_fails_when_the_small_set_generalizes(tmp_path):
    table = _gap_table()
    table.loc[table["train_size"] == 40, "gap"] = 0.05 + table["seed"] * 0.001
    write_csv(table, tmp_path / "errors.csv")
    verdict = generalization_gap.verdict(tmp_path)
    assert _outcomes(verdict)[verdict.rules[1].name] == "fail"


def test_generalization_gap_verdict_fails_when_the_gap_does_not_shrink(tmp_path):
    table = _gap_table()
    table["gap"] = 0.2 + table["seed"] * 0.001  # flat in the training-set size
    write_csv(table, tmp_path / "errors.csv")
    verdict = generalization_gap.verdict(tmp_path)
    assert _failed(verdict) == [verdict.rules[2].name]


def test_generalization_gap_nan_fails_as_no_measurement(tmp_path):
    table = _gap_table()
    table.loc[(table["seed"] == 2) & (table["train_size"] == 250), "train_error"] = np.nan
    write_csv(table, tmp_path / "errors.csv")
    rule = generalization_gap.verdict(tmp_path).rules[0]
    assert rule.outcome == "fail" and rule.reason == "no measurement"


def _noise_curves(noisy_agreement, test_accuracy, rates=(0.2, 0.4), seeds=range(5)):
    epochs = np.arange(1, len(noisy_agreement) + 1)
    clean = np.minimum(1.0, 0.5 + 0.1 * epochs)  # first reaches 0.8 at epoch 3
    frames = [
        pd.DataFrame(
            {
                "dataset": "digits",
                "noise_rate": rate,
                "seed": seed,
                "epoch": epochs,
                "clean_accuracy": clean,
                "noisy_agreement": np.asarray(noisy_agreement) + _wobble(seed),
                "noisy_original_accuracy": 1 - np.asarray(noisy_agreement),
                "test_accuracy": np.asarray(test_accuracy) + _wobble(seed),
            }
        )
        for rate in rates
        for seed in seeds
    ]
    return pd.concat(frames, ignore_index=True)


EPOCHS = 10
LATE_MEMORIZATION = np.linspace(0.02, 0.95, EPOCHS) ** 3  # reaches 0.8 at epoch 10
PEAKED_TEST = np.array([0.6, 0.8, 0.9, 0.92, 0.9, 0.85, 0.8, 0.75, 0.72, 0.7])


def test_label_noise_verdict_holds_on_a_textbook_run(tmp_path):
    curves = _noise_curves(LATE_MEMORIZATION, PEAKED_TEST)
    write_csv(curves, tmp_path / "curves.csv")
    summary = label_noise_order.run_summary(curves)
    assert (summary["clean_fit_epoch"] == 3).all() and (summary["peak_test_epoch"] == 4).all()
    assert (summary["memorized_after_peak"] == 6).all()
    assert label_noise_order.verdict(tmp_path).reproduced


def test_label_noise_verdict_fails_when_wrong_labels_are_fit_alongside(tmp_path):
    together = np.linspace(0.3, 0.95, EPOCHS)  # already 0.52 when the clean subset is fit
    write_csv(_noise_curves(together, PEAKED_TEST), tmp_path / "curves.csv")
    verdict = label_noise_order.verdict(tmp_path)
    assert _outcomes(verdict)[verdict.rules[0].name] == "fail"


def test_label_noise_verdict_fails_without_memorization(tmp_path):
    write_csv(_noise_curves(LATE_MEMORIZATION * 0.5, PEAKED_TEST), tmp_path / "curves.csv")
    verdict = label_noise_order.verdict(tmp_path)
    assert _outcomes(verdict)[verdict.rules[1].name] == "fail"
    order = verdict.rules[2]  # never memorized: no memorization epoch, no measurement
    assert order.outcome == "fail" and order.reason == "no measurement"


def test_label_noise_verdict_fails_when_memorization_precedes_the_peak(tmp_path):
    early = np.minimum(1.0, np.linspace(0.0, 2.0, EPOCHS))  # 80% reached at epoch 5
    still_rising = np.array([0.6, 0.7, 0.75, 0.8, 0.82, 0.84, 0.86, 0.9, 0.92, 0.87])
    write_csv(_noise_curves(early, still_rising), tmp_path / "curves.csv")
    verdict = label_noise_order.verdict(tmp_path)
    assert _outcomes(verdict)[verdict.rules[2].name] == "fail"


def test_label_noise_verdict_fails_when_test_accuracy_does_not_fall(tmp_path):
    plateau = np.array([0.6, 0.8, 0.9, 0.92, 0.91, 0.915, 0.91, 0.92, 0.91, 0.91])
    write_csv(_noise_curves(LATE_MEMORIZATION, plateau), tmp_path / "curves.csv")
    verdict = label_noise_order.verdict(tmp_path)
    assert _failed(verdict) == [verdict.rules[3].name]


def test_label_noise_peak_epoch_ignores_last_bit_differences():
    curves = _noise_curves(LATE_MEMORIZATION, PEAKED_TEST, seeds=[0])
    tied = curves["epoch"] == 6
    curves.loc[tied, "test_accuracy"] = curves.loc[curves["epoch"] == 4, "test_accuracy"].to_numpy()
    curves.loc[tied, "test_accuracy"] = np.nextafter(curves.loc[tied, "test_accuracy"], 2.0)
    assert (label_noise_order.run_summary(curves)["peak_test_epoch"] == 4).all()


def test_label_noise_verdict_ignores_the_second_data_set(tmp_path):
    digits_runs = _noise_curves(LATE_MEMORIZATION, PEAKED_TEST)
    mnist1d_runs = _noise_curves(np.linspace(0.3, 1.0, EPOCHS), PEAKED_TEST).assign(
        dataset="mnist1d"
    )
    write_csv(pd.concat([digits_runs, mnist1d_runs]), tmp_path / "curves.csv")
    assert label_noise_order.verdict(tmp_path).reproduced


N_CLEAN, M_RANDOM, EPOCH_DELTA = 658, 600, 0.1 / 20


def _ratt_table(random_error, test_error, clean_error=0.03, seeds=range(5)):
    epochs = np.arange(1, len(random_error) + 1)
    frames = []
    for seed in seeds:
        errors = np.asarray(random_error) + _wobble(seed, 0.005)
        terms = ratt_bound.ratt_terms(clean_error, errors, N_CLEAN, M_RANDOM, EPOCH_DELTA)
        frames.append(
            pd.DataFrame(
                {
                    "seed": seed,
                    "epoch": epochs,
                    "n_clean": N_CLEAN,
                    "m_random": M_RANDOM,
                    "delta": EPOCH_DELTA,
                    **terms,
                    "test_error": np.asarray(test_error) + _wobble(seed, 0.005),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


UNFIT_THEN_MEMORIZED = [0.5, 0.48, 0.2, 0.0]


def test_ratt_verdict_holds_while_random_labels_are_unfit(tmp_path):
    write_csv(_ratt_table(UNFIT_THEN_MEMORIZED, [0.06] * 4), tmp_path / "bound.csv")
    assert ratt_bound.verdict(tmp_path).reproduced


def test_ratt_verdict_fails_when_test_error_exceeds_the_bound(tmp_path):
    # Scored against flipped test labels: the test error is far above any valid bound.
    write_csv(_ratt_table(UNFIT_THEN_MEMORIZED, [0.94] * 4), tmp_path / "bound.csv")
    verdict = ratt_bound.verdict(tmp_path)
    assert _outcomes(verdict)[verdict.rules[0].name] == "fail"


def test_ratt_verdict_fails_with_the_clean_error_swapped_in(tmp_path):
    # The random labels fit as well as the clean ones (E_R = E_S): the bound is then
    # 1 - E_S + confidence term, above chance, and the non-vacuous rule must fail.
    table = _ratt_table(UNFIT_THEN_MEMORIZED, [0.06] * 4)
    table["random_error"] = table["clean_error"]
    write_csv(table, tmp_path / "bound.csv")
    verdict = ratt_bound.verdict(tmp_path)
    assert _failed(verdict) == [verdict.rules[1].name]


def test_ratt_verdict_recomputes_the_bound_instead_of_trusting_the_column(tmp_path):
    table = _ratt_table([0.0, 0.0], [0.05, 0.05])  # random labels memorized from the start
    table["bound"] = 0.3  # a forged, non-vacuous bound column
    write_csv(table, tmp_path / "bound.csv")
    verdict = ratt_bound.verdict(tmp_path)
    assert _failed(verdict) == [verdict.rules[1].name]


def test_ratt_nan_fails_as_no_measurement(tmp_path):
    table = _ratt_table(UNFIT_THEN_MEMORIZED, [0.06] * 4)
    table.loc[(table["seed"] == 1) & (table["epoch"] == 3), "test_error"] = np.nan
    write_csv(table, tmp_path / "bound.csv")
    rule = ratt_bound.verdict(tmp_path).rules[0]
    assert rule.outcome == "fail" and rule.reason == "no measurement"


def _stopping_table(gain, fraction, seeds=range(5), patiences=(2, 5, 10)):
    return pd.DataFrame(
        [
            {
                "seed": s,
                "patience": p,
                "min_delta": 0.005,
                "max_epochs": 40,
                "epochs_trained": round((fraction + _wobble(s, 0.025)) * 40),
                "best_epoch": 5,
                "early_test_accuracy": 0.7 + gain + _wobble(s),
                "full_test_accuracy": 0.7,
                "accuracy_gain": gain + _wobble(s),
                "epoch_fraction": round((fraction + _wobble(s, 0.025)) * 40) / 40,
                "restored_test_accuracy": 0.72 + gain + _wobble(s),
                "restore_gain": 0.02,
            }
            for s in seeds
            for p in patiences
        ]
    )


def test_early_stopping_verdict_holds_when_stopping_helps_early(tmp_path):
    write_csv(_stopping_table(0.1, 0.4), tmp_path / "stopping.csv")
    assert early_stopping.verdict(tmp_path).reproduced


def test_early_stopping_verdict_fails_when_stopping_costs_accuracy(tmp_path):
    write_csv(_stopping_table(-0.05, 0.4), tmp_path / "stopping.csv")
    verdict = early_stopping.verdict(tmp_path)
    assert _failed(verdict) == [verdict.rules[0].name]


def test_early_stopping_verdict_fails_when_it_trains_almost_to_the_end(tmp_path):
    write_csv(_stopping_table(0.1, 0.9), tmp_path / "stopping.csv")
    verdict = early_stopping.verdict(tmp_path)
    assert _failed(verdict) == [verdict.rules[1].name]


def test_early_stopping_judges_the_cut_off_not_the_restored_weights(tmp_path):
    table = _stopping_table(-0.05, 0.4)
    table["restored_test_accuracy"] = 0.9  # restoring would have rescued it: not judged
    write_csv(table, tmp_path / "stopping.csv")
    assert early_stopping.verdict(tmp_path).rules[0].outcome == "fail"


def test_patience_table_counts_the_seeds_that_kept_up():
    stopping = _stopping_table(0.1, 0.4)
    stopping.loc[stopping["seed"] == 0, "accuracy_gain"] = -0.02
    table = early_stopping.patience_table(stopping)
    assert list(table["patience"]) == [2, 5, 10]
    assert (table["seeds_at_least_as_good"] == 4).all()
    assert (table["min_accuracy_gain"] == -0.02).all()
    assert table["mean_restore_gain"].to_numpy() == pytest.approx(0.02)


def _nfl_accuracy(line_margin=0.1, board_margin=0.45, seeds=range(10)):
    rows = []
    for seed in seeds:
        for distribution, linear, neighbour in (
            (no_free_lunch.NOISY_LINE, 0.68 + line_margin + _wobble(seed), 0.68),
            (no_free_lunch.CHECKERBOARD, 0.5, 0.5 + board_margin + _wobble(seed)),
        ):
            rows += [
                {"seed": seed, "distribution": distribution, "learner": name, "test_accuracy": a}
                for name, a in (
                    (no_free_lunch.LINEAR, linear),
                    (no_free_lunch.NEIGHBOUR, neighbour),
                )
            ]
    return pd.DataFrame(rows)


def test_no_free_lunch_theorem_holds_exactly_for_both_learners():
    deviation, means = no_free_lunch.theorem_deviation(no_free_lunch.theorem_table())
    assert deviation == 0 and len(means) == 4 and (means == 0.5).all()


def test_no_free_lunch_verdict_holds_on_a_rank_swap(tmp_path):
    write_csv(_nfl_accuracy(), tmp_path / "accuracy.csv")
    write_csv(no_free_lunch.theorem_table(), tmp_path / "theorem.csv")
    verdict = no_free_lunch.verdict(tmp_path)
    assert verdict.reproduced and verdict.rules[0].exact


def test_no_free_lunch_theorem_rule_fails_for_a_learner_that_sees_the_answers(tmp_path):
    # A learner that read the off-training labels would be right on every point of every
    # labelling: all labellings at the top count.
    theorem = no_free_lunch.theorem_table()
    top = theorem["correct"] == theorem["off_training_points"]
    theorem.loc[top, "labellings"] = 1024
    theorem.loc[~top, "labellings"] = 0
    write_csv(_nfl_accuracy(), tmp_path / "accuracy.csv")
    write_csv(theorem, tmp_path / "theorem.csv")
    verdict = no_free_lunch.verdict(tmp_path)
    assert _failed(verdict) == [verdict.rules[0].name]


@pytest.mark.parametrize("margins, failing", [((-0.05, 0.45), 1), ((0.1, -0.1), 2)])
def test_no_free_lunch_margin_rules_fail_when_one_learner_wins_everywhere(
    tmp_path, margins, failing
):
    write_csv(_nfl_accuracy(*margins), tmp_path / "accuracy.csv")
    write_csv(no_free_lunch.theorem_table(), tmp_path / "theorem.csv")
    verdict = no_free_lunch.verdict(tmp_path)
    assert _failed(verdict) == [verdict.rules[failing].name]


# ------------------------------------------------------------ a quick run's files


@pytest.fixture(scope="module")
def label_noise_quick(tmp_path_factory):
    """label-noise-order's quick run alone (cheaper than every claim's quick_results)."""
    root = tmp_path_factory.mktemp("quick")
    claim = label_noise_order
    run_claim(claim, "quick", claim.SEEDS["quick"], root)
    return root / claim.CLAIM_ID


def test_noisy_labels_file_matches_the_data_and_the_rate(label_noise_quick):
    table = pd.read_csv(label_noise_quick / "noisy_labels.csv")
    config = label_noise_order.PROFILES["quick"]
    assert set(table["dataset"]) == {"digits", "mnist1d"}
    for (dataset, rate, _seed), group in table.groupby(["dataset", "noise_rate", "seed"]):
        assert len(group) == round(rate * config.train_size)
        assert (group["original_label"] != group["noisy_label"]).all()
        _, y, _, _ = label_noise_order.DATASETS[dataset]()
        assert np.array_equal(y[group["example_index"]], group["original_label"])


def test_early_stopping_nan_fails_as_no_measurement(tmp_path):
    table = _stopping_table(0.1, 0.4)
    table.loc[(table["seed"] == 3) & (table["patience"] == 5), "accuracy_gain"] = np.nan
    write_csv(table, tmp_path / "stopping.csv")
    rule = early_stopping.verdict(tmp_path).rules[0]
    assert rule.outcome == "fail" and rule.reason == "no measurement"
