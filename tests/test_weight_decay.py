"""weight-decay: its quick run, its config's validation, the slide's update as Keras steps
it, noisy negative controls for every lecture rule, and the check on a broken table."""

import json

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread

from repro.claims import weight_decay as claim
from repro.figures import twins
from repro.records import read_csv, write_csv
from repro.rules import FAIL, NOT_REPRODUCED, PASS

FULL_SEEDS = claim.SEEDS["full"]
LAMBDAS = claim.PROFILES["full"].lambdas
CHOSEN = LAMBDAS.index(1.0)  # the lambda the synthetic validation losses choose

# Per-seed standard deviations measured by the pilot (development seeds 100-139, full profile).
PILOT_SD = {
    "largest ratio of ||w||": 0.00018,
    "lambda = 0 overfits": 1.5e-15,
    "zero start: log10(test loss": 0.0171,
}
# The pilot's means, where a synthetic table that passes sits.
PILOT_MEAN = {
    "largest ratio of ||w||": 0.99967,
    "lambda = 0 overfits": 7.7e-16,
    "zero start: log10(test loss": -0.037,
}


def test_quick_run_writes_its_outputs_and_the_verdict_recomputes(quick_run):
    out = quick_run(claim.CLAIM_ID)
    for name in [*claim.TABLES, *twins(claim.FIGURES), "verdict.json", "provenance.json"]:
        assert (out / name).stat().st_size > 0, name
    for name, columns in claim.TABLES.items():
        assert set(columns) <= set(read_csv(out / name).columns), name
    recorded = json.loads((out / "verdict.json").read_text())
    assert recorded == json.loads(json.dumps(claim.verdict(out).to_dict()))


@pytest.mark.parametrize(
    "bad",
    [
        {"lambdas": (0.1, 1.0)},  # no lambda = 0 baseline
        {"lambdas": (0.0, 1.0, 0.5)},  # not increasing
        {"lambdas": (0.0,)},  # nothing to compare with
        {"learning_rate": 0.2},  # eta * lambda >= 1 for lambda = 10: no decay
        {"steps": 305},  # not a multiple of record_every
        {"noise_sd": -0.1},
        {"train_examples": 0},
    ],
)
def test_invalid_config_raises(bad):
    with pytest.raises(ValueError):
        claim.Config(**bad)


def test_recorded_steps_are_the_two_readings(quick_run):
    """Keras' step is the slide's update; the alternative doubles decay and data step."""
    steps = read_csv(quick_run(claim.CLAIM_ID) / "one_step.csv")
    lecture = steps[steps["setup"] == "lecture"].reset_index(drop=True)
    alternative = steps[steps["setup"] == "plain_mse_l2_lambda"].reset_index(drop=True)
    np.testing.assert_allclose(lecture["keras_l2"], lecture["lam"] / 2)
    np.testing.assert_allclose(lecture["w_keras_step"], lecture["w_rule_step"], atol=1e-6)
    eta, lam, w = alternative["learning_rate"], alternative["lam"], alternative["w_before"]
    data_step = (1 - eta * lam) * w - alternative["w_rule_step"]
    np.testing.assert_allclose(
        alternative["w_keras_step"], (1 - 2 * eta * lam) * w - 2 * data_step, atol=1e-6
    )


def test_lambda_zero_from_zero_is_the_smallest_norm_interpolant():
    """What the lecture arm's lambda = 0 model converges to: gradient descent from w = 0
    never leaves the span of the training inputs (checked in float64 on the same data)."""
    config = claim.PROFILES["full"]
    x, y = claim.make_data(np.random.default_rng(100), config.train_examples, config)
    x, y = x.astype(np.float64), y[:, 0].astype(np.float64)
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(config.features + 1)
    for _ in range(config.steps):
        w -= config.learning_rate * design.T @ (design @ w - y) / len(x)
    np.testing.assert_allclose(w, np.linalg.pinv(design) @ y, atol=1e-9)


# ------------------------------------------------------------------ synthetic tables


def synthetic_tables(out_dir, rng, statistic=None, centre=None, spread=None):
    """The claim's CSVs at the full profile's seeds, every rule passing at the pilot's means
    with the pilot's seed noise, except `statistic` (a key of PILOT_SD) drawn around
    `centre` with noise `spread`."""
    means = dict(PILOT_MEAN)
    sds = dict(PILOT_SD)
    if statistic is not None:
        means[statistic], sds[statistic] = centre, spread

    def draw(key):
        return means[key] + sds[key] * rng.standard_normal()

    lams = np.asarray(LAMBDAS)
    steps, sweeps = [], []
    for seed in FULL_SEEDS:
        w = rng.normal(0, 0.1, 5)
        rule = 0.9 * w
        for setup, keras_step in (
            ("lecture", rule * (1 + 1e-7)),
            ("plain_mse_l2_lambda", 2 * rule),
        ):
            steps.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "setup": setup,
                        "lam": 1.0,
                        "keras_l2": claim.SETUPS[setup],
                        "learning_rate": 0.05,
                        "feature": np.arange(5),
                        "w_before": w,
                        "w_keras_step": keras_step,
                        "w_rule_step": rule,
                    }
                )
            )
        test_at_zero = 0.02 * (1 + 0.05 * rng.standard_normal())
        for start, log_ratio in (
            ("zero", draw("zero start: log10(test loss")),
            ("glorot", -1.98 + 0.05 * rng.standard_normal()),
        ):
            at_zero = test_at_zero if start == "zero" else 90 * test_at_zero
            test = np.full(len(lams), at_zero)
            test[CHOSEN] = at_zero * 10**log_ratio
            validation = 0.021 + 0.001 * np.abs(np.arange(len(lams)) - CHOSEN)
            train = np.full(len(lams), 1e-4)
            train[0] = at_zero * draw("lambda = 0 overfits")
            norms = 0.05 * draw("largest ratio of ||w||") ** np.arange(len(lams))
            sweeps.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "start": start,
                        "lam": lams,
                        "weight_norm": norms,
                        "train_loss": train,
                        "validation_loss": validation,
                        "test_loss": test,
                        "true_weight_norm": 0.141,
                        "test_loss_zero_weights": 0.0201,
                    }
                )
            )
    write_csv(pd.concat(steps, ignore_index=True), out_dir / "one_step.csv")
    write_csv(pd.concat(sweeps, ignore_index=True), out_dir / "sweep.csv")


def rule_named(verdict, part: str):
    (found,) = [r for r in verdict.rules if part in r.name]
    return found


def test_synthetic_tables_at_the_pilot_means_are_reproduced(tmp_path):
    synthetic_tables(tmp_path, np.random.default_rng(0))
    verdict = claim.verdict(tmp_path)
    assert verdict.reproduced, verdict.describe()


# For each lecture rule with seed noise: (the statistic, its value with no effect, clearly
# reversed or absent). No effect is the rule's threshold; reversed: ||w|| growing with
# lambda, no train/test gap at lambda = 0, decay raising the test loss by a fifth.
CONTROLS = [
    ("largest ratio of ||w||", 1.0, 1.01),
    ("lambda = 0 overfits", claim.OVERFIT_RATIO, 1.0),
    ("zero start: log10(test loss", claim.LOWER_LOG10_RATIO, np.log10(1.2)),
]


@pytest.mark.parametrize(("statistic", "null", "reversed_"), CONTROLS)
def test_noisy_controls_of_a_lecture_rule(tmp_path, statistic, null, reversed_):
    synthetic_tables(tmp_path / "clean", np.random.default_rng(0))
    name = rule_named(claim.verdict(tmp_path / "clean"), statistic).name
    spread = measured_spread(claim.CLAIM_ID, name, pilot=PILOT_SD[statistic])

    def write_tables(out_dir, effect, rng):
        centre = null if effect == "null" else reversed_
        synthetic_tables(out_dir, rng, statistic, centre, spread)

    assert_controls(claim, write_tables, name, tmp_path)


def broken_step(tmp_path, column, source):
    """The verdict on synthetic tables whose one_step.csv has `column` replaced by `source`
    in the lecture setup's rows."""
    synthetic_tables(tmp_path, np.random.default_rng(0))
    steps = read_csv(tmp_path / "one_step.csv")
    rows = steps["setup"] == "lecture"
    steps.loc[rows, column] = steps.loc[rows, source]
    write_csv(steps, tmp_path / "one_step.csv")
    return claim.verdict(tmp_path)


def test_exact_step_rule_fails_with_the_other_reading_of_lambda(quick_run, tmp_path):
    """Exact rule, broken variant: Keras' step of the alternative set-up (squared error
    without 1/2 and L2(lambda)) in place of the lecture's, from the real quick run."""
    steps = read_csv(quick_run(claim.CLAIM_ID) / "one_step.csv")
    lecture = steps["setup"] == "lecture"
    alternative = steps[~lecture].set_index(["seed", "lam", "feature"])["w_keras_step"]
    keys = pd.MultiIndex.from_frame(steps.loc[lecture, ["seed", "lam", "feature"]])
    steps.loc[lecture, "w_keras_step"] = alternative.reindex(keys).to_numpy()
    write_csv(steps, tmp_path / "one_step.csv")
    write_csv(read_csv(quick_run(claim.CLAIM_ID) / "sweep.csv"), tmp_path / "sweep.csv")
    verdict = claim.verdict(tmp_path)
    assert rule_named(verdict, "one Keras SGD step").outcome == FAIL
    assert verdict.label == NOT_REPRODUCED


def test_exact_step_rule_fails_on_a_nan_and_on_a_wrong_decay(tmp_path):
    synthetic_tables(tmp_path, np.random.default_rng(0))
    steps = read_csv(tmp_path / "one_step.csv")
    rows = steps["setup"] == "lecture"
    # The decay applied twice: (1 - eta lambda)^2 w instead of (1 - eta lambda) w.
    eta, lam = steps["learning_rate"], steps["lam"]
    steps.loc[rows, "w_keras_step"] = steps["w_rule_step"] - eta * lam * steps["w_before"]
    write_csv(steps, tmp_path / "one_step.csv")
    assert rule_named(claim.verdict(tmp_path), "one Keras SGD step").outcome == FAIL
    steps.loc[steps.index[0], "w_keras_step"] = np.nan
    write_csv(steps, tmp_path / "one_step.csv")
    broken = rule_named(claim.verdict(tmp_path), "one Keras SGD step")
    assert broken.outcome == FAIL and broken.reason == "no measurement"


def test_check_passes_on_the_quick_run_and_fails_when_the_readings_agree(quick_run, tmp_path):
    check = "the alternative (squared error"
    assert rule_named(claim.verdict(quick_run(claim.CLAIM_ID)), check).outcome == PASS
    synthetic_tables(tmp_path, np.random.default_rng(0))
    steps = read_csv(tmp_path / "one_step.csv")
    rows = steps["setup"] == "plain_mse_l2_lambda"
    steps.loc[rows, "w_keras_step"] = steps.loc[rows, "w_rule_step"]
    write_csv(steps, tmp_path / "one_step.csv")
    verdict = claim.verdict(tmp_path)
    assert rule_named(verdict, check).outcome == FAIL
    assert verdict.label == NOT_REPRODUCED
