"""sigmoid-vanishes: outputs, config, broken variants that each lecture rule must fail."""

import numpy as np
import pandas as pd
import pytest

from repro.backend import keras
from repro.claims import sigmoid_vanishes as claim
from repro.records import read_csv, write_csv
from repro.rules import FAIL, NOT_REPRODUCED, PASS

VANISHING = "largest sigmoid gradient for |x| >= 7, worst seed"
RELU_ONE = "largest |ReLU gradient - 1| for x > 0, worst seed"
FORMULA = "largest |autodiff - sigmoid(x)(1 - sigmoid(x))|"
SMALL = claim.Config(grid_step=0.1, random_points=50)


def rule(out_dir, name_start):
    verdict = claim.verdict(out_dir)
    (found,) = [r for r in verdict.rules if r.name.startswith(name_start)]
    return found, verdict.label


def test_the_quick_run_holds_what_the_claim_measures(quick_run):
    out_dir = quick_run(claim.CLAIM_ID)
    table = read_csv(out_dir / "gradients.csv")
    assert set(claim.TABLES["gradients.csv"]) <= set(table.columns)
    assert sorted(table["seed"].unique()) == list(claim.SEEDS["quick"])


def test_grid_holds_zero_and_seven_exactly():
    x = claim.grid(claim.Config()).astype(np.float32)
    assert 0.0 in x and 7.0 in x and -7.0 in x


def test_autodiff_matches_the_formula():
    x = np.array([-3.0, 0.0, 2.0])
    _, grad = claim.autodiff(keras.activations.sigmoid, x)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(grad, s * (1 - s), rtol=1e-6)


def test_formula_error_unit_is_float32_resolution():
    table = pd.DataFrame(
        {"sigmoid": [0.5], "sigmoid_grad": [0.25 + 2**-24], "sigmoid_grad_formula": [0.25]}
    )
    unit = 2**-24 + 2**-23 * 0.25  # ulp of 0.5 in float32, plus eps x 0.25
    assert claim.formula_error_units(table).iloc[0] == pytest.approx(2**-24 / unit)


@pytest.mark.parametrize(
    "bad", [{"limit": 5.0}, {"grid_step": 0.0}, {"grid_step": 2.0}, {"random_points": -1}]
)
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValueError):
        claim.Config(**bad)


# --------------------------------------------- broken variants for the exact lecture rules


def measured_with(tmp_path, name, **activations):
    """The claim's own measurement at the full profile's seeds, with one activation swapped."""
    out_dir = tmp_path / name
    table = claim.measure(SMALL, claim.SEEDS["full"], **activations)
    write_csv(table, out_dir / "gradients.csv")
    return out_dir


def test_the_real_activations_pass_every_rule(tmp_path):
    out_dir = measured_with(tmp_path, "real")
    verdict = claim.verdict(out_dir)
    assert verdict.label == "REPRODUCED", verdict.describe()
    assert {r.outcome for r in verdict.rules} == {PASS}


def flat_sigmoid(x):
    return keras.activations.sigmoid(x / 2)


@pytest.mark.parametrize(
    "activation",
    [
        "softsign",  # gradient 1 / (1 + |x|)^2: 0.016 at |x| = 7
        flat_sigmoid,  # a sigmoid of x / 2: gradient 0.014 at |x| = 7
        "linear",  # gradient 1 everywhere
    ],
)
def test_vanishing_rule_fails_for_an_activation_whose_gradient_does_not_vanish(
    tmp_path, activation
):
    out_dir = measured_with(tmp_path, "broken", sigmoid=keras.activations.get(activation))
    found, label = rule(out_dir, VANISHING)
    assert (found.outcome, label) == (FAIL, NOT_REPRODUCED)


@pytest.mark.parametrize(
    "activation",
    [
        "relu6",  # saturates: gradient 0 above 6
        "softplus",  # gradient sigmoid(x) < 1
        "tanh",  # saturates both ways
    ],
)
def test_relu_rule_fails_for_a_saturating_activation(tmp_path, activation):
    out_dir = measured_with(tmp_path, "broken", relu=keras.activations.get(activation))
    found, label = rule(out_dir, RELU_ONE)
    assert (found.outcome, label) == (FAIL, NOT_REPRODUCED)


def test_a_nan_is_no_measurement(tmp_path):
    out_dir = measured_with(tmp_path, "nan")
    table = read_csv(out_dir / "gradients.csv")
    table.loc[table["x"] == 8.0, "sigmoid_grad"] = np.nan
    table.loc[table["x"] == 3.0, "relu_grad"] = np.nan
    write_csv(table, out_dir / "gradients.csv")
    for name in (VANISHING, RELU_ONE):
        found, label = rule(out_dir, name)
        assert (found.outcome, found.reason, label) == (FAIL, "no measurement", NOT_REPRODUCED)


# ---------------------------------------------------------------------------- the check


def test_check_passes_on_the_quick_run(quick_run):
    found, _ = rule(quick_run(claim.CLAIM_ID), FORMULA)
    assert found.kind == "check" and found.outcome == PASS


def test_check_fails_on_a_gradient_off_by_a_tenth_of_a_percent(quick_run, tmp_path):
    table = read_csv(quick_run(claim.CLAIM_ID) / "gradients.csv")
    table["sigmoid_grad"] *= 1.001  # relative 1e-3: below an absolute 1e-6 far from 0
    write_csv(table, tmp_path / "gradients.csv")
    found, label = rule(tmp_path, FORMULA)
    assert (found.outcome, label) == (FAIL, NOT_REPRODUCED)
    assert claim.verdict(tmp_path).reason.startswith("the experiment is broken")
