# TRIM (helper for sigmoid_vanishes): this is a copy of test_backprop_memory_sigmoid.py; keep only what tests sigmoid_vanishes, then delete this line.
"""backprop-gradient, training-memory, sigmoid-vanishes: formulas, configs, verdicts that flip."""

import shutil

import numpy as np
import pandas as pd
import pytest

from repro.claims import backprop_gradient, sigmoid_vanishes, training_memory
from repro.records import read_csv, write_csv

# Small runs of the claims' own `run`, made once for this file; each test that damages
# a CSV works on its own copy. (The quick profiles themselves run in test_claims.py.)


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    backprop_gradient.run(
        backprop_gradient.Config(
            hidden=(3,), batch_size=4, activations=("tanh", "relu"), economy_widths=(4, 16, 64)
        ),
        (0, 1),
        root / "backprop-gradient",
    )
    sigmoid_vanishes.run(
        sigmoid_vanishes.Config(grid_step=0.5, random_points=50), (0, 1), root / "sigmoid-vanishes"
    )
    write_csv(_memory_table(), root / "training-memory" / "measurements.csv")
    return root


def _memory_table():
    """Measurements as the module's analysis predicts them: prediction holds about two
    batch x width tensors, training the stored activations plus one gradient tensor, and
    Adam's state its two moments plus some bookkeeping (5%)."""
    rows = []
    for seed in range(3):
        for depth in (4, 8, 16):
            for batch in (2048, 4096):
                tensor = 4 * batch * 64
                counted = training_memory.counted_bytes(depth, batch, 64, 10)
                parameters = training_memory.parameter_count(depth, 64, 64, 10)
                predict, train = 2 * tensor, counted + tensor + 1000 * seed
                rows.append(
                    {
                        "seed": seed,
                        "depth": depth,
                        "batch_size": batch,
                        "width": 64,
                        "parameters": parameters,
                        "predict_peak_bytes": predict,
                        "train_peak_bytes": train,
                        "extra_bytes": train - predict,
                        "counted_bytes": counted,
                        "sgd_state_bytes": 0,
                        "adam_state_bytes": round(1.05 * 2 * 4 * parameters),
                    }
                )
    return pd.DataFrame(rows)


def _copy(small_runs, claim, tmp_path):
    out = tmp_path / claim.CLAIM_ID
    shutil.copytree(small_runs / claim.CLAIM_ID, out)
    return out


def _edit(path, change):
    frame = read_csv(path)
    change(frame)
    write_csv(frame, path)


# ------------------------------------------------------------------ backprop-gradient


def test_backprop_small_run_reproduces(small_runs):
    assert backprop_gradient.verdict(small_runs / "backprop-gradient").reproduced


def test_backprop_relative_error_uses_the_floor_for_tiny_entries():
    entries = pd.DataFrame(
        {
            "seed": 0,
            "activation": "tanh",
            "autodiff": [0.5, 1e-9, 0.0],
            "numerical": [0.5 * (1 + 1e-8), 2e-9, 0.0],
        }
    )
    errors = backprop_gradient.relative_errors(entries).to_numpy()
    # floor = 1e-3 x max |numerical| = 5e-4: the tiny entry is judged on that scale.
    np.testing.assert_allclose(errors, [1e-8 / (1 + 1e-8), 1e-9 / 5.000000005e-4, 0.0])


def test_backprop_verdict_flips_on_a_wrong_gradient(small_runs, tmp_path):
    out = _copy(small_runs, backprop_gradient, tmp_path)

    def drop_a_term(frame):  # one entry off by 1%, as a missing chain-rule term would make
        frame.loc[frame["numerical"].abs().idxmax(), "autodiff"] *= 1.01

    _edit(out / "entries.csv", drop_a_term)
    verdict = backprop_gradient.verdict(out)
    assert not verdict.reproduced
    assert verdict.rules[0].measured == pytest.approx(0.01 / 1.01, rel=1e-6)


def test_backprop_builds_float64_and_restores_floatx():
    import keras

    config = backprop_gradient.Config(hidden=(3,), batch_size=4, activations=("tanh",))
    entries = backprop_gradient.gradient_pair(config, "tanh", seed=7)
    assert keras.config.floatx() == "float32"
    assert len(entries) == (8 * 3 + 3) + (3 * 3 + 3)  # every weight and bias once
    # float64 differences resolve the gradient far below float32's ~1e-4 quantization
    assert (entries["autodiff"] - entries["numerical"]).abs().max() < 1e-9


def test_backprop_counts_two_products_per_layer_backward(small_runs):
    economy = read_csv(small_runs / "backprop-gradient" / "economy.csv")
    # a dense layer's backward pass is two matrix products of its forward's size
    ratio = economy["backward_flops"] / economy["forward_flops"]
    assert ((ratio > 1) & (ratio < 2.5)).all()
    assert (
        economy["central_difference_flops"] == 2 * economy["parameters"] * economy["forward_flops"]
    ).all()


def _costly_backward(frame):  # a backward pass of 6 forward passes, at every size
    frame["backward_flops"] = 6 * frame["forward_flops"]
    frame["gradient_flops"] = frame["forward_flops"] + frame["backward_flops"]


def _recomputing_backward(frame):  # a forward pass again for every parameter
    frame["backward_flops"] = frame["parameters"] * frame["forward_flops"]
    frame["gradient_flops"] = frame["forward_flops"] + frame["backward_flops"]


def _uncounted(frame):  # one net's graph not counted: no measurement
    for column in ("forward_flops", "gradient_flops"):
        frame[column] = frame[column].astype(float)
        frame.loc[0, column] = np.nan


@pytest.mark.parametrize(
    ("damage", "rule"),
    [(_costly_backward, 1), (_recomputing_backward, 2), (_uncounted, 1), (_uncounted, 2)],
)
def test_backprop_economy_rule_fails_on_a_broken_count(small_runs, tmp_path, damage, rule):
    out = _copy(small_runs, backprop_gradient, tmp_path)
    _edit(out / "economy.csv", damage)
    assert backprop_gradient.verdict(out).rules[rule].outcome == "fail"


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
def test_backprop_config_rejects_invalid_values(bad):
    with pytest.raises(ValueError):
        backprop_gradient.Config(**bad)


# --------------------------------------------------------------------- training-memory


def _memory_rule(out, name_part):
    (rule,) = [r for r in training_memory.verdict(out).rules if name_part in r.name]
    return rule


def test_memory_verdict_passes_on_the_predicted_table(small_runs):
    verdict = training_memory.verdict(small_runs / "training-memory")
    assert verdict.reproduced, verdict.describe()


def test_memory_one_cell_in_a_process_of_its_own():
    config = training_memory.Config(depths=(8, 16), batch_sizes=(2048, 4096))
    first, again = training_memory.measure_in_own_processes([(8, 2048)] * 2, config, [3])
    assert first["seed"] == 3 and first["depth"] == 8 and first["batch_size"] == 2048
    # Lower bounds the allocator must report, whatever the machine: the prediction's
    # logits, and every hidden activation alive together before the backward pass.
    assert first["predict_peak_bytes"] >= 4 * 2048 * 10
    assert first["train_peak_bytes"] >= 4 * 2048 * 64 * 8
    # Adam's moments are held after it builds: at least their bytes, not twice as many.
    moments = 2 * 4 * training_memory.parameter_count(8, 64, 64, 10)
    assert first["sgd_state_bytes"] >= 0
    assert moments <= first["adam_state_bytes"] - first["sgd_state_bytes"] < 2 * moments
    # Bytes requested in program order: the same in a second process, to the byte.
    assert first == again


def _peak_of_a_known_product():
    import tensorflow as tf

    x = tf.ones((1024, 512))
    return training_memory.requested_bytes(lambda: tf.matmul(x, x, transpose_b=True))


def test_memory_peak_sees_a_large_allocation():
    # x @ x^T is a 1024 x 1024 float32 result: 4 MiB requested, and still held when the
    # step ends only if the step keeps it (it does not).
    ((peak, held),) = training_memory.in_own_processes(_peak_of_a_known_product, [()])
    assert 4 * 2**20 <= peak < 8 * 2**20
    assert held <= 0


def test_memory_counted_bytes_formula():
    # 4 layers x 1000 examples x 64 units and a 10-class softmax, float32
    assert training_memory.counted_bytes(4, 1000, 64, 10) == 4 * 1000 * (4 * 64 + 10)
    # (64 + 1) x 64, then 3 x (64 + 1) x 64, then (64 + 1) x 10 weights and biases
    assert training_memory.parameter_count(4, 64, 64, 10) == 65 * 64 * 4 + 65 * 10


def test_memory_fit_is_exact_on_a_proportional_table():
    rows = [
        {
            "seed": 0,
            "depth": d,
            "batch_size": b,
            "width": 8,
            "extra_bytes": 32 * d * b + 100,
            "predict_peak_bytes": 7 * b,
        }
        for d in (2, 4)
        for b in (10, 30)
    ]
    fit = training_memory.fits(pd.DataFrame(rows)).iloc[0]
    assert fit["slope_bytes"] == pytest.approx(32)
    assert fit["intercept_bytes"] == pytest.approx(100)
    assert fit["r_squared"] == pytest.approx(1.0)
    layers = training_memory.per_layer(pd.DataFrame(rows))
    np.testing.assert_allclose(layers["measured_bytes_per_layer"], layers["batch_size"] * 32)
    np.testing.assert_allclose(layers["predict_bytes_per_layer"], 0, atol=1e-9)


def _not_much_more(frame):  # training needs only 1.5 x prediction's peak
    frame["train_peak_bytes"] = 1.5 * frame["predict_peak_bytes"]
    frame["extra_bytes"] = frame["train_peak_bytes"] - frame["predict_peak_bytes"]


def _not_linear(frame):  # same values, shuffled across cells: no longer depth x batch
    frame["extra_bytes"] = frame["extra_bytes"].to_numpy()[::-1]
    frame["train_peak_bytes"] = frame["predict_peak_bytes"] + frame["extra_bytes"]


def _half_the_count(frame):  # half of each stored activation
    frame["extra_bytes"] = frame["counted_bytes"] // 2
    frame["train_peak_bytes"] = frame["predict_peak_bytes"] + frame["extra_bytes"]


def _prediction_keeps_activations(frame):  # prediction's peak grows like training's
    frame["predict_peak_bytes"] = frame["counted_bytes"]
    frame["train_peak_bytes"] = frame["predict_peak_bytes"] + frame["extra_bytes"]


def _adam_without_moments(frame):
    frame["adam_state_bytes"] = frame["sgd_state_bytes"]


def _one_seed_unmeasured(frame):
    frame["predict_peak_bytes"] = frame["predict_peak_bytes"].astype(float)
    frame.loc[frame["seed"] == 1, "predict_peak_bytes"] = np.nan


@pytest.mark.parametrize(
    ("damage", "rule"),
    [
        (_not_much_more, "training peak / prediction peak"),
        (_not_linear, "R^2"),
        (_half_the_count, "per extra layer"),
        (_prediction_keeps_activations, "prediction peak's growth"),
        (_adam_without_moments, "Adam's extra state"),
        (_one_seed_unmeasured, "training peak / prediction peak"),
    ],
)
def test_memory_rule_fails_on_a_broken_table(small_runs, tmp_path, damage, rule):
    out = _copy(small_runs, training_memory, tmp_path)
    _edit(out / "measurements.csv", damage)
    assert _memory_rule(out, rule).outcome == "fail"


def test_memory_nan_is_no_measurement(small_runs, tmp_path):
    out = _copy(small_runs, training_memory, tmp_path)
    _edit(out / "measurements.csv", _one_seed_unmeasured)
    assert _memory_rule(out, "training peak / prediction peak").reason == "no measurement"


@pytest.mark.parametrize(
    "bad", [{"depths": (4,)}, {"batch_sizes": (8, 8)}, {"depths": (0, 4)}, {"width": 0}]
)
def test_memory_config_rejects_invalid_values(bad):
    with pytest.raises(ValueError):
        training_memory.Config(**bad)


# -------------------------------------------------------------------- sigmoid-vanishes


def test_sigmoid_small_run_reproduces(small_runs):
    assert sigmoid_vanishes.verdict(small_runs / "sigmoid-vanishes").reproduced


def test_sigmoid_grid_holds_zero_and_seven_exactly():
    x = sigmoid_vanishes.grid(sigmoid_vanishes.Config()).astype(np.float32)
    assert 0.0 in x and 7.0 in x and -7.0 in x


def test_sigmoid_autodiff_matches_the_formula():
    import keras

    x = np.array([-3.0, 0.0, 2.0])
    _, grad = sigmoid_vanishes.autodiff(keras.activations.sigmoid, x)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(grad, s * (1 - s), rtol=1e-6)


@pytest.mark.parametrize(
    ("column", "where", "value", "rule"),
    [
        ("sigmoid_grad", lambda t: t["x"] == 0, 0.2, 0),  # peak no longer 0.25
        ("sigmoid_grad", lambda t: t["x"] == 1.0, 0.3, 1),  # a larger gradient off 0
        ("sigmoid_grad", lambda t: t["x"] >= 7, 2e-3, 2),  # no vanishing
        ("relu_grad", lambda t: t["x"] > 5, 0.5, 3),  # ReLU gradient not 1
        ("sigmoid_grad_formula", lambda t: t["x"] == -2.0, 0.5, 4),  # autodiff off formula
        ("sigmoid_grad", lambda t: t["x"] == 8.0, np.nan, 2),  # a NaN is no measurement
        ("relu_grad", lambda t: t["x"] == 3.0, np.nan, 3),
    ],
)
def test_sigmoid_verdict_flips(small_runs, tmp_path, column, where, value, rule):
    out = _copy(small_runs, sigmoid_vanishes, tmp_path)

    def doctor(frame):
        assert where(frame).any()
        frame.loc[where(frame), column] = value

    _edit(out / "gradients.csv", doctor)
    verdict = sigmoid_vanishes.verdict(out)
    assert verdict.rules[rule].outcome == "fail"
    assert not verdict.reproduced


def test_sigmoid_formula_rule_fails_on_a_gradient_off_by_a_tenth_of_a_percent(small_runs, tmp_path):
    out = _copy(small_runs, sigmoid_vanishes, tmp_path)

    def off(frame):  # relative 1e-3 everywhere: below the old absolute 1e-6 far from 0
        frame["sigmoid_grad"] *= 1.001

    _edit(out / "gradients.csv", off)
    assert sigmoid_vanishes.verdict(out).rules[4].outcome == "fail"


def test_sigmoid_formula_error_unit_is_float32_resolution():
    table = pd.DataFrame(
        {"sigmoid": [0.5], "sigmoid_grad": [0.25 + 2**-24], "sigmoid_grad_formula": [0.25]}
    )
    unit = 2**-24 + 2**-23 * 0.25  # ulp of 0.5 in float32, plus eps x 0.25
    units = sigmoid_vanishes.formula_error_units(table)
    assert units.iloc[0] == pytest.approx(2**-24 / unit)


def test_sigmoid_config_rejects_a_range_short_of_seven():
    with pytest.raises(ValueError):
        sigmoid_vanishes.Config(limit=5.0)


def test_float64_block_leaves_later_models_in_float32():
    from repro.claims import backprop_gradient
    from repro.models import mlp

    with backprop_gradient.float64():
        assert mlp(3, 2, hidden=(4,)).layers[0].kernel.dtype == "float64"
    assert mlp(3, 2, hidden=(4,)).layers[0].kernel.dtype == "float32"
