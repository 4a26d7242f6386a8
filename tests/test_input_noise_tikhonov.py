"""input-noise-tikhonov: its quick run, its config's validation, the identity behind it,
Keras' noise layer, and noisy negative controls for both lecture rules."""

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread

from repro.claims import input_noise_tikhonov as claim
from repro.records import read_csv, write_csv
from repro.rules import FAIL, NOT_REPRODUCED

FULL_SEEDS = claim.SEEDS["full"]
SIGMAS = claim.PROFILES["full"].sigmas
FEATURES = claim.PROFILES["full"].features

# Per-seed means and standard deviations of the two rules' statistics, measured by the
# pilot (development seeds 100-129, full profile).
PILOT = {"relative": (0.0078, 0.0017), "versus_ols": (0.022, 0.0097)}


@pytest.mark.parametrize(
    "bad",
    [
        {"sigmas": (0.5, 2.0)},  # Keras' GaussianNoise needs sigma <= 1
        {"sigmas": ()},
        {"correlation": 1.0},
        {"steps": 650},  # not a multiple of steps_per_epoch
        {"final_learning_rate": 0.1},  # above the starting rate
        {"copies": 0},
    ],
)
def test_invalid_config_raises(bad):
    with pytest.raises(ValueError):
        claim.Config(**bad)


def test_input_noise_loss_equals_ridge_objective_in_expectation():
    # E (y - w.(x + e))^2 = (y - w.x)^2 + sigma^2 ||w||^2, by Monte Carlo over the noise.
    rng = np.random.default_rng(0)
    x, w, y, sigma = rng.normal(size=5), rng.normal(size=5), 0.7, 0.8
    noise = rng.normal(0, sigma, (400_000, 5))
    monte_carlo = ((y - (x + noise) @ w) ** 2).mean()
    assert monte_carlo == pytest.approx((y - x @ w) ** 2 + sigma**2 * w @ w, rel=0.01)


def test_ridge_with_lambda_n_sigma2_minimizes_the_noisy_mse():
    rng = np.random.default_rng(1)
    x, y, sigma = rng.normal(size=(30, 4)), rng.normal(size=30), 0.6
    w = claim.ridge(x, y, len(x) * sigma**2)
    # Gradient of (1/n)||y - Xw||^2 + sigma^2 ||w||^2 vanishes at the ridge solution.
    gradient = -2 / len(x) * x.T @ (y - x @ w) + 2 * sigma**2 * w
    np.testing.assert_allclose(gradient, 0, atol=1e-12)


def test_keras_gaussian_noise_adds_sd_sigma_in_training_only():
    from repro.backend import keras

    x = np.ones((1, 2000, 10), dtype="float32")
    layer = keras.layers.GaussianNoise(0.5, seed=3)
    noise = np.asarray(layer(x, training=True)) - x
    assert noise.std() == pytest.approx(0.5, rel=0.03)
    assert abs(noise.mean()) < 0.02
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_weights_trained_without_noise_fail_both_rules(quick_run, tmp_path):
    """The broken variant: weights on ordinary least squares, as training without noise
    would leave them."""
    table = read_csv(quick_run(claim.CLAIM_ID) / "weights.csv")
    table["w_noise"] = table["w_ols"]
    write_csv(table, tmp_path / "weights.csv")
    verdict = claim.verdict(tmp_path)
    assert [r.outcome for r in verdict.rules] == [FAIL, FAIL]
    assert verdict.label == NOT_REPRODUCED


def test_a_nan_weight_is_no_measurement(quick_run, tmp_path):
    table = read_csv(quick_run(claim.CLAIM_ID) / "weights.csv")
    table.loc[0, "w_noise"] = np.nan
    write_csv(table, tmp_path / "weights.csv")
    verdict = claim.verdict(tmp_path)
    assert all(r.outcome == FAIL and r.reason == "no measurement" for r in verdict.rules)


# ------------------------------------------------------ noisy synthetic tables (controls)


def synthetic_weights(rng, targets: dict) -> pd.DataFrame:
    """A table in the claim's format at the full profile's seeds and sigmas, whose per-seed
    statistics (worst sigma of a seed) are drawn from `targets` (name -> (mean, sd)):
    ||w_noise - w_ridge|| / ||w_ridge|| ("relative") and
    ||w_noise - w_ridge|| / ||w_ridge - w_ols|| ("versus_ols")."""

    def unit():
        v = rng.normal(size=FEATURES)
        return v / np.linalg.norm(v)

    frames = []
    for seed in FULL_SEEDS:
        relative = max(targets["relative"][0] + targets["relative"][1] * rng.normal(), 1e-6)
        versus = max(targets["versus_ols"][0] + targets["versus_ols"][1] * rng.normal(), 1e-6)
        for k, sigma in enumerate(SIGMAS):
            w_ridge = unit()  # norm 1
            shrink = 1.0 if k == 0 else 0.5  # the first sigma is the seed's worst
            w_noise = w_ridge + shrink * relative * unit()
            w_ols = w_ridge + (relative / versus) * unit()
            frames.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "sigma": sigma,
                        "lam": 50 * sigma**2,
                        "feature": np.arange(FEATURES),
                        "w_noise": w_noise,
                        "w_ridge": w_ridge,
                        "w_ols": w_ols,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def verdict_of(table, tmp_path):
    write_csv(table, tmp_path / "weights.csv")
    return claim.verdict(tmp_path)


def test_synthetic_weights_at_the_pilot_means_are_reproduced(tmp_path):
    verdict = verdict_of(synthetic_weights(np.random.default_rng(0), PILOT), tmp_path)
    assert verdict.reproduced, verdict.describe()


# (statistic, rule index, no effect = the threshold, clearly reversed): weights five times
# the tolerance away from ridge; weights as far from ridge as OLS is.
CONTROLS = [
    ("relative", 0, claim.RIDGE_DISTANCE, 5 * claim.RIDGE_DISTANCE),
    ("versus_ols", 1, claim.RIDGE_VS_OLS, 1.0),
]


@pytest.mark.parametrize(("statistic", "index", "null", "reversed_"), CONTROLS)
def test_noisy_controls_of_a_lecture_rule(tmp_path, statistic, index, null, reversed_):
    clean = verdict_of(synthetic_weights(np.random.default_rng(0), PILOT), tmp_path)
    name = clean.rules[index].name
    spread = measured_spread(claim.CLAIM_ID, name, pilot=PILOT[statistic][1])

    def write_tables(out_dir, effect, rng):
        centre = null if effect == "null" else reversed_
        table = synthetic_weights(rng, PILOT | {statistic: (centre, spread)})
        write_csv(table, out_dir / "weights.csv")

    assert_controls(claim, write_tables, name, tmp_path)
