"""deep-sigmoid-vs-relu, initialization and constant-init-symmetry: their verdicts follow the
numbers in the CSVs, their configs reject nonsense, and their building blocks compute what
the modules say they compute."""

import dataclasses

import keras
import numpy as np
import pandas as pd
import pytest

from repro.claims import constant_init_symmetry as symmetry
from repro.claims import deep_sigmoid_vs_relu as deep
from repro.claims import initialization as init
from repro.data import digits
from repro.harness import run_claim, seed_everything, write_csv
from repro.models import batches, mlp

SEEDS = (0, 1, 2)


def failed_rules(verdict) -> list[str]:
    return [rule.name for rule in verdict.rules if not rule.passed]


# ------------------------------------------------------------------ invalid configs


@pytest.mark.parametrize(
    ("config", "change"),
    [
        (deep.Config, {"depth": 5}),
        (deep.Config, {"momentum": 1.0}),
        (init.Config, {"target_accuracy": 0.05}),
        (init.Config, {"learning_rate": 0.0}),
        (symmetry.Config, {"dropout_rate": 1.5}),
        (symmetry.Config, {"hidden_units": 1}),
        (symmetry.Config, {"constant": 0.0}),
    ],
)
def test_invalid_config_raises(config, change):
    with pytest.raises(ValueError):
        dataclasses.replace(config(), **change)


# --------------------------------------------------------------- deep-sigmoid-vs-relu


def write_deep(out_dir, sigmoid_first=1e-7, relu_first=0.01, sigmoid_accuracy=0.1):
    """Eleven layers per net; the output layer's gradient norm is 1 (sigmoid) or 0.01 (ReLU)."""
    gradients, curves = [], []
    for seed in SEEDS:
        for activation, first, last, final in (
            ("sigmoid", sigmoid_first, 1.0, sigmoid_accuracy),
            ("relu", relu_first, 0.01, 0.95),
        ):
            norms = np.geomspace(first, last, 11)
            gradients += [
                {"seed": seed, "activation": activation, "layer": i + 1, "gradient_norm": n}
                for i, n in enumerate(norms)
            ]
            curves += [
                {
                    "seed": seed,
                    "activation": activation,
                    "epoch": epoch,
                    "train_accuracy": accuracy,
                    "test_accuracy": accuracy,
                }
                for epoch, accuracy in enumerate(np.linspace(0.1, final, 5), start=1)
            ]
    write_csv(pd.DataFrame(gradients), out_dir / "gradient_norms.csv")
    write_csv(pd.DataFrame(curves), out_dir / "training.csv")


def test_deep_verdict_reproduced_on_clean_numbers(tmp_path):
    write_deep(tmp_path)
    assert deep.verdict(tmp_path).reproduced


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"sigmoid_first": 1e-2}, "sigmoid: first-layer"),  # only two orders down
        ({"relu_first": 2.0}, "relu: |log10"),  # ReLU's first layer 200x the output's
        ({"sigmoid_accuracy": 0.5}, "sigmoid: training accuracy"),
    ],
)
def test_deep_verdict_fails_when_one_number_breaks_the_claim(tmp_path, change, failing):
    write_deep(tmp_path, **change)
    verdict = deep.verdict(tmp_path)
    assert not verdict.reproduced
    assert [name.startswith(failing) for name in failed_rules(verdict)] == [True]


def test_kernel_gradient_norms_match_a_hand_computed_gradient():
    # One Dense layer, softmax cross-entropy: dL/dW = x^T (softmax(xW) - onehot(y)) / batch.
    seed_everything(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    y = np.array([0, 1, 2, 3, 0])
    logits = x @ np.asarray(model.layers[0].kernel) + np.asarray(model.layers[0].bias)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = x.T @ (probabilities - np.eye(4)[y]) / len(y)
    (norm,) = deep.kernel_gradient_norms(model, x, y)
    assert norm == pytest.approx(np.linalg.norm(expected), rel=1e-5)


# ---------------------------------------------------------------------- initialization


def write_initialization(out_dir, he_growth=1.0, glorot_epochs=12.0, poor_accuracy=0.09):
    """Activation stds that grow exactly at the predicted rates, and training outcomes."""
    predicted = {"N(0,1)": 5.66, "N(0,0.01^2)": 0.0566, "Glorot": 0.707, "He": 1.0}
    measured = predicted | {"He": he_growth}
    epochs_to = {"N(0,1)": np.nan, "N(0,0.01^2)": np.nan, "Glorot": glorot_epochs, "He": 4.0}
    scales, curves, targets = [], [], []
    for seed in SEEDS:
        for scheme in init.SCHEMES:
            scales += [
                {
                    "seed": seed,
                    "scheme": scheme,
                    "layer": layer,
                    "activation_std": 0.4 * measured[scheme] ** layer,
                    "predicted_growth": predicted[scheme],
                }
                for layer in range(11)
            ]
            reached = not np.isnan(epochs_to[scheme])
            curves += [
                {
                    "seed": seed,
                    "scheme": scheme,
                    "epoch": epoch,
                    "train_loss": 0.5,
                    "test_accuracy": (0.9 if epoch >= epochs_to[scheme] else 0.5)
                    if reached
                    else poor_accuracy,
                }
                for epoch in range(1, 21)
            ]
            targets.append(
                {
                    "seed": seed,
                    "scheme": scheme,
                    "target_accuracy": 0.8,
                    "budget_epochs": 20,
                    "reached": reached and epochs_to[scheme] <= 20,
                    "epochs_to_target": epochs_to[scheme] if epochs_to[scheme] <= 20 else np.nan,
                }
            )
    write_csv(pd.DataFrame(scales), out_dir / "activation_scale.csv")
    write_csv(pd.DataFrame(curves), out_dir / "training.csv")
    write_csv(pd.DataFrame(targets), out_dir / "epochs_to_target.csv")


def test_initialization_verdict_reproduced_on_clean_numbers(tmp_path):
    write_initialization(tmp_path)
    assert init.verdict(tmp_path).reproduced


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        # He's activations shrink 0.6x per layer: out of its band and off the prediction.
        ({"he_growth": 0.6}, ["He: largest", "growth factor"]),
        ({"glorot_epochs": 25.0}, ["Glorot and He"]),  # Glorot never gets there
        ({"glorot_epochs": 3.0}, ["He: median"]),  # Glorot faster than He
        ({"poor_accuracy": 0.85}, ["N(0,1) and N(0,0.01^2)"]),
    ],
)
def test_initialization_verdict_fails_when_the_numbers_break_the_claim(tmp_path, change, failing):
    write_initialization(tmp_path, **change)
    names = failed_rules(init.verdict(tmp_path))
    assert len(names) == len(failing)
    assert all(name.startswith(prefix) for name, prefix in zip(names, failing, strict=True))


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
    named = mlp(8, 10, hidden=(16, 16, 16), kernel_initializer=init.SCHEMES["He"])
    assert not np.allclose(shared.layers[1].kernel, shared.layers[2].kernel)
    assert not np.allclose(named.layers[1].kernel, named.layers[2].kernel)


def test_reused_trainer_trains_exactly_like_a_new_model():
    config = init.Config(depth=3, width=16, epochs=2)
    x, y, _, _ = digits()
    x, y = x[:256], y[:256]

    def new_model_losses():
        seed_everything(7)
        model = mlp(x.shape[1], 10, hidden=(16,) * 3, kernel_initializer="he_normal")
        model.compile(
            optimizer=keras.optimizers.SGD(config.learning_rate, momentum=config.momentum),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        # One batch per call of the training step, unlike the trainer: the same updates.
        history = model.fit(batches(x, y, config.batch_size, shuffle_seed=7), epochs=2, verbose=0)
        return history.history["loss"]

    trainer = init.compiled_trainer(config, x.shape[1])
    for _ in range(2):  # the second run must not inherit the first run's momentum
        seed_everything(7)
        start = mlp(x.shape[1], 10, hidden=(16,) * 3, kernel_initializer="he_normal")
        history = init.train(trainer, start.get_weights(), config, x, y, 7, [])
        assert history.history["loss"] == new_model_losses()


# -------------------------------------------------------------- constant-init-symmetry


def write_symmetry(out_dir, constant_difference=0.0, dropout_final=2.0, loss_gap=1e-7):
    steps, epochs = [], []
    for seed in SEEDS:
        for case in symmetry.CASES:
            for step in range(1, 41):
                loss = 2.3 - step / 40
                difference = {
                    "constant": constant_difference,
                    "constant_dropout": dropout_final * step / 40,
                    "random": 1.0,
                    "one_unit": np.nan,
                }[case]
                steps.append(
                    {
                        "seed": seed,
                        "case": case,
                        "step": step,
                        "loss": loss * (1 + loss_gap) if case == "one_unit" else loss,
                        "unit_difference": difference,
                    }
                )
            for epoch in (1, 2):
                epochs.append(
                    {
                        "seed": seed,
                        "case": case,
                        "epoch": epoch,
                        "train_accuracy": 0.3,
                        "test_accuracy": 0.3,
                    }
                )
    write_csv(pd.DataFrame(steps), out_dir / "steps.csv")
    write_csv(pd.DataFrame(epochs), out_dir / "epochs.csv")


def test_symmetry_verdict_reproduced_on_clean_numbers(tmp_path):
    write_symmetry(tmp_path)
    assert symmetry.verdict(tmp_path).reproduced


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"constant_difference": 1e-5}, "constant init:"),
        ({"dropout_final": 1e-4}, "constant init + dropout"),
        ({"loss_gap": 1e-2}, "constant net vs one-unit net: largest relative gap"),
    ],
)
def test_symmetry_verdict_fails_when_one_number_breaks_the_claim(tmp_path, change, failing):
    write_symmetry(tmp_path, **change)
    assert [name.startswith(failing) for name in failed_rules(symmetry.verdict(tmp_path))] == [True]


def test_unit_difference_is_the_largest_gap_between_two_units():
    seed_everything(0)
    model = symmetry.build("constant", symmetry.Config(hidden_units=4), input_dim=3)
    assert float(symmetry.unit_difference(model)) == 0.0
    # Units 0 and 2 now send 0.3 and -0.2 more to class 0, and unit 1 gets 0.1 more bias:
    # the largest gap between two units (in any one parameter) is 0.3 - (-0.2).
    output, bias = model.layers[-1].kernel, model.layers[0].bias
    output.assign(np.asarray(output) + np.outer([0.3, 0, -0.2, 0], np.eye(10)[0]))
    bias.assign(np.asarray(bias) + [0, 0.1, 0, 0])
    assert float(symmetry.unit_difference(model)) == pytest.approx(0.5)


def test_constant_net_and_one_unit_net_start_as_the_same_function():
    config = symmetry.Config()
    x, _, _, _ = digits()
    wide = symmetry.build("constant", config, x.shape[1])
    single = symmetry.build("one_unit", config, x.shape[1])
    np.testing.assert_allclose(wide(x, training=False), single(x, training=False), rtol=1e-6)


def test_symmetry_quick_run_is_byte_reproducible(tmp_path):
    for out in ("first", "second"):
        run_claim(symmetry, "quick", symmetry.SEEDS["quick"], tmp_path / out)
    for name in symmetry.TABLES:
        first = (tmp_path / "first" / symmetry.CLAIM_ID / name).read_bytes()
        assert first == (tmp_path / "second" / symmetry.CLAIM_ID / name).read_bytes(), name
