"""early-stopping: outputs, config, and noisy negative controls for both lecture rules."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread

from repro.claims import early_stopping as claim
from repro.records import read_csv, write_csv
from repro.rules import FAIL, LECTURE, REPRODUCED

GAIN = "plain cut-off minus full-training test accuracy (worst patience per seed)"
FRACTION = "fraction of the epochs trained (worst patience per seed)"
PATIENCES = claim.PROFILES["full"].patiences
MAX_EPOCHS = claim.PROFILES["full"].max_epochs
SEEDS = claim.SEEDS["full"]
# Per seed, the worst patience's statistic: mean and standard deviation over development
# seeds 100-104 (full profile, docs/claims/early-stopping.md).
PILOT = {GAIN: (0.107, 0.035), FRACTION: (0.40, 0.025)}


def write_stopping(out_dir, rng, gain=None, fraction=None):
    """stopping.csv for the full profile's seeds. Per seed, the worst patience's gain and
    epoch fraction are drawn around the pilot's mean (or the given centre) with the
    measured spread, centred so that the seeds' mean is the centre; the other patience
    values do better by fixed steps. Fractions are whole epochs, at most all of them."""
    centres = {GAIN: gain, FRACTION: fraction}
    draws = {}
    for name, (mean, sd) in PILOT.items():
        noise = rng.normal(0, measured_spread(claim.CLAIM_ID, name, sd), size=len(SEEDS))
        centre = mean if centres[name] is None else centres[name]
        draws[name] = centre + noise - noise.mean()
    rows = []
    for i, seed in enumerate(SEEDS):
        full = 0.74
        for step, patience in enumerate(reversed(PATIENCES)):  # the largest patience is worst
            gain = draws[GAIN][i] + 0.01 * step
            epochs = int(np.clip(round((draws[FRACTION][i] - 0.1 * step) * MAX_EPOCHS), 1, 40))
            rows.append(
                {
                    "seed": seed,
                    "patience": patience,
                    "min_delta": 0.005,
                    "max_epochs": MAX_EPOCHS,
                    "noise_rate": 0.4,
                    "epochs_trained": epochs,
                    "early_test_accuracy": full + gain,
                    "full_test_accuracy": full,
                    "accuracy_gain": gain,
                    "epoch_fraction": epochs / MAX_EPOCHS,
                    "restored_epochs_trained": epochs,
                    "restored_best_epoch": max(1, epochs - patience),
                    "restored_test_accuracy": full + gain + 0.01,
                    "restore_gain": 0.01,
                }
            )
    write_csv(pd.DataFrame(rows), out_dir / "stopping.csv")


def rules_of(verdict) -> dict:
    return {rule.name: rule for rule in verdict.rules}


# ------------------------------------------------------------------ the quick run


def test_every_run_of_a_seed_is_the_same_run_cut_at_another_epoch(quick_run):
    """Same initialization, same data order: the plain cut-off's model is the full run's
    model at the epoch it stopped, and restoring changes only the weights kept."""
    out_dir = quick_run(claim.CLAIM_ID)
    stopping = read_csv(out_dir / "stopping.csv")
    full = read_csv(out_dir / "full_training.csv")
    at_stop = stopping.merge(full, left_on=["seed", "epochs_trained"], right_on=["seed", "epoch"])
    assert len(at_stop) == len(stopping)
    assert (at_stop["early_test_accuracy"] == at_stop["test_accuracy"]).all()
    assert (stopping["restored_epochs_trained"] == stopping["epochs_trained"]).all()
    assert (stopping["restored_best_epoch"] <= stopping["epochs_trained"]).all()
    last = full.groupby("seed")["test_accuracy"].last()
    assert (stopping["full_test_accuracy"] == stopping["seed"].map(last)).all()


@pytest.mark.parametrize(
    "change",
    [
        {"patiences": ()},
        {"patiences": (0, 5)},
        {"patiences": (5, 50)},  # patience beyond max_epochs
        {"min_delta": -0.1},
        {"noise_rate": 1.0},
        {"train_size": 1200, "validation_size": 300},
        {"hidden": ()},
        {"batch_size": 0},
    ],
)
def test_invalid_config_raises(change):
    with pytest.raises(ValueError):
        dataclasses.replace(claim.PROFILES["full"], **change)


# ------------------------------------------------------------ verdicts on built tables


def test_pilot_like_table_is_reproduced_on_lecture_rules(tmp_path):
    write_stopping(tmp_path, np.random.default_rng(0))
    verdict = claim.verdict(tmp_path)
    assert verdict.label == REPRODUCED
    assert all(r.kind == LECTURE and r.slide == claim.SLIDE for r in verdict.rules)


def test_the_plain_cut_off_is_judged_not_the_restored_weights(tmp_path):
    write_stopping(tmp_path, np.random.default_rng(0), gain=-0.1)
    stopping = read_csv(tmp_path / "stopping.csv")
    stopping["restored_test_accuracy"] = 0.95  # restoring would have rescued it: not judged
    write_csv(stopping, tmp_path / "stopping.csv")
    assert rules_of(claim.verdict(tmp_path))[GAIN].outcome == FAIL


def test_patience_table_counts_the_seeds_that_kept_up(tmp_path):
    write_stopping(tmp_path, np.random.default_rng(0))
    stopping = read_csv(tmp_path / "stopping.csv")
    stopping.loc[stopping["seed"] == 0, "accuracy_gain"] = -0.02
    table = claim.patience_table(stopping)
    assert list(table["patience"]) == list(PATIENCES)
    assert (table["seeds_at_least_as_good"] == len(SEEDS) - 1).all()
    assert (table["min_accuracy_gain"] == -0.02).all()
    assert table["mean_restore_gain"].to_numpy() == pytest.approx(0.01)


def test_nan_fails_as_no_measurement(tmp_path):
    write_stopping(tmp_path, np.random.default_rng(0))
    stopping = read_csv(tmp_path / "stopping.csv")
    stopping.loc[(stopping["seed"] == 3) & (stopping["patience"] == 5), "accuracy_gain"] = np.nan
    write_csv(stopping, tmp_path / "stopping.csv")
    rule = rules_of(claim.verdict(tmp_path))[GAIN]
    assert rule.outcome == FAIL and rule.reason == "no measurement"


# ------------------------------------------------------------ noisy negative controls


def test_gain_controls(tmp_path):
    """Null: the cut-off tests as well as training to the end, on average. Reversed:
    it costs 0.1 of test accuracy (as stopping would where the net still learns)."""

    def write_tables(out_dir, effect, rng):
        write_stopping(out_dir, rng, gain={"null": claim.MIN_GAIN, "reversed": -0.1}[effect])

    assert_controls(claim, write_tables, GAIN, tmp_path)


def test_fraction_controls(tmp_path):
    """Null: the worst patience stops at 3/4 of the epochs on average. Reversed: it stops
    only near the end (a patience too large to cut anything off)."""

    def write_tables(out_dir, effect, rng):
        centre = {"null": claim.MAX_EPOCH_FRACTION, "reversed": 0.95}[effect]
        write_stopping(out_dir, rng, fraction=centre)

    assert_controls(claim, write_tables, FRACTION, tmp_path)
