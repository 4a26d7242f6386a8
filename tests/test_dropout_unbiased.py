# TRIM (helper for dropout_unbiased): this is a copy of test_dropout_decay.py; keep only what tests dropout_unbiased, then delete this line.
"""Section D claims: exact formulas, config validation, and verdicts that flip on doctored CSVs."""

import numpy as np
import pandas as pd
import pytest

from repro import claims
from repro.records import read_csv, write_csv
from repro.runner import run_claim

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


def rule(verdict, name_part: str):
    """The verdict's one rule whose name contains `name_part`."""
    (found,) = [r for r in verdict.rules if name_part in r.name]
    return found


def doctored(quick_results, claim_id, tmp_path, table, change):
    """The claim's verdict on its quick CSVs after `change(frame)` edits one table."""
    claim = claims.get(claim_id)
    out = copy_tables(quick_results, claim, tmp_path)
    frame = read_csv(out / table)
    change(frame)
    write_csv(frame, out / table)
    return claim.verdict(out)


# ------------------------------------------------------------------ dropout-unbiased


def scale_rate(column, factor):
    def change(draws):
        at_rate = draws["dropout_rate"] == draws["dropout_rate"].max()
        draws.loc[at_rate, column] *= factor

    return change


def set_first(column, value):
    def change(frame):
        frame.loc[frame.index[0], column] = value

    return change


@pytest.mark.parametrize(
    ("change", "rule_name"),
    [
        (scale_rate("mean_ratio", 1.02), "mean output / input"),
        (scale_rate("zero_fraction", 1.05), "zero fraction"),
        # The survivors rescaled after all: mean (1 - p) / (1 - p) = 1, not 1 - p.
        (
            lambda d: d.__setitem__("no_rescale_mean_ratio", d["mean_ratio"]),
            "no-rescale mean ratio",
        ),
        (set_first("survivor_scale_error", 1e-3), "survivors scaled"),
        (set_first("identity_error", 1e-9), "training=False"),
    ],
)
def test_dropout_unbiased_rule_fails_on_a_broken_column(quick_results, tmp_path, change, rule_name):
    verdict = doctored(quick_results, "dropout-unbiased", tmp_path, "dropout_draws.csv", change)
    assert rule(verdict, rule_name).outcome == "fail"
    assert [r.outcome for r in verdict.rules].count("fail") == 1


def test_dropout_unbiased_fails_loudly_on_nan(quick_results, tmp_path):
    verdict = doctored(
        quick_results,
        "dropout-unbiased",
        tmp_path,
        "dropout_draws.csv",
        set_first("mean_ratio", np.nan),
    )
    broken = rule(verdict, "mean output / input")
    assert broken.outcome == "fail" and broken.reason == "no measurement"


# ------------------------------------------------------------------------ weight-decay


def test_weight_decay_recorded_steps_are_the_two_readings(quick_results):
    steps = read_csv(quick_results / "weight-decay" / "one_step.csv")
    eta, lam, w = steps["learning_rate"], steps["lam"], steps["w_before"]
    assert (lam == 2 * steps["keras_l2"]).all()
    np.testing.assert_allclose(steps["w_keras_step"], steps["w_rule_step"], atol=1e-6)
    # The slide's data step, recovered from its update; plain mse + L2(lambda) doubles both
    # the decay and the data step.
    data_step = (1 - eta * lam) * w - steps["w_rule_step"]
    np.testing.assert_allclose(
        steps["w_keras_step_plain_mse_l2_lambda"],
        (1 - 2 * eta * lam) * w - 2 * data_step,
        atol=1e-6,
    )


def swap_in(column, source):
    def change(frame):
        frame[column] = frame[source]

    return change


def norms_grow_with_lambda(sweep):
    sweep["weight_norm"] = 1.0 + sweep["lam"]


def no_overfit_at_zero(sweep):
    at_zero = sweep["lam"] == 0
    sweep.loc[at_zero, "train_loss"] = sweep.loc[at_zero, "test_loss"]


def decay_does_not_help(sweep):
    at_zero = sweep[sweep["lam"] == 0].set_index("seed")["test_loss"]
    sweep["test_loss"] = sweep["seed"].map(at_zero)


@pytest.mark.parametrize(
    ("table", "change", "rule_name"),
    [
        # The real alternative, plain mse + L2(lambda), in place of the lecture's set-up.
        (
            "one_step.csv",
            swap_in("w_keras_step", "w_keras_step_plain_mse_l2_lambda"),
            "half mse + L2(lambda/2)",
        ),
        (
            "one_step.csv",
            swap_in("w_keras_step_plain_mse_l2_lambda", "w_rule_step"),
            "the alternative",
        ),
        ("sweep.csv", norms_grow_with_lambda, "largest ratio of ||w||"),
        ("sweep.csv", no_overfit_at_zero, "lambda = 0 overfits"),
        ("sweep.csv", decay_does_not_help, "validation-chosen lambda"),
    ],
)
def test_weight_decay_rule_fails_on_a_broken_variant(
    quick_results, tmp_path, table, change, rule_name
):
    verdict = doctored(quick_results, "weight-decay", tmp_path, table, change)
    assert rule(verdict, rule_name).outcome == "fail"


def test_weight_decay_fails_loudly_on_nan(quick_results, tmp_path):
    verdict = doctored(
        quick_results, "weight-decay", tmp_path, "one_step.csv", set_first("w_keras_step", np.nan)
    )
    broken = rule(verdict, "half mse + L2(lambda/2)")
    assert broken.outcome == "fail" and broken.reason == "no measurement"


# ---------------------------------------------------------------- input-noise-tikhonov


@pytest.mark.parametrize(
    ("change", "rule_name"),
    [
        (lambda w: w.__setitem__("w_noise", 1.1 * w["w_ridge"]), "/ ||w_ridge||"),
        # Trained without noise: the weights sit on ordinary least squares.
        (swap_in("w_noise", "w_ols"), "/ ||w_ridge - w_ols||"),
    ],
)
def test_tikhonov_rule_fails_on_a_broken_variant(quick_results, tmp_path, change, rule_name):
    verdict = doctored(quick_results, "input-noise-tikhonov", tmp_path, "weights.csv", change)
    assert rule(verdict, rule_name).outcome == "fail"


def test_tikhonov_fails_loudly_on_nan(quick_results, tmp_path):
    verdict = doctored(
        quick_results, "input-noise-tikhonov", tmp_path, "weights.csv", set_first("w_noise", np.nan)
    )
    assert all(r.outcome == "fail" and r.reason == "no measurement" for r in verdict.rules)


# ---------------------------------------------------------------------------- l1-vs-l2


def synthetic_weights(seeds=range(6)) -> pd.DataFrame:
    """A clean table: two relevant groups (one duplicated), three irrelevant ones.

    L1 equals the lasso and keeps one column of the pair; L2 equals ridge and splits it.
    Small per-seed differences keep the intervals finite.
    """
    frames = []
    for seed in seeds:
        jitter = 0.01 * seed
        ridge = np.array([0.7, 0.6 + jitter, -0.9, 0.2, 0.1, -0.1])
        lasso = np.array([1.2 + jitter, 0.1, -0.8, 0.0, 0.0, 0.0])
        frames.append(
            pd.DataFrame(
                {
                    "seed": seed,
                    "column": range(6),
                    "group": [0, 0, 1, 2, 3, 4],
                    "is_duplicate": [False, True, False, False, False, False],
                    "true_weight": [1.5, 0.0, -1.0, 0.0, 0.0, 0.0],
                    "w_l1": lasso,
                    "w_l2": ridge,
                    "w_l1_keras_regularizer": lasso + 0.02,
                    "w_lasso": lasso,
                    "w_ridge": ridge,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def l1_vs_l2_verdict(table, tmp_path):
    write_csv(table, tmp_path / "weights.csv")
    return claims.get("l1-vs-l2").verdict(tmp_path)


def test_l1_vs_l2_scores_a_hand_made_example():
    table = synthetic_weights(seeds=[0])
    table.loc[4, "w_l1"] = 0.3  # group 3 wrongly selected
    s = claims.get("l1-vs-l2").scores(table).loc[0]
    assert s["l1_recall"] == 1.0
    assert s["l1_precision"] == pytest.approx(2 / 3)
    assert s["l1_zero_share"] == pytest.approx(2 / 3)
    assert s["l2_zero_share"] == 0.0
    assert s["l2_split_ratio"] == pytest.approx(0.6 / 0.7)
    assert s["l1_split_ratio"] == pytest.approx(0.1 / 1.2)
    assert s["l1_gap"] == pytest.approx(0.3 / np.linalg.norm([1.2, 0.1, -0.8]))


def test_l1_vs_l2_clean_synthetic_table_is_reproduced(tmp_path):
    assert l1_vs_l2_verdict(synthetic_weights(), tmp_path).reproduced


def select_irrelevant(table):
    table.loc[table["group"] >= 2, "w_l1"] = 0.3


def miss_relevant(table):
    table.loc[table["group"] == 1, "w_l1"] = 0.0


def break_the_l2_split(table):
    table.loc[table["is_duplicate"], "w_l2"] = 0.01


@pytest.mark.parametrize(
    ("change", "rule_name"),
    [
        (lambda t: t.__setitem__("w_l1", 1.05 * t["w_lasso"] + 0.05), "L1 (proximal) converged"),
        (lambda t: t.__setitem__("w_l2", 1.05 * t["w_ridge"]), "L2 converged"),
        (miss_relevant, "recall"),
        (select_irrelevant, "precision"),
        (select_irrelevant, "exactly zero"),
        (break_the_l2_split, "L2: smaller / larger"),
        (swap_in("w_l1", "w_l2"), "split ratio under L2 minus under L1"),
    ],
)
def test_l1_vs_l2_rule_fails_on_a_broken_table(tmp_path, change, rule_name):
    table = synthetic_weights()
    change(table)
    assert rule(l1_vs_l2_verdict(table, tmp_path), rule_name).outcome == "fail"


def test_l1_vs_l2_keras_l1_regularizer_has_not_converged(quick_results, tmp_path):
    # The real broken variant: Keras' own L1 regularizer on plain SGD instead of the
    # proximal step. It neither reaches the lasso nor sets any weight exactly to zero.
    verdict = doctored(
        quick_results,
        "l1-vs-l2",
        tmp_path,
        "weights.csv",
        swap_in("w_l1", "w_l1_keras_regularizer"),
    )
    assert rule(verdict, "L1 (proximal) converged").outcome == "fail"
    assert rule(verdict, "exactly zero").outcome == "fail"


def test_l1_vs_l2_fails_loudly_on_nan(tmp_path):
    table = synthetic_weights()
    table.loc[0, "w_l1"] = np.nan
    broken = rule(l1_vs_l2_verdict(table, tmp_path), "L1 (proximal) converged")
    assert broken.outcome == "fail" and broken.reason == "no measurement"
