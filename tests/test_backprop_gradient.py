"""backprop-gradient: outputs, config, and broken variants that each rule must fail."""

import shutil

import numpy as np
import pandas as pd
import pytest

from repro.claims import backprop_gradient as claim
from repro.records import read_csv, write_csv
from repro.rules import FAIL, NOT_REPRODUCED, PASS

EXACTNESS = "largest relative error, autodiff vs central differences, all entries"
ECONOMY = "backward / forward pass, counted float operations, worst P"
SLOPE = "slope of ln(central-difference cost / backprop cost) against ln P"
# Two square hidden kernels, so that a transposed gradient keeps its shape.
SMALL = claim.Config(hidden=(4, 4), batch_size=4, economy_widths=(4, 16, 64))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The claim's own run, small nets, at the full profile's seeds."""
    out_dir = tmp_path_factory.mktemp("backprop-gradient")
    claim.run(SMALL, claim.SEEDS["full"], out_dir)
    return out_dir


def damaged(small_run, tmp_path, table, change):
    out_dir = tmp_path / "damaged"
    shutil.copytree(small_run, out_dir)
    frame = read_csv(out_dir / table)
    change(frame)
    write_csv(frame, out_dir / table)
    return out_dir


def outcome(out_dir, name):
    verdict = claim.verdict(out_dir)
    (rule,) = [r for r in verdict.rules if r.name == name]
    return rule.outcome, verdict.label


def test_the_small_run_passes_every_rule(small_run):
    verdict = claim.verdict(small_run)
    assert verdict.reproduced, verdict.describe()
    assert {r.outcome for r in verdict.rules} == {PASS}


def test_every_weight_and_bias_once_and_far_below_float32_resolution():
    config = claim.Config(hidden=(3,), batch_size=4, activations=("sigmoid",))
    entries = claim.gradient_pair(config, "sigmoid", seed=7)
    assert len(entries) == (8 * 3 + 3) + (3 * 3 + 3)
    # float64 differences resolve the gradient far below float32's ~1e-4 quantization
    assert (entries["autodiff"] - entries["numerical"]).abs().max() < 1e-9


def test_float64_block_restores_floatx_and_leaves_later_models_in_float32():
    from repro.backend import keras
    from repro.models import mlp

    with claim.float64():
        assert mlp(3, 2, hidden=(4,)).layers[0].kernel.dtype == "float64"
    assert keras.config.floatx() == "float32"
    assert mlp(3, 2, hidden=(4,)).layers[0].kernel.dtype == "float32"


def test_relative_error_uses_the_floor_for_tiny_entries():
    entries = pd.DataFrame(
        {
            "seed": 0,
            "activation": "sigmoid",
            "autodiff": [0.5, 1e-9, 0.0],
            "numerical": [0.5 * (1 + 1e-8), 2e-9, 0.0],
        }
    )
    errors = claim.relative_errors(entries).to_numpy()
    # floor = 1e-3 x max |numerical| = 5e-4: the tiny entry is judged on that scale.
    np.testing.assert_allclose(errors, [1e-8 / (1 + 1e-8), 1e-9 / 5.000000005e-4, 0.0])


def test_counts_two_products_per_layer_backward(small_run):
    economy = read_csv(small_run / "economy.csv")
    # a dense layer's backward pass is two matrix products of its forward's size
    ratio = economy["backward_flops"] / economy["forward_flops"]
    assert ((ratio > 1) & (ratio < 2.5)).all()
    assert (
        economy["central_difference_flops"] == 2 * economy["parameters"] * economy["forward_flops"]
    ).all()


@pytest.mark.parametrize(
    "bad",
    [
        {"hidden": ()},
        {"step": 0.0},
        {"step": 0.5},
        {"classes": 1},
        {"activations": ()},
        {"economy_widths": (8,)},
    ],
)
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValueError):
        claim.Config(**bad)


# ------------------------------------ lecture rule 1, exact: broken gradients must fail


def _missing_term(frame):  # the largest entry off by 1%, as a dropped chain-rule term makes
    frame.loc[frame["numerical"].abs().idxmax(), "autodiff"] *= 1.01


def _transposed(frame):  # a square kernel's gradient transposed
    for _, rows in frame[frame["variable"] == "layer 2 kernel"].groupby(["seed", "activation"]):
        values = rows["autodiff"].to_numpy().reshape(4, 4)
        frame.loc[rows.index, "autodiff"] = values.T.ravel()


def _one_layer_halved(frame):  # a factor lost in one layer's backward step
    frame.loc[frame["variable"] == "layer 1 kernel", "autodiff"] *= 0.5


def _another_batch(frame):  # the gradient of another seed's net and batch (stale values)
    sigmoid = frame["activation"] == "sigmoid"
    seeds = frame.loc[sigmoid, "seed"]
    values = frame.loc[sigmoid, "autodiff"].to_numpy().reshape(seeds.nunique(), -1)
    frame.loc[sigmoid, "autodiff"] = np.roll(values, 1, axis=0).ravel()


def _unmeasured(frame):
    frame.loc[3, "numerical"] = np.nan


@pytest.mark.parametrize(
    "damage", [_missing_term, _transposed, _one_layer_halved, _another_batch, _unmeasured]
)
def test_exactness_rule_fails_on_a_broken_gradient(small_run, tmp_path, damage):
    out_dir = damaged(small_run, tmp_path, "entries.csv", damage)
    assert outcome(out_dir, EXACTNESS) == (FAIL, NOT_REPRODUCED)


def test_a_gradient_one_percent_off_shows_as_its_relative_error(small_run, tmp_path):
    out_dir = damaged(small_run, tmp_path, "entries.csv", _missing_term)
    (rule,) = [r for r in claim.verdict(out_dir).rules if r.name == EXACTNESS]
    assert rule.measured == pytest.approx(0.01 / 1.01, rel=1e-5)


# ---------------------------- lecture rule 2, exact: costly backward passes must fail


def _costly_backward(frame):  # a backward pass of 6 forward passes, at every size
    frame["backward_flops"] = 6 * frame["forward_flops"]
    frame["gradient_flops"] = frame["forward_flops"] + frame["backward_flops"]


def _recomputing_backward(frame):  # a forward pass again for every parameter
    frame["backward_flops"] = frame["parameters"] * frame["forward_flops"]
    frame["gradient_flops"] = frame["forward_flops"] + frame["backward_flops"]


def _uncounted(frame):  # one net's graph not counted: no measurement
    for column in ("forward_flops", "gradient_flops", "backward_flops"):
        frame[column] = frame[column].astype(float)
        frame.loc[0, column] = np.nan


@pytest.mark.parametrize("damage", [_costly_backward, _recomputing_backward, _uncounted])
def test_economy_rule_fails_on_a_costly_backward_pass(small_run, tmp_path, damage):
    out_dir = damaged(small_run, tmp_path, "economy.csv", damage)
    assert outcome(out_dir, ECONOMY) == (FAIL, NOT_REPRODUCED)


# ------------------------------------------------------------------------------ check


def test_slope_check_passes_on_the_quick_run(quick_run):
    assert outcome(quick_run(claim.CLAIM_ID), SLOPE)[0] == PASS


def test_slope_check_fails_when_central_differences_do_not_scale_with_p(small_run, tmp_path):
    def constant(frame):  # central differences counted as a fixed cost: a broken table
        frame["central_difference_flops"] = frame["gradient_flops"].iloc[0] * 10

    out_dir = damaged(small_run, tmp_path, "economy.csv", constant)
    assert outcome(out_dir, SLOPE) == (FAIL, NOT_REPRODUCED)
    assert claim.verdict(out_dir).reason.startswith("the experiment is broken")
