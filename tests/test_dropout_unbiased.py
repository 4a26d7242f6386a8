"""dropout-unbiased: outputs, config, noisy controls for the sampled rules, broken layers for
the exact ones, and the check."""

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread

from repro.backend import keras
from repro.claims import dropout_unbiased as claim
from repro.records import read_csv, write_csv
from repro.rules import FAIL, NOT_REPRODUCED, PASS

MEAN = "mean output / input vs 1"
ZEROS = "zero fraction vs p"
SURVIVORS = "survivors scaled by 1/(1-p)"
IDENTITY = "largest |output - input| with training=False"
NO_RESCALE = "same masks without the rescale"
FULL_SEEDS = claim.SEEDS["full"]
RATES = claim.PROFILES["full"].dropout_rates
SMALL = claim.Config(dropout_rates=(0.2, 0.5), units=200, draws=100)


def rule(verdict, name_start):
    (found,) = [r for r in verdict.rules if r.name.startswith(name_start)]
    return found


def full_name(name_start):
    """A rule's whole name, as the verdict gives it for the full profile's rates."""
    rates = ", ".join(f"{p:g}" for p in RATES)
    return f"{name_start}: worst relative error of a seed over p = {rates}"


def test_the_quick_run_holds_what_the_claim_measures(quick_run):
    out_dir = quick_run(claim.CLAIM_ID)
    table = read_csv(out_dir / "dropout_draws.csv")
    assert set(claim.TABLES["dropout_draws.csv"]) <= set(table.columns)
    assert sorted(table["seed"].unique()) == list(claim.SEEDS["quick"])
    assert claim.verdict(out_dir).reproduced


@pytest.mark.parametrize(
    "bad", [{"dropout_rates": (0.5, 1.5)}, {"dropout_rates": (0.0, 0.5)}, {"draws": 0}]
)
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValueError):
        claim.Config(**bad)


def test_keras_dropout_scales_survivors_and_is_the_identity_with_training_off():
    x = np.linspace(0.5, 1.5, 64, dtype="float32")[None].repeat(200, axis=0)
    out = np.asarray(keras.layers.Dropout(0.25, seed=3)(x, training=True))
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(keras.layers.Dropout(0.25)(x, training=False), x)


# ------------------------------------- noisy controls for the two sampled lecture rules

# Per-seed spread of the worst relative error, development seeds 100-109 (full profile).
PILOT_SPREAD = {MEAN: 0.0016, ZEROS: 0.0008}
COLUMN = {MEAN: "mean_ratio", ZEROS: "zero_fraction"}


def synthetic_draws(rule_start, effect, rng):
    """dropout_draws.csv for the full profile's seeds and rates: every measurement off its
    theory by sampling noise only, except that at p = 0.9 the tested column is off by a
    per-seed error around 1% (null: at the threshold) or 4% (a biased layer)."""
    sd = measured_spread(claim.CLAIM_ID, full_name(rule_start), pilot=PILOT_SPREAD[rule_start])
    center = {"null": claim.RELATIVE_TOLERANCE, "reversed": 0.04}[effect]
    rows = []
    for seed in FULL_SEEDS:
        for rate in RATES:
            mean_ratio = 1 + rng.normal(0, 0.0005)
            zero_fraction = rate * (1 + rng.normal(0, 0.0005))
            if rate == max(RATES):
                bias = center + rng.normal(0, sd)
                if rule_start == MEAN:
                    mean_ratio = 1 + bias
                else:
                    zero_fraction = rate * (1 + bias)
            rows.append(
                {
                    "seed": seed,
                    "dropout_rate": rate,
                    "entries": 2_000_000,
                    "mean_ratio": mean_ratio,
                    "theory_mean_ratio": 1.0,
                    "zero_fraction": zero_fraction,
                    "theory_zero_fraction": rate,
                    "no_rescale_mean_ratio": (1 - rate) * mean_ratio,
                    "theory_no_rescale_mean_ratio": 1 - rate,
                    "survivor_scale_error": 1e-7,
                    "identity_error": 0.0,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("rule_start", [MEAN, ZEROS])
def test_sampled_rule_controls(tmp_path, rule_start):
    def write_tables(out_dir, effect, rng):
        write_csv(synthetic_draws(rule_start, effect, rng), out_dir / "dropout_draws.csv")

    assert_controls(claim, write_tables, full_name(rule_start), tmp_path)


# ------------------------------------------------------ broken layers, really measured


class NoRescale(keras.layers.Layer):
    """Dropout's masks without the 1 / (1 - p) rescale of the survivors."""

    def __init__(self, rate, seed=None):
        super().__init__()
        self.rate, self.dropout = rate, keras.layers.Dropout(rate, seed=seed)

    def call(self, x, training=False):
        return self.dropout(x, training=training) * (1 - self.rate if training else 1)


class AlwaysOn(keras.layers.Layer):
    """Dropout left on at test time."""

    def __init__(self, rate, seed=None):
        super().__init__()
        self.dropout = keras.layers.Dropout(rate, seed=seed)

    def call(self, x, training=False):
        return self.dropout(x, training=True)


def wrong_rate(rate, seed=None):
    """Dropout that zeroes 10% more units than asked (and rescales for that rate)."""
    return keras.layers.Dropout(1.1 * rate, seed=seed)


def measured_with(tmp_path, dropout, config=SMALL):
    write_csv(claim.measure(config, FULL_SEEDS, dropout), tmp_path / "dropout_draws.csv")
    return claim.verdict(tmp_path)


def test_keras_dropout_passes_every_rule_of_a_small_measurement(tmp_path):
    verdict = measured_with(tmp_path, None, claim.Config(dropout_rates=(0.2, 0.5), draws=1000))
    assert verdict.reproduced, verdict.describe()
    assert {r.outcome for r in verdict.rules} == {PASS}


@pytest.mark.parametrize(
    ("dropout", "broken"),
    [
        (NoRescale, [MEAN, SURVIVORS]),
        (AlwaysOn, [IDENTITY]),
        (wrong_rate, [ZEROS]),
        # Multiplicative Gaussian noise of mean 1: unbiased, but it zeroes nothing and does
        # not scale survivors by 1 / (1 - p).
        (keras.layers.GaussianDropout, [ZEROS, SURVIVORS]),
    ],
    ids=["no rescale", "left on at test time", "wrong rate", "Gaussian dropout"],
)
def test_a_broken_layer_fails_its_lecture_rules(tmp_path, dropout, broken):
    verdict = measured_with(tmp_path, dropout)
    for name in broken:
        assert rule(verdict, name).outcome == FAIL, name
    assert verdict.label == NOT_REPRODUCED


# ---------------------------------------------------------------------------- the check


def test_check_holds_on_the_quick_run_and_fails_on_a_broken_table(quick_run, tmp_path):
    out_dir = quick_run(claim.CLAIM_ID)
    assert rule(claim.verdict(out_dir), NO_RESCALE).outcome == PASS
    draws = read_csv(out_dir / "dropout_draws.csv")
    # The survivors rescaled after all: the "no-rescale" mean is the rescaled one.
    draws["no_rescale_mean_ratio"] = draws["mean_ratio"]
    write_csv(draws, tmp_path / "dropout_draws.csv")
    verdict = claim.verdict(tmp_path)
    assert rule(verdict, NO_RESCALE).outcome == FAIL
    assert verdict.label == NOT_REPRODUCED


def test_a_nan_is_no_measurement(quick_run, tmp_path):
    draws = read_csv(quick_run(claim.CLAIM_ID) / "dropout_draws.csv")
    draws.loc[draws.index[0], "mean_ratio"] = np.nan
    write_csv(draws, tmp_path / "dropout_draws.csv")
    broken = rule(claim.verdict(tmp_path), MEAN)
    assert broken.outcome == FAIL and broken.reason == "no measurement"
