"""Section D claims: exact formulas, config validation, and verdicts that flip on doctored CSVs."""

import numpy as np
import pandas as pd
import pytest

from repro import claims
from repro.harness import read_csv, run_claim, write_csv

SECTION_D = (
    "dropout-unbiased",
    "input-noise-tikhonov",
    "weight-decay",
    "l1-vs-l2",
)


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """The quick runs of this section's claims only (the shared fixture runs every claim)."""
    root = tmp_path_factory.mktemp("section_d")
    for claim_id in SECTION_D:
        claim = claims.get(claim_id)
        run_claim(claim, "quick", tuple(claim.SEEDS["quick"]), root)
    return root


def copy_tables(quick_results, claim, tmp_path):
    """The claim's quick CSVs in a private directory a test may edit."""
    for name in claim.TABLES:
        write_csv(read_csv(quick_results / claim.CLAIM_ID / name), tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("claim_id", SECTION_D)
def test_quick_verdict_is_reproduced(quick_results, claim_id):
    assert claims.get(claim_id).verdict(quick_results / claim_id).reproduced


@pytest.mark.parametrize(
    ("claim_id", "bad"),
    [
        ("dropout-unbiased", {"dropout_rates": (0.5, 1.5)}),
        ("dropout-unbiased", {"draws": 0}),
        ("input-noise-tikhonov", {"sigmas": (0.5, 2.0)}),  # GaussianNoise needs sigma <= 1
        ("weight-decay", {"lambdas": (0.1, 1.0)}),  # no lambda = 0 baseline
        ("weight-decay", {"lambdas": (0.0, 1.0, 0.5)}),
        ("weight-decay", {"learning_rate": 0.2}),  # eta * lambda >= 1 for lambda = 10
        ("l1-vs-l2", {"duplicated": 6}),
        ("l1-vs-l2", {"l1": -0.1}),
    ],
)
def test_invalid_config_raises(claim_id, bad):
    claim = claims.get(claim_id)
    with pytest.raises(ValueError):
        claim.Config(**bad)


def test_keras_dropout_scales_survivors_and_matches_inverted_dropout():
    import keras

    x = np.linspace(0.5, 1.5, 64, dtype="float32")[None].repeat(200, axis=0)
    out = np.asarray(keras.layers.Dropout(0.25, seed=3)(x, training=True))
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(keras.layers.Dropout(0.25)(x, training=False), x)


def test_input_noise_loss_equals_ridge_objective_in_expectation():
    # E (y - w.(x + e))^2 = (y - w.x)^2 + sigma^2 ||w||^2, by Monte Carlo over the noise.
    rng = np.random.default_rng(0)
    x, w, y, sigma = rng.normal(size=5), rng.normal(size=5), 0.7, 0.8
    noise = rng.normal(0, sigma, (400_000, 5))
    monte_carlo = ((y - (x + noise) @ w) ** 2).mean()
    assert monte_carlo == pytest.approx((y - x @ w) ** 2 + sigma**2 * w @ w, rel=0.01)


def test_ridge_with_lambda_n_sigma2_minimizes_the_noisy_mse():
    tikhonov = claims.get("input-noise-tikhonov")
    rng = np.random.default_rng(1)
    x, y, sigma = rng.normal(size=(30, 4)), rng.normal(size=30), 0.6
    w = tikhonov.ridge(x, y, len(x) * sigma**2)
    # Gradient of (1/n)||y - Xw||^2 + sigma^2 ||w||^2 vanishes at the ridge solution.
    gradient = -2 / len(x) * x.T @ (y - x @ w) + 2 * sigma**2 * w
    np.testing.assert_allclose(gradient, 0, atol=1e-12)


def test_dropout_unbiased_fails_when_the_mean_is_biased(quick_results, tmp_path):
    claim = claims.get("dropout-unbiased")
    out = copy_tables(quick_results, claim, tmp_path)
    draws = read_csv(out / "dropout_draws.csv")
    draws.loc[draws.index[0], "mean_ratio"] *= 1.02
    write_csv(draws, out / "dropout_draws.csv")
    failed = [r.name for r in claim.verdict(out).rules if not r.passed]
    assert len(failed) == 1 and "mean output" in failed[0]


def test_dropout_unbiased_fails_when_training_false_is_not_identity(quick_results, tmp_path):
    claim = claims.get("dropout-unbiased")
    out = copy_tables(quick_results, claim, tmp_path)
    draws = read_csv(out / "dropout_draws.csv")
    draws.loc[draws.index[-1], "identity_error"] = 1e-9
    write_csv(draws, out / "dropout_draws.csv")
    assert not claim.verdict(out).reproduced


def test_weight_decay_rule_fails_when_keras_uses_the_other_factor(quick_results, tmp_path):
    claim = claims.get("weight-decay")
    out = copy_tables(quick_results, claim, tmp_path)
    steps = read_csv(out / "one_step.csv")
    steps["w_keras_step"] = steps["w_rule_step_if_lambda_were_c"]
    write_csv(steps, out / "one_step.csv")
    rules = claim.verdict(out).rules
    assert not rules[0].passed and not rules[1].passed and rules[2].passed


def test_weight_decay_recorded_step_matches_the_rule_to_float_precision(quick_results):
    steps = read_csv(quick_results / "weight-decay" / "one_step.csv")
    eta, lam = steps["learning_rate"], steps["lam"]
    assert (lam == 2 * steps["keras_l2"]).all()
    # The decay part of the rule alone: the two rule columns differ by eta * (lambda / 2) w.
    np.testing.assert_allclose(
        steps["w_rule_step_if_lambda_were_c"] - steps["w_rule_step"],
        eta * lam / 2 * steps["w_before"],
        atol=1e-12,
    )
    np.testing.assert_allclose(steps["w_keras_step"], steps["w_rule_step"], atol=1e-6)


def test_weight_decay_fails_when_norm_grows_with_lambda(quick_results, tmp_path):
    claim = claims.get("weight-decay")
    out = copy_tables(quick_results, claim, tmp_path)
    sweep = read_csv(out / "sweep.csv")
    largest = sweep["lam"] == sweep["lam"].max()
    sweep.loc[largest, "weight_norm"] = sweep["weight_norm"].max() * 2
    write_csv(sweep, out / "sweep.csv")
    assert not claim.verdict(out).reproduced


def test_tikhonov_fails_when_noise_weights_sit_on_ols(quick_results, tmp_path):
    claim = claims.get("input-noise-tikhonov")
    out = copy_tables(quick_results, claim, tmp_path)
    weights = read_csv(out / "weights.csv")
    weights["w_noise"] = weights["w_ols"]
    write_csv(weights, out / "weights.csv")
    assert not any(rule.passed for rule in claim.verdict(out).rules)


def test_l1_vs_l2_scores_support_on_a_hand_made_example(tmp_path):
    claim = claims.get("l1-vs-l2")
    # Groups 0 (relevant, duplicated), 1 (relevant), 2 and 3 (irrelevant).
    table = pd.DataFrame(
        {
            "seed": 0,
            "column": range(5),
            "group": [0, 0, 1, 2, 3],
            "is_duplicate": [False, True, False, False, False],
            "true_weight": [1.5, 0.0, -1.0, 0.0, 0.0],
            "w_l1": [1.2, 0.0, -0.8, 0.001, 0.3],  # 0.001 <= 1% of 1.2 counts as zero
            "w_l2": [0.7, 0.6, -0.9, 0.2, 0.1],
            "w_lasso": 0.0,
            "w_ridge": [0.7, 0.6, -0.9, 0.2, 0.1],
        }
    )
    s = claim.scores(table).loc[0]
    assert s["l1_recall"] == 1.0
    assert s["l1_precision"] == pytest.approx(2 / 3)  # group 3 wrongly selected
    assert s["l1_zero_share"] == pytest.approx(0.5)
    assert s["l2_split_ratio"] == pytest.approx(0.6 / 0.7)
    assert s["l1_split_ratio"] == 0.0
    write_csv(table, tmp_path / "weights.csv")
    assert not claim.verdict(tmp_path).reproduced
