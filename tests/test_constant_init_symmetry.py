# TRIM (helper for constant_init_symmetry): this is a copy of test_deep_init_symmetry.py; keep only what tests constant_init_symmetry, then delete this line.
"""deep-sigmoid-vs-relu, initialization and constant-init-symmetry: their verdicts follow the
numbers in the CSVs, their configs reject nonsense, and their building blocks compute what
the modules say they compute."""

import dataclasses

import keras
import numpy as np
import pandas as pd
import pytest

from repro.backend import seed_everything
from repro.claims import constant_init_symmetry as symmetry
from repro.claims import deep_sigmoid_vs_relu as deep
from repro.claims import initialization as init
from repro.data import digits
from repro.models import batches, mlp
from repro.records import write_csv
from repro.runner import run_claim

SEEDS = (0, 1, 2)


def outcomes(verdict) -> dict[str, str]:
    return {rule.name: rule.outcome for rule in verdict.rules}


# ------------------------------------------------------------------ invalid configs


@pytest.mark.parametrize(
    ("config", "change"),
    [
        (deep.Config, {"depth": 5}),
        (deep.Config, {"momentum": 1.0}),
        (deep.Config, {"learning_rates": ()}),
        (init.Config, {"target_accuracy": 0.05}),
        (init.Config, {"learning_rates": (0.0,)}),
        (symmetry.Config, {"dropout_rate": 1.5}),
        (symmetry.Config, {"hidden_units": 1}),
        (symmetry.Config, {"constant": 0.0}),
    ],
)
def test_invalid_config_raises(config, change):
    with pytest.raises(ValueError):
        dataclasses.replace(config(), **change)


# --------------------------------------------------------------- deep-sigmoid-vs-relu


def write_deep(out_dir, log10_ratio=None, final_accuracy=None, nan_seed=None):
    """Eleven layers per arm whose dL/dz falls or grows geometrically from the logits down,
    by `log10_ratio[arm]` decades (a little jitter per seed), and training curves at two
    rates that end at `final_accuracy[arm]` at the better rate."""
    log10_ratio = {
        "sigmoid, Glorot": -6.0,
        "ReLU, He": 0.05,
        "ReLU, N(0,1)": 7.5,
        "ReLU, N(0,0.01^2)": -12.5,
    } | (log10_ratio or {})
    final_accuracy = {"sigmoid, Glorot": 0.105, "ReLU, He": 0.99} | (final_accuracy or {})
    signals, curves = [], []
    for seed in SEEDS:
        jitter = 0.02 * (seed - 1)
        for arm, ratio in log10_ratio.items():
            norms = 0.06 * np.logspace(ratio + jitter, 0, 11)
            if seed == nan_seed:
                norms[0] = np.nan
            signals += [
                {
                    "seed": seed,
                    "arm": arm,
                    "layer": i + 1,
                    "signal_norm": n,
                    "kernel_spectral_norm": 1.9,
                }
                for i, n in enumerate(norms)
            ]
        for arm, final in final_accuracy.items():
            for rate, end in ((0.01, final + jitter / 10), (1.0, 0.1)):
                curves += [
                    {
                        "seed": seed,
                        "arm": arm,
                        "learning_rate": rate,
                        "epoch": epoch,
                        "train_accuracy": accuracy,
                        "test_accuracy": accuracy,
                    }
                    for epoch, accuracy in enumerate(np.linspace(0.1, end, 5), start=1)
                ]
    write_csv(pd.DataFrame(signals), out_dir / "gradient_signal.csv")
    write_csv(pd.DataFrame(curves), out_dir / "training.csv")


def test_deep_verdict_reproduced_on_clean_numbers(tmp_path):
    write_deep(tmp_path)
    assert deep.verdict(tmp_path).label == "REPRODUCED"


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        # the sigmoid's signal only two orders down
        ({"log10_ratio": {"sigmoid, Glorot": -2.0}}, "sigmoid, Glorot: log10"),
        # ReLU's first layer gets 30x the logits' signal
        ({"log10_ratio": {"ReLU, He": 1.5}}, "ReLU, He: |log10"),
        ({"final_accuracy": {"sigmoid, Glorot": 0.5}}, "sigmoid, Glorot: training accuracy"),
        ({"final_accuracy": {"ReLU, He": 0.5}}, "ReLU, He: training accuracy"),
    ],
)
def test_deep_verdict_fails_when_one_number_breaks_the_claim(tmp_path, change, failing):
    write_deep(tmp_path, **change)
    result = outcomes(deep.verdict(tmp_path))
    assert result == {name: "fail" if name.startswith(failing) else "pass" for name in result}


def test_deep_nan_seed_fails_as_no_measurement(tmp_path):
    write_deep(tmp_path, nan_seed=1)
    rules = {rule.name: rule for rule in deep.verdict(tmp_path).rules}
    failed = [rule for rule in rules.values() if rule.outcome == "fail"]
    assert len(failed) == 2  # both signal rules, sigmoid and ReLU
    assert all(rule.reason == "no measurement" for rule in failed)


def test_relu_signal_rule_fails_on_the_badly_initialized_control_nets():
    # The control arms of the experiment, measured as run() measures them: the rule that
    # passes for He must fail for N(0, 1) (explodes downwards) and N(0, 0.01^2) (vanishes).
    config = deep.Config()
    x, y, _, _ = digits()
    rows = []
    for seed in SEEDS:
        for arm in ("ReLU, He", *deep.CONTROLS):
            seed_everything(seed)
            norms = deep.backpropagated_signal(deep.net(config, x.shape[1], arm), x[:256], y[:256])
            rows += [
                {"seed": seed, "arm": arm, "layer": i + 1, "signal_norm": n}
                for i, n in enumerate(norms)
            ]
    signals = pd.DataFrame(rows)
    assert deep.relu_signal_rule(signals, "ReLU, He").outcome == "pass"
    for arm in deep.CONTROLS:
        assert deep.relu_signal_rule(signals, arm).outcome == "fail", arm


def test_backpropagated_signal_matches_a_hand_computed_gradient():
    # One Dense layer, softmax cross-entropy: dL/dz = (softmax(z) - onehot(y)) / batch.
    seed_everything(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    y = np.array([0, 1, 2, 3, 0])
    logits = x @ np.asarray(model.layers[0].kernel) + np.asarray(model.layers[0].bias)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    (norm,) = deep.backpropagated_signal(model, x, y)
    assert norm == pytest.approx(np.linalg.norm((probabilities - np.eye(4)[y]) / len(y)), rel=1e-5)


def test_sigmoid_signal_respects_the_quarter_times_weight_norm_bound():
    config = deep.Config()
    x, y, _, _ = digits()
    seed_everything(0)
    model = deep.net(config, x.shape[1], "sigmoid, Glorot")
    signal = np.array(deep.backpropagated_signal(model, x[:256], y[:256]))
    spectral = np.array(deep.spectral_norms(model))
    assert np.all(signal[:-1] <= 0.25 * spectral[1:] * signal[1:] * (1 + 1e-5))


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
    assert deep.best_rate(curves, "a") == 0.01


# ---------------------------------------------------------------------- initialization

GROWTH = {
    "ReLU, N(0,1)": 5.66,
    "ReLU, N(0,0.01^2)": 0.0566,
    "ReLU, Glorot": 0.707,
    "ReLU, He": 1.0,
    "tanh, Glorot": 0.97,
}


def write_initialization(
    out_dir, growth=None, predicted=None, reach_epoch=None, poor=0.1, nan_seed=None
):
    """Activation stds growing geometrically per layer (`growth`, against the `predicted`
    factor) with a little jitter per seed, and test-accuracy curves at two rates: at the
    better rate an arm jumps to 0.93 at `reach_epoch[arm]`, the poor arms stay at `poor`."""
    growth = GROWTH | (growth or {})
    predicted = GROWTH | {"tanh, Glorot": np.nan} | (predicted or {})
    reach_epoch = {"ReLU, He": 3, "ReLU, Glorot": 8, "tanh, Glorot": 5} | (reach_epoch or {})
    scales, curves = [], []
    for seed in SEEDS:
        jitter = 1 + 0.01 * (seed - 1)
        for scheme in init.SCHEMES:
            stds = 0.4 * (growth[scheme] * jitter) ** np.arange(11)
            if seed == nan_seed:
                stds[-1] = np.nan
            scales += [
                {
                    "seed": seed,
                    "scheme": scheme,
                    "layer": layer,
                    "activation_std": std,
                    "predicted_growth": predicted[scheme],
                }
                for layer, std in enumerate(stds)
            ]
            for rate in (0.01, 0.1):
                reach = reach_epoch.get(scheme, 99) + (0 if rate == 0.01 else 5)
                curves += [
                    {
                        "seed": seed,
                        "scheme": scheme,
                        "learning_rate": rate,
                        "target_accuracy": 0.8,
                        "epoch": epoch,
                        "train_loss": 0.5,
                        "test_accuracy": poor + 0.01 * seed
                        if scheme in init.POOR
                        else (0.93 if epoch >= reach else 0.5) - 0.01 * seed,
                    }
                    for epoch in range(1, 21)
                ]
    write_csv(pd.DataFrame(scales), out_dir / "activation_scale.csv")
    write_csv(pd.DataFrame(curves), out_dir / "training.csv")


def test_initialization_verdict_reproduced_on_clean_numbers(tmp_path):
    write_initialization(tmp_path)
    assert init.verdict(tmp_path).label == "REPRODUCED"


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        # N(0,1) grows only 1.5x a layer: 1.8 orders at the last layer
        ({"growth": {"ReLU, N(0,1)": 1.5}, "predicted": {"ReLU, N(0,1)": 1.5}}, "ReLU, N(0,1):"),
        (
            {"growth": {"ReLU, N(0,0.01^2)": 0.7}, "predicted": {"ReLU, N(0,0.01^2)": 0.7}},
            "ReLU, N(0,0.01^2):",
        ),
        ({"growth": {"ReLU, He": 0.75}, "predicted": {"ReLU, He": 0.75}}, "ReLU, He: largest"),
        ({"growth": {"tanh, Glorot": 0.7}}, "tanh, Glorot: largest"),
        # the mismatch keeps the scale: 0.95 a layer
        (
            {"growth": {"ReLU, Glorot": 0.95}, "predicted": {"ReLU, Glorot": 0.95}},
            "ReLU, Glorot (mismatch)",
        ),
        ({"predicted": {"ReLU, He": 2.0}}, "ReLU arms: mean |fitted growth"),
        ({"poor": 0.85}, "N(0,1) and N(0,0.01^2)"),
        ({"reach_epoch": {"tanh, Glorot": 30}}, "He, Glorot (ReLU) and tanh"),
        ({"reach_epoch": {"ReLU, Glorot": 2}}, "ReLU: area under"),  # Glorot faster than He
    ],
)
def test_initialization_verdict_fails_when_the_numbers_break_the_claim(tmp_path, change, failing):
    write_initialization(tmp_path, **change)
    result = outcomes(init.verdict(tmp_path))
    assert result == {name: "fail" if name.startswith(failing) else "pass" for name in result}


def test_initialization_nan_layer_fails_as_no_measurement(tmp_path):
    write_initialization(tmp_path, nan_seed=1)
    failed = [rule for rule in init.verdict(tmp_path).rules if rule.outcome == "fail"]
    assert len(failed) == 6  # every rule on activation scales
    assert all(rule.reason == "no measurement" for rule in failed)


def test_best_rate_is_the_largest_area_under_the_curve_ties_to_the_smaller_rate():
    write_curves = pd.DataFrame(
        {
            "scheme": "a",
            "seed": 0,
            "learning_rate": [0.1, 0.1, 0.01, 0.01, 1.0, 1.0],
            "epoch": [1, 2] * 3,
            "test_accuracy": [0.2, 0.9, 0.5, 0.6, 0.6, 0.5],
        }
    )
    assert init.best_rate(write_curves, "a") == 0.01


def test_growth_factor_recovers_a_geometric_profile():
    scales = pd.DataFrame({"layer": range(11), "activation_std": 0.3 * 0.707 ** np.arange(11)})
    assert init.growth_factor(scales) == pytest.approx(0.707, rel=1e-9)


def test_predicted_growth_is_sqrt_of_fan_in_times_variance_over_two():
    seed_everything(0)
    model = mlp(8, 10, hidden=(16, 16, 16), kernel_initializer=keras.initializers.Constant(0.25))
    assert init.predicted_growth(model) == pytest.approx(np.sqrt(16 * 0.25**2 / 2))


def test_every_layer_gets_its_own_kernel_whatever_form_the_initializer_takes():
    # A Keras 3 initializer object fixes its seed when made: shared as it is, it would make
    # every same-shaped layer alike. mlp gives each layer a fresh one.
    seed_everything(0)
    shared = mlp(8, 10, hidden=(16, 16, 16), kernel_initializer=keras.initializers.HeNormal())
    named = mlp(8, 10, hidden=(16, 16, 16), kernel_initializer=init.SCHEMES["ReLU, He"][1])
    assert not np.allclose(shared.layers[1].kernel, shared.layers[2].kernel)
    assert not np.allclose(named.layers[1].kernel, named.layers[2].kernel)


def test_reused_trainer_trains_exactly_like_a_new_model():
    config = init.Config(depth=3, width=16, epochs=2)
    rate = 0.03  # not the rate the trainer was compiled with: set per run
    x, y, _, _ = digits()
    x, y = x[:256], y[:256]

    def new_model_losses():
        seed_everything(7)
        model = mlp(x.shape[1], 10, hidden=(16,) * 3, kernel_initializer="he_normal")
        model.compile(
            optimizer=keras.optimizers.SGD(rate, momentum=config.momentum),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        # One batch per call of the training step, unlike the trainer: the same updates.
        history = model.fit(batches(x, y, config.batch_size, shuffle_seed=7), epochs=2, verbose=0)
        return history.history["loss"]

    trainer = init.compiled_trainer(config, x.shape[1], "relu")
    for _ in range(2):  # the second run must not inherit the first run's momentum
        seed_everything(7)
        start = mlp(x.shape[1], 10, hidden=(16,) * 3, kernel_initializer="he_normal")
        history = init.train(trainer, start.get_weights(), rate, config, x, y, 7, [])
        assert history.history["loss"] == new_model_losses()


# -------------------------------------------------------------- constant-init-symmetry


def write_symmetry(
    out_dir,
    constant_difference=0.0,
    random_difference=1.0,
    control_difference=2.0,
    loss_gap=1e-7,
    accuracy=None,
    one_unit_accuracy_gap=0.0,
):
    """Unit differences per step (the control's incoming difference grows from 0 to
    `control_difference`) and final training accuracies per case, a little apart per seed."""
    accuracy = {
        "constant": 0.33,
        "constant_dropout": 0.96,
        "random": 0.985,
        "constant_hidden": 0.97,
    } | (accuracy or {})
    accuracy["one_unit"] = accuracy["constant"] + one_unit_accuracy_gap
    steps, epochs = [], []
    for seed in SEEDS:
        for case in symmetry.CASES:
            for step in range(1, 41):
                every, incoming = {
                    "constant": (constant_difference, constant_difference),
                    "constant_dropout": (0.1 * step, 0.05 * step),
                    "random": (random_difference, random_difference),
                    "constant_hidden": (1.0, control_difference * step / 40),
                    "one_unit": (np.nan, np.nan),
                }[case]
                loss = 2.3 - step / 40
                steps.append(
                    {
                        "seed": seed,
                        "case": case,
                        "step": step,
                        "loss": loss * (1 + loss_gap) if case == "one_unit" else loss,
                        "unit_difference": every,
                        "incoming_difference": incoming,
                    }
                )
            for epoch in (1, 2):
                final = accuracy[case] + 0.002 * seed
                epochs.append(
                    {
                        "seed": seed,
                        "case": case,
                        "epoch": epoch,
                        "train_accuracy": final if epoch == 2 else final / 2,
                        "test_accuracy": final,
                    }
                )
    write_csv(pd.DataFrame(steps), out_dir / "steps.csv")
    write_csv(pd.DataFrame(epochs), out_dir / "epochs.csv")


def test_symmetry_verdict_reproduced_on_clean_numbers(tmp_path):
    write_symmetry(tmp_path)
    assert symmetry.verdict(tmp_path).label == "REPRODUCED"


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"constant_difference": 1e-5}, ["constant init: largest"]),
        # a net without dropout in the dropout arm: it trains like the symmetric net
        (
            {"accuracy": {"constant_dropout": 0.33}},
            ["constant init + dropout", "Glorot init: final training accuracy"],
        ),
        ({"accuracy": {"constant_dropout": 0.85}}, ["Glorot init: final training accuracy"]),
        ({"random_difference": 1e-5}, ["Glorot init: log10"]),
        ({"control_difference": 0.0}, ["control, constant hidden layer"]),
        ({"loss_gap": 1e-2}, ["constant net vs one-unit net: largest relative gap"]),
        ({"one_unit_accuracy_gap": 0.05}, ["constant net vs one-unit net: largest gap in"]),
    ],
)
def test_symmetry_verdict_fails_when_one_number_breaks_the_claim(tmp_path, change, failing):
    write_symmetry(tmp_path, **change)
    result = outcomes(symmetry.verdict(tmp_path))
    expected = {n: "fail" if any(n.startswith(f) for f in failing) else "pass" for n in result}
    assert result == expected


def test_symmetry_nan_accuracy_fails_as_no_measurement(tmp_path):
    write_symmetry(tmp_path)
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    epochs.loc[(epochs["case"] == "constant_dropout") & (epochs["seed"] == 1), "train_accuracy"] = (
        np.nan
    )
    write_csv(epochs, tmp_path / "epochs.csv")
    failed = [rule for rule in symmetry.verdict(tmp_path).rules if rule.outcome == "fail"]
    assert len(failed) == 2  # both rules on the dropout net's accuracy
    assert all(rule.reason == "no measurement" for rule in failed)


def test_unit_differences_are_the_largest_gaps_between_two_units():
    seed_everything(0)
    model = symmetry.build("constant", symmetry.Config(hidden_units=4), input_dim=3)
    assert [float(d) for d in symmetry.unit_differences(model)] == [0.0, 0.0]
    # Units 0 and 2 now send 0.3 and -0.2 more to class 0, and unit 1 gets 0.1 more bias:
    # the largest gap between two units (in any one parameter) is 0.3 - (-0.2); in the
    # incoming parameters it is the bias's 0.1.
    output, bias = model.layers[-1].kernel, model.layers[0].bias
    output.assign(np.asarray(output) + np.outer([0.3, 0, -0.2, 0], np.eye(10)[0]))
    bias.assign(np.asarray(bias) + [0, 0.1, 0, 0])
    every, incoming = symmetry.unit_differences(model)
    assert float(every) == pytest.approx(0.5)
    assert float(incoming) == pytest.approx(0.1)


def test_control_starts_with_equal_incoming_and_different_outgoing_weights():
    seed_everything(0)
    model = symmetry.build("constant_hidden", symmetry.Config(hidden_units=4), input_dim=3)
    every, incoming = symmetry.unit_differences(model)
    assert float(incoming) == 0.0 and float(every) > 0.01


def test_constant_net_and_one_unit_net_start_as_the_same_function():
    config = symmetry.Config()
    x, _, _, _ = digits()
    wide = symmetry.build("constant", config, x.shape[1])
    single = symmetry.build("one_unit", config, x.shape[1])
    np.testing.assert_allclose(wide(x, training=False), single(x, training=False), rtol=1e-6)


def test_symmetry_quick_run_is_byte_reproducible(tmp_path):
    for out in ("first", "second"):
        run_claim(symmetry, "quick", (0,), tmp_path / out)
    for name in symmetry.TABLES:
        first = (tmp_path / "first" / symmetry.CLAIM_ID / name).read_bytes()
        assert first == (tmp_path / "second" / symmetry.CLAIM_ID / name).read_bytes(), name
