"""Claim: constant init keeps hidden units identical under SGD (results/constant-init-symmetry/).

Slide "Breaking the Symmetry". If every hidden unit starts with the same incoming weights
and bias, every unit computes the same value; if every unit also sends the same weights to
the output, every unit receives the same gradient, so an SGD step changes them alike and
they are still identical afterwards. The layer then acts as one unit however wide it is.
Anything that treats the units differently breaks the tie: dropout (each unit is dropped
for different examples) or random initialization (they differ from the start).

What has to be constant. The hidden units' gradients are equal only if the units' outgoing
weights are equal, i.e. if every row of the output kernel is the same; a random output
kernel alone would break the symmetry after one step. We therefore initialize the hidden
kernel, the hidden bias and the output kernel with `keras.initializers.Constant(c)`; the
output bias starts at zero (it is shared by all hidden units, so it cannot break the tie).
A constant output kernel also makes the ten classes start alike, and the hidden unit gets no
gradient until the classes' weights have drifted apart (its gradient is a sum over classes
of equal weights times errors that sum to zero), so the net starts slowly; a learning rate
of 0.5 lets the one effective unit learn visibly within the budget.

Experiment: a one-hidden-layer tanh MLP with `hidden_units` units on scikit-learn's digits,
trained by plain minibatch SGD on the same batches in four cases: constant init; constant
init with Keras Dropout after the hidden layer (called with training=True while training);
Glorot-uniform init; and a net with ONE hidden unit. After every step we record the largest
difference between any two hidden units' parameters (incoming weights, bias, outgoing
weights). The one-unit net is the constant net written with one unit: with H identical
units the output is H u tanh(w.x + b), so a single unit with outgoing weights v = H u
computes the same function; SGD on the H-unit net moves v by H times the single unit's step
and w by 1/H of it, so the one-unit net takes its SGD steps with those gradient factors
(from the same start, w = c, v = H c). Its loss curve must then match the constant net's.

Thresholds. The symmetric units must agree to within 1e-6 at every step (float32 rounding
is about 1e-7 of the weights' size); dropout must separate them by more than 1e-3 by the
end, and random init must keep them more than 1e-3 apart at every step, both far above
rounding. "Performs the same as one unit": the two nets' minibatch losses agree to 1e-4
relative at every step (a thousand times float32 rounding, far below the O(1) gaps between
nets that learn differently) and their training accuracy after every epoch is equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from repro.data import digits
from repro.figures import figure, seed_band
from repro.harness import (
    Rule,
    Verdict,
    progress,
    read_csv,
    save_figure,
    seed_agreement,
    seed_everything,
    spread,
    write_csv,
)
from repro.models import accuracy

CLAIM_ID = "constant-init-symmetry"
SLIDE = "Breaking the Symmetry"
STATEMENT = (
    "If a hidden layer's parameters (and the weights leaving it) all start at the same "
    "constant, minibatch SGD keeps its units identical, so the layer is no better than a "
    "single unit; dropout breaks the symmetry, and random initialization never has it."
)

CLASSES = 10
CASES = {
    "constant": "constant init",
    "constant_dropout": "constant init + dropout",
    "random": "Glorot init",
    "one_unit": "one hidden unit (matched SGD)",
}
SYMMETRIC = ("constant", "constant_dropout", "random")  # the cases with several hidden units


@dataclass(frozen=True)
class Config:
    hidden_units: int = 16
    constant: float = 0.05  # c: small enough that tanh is not saturated on digits
    dropout_rate: float = 0.5
    learning_rate: float = 0.5  # see the module docstring
    batch_size: int = 32
    epochs: int = 10

    def __post_init__(self):
        if self.hidden_units < 2:
            raise ValueError("hidden_units must be at least 2 for units to be compared")
        if self.constant == 0:
            raise ValueError("constant must be non-zero (at 0 every gradient of the layer is 0)")
        if not 0 < self.dropout_rate < 1:
            raise ValueError("dropout_rate must lie strictly between 0 and 1")
        if self.learning_rate <= 0 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("learning_rate, batch_size and epochs must be positive")


PROFILES = {"quick": Config(epochs=1), "full": Config()}
SEEDS = {"quick": (0,), "full": tuple(range(5))}
TABLES = {
    "steps.csv": ("seed", "case", "step", "loss", "unit_difference"),
    "epochs.csv": ("seed", "case", "epoch", "train_accuracy", "test_accuracy"),
}
FIGURES = ("unit_difference.png", "one_unit_match.png")

SYMMETRY_TOLERANCE = 1e-6
BROKEN_MIN_DIFFERENCE = 1e-3
LOSS_MATCH_TOLERANCE = 1e-4


def build(case: str, config: Config, input_dim: int) -> keras.Sequential:
    units = 1 if case == "one_unit" else config.hidden_units
    if case == "random":
        hidden_init, output_init = "glorot_uniform", "glorot_uniform"
    else:
        hidden_init = keras.initializers.Constant(config.constant)
        # One unit carrying H identical units' outgoing weights (module docstring).
        scale = config.hidden_units if case == "one_unit" else 1
        output_init = keras.initializers.Constant(scale * config.constant)
    layers = [
        keras.Input((input_dim,)),
        keras.layers.Dense(
            units, activation="tanh", kernel_initializer=hidden_init, bias_initializer=hidden_init
        ),
    ]
    if case == "constant_dropout":
        layers.append(keras.layers.Dropout(config.dropout_rate))
    layers.append(keras.layers.Dense(CLASSES, kernel_initializer=output_init))
    return keras.Sequential(layers, name=case)


def unit_difference(model) -> tf.Tensor:
    """Largest difference between two hidden units' parameters: a column of the hidden
    kernel, an entry of its bias and a row of the output kernel belong to one unit."""
    hidden, output = model.layers[0], model.layers[-1]
    per_unit = tf.concat([hidden.kernel, hidden.bias[None, :], tf.transpose(output.kernel)], 0)
    return tf.reduce_max(tf.reduce_max(per_unit, axis=1) - tf.reduce_min(per_unit, axis=1))


def sgd_step(model, gradient_factors, config: Config):
    """One traced SGD step returning the batch loss and the units' difference afterwards."""
    optimizer = keras.optimizers.SGD(config.learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(
            [
                (factor * gradient, variable)
                for factor, gradient, variable in zip(
                    gradient_factors, gradients, model.trainable_variables, strict=True
                )
            ]
        )
        return loss, unit_difference(model)

    return step


def gradient_factors(case: str, config: Config) -> list[float]:
    """Per variable (hidden kernel, hidden bias, output kernel, output bias): 1, except that
    the one-unit net scales its steps as the H-unit constant net does (module docstring)."""
    if case != "one_unit":
        return [1.0, 1.0, 1.0, 1.0]
    units = config.hidden_units
    return [1 / units, 1 / units, float(units), 1.0]


def run(config: Config, seeds, out_dir):
    x, y, x_test, y_test = digits()
    steps, epochs = [], []
    for seed in progress(seeds, CLAIM_ID):
        # Every case sees the same batches in the same order.
        order = np.random.default_rng(seed)
        batches = [
            np.array_split(order.permutation(len(y)), int(np.ceil(len(y) / config.batch_size)))
            for _ in range(config.epochs)
        ]
        for case in CASES:
            seed_everything(seed)
            model = build(case, config, x.shape[1])
            step = sgd_step(model, gradient_factors(case, config), config)
            count = 0
            for epoch, epoch_batches in enumerate(batches, start=1):
                for batch in epoch_batches:
                    loss, difference = step(x[batch], y[batch])
                    count += 1
                    steps.append(
                        {
                            "seed": seed,
                            "case": case,
                            "step": count,
                            "loss": float(loss),
                            "unit_difference": float(difference) if case != "one_unit" else np.nan,
                        }
                    )
                epochs.append(
                    {
                        "seed": seed,
                        "case": case,
                        "epoch": epoch,
                        "train_accuracy": accuracy(model, x, y),
                        "test_accuracy": accuracy(model, x_test, y_test),
                    }
                )
    write_csv(pd.DataFrame(steps), out_dir / "steps.csv")
    write_csv(pd.DataFrame(epochs), out_dir / "epochs.csv")


def per_seed(frame: pd.DataFrame, case: str, column: str, how: str) -> pd.Series:
    return frame[frame["case"] == case].groupby("seed")[column].agg(how)


def verdict(out_dir) -> Verdict:
    steps = read_csv(out_dir / "steps.csv")
    epochs = read_csv(out_dir / "epochs.csv")
    symmetric = per_seed(steps, "constant", "unit_difference", "max")
    last = steps["step"].max()
    dropout_final = per_seed(
        steps[steps["step"] == last], "constant_dropout", "unit_difference", "max"
    )
    random_least = per_seed(steps, "random", "unit_difference", "min")

    def paired(frame, column):
        """constant vs one-unit values of `column`, aligned on (seed, step or epoch)."""
        index = ["seed", "step" if "step" in frame else "epoch"]
        wide = frame.pivot_table(index=index, columns="case", values=column)
        return wide["constant"], wide["one_unit"]

    constant_loss, one_unit_loss = paired(steps, "loss")
    loss_gap = ((constant_loss - one_unit_loss).abs() / one_unit_loss.abs()).groupby("seed").max()
    constant_accuracy, one_unit_accuracy = paired(epochs, "train_accuracy")
    accuracy_gap = (constant_accuracy - one_unit_accuracy).abs().groupby("seed").max()
    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "constant init: largest difference between hidden units over the run (worst seed)",
                symmetric.max(skipna=False),
                "<",
                SYMMETRY_TOLERANCE,
                f"{seed_agreement(symmetric < SYMMETRY_TOLERANCE)}; {spread(symmetric)}",
            ),
            Rule(
                "constant init + dropout: difference between hidden units at the end (worst seed)",
                dropout_final.min(skipna=False),
                ">",
                BROKEN_MIN_DIFFERENCE,
                f"{seed_agreement(dropout_final > BROKEN_MIN_DIFFERENCE)}; {spread(dropout_final)}",
            ),
            Rule(
                "Glorot init: smallest difference between hidden units over the run (worst seed)",
                random_least.min(skipna=False),
                ">",
                BROKEN_MIN_DIFFERENCE,
                f"{seed_agreement(random_least > BROKEN_MIN_DIFFERENCE)}; {spread(random_least)}",
            ),
            Rule(
                "constant net vs one-unit net: largest relative gap in minibatch loss (worst seed)",
                loss_gap.max(skipna=False),
                "<",
                LOSS_MATCH_TOLERANCE,
                f"{seed_agreement(loss_gap < LOSS_MATCH_TOLERANCE)}; {spread(loss_gap)}",
            ),
            Rule(
                "constant net vs one-unit net: largest gap in training accuracy per epoch",
                accuracy_gap.max(skipna=False),
                "<=",
                0.0,
                f"{seed_agreement(accuracy_gap <= 0)}; {spread(accuracy_gap)}",
            ),
        ),
    )


COLORS = {
    "constant": "tab:blue",
    "constant_dropout": "tab:orange",
    "random": "tab:green",
    "one_unit": "black",
}
EXACT_ZERO_DRAWN_AT = 1e-12  # a log axis cannot show 0


def plot(out_dir):
    steps = read_csv(out_dir / "steps.csv")
    epochs = read_csv(out_dir / "epochs.csv")
    seeds = steps["seed"].nunique()

    fig, (ax,) = figure(
        f"{CLAIM_ID}: largest difference between two hidden units", width=6.4, height=4.2
    )
    for case in SYMMETRIC:
        mine = steps[steps["case"] == case]
        zeros = int((mine["unit_difference"] == 0).sum())
        seed_band(
            ax,
            mine.assign(unit_difference=mine["unit_difference"].clip(lower=EXACT_ZERO_DRAWN_AT)),
            "step",
            "unit_difference",
            label=CASES[case] + (f" (exactly 0 at {zeros}/{len(mine)} steps)" if zeros else ""),
            color=COLORS[case],
        )
    ax.axhline(SYMMETRY_TOLERANCE, color="grey", ls=":", lw=1, label="1e-6: still identical")
    ax.axhline(BROKEN_MIN_DIFFERENCE, color="grey", ls="--", lw=1, label="1e-3: clearly apart")
    ax.set_yscale("log")
    ax.set(
        xlabel="SGD step",
        ylabel=f"max |difference| of unit parameters\n(0 drawn at {EXACT_ZERO_DRAWN_AT:g})",
    )
    ax.legend(
        loc="center right", fontsize=8, title=f"mean, min-max over {seeds} seeds", title_fontsize=8
    )
    save_figure(fig, out_dir / "unit_difference.png")

    fig, (loss_ax, accuracy_ax) = figure(
        f"{CLAIM_ID}: a layer of identical units is one unit", ncols=2, width=5.0, height=4.0
    )
    for case in CASES:
        style = {"ls": "--"} if case == "one_unit" else {}
        mine = steps[steps["case"] == case]
        smoothed = mine.assign(
            loss=mine.groupby("seed")["loss"].transform(
                lambda loss: loss.rolling(20, min_periods=1).mean()
            )
        )
        line = seed_band(loss_ax, smoothed, "step", "loss", label=CASES[case], color=COLORS[case])
        line.set(**style)
        line = seed_band(
            accuracy_ax,
            epochs[epochs["case"] == case],
            "epoch",
            "train_accuracy",
            label=CASES[case],
            color=COLORS[case],
        )
        line.set(**style)
    loss_ax.set(xlabel="SGD step", ylabel="minibatch loss (running mean of 20 steps)")
    accuracy_ax.set(xlabel="epoch", ylabel="training accuracy", ylim=(0, 1))
    accuracy_ax.legend(
        loc="center right", fontsize=8, title=f"mean, min-max over {seeds} seeds", title_fontsize=8
    )
    save_figure(fig, out_dir / "one_unit_match.png")
