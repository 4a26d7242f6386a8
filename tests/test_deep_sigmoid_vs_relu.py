"""deep-sigmoid-vs-relu: the quick run and its verdict, noisy negative controls for every
lecture rule, the ReLU rule failing on the badly initialized control nets, and the
back-propagated signal computed as the module says, on either Keras backend."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread

from repro import backend
from repro.backend import keras
from repro.claims import deep_sigmoid_vs_relu as claim
from repro.data import digits
from repro.records import read_csv, write_csv
from repro.rules import LECTURE

SIGMOID, RELU = claim.SIGMOID, claim.RELU
EPOCHS = claim.PROFILES["full"].epochs
SIGMOID_SIGNAL = f"{SIGMOID}: log10(||dL/dz|| first hidden layer / logits) at init"
RELU_SIGNAL = f"{RELU}: |log10(||dL/dz|| first hidden layer / logits)| at init"
SIGMOID_TRAINS = f"{SIGMOID}: training accuracy after {EPOCHS} epochs at its best rate"
RELU_TRAINS = f"{RELU}: training accuracy after {EPOCHS} epochs at its best rate"

# Per-seed means and sds of each rule's statistic in the full-profile pilot on development
# seeds 100-104 (docs/claims/deep-sigmoid-vs-relu.md).
PILOT = {
    SIGMOID_SIGNAL: (-6.14, 0.066),
    RELU_SIGNAL: (0.062, 0.047),
    SIGMOID_TRAINS: (0.105, 0.00036),
    RELU_TRAINS: (0.998, 0.0015),
}
# Per rule: the statistic at its threshold (null), and clearly reversed or absent.
EFFECTS = {
    SIGMOID_SIGNAL: (claim.SIGMOID_MAX_LOG10_RATIO, 0.0),  # no vanishing, as with ReLU
    RELU_SIGNAL: (claim.RELU_MAX_ORDERS, 7.5),  # explodes, as the N(0, 1) control does
    SIGMOID_TRAINS: (claim.SIGMOID_MAX_ACCURACY, 0.95),  # the sigmoid net learns
    RELU_TRAINS: (claim.RELU_MIN_ACCURACY, claim.CHANCE),  # the ReLU net stays at chance
}


@pytest.fixture(scope="module")
def quick(quick_run):
    return quick_run(claim.CLAIM_ID)


def outcomes(verdict) -> dict[str, str]:
    return {rule.name: rule.outcome for rule in verdict.rules}


def test_quick_run_writes_its_outputs_and_the_verdict_recomputes(quick):
    for name, columns in claim.TABLES.items():
        assert set(columns) <= set(read_csv(quick / name).columns), name
    for name in claim.FIGURES:
        assert (quick / name).stat().st_size > 0 and (quick / name).with_suffix(".svg").exists()
    signals = read_csv(quick / "gradient_signal.csv")
    assert set(signals["arm"]) == set(claim.ARMS)
    assert claim.verdict(quick).to_dict() == json.loads((quick / "verdict.json").read_text())


def test_every_rule_is_a_lecture_rule_with_its_slide(quick):
    slides = {r.name: (r.kind, r.slide) for r in claim.verdict(quick).rules}
    quick_epochs = claim.PROFILES["quick"].epochs
    assert slides == {
        SIGMOID_SIGNAL: (LECTURE, "Vanishing Gradients"),
        RELU_SIGNAL: (LECTURE, "Vanishing Gradients"),
        SIGMOID_TRAINS.replace(str(EPOCHS), str(quick_epochs)): (
            LECTURE,
            "Vanishing and Exploding Gradients",
        ),
        RELU_TRAINS.replace(str(EPOCHS), str(quick_epochs)): (LECTURE, "Vanishing Gradients"),
    }


@pytest.mark.parametrize(
    "change", [{"depth": 5}, {"momentum": 1.0}, {"learning_rates": ()}, {"width": 0}]
)
def test_invalid_config_raises(change):
    with pytest.raises(ValueError):
        dataclasses.replace(claim.Config(), **change)


# ------------------------------------------------------------- noisy negative controls


def write_deep(out_dir, values, rng, sds, nan_seed=None):
    """The full profile's seeds. Per arm, eleven layers whose dL/dz changes geometrically
    from the logits down by the seed's log10 ratio; training curves at two rates, the
    better (0.01) ending at the seed's final accuracy, the other at chance."""
    signals, curves = [], []
    ratio = {"ReLU, N(0,1)": 7.5, "ReLU, N(0,0.01^2)": -12.5}
    for seed in claim.SEEDS["full"]:
        draw = {name: values[name] + rng.normal(0, sds[name]) for name in values}
        ratio |= {SIGMOID: draw[SIGMOID_SIGNAL], RELU: draw[RELU_SIGNAL]}
        final = {SIGMOID: draw[SIGMOID_TRAINS], RELU: draw[RELU_TRAINS]}
        for arm, r in ratio.items():
            norms = 0.06 * np.logspace(r, 0, 11)
            if seed == nan_seed:
                norms[0] = np.nan
            signals += [
                {
                    "seed": seed,
                    "arm": arm,
                    "layer": layer,
                    "signal_norm": n,
                    "kernel_spectral_norm": 1.9,
                }
                for layer, n in enumerate(norms, start=1)
            ]
        for arm, end in final.items():
            for rate, last in ((0.01, np.clip(end, 0, 1)), (1.0, claim.CHANCE)):
                curves += [
                    {
                        "seed": seed,
                        "arm": arm,
                        "learning_rate": rate,
                        "epoch": epoch,
                        "loss": 2.3,
                        "train_accuracy": accuracy,
                        "test_accuracy": accuracy,
                    }
                    for epoch, accuracy in enumerate(np.linspace(0.1, last, EPOCHS), start=1)
                ]
    write_csv(pd.DataFrame(signals), out_dir / "gradient_signal.csv")
    write_csv(pd.DataFrame(curves), out_dir / "training.csv")


def pilot_sds(tested: str) -> dict[str, float]:
    sds = {name: sd for name, (_, sd) in PILOT.items()}
    sds[tested] = measured_spread(claim.CLAIM_ID, tested, pilot=PILOT[tested][1])
    return sds


def test_the_pilot_values_reproduce(tmp_path):
    write_deep(
        tmp_path,
        {n: m for n, (m, _) in PILOT.items()},
        np.random.default_rng(0),
        {n: sd for n, (_, sd) in PILOT.items()},
    )
    assert set(outcomes(claim.verdict(tmp_path)).values()) == {"pass"}


@pytest.mark.parametrize("rule_name", list(PILOT))
def test_lecture_rule_noisy_controls(tmp_path, rule_name):
    null, reversed_ = EFFECTS[rule_name]
    sds = pilot_sds(rule_name)

    def write_tables(out_dir, effect, rng):
        values = {n: m for n, (m, _) in PILOT.items()}
        values[rule_name] = null if effect == "null" else reversed_
        write_deep(out_dir, values, rng, sds)

    assert_controls(claim, write_tables, rule_name, tmp_path)


def test_a_nan_seed_fails_as_no_measurement(tmp_path):
    write_deep(
        tmp_path,
        {n: m for n, (m, _) in PILOT.items()},
        np.random.default_rng(0),
        {n: sd for n, (_, sd) in PILOT.items()},
        nan_seed=1,
    )
    failed = [r for r in claim.verdict(tmp_path).rules if r.outcome == "fail"]
    assert [r.name for r in failed] == [SIGMOID_SIGNAL, RELU_SIGNAL]
    assert all(r.reason == "no measurement" for r in failed)


def test_relu_signal_rule_fails_on_the_badly_initialized_control_nets(quick):
    # The control arms of the quick run, measured as the ReLU arm is: the rule that holds
    # for He fails for N(0, 1) (explodes downwards) and N(0, 0.01^2) (vanishes).
    signals = read_csv(quick / "gradient_signal.csv")
    assert claim.relu_signal_rule(signals, RELU).outcome == "pass"
    for arm in claim.CONTROLS:
        assert claim.relu_signal_rule(signals, arm).outcome == "fail", arm


def test_best_rate_is_the_highest_mean_final_accuracy_with_ties_to_the_smaller_rate():
    curves = pd.DataFrame(
        {
            "arm": "a",
            "seed": [0, 1, 0, 1, 0, 1],
            "learning_rate": [0.1, 0.1, 0.01, 0.01, 1.0, 1.0],
            "epoch": 3,
            "train_accuracy": [0.5, 0.7, 0.6, 0.6, 0.2, 0.2],
        }
    )
    assert claim.best_rate(curves, "a") == 0.01


# ---------------------------------------------- the measurement, on either backend


@pytest.mark.backends
def test_backpropagated_signal_matches_a_hand_computed_gradient():
    # Two Dense layers, softmax cross-entropy (mean over the batch):
    # dL/dz2 = (softmax(z2) - onehot(y)) / batch and dL/dz1 = dL/dz2 W2^T * sigmoid'(z1).
    backend.seed_everything(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(5, "sigmoid"), keras.layers.Dense(4)]
    )
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    y = np.array([0, 1, 2, 3, 0, 1])
    (w1, b1), (w2, b2) = [
        [keras.ops.convert_to_numpy(v).astype(np.float64) for v in (layer.kernel, layer.bias)]
        for layer in model.layers
    ]
    z1 = x @ w1 + b1
    a1 = 1 / (1 + np.exp(-z1))
    z2 = a1 @ w2 + b2
    p = np.exp(z2 - z2.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g2 = (p - np.eye(4)[y]) / len(y)
    g1 = g2 @ w2.T * a1 * (1 - a1)
    first, second = claim.backpropagated_signal(model, x, y)
    assert first == pytest.approx(np.linalg.norm(g1), rel=1e-4)
    assert second == pytest.approx(np.linalg.norm(g2), rel=1e-5)


@pytest.mark.backends
def test_sigmoid_signal_respects_the_quarter_times_weight_norm_bound():
    config = claim.Config()
    x, y, _, _ = digits()
    backend.seed_everything(0)
    model = claim.net(config, x.shape[1], SIGMOID)
    signal = np.array(claim.backpropagated_signal(model, x[:256], y[:256]))
    spectral = np.array(claim.spectral_norms(model))
    assert np.all(signal[:-1] <= 0.25 * spectral[1:] * signal[1:] * (1 + 1e-5))
    assert np.log10(signal[0] / signal[-1]) < -3  # the claim's own measurement, one seed
