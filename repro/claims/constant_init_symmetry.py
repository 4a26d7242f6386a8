"""Claim: constant init keeps hidden units identical under SGD (results/constant-init-symmetry/).

Slide "Breaking the Symmetry". If every hidden unit starts with the same incoming weights
and bias, every unit computes the same value; if every unit also sends the same weights to
the output, every unit receives the same gradient, so an SGD step changes them alike and
they are still identical afterwards. The layer then acts as one unit however wide it is.
Dropout treats the units differently (each is dropped for different examples) and breaks
the tie; a random initialization never has it.
Notes, pilots and history: docs/claims/constant-init-symmetry.md.

What has to be constant. The hidden units' gradients are equal only if their outgoing
weights are equal too (every row of the output kernel the same). The symmetric nets
therefore initialize the hidden kernel, the hidden bias and the output kernel with
`keras.initializers.Constant(c)`; the output bias starts at zero (it is shared by all
hidden units, so it cannot break the tie). A control net keeps the hidden layer constant
but draws the output kernel (Glorot): its units' incoming weights part by themselves. A
constant output kernel also makes the ten classes start alike, so the net starts slowly; a
learning rate of 0.5 lets the one effective unit learn visibly within the budget.

Design. A one-hidden-layer tanh MLP with H = `hidden_units` units on scikit-learn's
digits, trained by plain minibatch SGD through `repro.models.fit` (one compiled net per
case, restarted for every seed; every case sees the same batches in the same order) in
five cases: constant init; constant init with Keras Dropout after the hidden layer;
Glorot-uniform init; the control (constant hidden layer, Glorot output kernel); and a net
with ONE hidden unit. Runs on either Keras backend. After every epoch (and before the
first) `evaluate` records training and test accuracy and the largest difference between
two hidden units' parameters: all of them (incoming weights, bias, outgoing weights) and
the incoming ones only. The differences are therefore seen once per epoch, not after every
step: a difference that opened and closed again within an epoch would be missed (identical
units cannot do that; they stay bitwise equal).

The one-unit net is the constant net written with a single unit. With H identical units
the output is H u tanh(w.x + b), so one unit with outgoing weights v = H u computes the
same function; but SGD on the H-unit net moves w by 1/H and v by H times what SGD on that
one-unit net would. The one-unit net therefore carries fixed scale factors, a Keras
Rescaling layer of 1/sqrt(H) on its pre-activation and one of sqrt(H) on its activation,
and starts from w' = b' = sqrt(H) c and v' = sqrt(H) c: its function is the constant
net's, and plain SGD on (w', v') takes exactly the constant net's steps (a parameter used
through a factor a moves a^2 times as far). With H = 16 the factors are 4 and 1/4, exact in
floating point. Its per-epoch training loss and accuracy must then match the constant
net's.

Rules:
1. lecture ("Breaking the Symmetry"): constant init: the largest difference between two
   hidden units over every epoch and seed is below 1e-6. Exact, no interval: identical
   units are identical columns of the same arithmetic (0 to the bit here); 1e-6 leaves
   room for a machine that sums columns in different orders. Tolerance 1e-7.
2. lecture ("Breaking the Symmetry"): final training accuracy, constant + dropout minus
   constant (paired per seed), > 0.2, judged by its 95% t-interval. Dropout parts the
   units at its first step, so a unit difference is no evidence; the accuracy that the
   separated units buy is.
3. beyond: final training accuracy, Glorot minus constant + dropout, < 0.05 (interval):
   the slides do not say that dropout then trains like a random initialization.
4. check: Glorot init: log10 of the smallest unit difference over the run > -3 (far above
   float32 rounding): a random draw gives different units.
5. beyond: the control (random outgoing weights): log10 of the final difference of the
   units' incoming weights > -3 (interval): the symmetry breaks by itself.
6. lecture ("Breaking the Symmetry"): the constant net is the one-unit net: the largest
   relative gap in per-epoch training loss, over every epoch and seed, < 1e-4 (a thousand
   times float32 rounding, far below the gaps between nets that learn differently).
   Exact: no interval. Tolerance 1e-5.
7. lecture ("Breaking the Symmetry"): the same on training accuracy after every epoch:
   largest gap <= 0.005 (six of 1,257 examples; slack for argmax near-ties that another
   CPU's rounding may flip). Exact. Tolerance 0.002.

Seeds: pilots and design on development seeds (100-104); verdict seeds 0-4, fixed before
the full run; the shifted seeds 1000-1004 run only once the design is frozen. The rules
were redesigned once after the verdict seeds had been run with an earlier design, for
reasons given in the notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from repro.backend import keras
from repro.data import digits
from repro.figures import figure, save_figure, seed_band, seed_legend
from repro.models import fit, predict_labels, restart
from repro.records import progress, read_csv, write_csv
from repro.rules import BEYOND, CHECK, LECTURE, Rule, Verdict, spread

CLAIM_ID = "constant-init-symmetry"
SLIDE = "Breaking the Symmetry"
STATEMENT = (
    "If a hidden layer's parameters (and the weights leaving it) all start at the same "
    "constant, minibatch SGD keeps its units identical, so the layer trains exactly like a "
    "single unit; with dropout on the layer the net trains far better."
)

CLASSES = 10
CASES = {
    "constant": "constant init",
    "constant_dropout": "constant init + dropout",
    "random": "Glorot init",
    "constant_hidden": "control: constant hidden layer, Glorot output",
    "one_unit": "one hidden unit, same SGD steps",
}
SEVERAL_UNITS = ("constant", "constant_dropout", "random", "constant_hidden")


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


PROFILES = {"quick": Config(epochs=2), "full": Config()}
SEEDS = {"quick": (0, 1), "full": tuple(range(5))}
TABLES = {
    "epochs.csv": (
        "seed",
        "case",
        "epoch",
        "loss",
        "train_accuracy",
        "test_accuracy",
        "unit_difference",
        "incoming_difference",
    ),
}
FIGURES = ("unit_difference.png", "one_unit_match.png")

SYMMETRY_TOLERANCE = 1e-6
BROKEN_MIN_LOG10_DIFFERENCE = -3.0
DROPOUT_MIN_GAIN = 0.2
DROPOUT_MAX_SHORTFALL = 0.05
LOSS_MATCH_TOLERANCE = 1e-4
ACCURACY_MATCH_TOLERANCE = 0.005
EXACT_ZERO_DRAWN_AT = 1e-12  # a logarithm (and a log axis) cannot take 0


def build(case: str, config: Config, input_dim: int):
    """The case's net, compiled with plain SGD and cross-entropy on its logits."""
    constant = keras.initializers.Constant(config.constant)
    if case == "one_unit":  # the constant net written with one unit (module docstring)
        root = math.sqrt(config.hidden_units)
        start = keras.initializers.Constant(root * config.constant)
        layers = [
            keras.layers.Dense(1, kernel_initializer=start, bias_initializer=start),
            keras.layers.Rescaling(1 / root),
            keras.layers.Activation("tanh"),
            keras.layers.Rescaling(root),
            keras.layers.Dense(CLASSES, kernel_initializer=start),
        ]
    else:
        hidden, output = {
            "random": ("glorot_uniform", "glorot_uniform"),
            "constant_hidden": (constant, "glorot_uniform"),
        }.get(case, (constant, constant))
        layers = [
            keras.layers.Dense(
                config.hidden_units, "tanh", kernel_initializer=hidden, bias_initializer=hidden
            ),
            *([keras.layers.Dropout(config.dropout_rate)] if case == "constant_dropout" else []),
            keras.layers.Dense(CLASSES, kernel_initializer=output),
        ]
    model = keras.Sequential([keras.Input((input_dim,)), *layers], name=case)
    model.compile(
        optimizer=keras.optimizers.SGD(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def unit_differences(model) -> tuple[float, float]:
    """Largest difference between two hidden units' parameters, all of them (a column of
    the hidden kernel, an entry of its bias and a row of the output kernel belong to one
    unit) and the incoming ones only (kernel column and bias)."""
    hidden, output = model.layers[0], model.layers[-1]
    kernel, bias, outgoing = (
        keras.ops.convert_to_numpy(v) for v in (hidden.kernel, hidden.bias, output.kernel)
    )
    incoming = np.vstack([kernel, bias[None, :]])  # one column per unit
    every = np.vstack([incoming, outgoing.T])

    def largest_gap(per_unit):
        return float((per_unit.max(axis=1) - per_unit.min(axis=1)).max())

    return largest_gap(every), largest_gap(incoming)


def run(config: Config, seeds, out_dir):
    x, y, x_test, y_test = digits()
    both, labels, split = np.concatenate([x, x_test]), np.concatenate([y, y_test]), len(x)

    def evaluate(model):
        correct = predict_labels(model, both) == labels
        several = model.name != "one_unit"
        every, incoming = unit_differences(model) if several else (np.nan, np.nan)
        return {
            "train_accuracy": correct[:split].mean(),
            "test_accuracy": correct[split:].mean(),
            "unit_difference": every,
            "incoming_difference": incoming,
        }

    rows = []
    for case in CASES:
        make, model = partial(build, case, config, x.shape[1]), None
        for seed in progress(seeds, f"{CLAIM_ID}, {case}"):
            model = restart(model, make, seed)
            history = [{"epoch": 0, "loss": np.nan} | evaluate(model)]
            history += fit(
                model,
                x,
                y,
                epochs=config.epochs,
                batch_size=config.batch_size,
                seed=seed,  # the same batches in the same order for every case
                evaluate=evaluate,
            )
            rows += [{"seed": seed, "case": case} | row for row in history]
    write_csv(pd.DataFrame(rows)[list(TABLES["epochs.csv"])], out_dir / "epochs.csv")


def per_seed(frame: pd.DataFrame, case: str, column: str, reduce) -> pd.Series:
    """`reduce` (NumPy's, so that a NaN is kept) of `column` over each seed's rows of `case`."""
    mine = frame[frame["case"] == case]
    return mine.groupby("seed")[column].agg(lambda values: reduce(values.to_numpy()))


def final(frame: pd.DataFrame, case: str, column: str) -> pd.Series:
    """Per seed: `column` after the last epoch."""
    return per_seed(frame[frame["epoch"] == frame["epoch"].max()], case, column, np.max)


def one_unit_gaps(epochs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per seed: the largest relative gap in training loss and the largest gap in training
    accuracy, over the epochs, between the constant net and the one-unit net."""
    wide = epochs.pivot(index=["seed", "epoch"], columns="case")
    loss, accuracy = wide["loss"], wide["train_accuracy"]
    trained = loss.index.get_level_values("epoch") > 0  # epoch 0 has no training loss
    loss_gap = ((loss["constant"] - loss["one_unit"]).abs() / loss["one_unit"].abs())[trained]
    accuracy_gap = (accuracy["constant"] - accuracy["one_unit"]).abs()

    def worst(gaps):
        return gaps.groupby(level="seed").agg(lambda values: values.to_numpy().max())

    return worst(loss_gap), worst(accuracy_gap)


def verdict(out_dir) -> Verdict:
    epochs = read_csv(out_dir / "epochs.csv")
    symmetric = per_seed(epochs, "constant", "unit_difference", np.max)
    accuracy_at_end = {case: final(epochs, case, "train_accuracy") for case in CASES}
    random_least = per_seed(epochs, "random", "unit_difference", np.min)
    control_final = final(epochs, "constant_hidden", "incoming_difference")
    loss_gap, accuracy_gap = one_unit_gaps(epochs)
    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "constant init: largest difference between hidden units over every epoch "
                "(worst seed; exact: identical units are identical arithmetic)",
                symmetric.to_numpy().max(),
                "<",
                SYMMETRY_TOLERANCE,
                f"{len(symmetric)} seeds; {spread(symmetric)}",
                kind=LECTURE,
                slide=SLIDE,
                tolerance=1e-7,
            ),
            Rule.over_seeds(
                "constant init + dropout: final training accuracy minus the constant net's",
                (accuracy_at_end["constant_dropout"] - accuracy_at_end["constant"]).to_numpy(),
                ">",
                DROPOUT_MIN_GAIN,
                f"constant net {spread(accuracy_at_end['constant'])}",
                kind=LECTURE,
                slide=SLIDE,
            ),
            Rule.over_seeds(
                "Glorot init: final training accuracy minus the dropout net's",
                (accuracy_at_end["random"] - accuracy_at_end["constant_dropout"]).to_numpy(),
                "<",
                DROPOUT_MAX_SHORTFALL,
                f"dropout net {spread(accuracy_at_end['constant_dropout'])}, Glorot "
                f"{spread(accuracy_at_end['random'])}",
                kind=BEYOND,
            ),
            Rule.over_seeds(
                "Glorot init: log10 of the smallest difference between hidden units over "
                "the epochs",
                np.log10(np.maximum(random_least.to_numpy(), EXACT_ZERO_DRAWN_AT)),
                ">",
                BROKEN_MIN_LOG10_DIFFERENCE,
                "never symmetric",
                kind=CHECK,
            ),
            Rule.over_seeds(
                "control, constant hidden layer and Glorot output: log10 of the final "
                "difference of the units' incoming weights",
                np.log10(np.maximum(control_final.to_numpy(), EXACT_ZERO_DRAWN_AT)),
                ">",
                BROKEN_MIN_LOG10_DIFFERENCE,
                "the symmetry breaks by itself",
                kind=BEYOND,
            ),
            Rule(
                "constant net vs one-unit net: largest relative gap in training loss per "
                "epoch (worst seed; exact: the same function and steps up to rounding)",
                loss_gap.to_numpy().max(),
                "<",
                LOSS_MATCH_TOLERANCE,
                f"{len(loss_gap)} seeds; {spread(loss_gap)}",
                kind=LECTURE,
                slide=SLIDE,
                tolerance=1e-5,
            ),
            Rule(
                "constant net vs one-unit net: largest gap in training accuracy per epoch "
                "(worst seed; exact as above, slack for argmax near-ties)",
                accuracy_gap.to_numpy().max(),
                "<=",
                ACCURACY_MATCH_TOLERANCE,
                f"{len(accuracy_gap)} seeds; {spread(accuracy_gap)}",
                kind=LECTURE,
                slide=SLIDE,
                tolerance=0.002,
            ),
        ),
    )


COLORS = {
    "constant": "tab:blue",
    "constant_dropout": "tab:orange",
    "random": "tab:green",
    "constant_hidden": "tab:red",
    "one_unit": "black",
}


def plot(out_dir):
    epochs = read_csv(out_dir / "epochs.csv")
    seeds = epochs["seed"].nunique()

    fig, axes = figure(
        f"{CLAIM_ID}: largest difference between two hidden units, after every epoch",
        ncols=2,
        width=6.6,
        height=4.6,
    )
    for ax, column, what in zip(
        axes,
        ("unit_difference", "incoming_difference"),
        ("all parameters of a unit", "incoming weights and bias only"),
        strict=True,
    ):
        for case in SEVERAL_UNITS:
            mine = epochs[epochs["case"] == case]
            zeros = int((mine[column] == 0).sum())
            seed_band(
                ax,
                mine.assign(**{column: mine[column].clip(lower=EXACT_ZERO_DRAWN_AT)}),
                "epoch",
                column,
                label=CASES[case] + (f" (exactly 0 in {zeros}/{len(mine)} rows)" if zeros else ""),
                color=COLORS[case],
                marker="o",
                ms=4,
            )
        ax.axhline(
            SYMMETRY_TOLERANCE,
            color="tab:blue",
            ls="--",
            lw=1,
            label="lecture rule: constant init stays below 1e-6",
        )
        ax.axhline(
            10**BROKEN_MIN_LOG10_DIFFERENCE, color="grey", ls=":", lw=1, label="1e-3: clearly apart"
        )
        ax.set_yscale("log")
        ax.set_ylim(EXACT_ZERO_DRAWN_AT / 10, 30)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(
            title=what,
            xlabel="epoch (0 = at initialization)",
            ylabel=f"max |difference| between units\n(exact 0 drawn at {EXACT_ZERO_DRAWN_AT:g})",
        )
    seed_legend(axes[1], seeds, loc="upper left", bbox_to_anchor=(1.02, 1))
    save_figure(fig, out_dir / "unit_difference.png")

    fig, (loss_ax, accuracy_ax) = figure(
        f"{CLAIM_ID}: identical units train as one unit; dropout breaks the tie",
        ncols=2,
        width=6.6,
        height=4.6,
    )
    for case in CASES:
        mine = epochs[epochs["case"] == case]
        style = {"ls": "--", "lw": 1.5} if case == "one_unit" else {}
        seed_band(
            loss_ax,
            mine.dropna(subset=["loss"]),
            "epoch",
            "loss",
            CASES[case],
            COLORS[case],
            **style,
        )
        seed_band(accuracy_ax, mine, "epoch", "train_accuracy", CASES[case], COLORS[case], **style)
    constant_end = final(epochs, "constant", "train_accuracy").mean()
    accuracy_ax.axhline(
        constant_end + DROPOUT_MIN_GAIN,
        color=COLORS["constant_dropout"],
        ls=":",
        lw=1.2,
        label="lecture rule: dropout net ends above\nconstant net + 0.2",
    )
    loss_ax.set(xlabel="epoch", ylabel="training loss (mean over the epoch's batches)")
    loss_ax.xaxis.get_major_locator().set_params(integer=True)
    accuracy_ax.xaxis.get_major_locator().set_params(integer=True)
    accuracy_ax.set(
        xlabel="epoch (0 = at initialization)", ylabel="training accuracy (fraction)", ylim=(0, 1)
    )
    seed_legend(accuracy_ax, seeds, loc="upper left", bbox_to_anchor=(1.02, 1))
    save_figure(fig, out_dir / "one_unit_match.png")
