"""dropout-regularizes: outputs, config, pairing, noisy controls for both lecture rules, and
the epoch-cap check."""

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread

from repro.backend import seed_everything
from repro.claims import dropout_regularizes as claim
from repro.records import read_csv, write_csv
from repro.rules import FAIL, NOT_REPRODUCED, PASS

PREMISE = "overfitting premise: train minus test accuracy at p = 0"
GAP = "train-test gap at p = 0.5 minus at p = 0, paired per seed"
CHECK = "runs stopped by the epoch cap"
GAIN = "test accuracy at the validation-chosen rate minus at p = 0"
# Per-seed standard deviations on development seeds (docs/claims/dropout-regularizes.md).
PILOT_SPREAD = {PREMISE: 0.024, GAP: 0.028}  # seeds 100-107


def rule(verdict, name_start):
    (found,) = [r for r in verdict.rules if r.name.startswith(name_start)]
    return found


def test_the_quick_run_holds_what_the_claim_measures(quick_run):
    out_dir = quick_run(claim.CLAIM_ID)
    table = read_csv(out_dir / "accuracy.csv")
    assert set(claim.TABLES["accuracy.csv"]) <= set(table.columns)
    assert sorted(table["seed"].unique()) == list(claim.SEEDS["quick"])


def test_every_quick_run_was_stopped_by_patience_at_its_validation_minimum(quick_run):
    table = read_csv(quick_run(claim.CLAIM_ID) / "accuracy.csv")
    patience = claim.PROFILES["quick"].patience
    assert (table["stopped_epoch"] == table["best_epoch"] + patience).all()
    assert (table["stopped_epoch"] < table["epoch_cap"]).all()


@pytest.mark.parametrize(
    "bad",
    [
        {"dropout_rates": (0.0, 1.0)},
        {"dropout_rates": (0.2, 0.5)},  # no p = 0 baseline
        {"dropout_rates": (0.0, 0.5, 0.2)},
        {"dropout_rates": (0.0, 0.3)},  # without the lecture's rate
        {"train_examples": 7000},  # more than the pool holds with validation
        {"test_examples": 20005},  # the generator makes whole classes
        {"hidden": ()},
        {"patience": 0},
        {"epoch_cap": 10},  # not above the patience
    ],
)
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValueError):
        claim.Config(**bad)


def test_every_rate_starts_from_the_same_weights():
    config = claim.PROFILES["quick"]
    weights = []
    for rate in (0.0, 0.5):
        seed_everything(7)
        model = claim.network(config, 40, rate, seed=7)
        weights.append([np.asarray(w) for w in model.get_weights()])
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------- synthetic accuracy tables


def synthetic_accuracy(baseline_gap, gap_change, rng, rates=(0.0, 0.5)) -> pd.DataFrame:
    """accuracy.csv for the full profile's seeds: per seed, the gap at p = 0 and its change
    at p = 0.5 are drawn with the given (mean, sd); every run stopped well before the cap."""
    rows = []
    for seed in claim.SEEDS["full"]:
        test_at_zero = 0.62 + rng.normal(0, 0.01)
        gap_at_zero = baseline_gap[0] + rng.normal(0, baseline_gap[1])
        change = gap_change[0] + rng.normal(0, gap_change[1])
        for rate in rates:
            test = test_at_zero + 0.05 * rate
            gap = gap_at_zero + change * rate / 0.5
            rows.append(
                {
                    "seed": seed,
                    "dropout_rate": rate,
                    "best_epoch": 20 + 200 * rate,
                    "stopped_epoch": 30 + 200 * rate,
                    "epoch_cap": 400,
                    "validation_loss": 1.0,
                    "validation_correct": round(2000 * test),
                    "train_accuracy": test + gap,
                    "validation_accuracy": round(2000 * test) / 2000,
                    "test_accuracy": test,
                    "gap": gap,
                }
            )
    return pd.DataFrame(rows)


def test_a_clean_synthetic_table_is_reproduced(tmp_path):
    rng = np.random.default_rng(0)
    write_csv(synthetic_accuracy((0.3, 0.03), (-0.06, 0.02), rng), tmp_path / "accuracy.csv")
    verdict = claim.verdict(tmp_path)
    assert verdict.reproduced, verdict.describe()
    assert {r.outcome for r in verdict.rules} == {PASS}


def test_premise_rule_controls(tmp_path):
    sd = measured_spread(claim.CLAIM_ID, PREMISE, pilot=PILOT_SPREAD[PREMISE])
    # null: the gap at p = 0 sits at the threshold; reversed: no overfitting at all.
    centers = {"null": claim.PREMISE_GAP, "reversed": 0.0}

    def write_tables(out_dir, effect, rng):
        table = synthetic_accuracy((centers[effect], sd), (-0.06, 0.02), rng)
        write_csv(table, out_dir / "accuracy.csv")

    assert_controls(claim, write_tables, PREMISE, tmp_path)


def test_gap_rule_controls(tmp_path):
    sd = measured_spread(claim.CLAIM_ID, GAP, pilot=PILOT_SPREAD[GAP])
    # null: dropout leaves the gap as it is; reversed: dropout widens it by 5 points.
    centers = {"null": 0.0, "reversed": 0.05}

    def write_tables(out_dir, effect, rng):
        table = synthetic_accuracy((0.3, 0.03), (centers[effect], sd), rng)
        write_csv(table, out_dir / "accuracy.csv")

    assert_controls(claim, write_tables, GAP, tmp_path)


def test_rate_is_chosen_by_validation_count_and_ties_go_to_the_smaller_rate():
    rng = np.random.default_rng(0)
    table = synthetic_accuracy((0.3, 0.03), (-0.06, 0.02), rng, rates=(0.0, 0.2, 0.5))
    first, second = claim.SEEDS["full"][:2]
    table.loc[table["seed"] == first, "validation_correct"] = 1200
    table.loc[(table["seed"] == second) & (table["dropout_rate"] == 0.2), "validation_correct"] = (
        5000
    )
    chosen = claim.paired(table)["chosen_rate"]
    assert chosen[first] == 0.0 and chosen[second] == 0.2


def test_a_nan_is_no_measurement(tmp_path):
    table = synthetic_accuracy((0.3, 0.03), (-0.06, 0.02), np.random.default_rng(0))
    table.loc[table.index[1], "train_accuracy"] = np.nan
    table["gap"] = table["train_accuracy"] - table["test_accuracy"]
    write_csv(table, tmp_path / "accuracy.csv")
    broken = rule(claim.verdict(tmp_path), GAP)
    assert broken.outcome == FAIL and broken.reason == "no measurement"


# ---------------------------------------------------------------------------- the check


def test_check_holds_on_the_quick_run_and_fails_when_a_run_reaches_the_cap(quick_run, tmp_path):
    out_dir = quick_run(claim.CLAIM_ID)
    assert rule(claim.verdict(out_dir), CHECK).outcome == PASS
    table = read_csv(out_dir / "accuracy.csv")
    table.loc[table.index[-1], "stopped_epoch"] = table.loc[table.index[-1], "epoch_cap"]
    write_csv(table, tmp_path / "accuracy.csv")
    verdict = claim.verdict(tmp_path)
    assert rule(verdict, CHECK).outcome == FAIL
    assert verdict.label == NOT_REPRODUCED
