"""training-memory: the allocator as an instrument, outputs, config, and broken tables
that each rule must fail (every rule is exact: bytes of fixed shapes, no seed noise)."""

import numpy as np
import pandas as pd
import pytest

from repro import allocator
from repro.claims import training_memory as claim
from repro.records import write_csv
from repro.rules import FAIL, NOT_REPRODUCED, PASS

RATIO = "training peak / prediction peak, smallest cell of the grid"
LINEAR = "R^2 of extra memory against depth x batch size, worst seed"
PER_LAYER = "|measured / counted bytes per extra layer - 1|, worst batch size and seed"
FLAT = "|prediction peak's growth per layer| / counted bytes per layer, worst batch size and seed"
MOMENTS = "|Adam's extra state / (2 x parameters x 4 bytes) - 1|, worst cell"


def predicted_table() -> pd.DataFrame:
    """Measurements as the analysis predicts them, at the full profile's grid and seeds:
    prediction holds two batch x width tensors, training the kept activations and one
    gradient tensor, Adam's state its two moments and some bookkeeping (3%)."""
    config, rows = claim.PROFILES["full"], []
    for seed in claim.SEEDS["full"]:
        for depth in config.depths:
            for batch in config.batch_sizes:
                tensor = 4 * batch * config.width
                counted = claim.counted_bytes(depth, batch, config.width, config.classes)
                parameters = claim.parameter_count(
                    depth, config.width, config.input_dim, config.classes
                )
                predict, train = 2 * tensor, counted + tensor
                rows.append(
                    {
                        "seed": seed,
                        "depth": depth,
                        "batch_size": batch,
                        "width": config.width,
                        "parameters": parameters,
                        "predict_peak_bytes": predict,
                        "train_peak_bytes": train,
                        "extra_bytes": train - predict,
                        "counted_bytes": counted,
                        "sgd_state_bytes": 0,
                        "adam_state_bytes": round(1.03 * 2 * 4 * parameters),
                    }
                )
    return pd.DataFrame(rows)


def judged(tmp_path, change=None):
    table = predicted_table()
    if change:
        change(table)
    write_csv(table, tmp_path / "measurements.csv")
    return claim.verdict(tmp_path)


def outcome(verdict, name):
    (rule,) = [r for r in verdict.rules if r.name == name]
    return rule.outcome, verdict.label


# ------------------------------------------------------------------ the instrument


def _peak_of_a_known_product():
    from repro.backend import tensorflow as tf

    x = tf.ones((1024, 512))
    return allocator.requested_bytes(lambda: tf.matmul(x, x, transpose_b=True))


def test_requested_bytes_see_a_known_allocation():
    # x @ x^T is a 1024 x 1024 float32 result: 4 MiB requested, and not held at the end.
    ((peak, held),) = allocator.in_fresh_processes(_peak_of_a_known_product, [()])
    assert 4 * 2**20 <= peak < 8 * 2**20
    assert held <= 0


def test_one_cell_gives_the_same_bytes_in_two_processes_and_for_two_seeds():
    config = claim.Config(depths=(8, 16), batch_sizes=(2048, 4096))
    first, again = allocator.in_fresh_processes(claim.measure_cell, [(8, 2048, config, [3, 4])] * 2)
    assert [(r["seed"], r["depth"], r["batch_size"]) for r in first] == [(3, 8, 2048), (4, 8, 2048)]
    # Lower bounds whatever the machine: the prediction's logits, and every hidden
    # activation alive together before the backward pass.
    assert first[0]["predict_peak_bytes"] >= 4 * 2048 * 10
    assert first[0]["train_peak_bytes"] >= 4 * 2048 * 64 * 8
    # Adam's moments are held after it builds: at least their bytes, not twice as many.
    moments = 2 * 4 * claim.parameter_count(8, 64, 64, 10)
    assert moments <= first[0]["adam_state_bytes"] - first[0]["sgd_state_bytes"] < 2 * moments
    # Bytes requested in program order: the same in a second process and for every seed.
    assert first == again
    assert {k: v for k, v in first[0].items() if k != "seed"} == {
        k: v for k, v in first[1].items() if k != "seed"
    }


# ---------------------------------------------------------------- the analysis


def test_counted_bytes_and_parameters():
    # 4 layers x 1000 examples x 64 units and a 10-class softmax, float32
    assert claim.counted_bytes(4, 1000, 64, 10) == 4 * 1000 * (4 * 64 + 10)
    # (64 + 1) x 64, then 3 x (64 + 1) x 64, then (64 + 1) x 10 weights and biases
    assert claim.parameter_count(4, 64, 64, 10) == 65 * 64 * 4 + 65 * 10


def test_fit_is_exact_on_a_proportional_table():
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
    fit = claim.fits(pd.DataFrame(rows)).iloc[0]
    assert fit["slope_bytes"] == pytest.approx(32)
    assert fit["intercept_bytes"] == pytest.approx(100)
    assert fit["r_squared"] == pytest.approx(1.0)
    layers = claim.per_layer(pd.DataFrame(rows))
    np.testing.assert_allclose(layers["measured_bytes_per_layer"], layers["batch_size"] * 32)
    np.testing.assert_allclose(layers["predict_bytes_per_layer"], 0, atol=1e-9)


def test_the_predicted_table_passes_every_rule(tmp_path):
    verdict = judged(tmp_path)
    assert verdict.reproduced, verdict.describe()
    assert {r.outcome for r in verdict.rules} == {PASS}
    assert "every seed the same bytes" in verdict.rules[0].note


@pytest.mark.parametrize(
    "bad", [{"depths": (4,)}, {"batch_sizes": (8, 8)}, {"depths": (0, 4)}, {"width": 0}]
)
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValueError):
        claim.Config(**bad)


# ----------------------------------------- broken variants for the exact lecture rules


def _recomputing(frame):  # activations recomputed in the backward pass (checkpointing)
    frame["train_peak_bytes"] = (1.5 * frame["predict_peak_bytes"]).round()
    frame["extra_bytes"] = frame["train_peak_bytes"] - frame["predict_peak_bytes"]


def _one_cell_short(frame):  # the shallowest, smallest cell keeps almost nothing
    cell = (frame["depth"] == frame["depth"].min()) & (frame["batch_size"] == 2048)
    frame.loc[cell, "train_peak_bytes"] = frame.loc[cell, "predict_peak_bytes"] * 19 // 10
    frame["extra_bytes"] = frame["train_peak_bytes"] - frame["predict_peak_bytes"]


def _not_linear(frame):  # the same extra bytes, in the wrong cells: no depth x batch law
    frame["extra_bytes"] = frame.groupby("seed")["extra_bytes"].transform(lambda v: v[::-1].values)
    frame["train_peak_bytes"] = frame["predict_peak_bytes"] + frame["extra_bytes"]


def _batch_only(frame):  # extra memory that grows with the batch but not with depth
    frame["extra_bytes"] = 4 * frame["batch_size"] * frame["width"] * 8
    frame["train_peak_bytes"] = frame["predict_peak_bytes"] + frame["extra_bytes"]


def _half_the_count(frame):  # every other activation kept
    frame["extra_bytes"] = frame["counted_bytes"] // 2
    frame["train_peak_bytes"] = frame["predict_peak_bytes"] + frame["extra_bytes"]


def _twice_the_count(frame):  # every activation kept twice (a copy per layer)
    frame["extra_bytes"] = 2 * frame["counted_bytes"]
    frame["train_peak_bytes"] = frame["predict_peak_bytes"] + frame["extra_bytes"]


def _one_seed_unmeasured(frame):
    frame["train_peak_bytes"] = frame["train_peak_bytes"].astype(float)
    frame.loc[frame["seed"] == 1, "train_peak_bytes"] = np.nan
    frame["extra_bytes"] = frame["train_peak_bytes"] - frame["predict_peak_bytes"]


@pytest.mark.parametrize(
    ("damage", "rule"),
    [
        (_recomputing, RATIO),
        (_one_cell_short, RATIO),
        (_one_seed_unmeasured, RATIO),
        (_not_linear, LINEAR),
        (_batch_only, LINEAR),
        (_one_seed_unmeasured, LINEAR),
        (_half_the_count, PER_LAYER),
        (_twice_the_count, PER_LAYER),
        (_one_seed_unmeasured, PER_LAYER),
    ],
)
def test_lecture_rule_fails_on_a_broken_table(tmp_path, damage, rule):
    assert outcome(judged(tmp_path, damage), rule) == (FAIL, NOT_REPRODUCED)


def test_beyond_rule_fails_when_prediction_keeps_activations(tmp_path):
    def keeps(frame):  # prediction's peak grows like training's
        frame["predict_peak_bytes"] = frame["counted_bytes"]
        frame["train_peak_bytes"] = frame["predict_peak_bytes"] + frame["extra_bytes"]

    verdict = judged(tmp_path, keeps)
    assert outcome(verdict, FLAT)[0] == FAIL
    assert [r.kind for r in verdict.rules if r.name == FLAT] == ["beyond"]


# ------------------------------------------------------------------------------ check


def test_moment_check_passes_on_the_quick_run(quick_run):
    assert outcome(claim.verdict(quick_run(claim.CLAIM_ID)), MOMENTS)[0] == PASS


def test_moment_check_fails_for_an_adam_without_moments(tmp_path):
    def no_moments(frame):
        frame["adam_state_bytes"] = frame["sgd_state_bytes"]

    verdict = judged(tmp_path, no_moments)
    assert outcome(verdict, MOMENTS) == (FAIL, NOT_REPRODUCED)
    assert verdict.reason.startswith("the experiment is broken")
