"""Claim: weight decay regularizes an overfit linear regression (results/weight-decay/).

(Longer than most claim modules: two experiments, the slide's one-step update under two
readings of lambda and the lambda sweep from two starts, with six rules and two figures.)

Slide "Norms and Weight Decay". A linear model with more weights than examples can fit its
training examples exactly and still predict new data badly. Adding (lambda / 2)||w||^2 to
the loss restricts the size of w: one minibatch SGD step becomes
w <- (1 - eta lambda) w - (eta / |B|) sum_B x (w^T x + b - y), the norm of the fitted w falls
as lambda grows, and at a lambda fit on validation data the model predicts new data better
than the unpenalized one.

Data, per seed (the lecture's textbook setting): 200 features x ~ N(0, I), 20 training
examples, y = 0.05 + 0.01 * sum(x) + noise (sd 0.01); 500 validation and 1,000 test
examples. True ||w|| = 0.141; w = 0 with the true bias has test loss 0.0201.

Model: the slide's f(x) = w^T x + b, a Keras Dense(1) on the 200 features, per lambda and
start. The loss of an example is the slide's 1/2 (w^T x + b - y)^2; `fit` averages it over
the batch and adds Keras' `regularizers.L2(lambda / 2)`, i.e. (lambda / 2) sum w^2. The
batch is the whole training set, so an epoch of `fit` is one full-batch step of plain SGD
(Keras' `optimizers.SGD`, eta = 0.05); 300 steps, after which every model has converged.
A seed's models are the heads of one Keras model on one input, their losses summed (each
head gets exactly its own gradient), so that one compiled call steps them all: one model
per lambda and start costs 20 times the calls (the notes give the seconds). Two starts:
- zero (the lecture arms): gradient descent from w = 0 stays in the span of the 20
  training inputs, so the lambda = 0 model is the smallest-norm interpolant of the 20
  examples, and its test loss comes from fitting them and nothing else;
- Glorot (`initializers.GlorotNormal`, one kernel for every lambda of a seed): it puts
  weight of norm about 1.3 into the 180 directions that 20 examples never constrain; at
  lambda = 0 it stays there and decay removes it, a finding about initialization noise,
  not about fitting the examples: `beyond`.
Reported losses are mean squared errors (no 1/2); the validation-chosen lambda of a seed
and start has the lowest validation loss, and the test set judges it. One step: from the
Glorot start, one full-batch Keras step of every Glorot head, beside the slide's update in
float64 (b = 0); the alternative reading, Keras' squared error without the 1/2 with
L2(lambda), is stepped the same way.

Rules (decided before the full run; 3-6 judge the 95% t-interval of the mean over seeds):
1. lecture: one Keras step equals the slide's update: largest |Keras - slide| relative to
   the update's largest |w|, worst seed, <= 1e-5 (exact: float32 against float64; it is
   about 1e-7, and may move by 1e-6 on another CPU).
2. check: the alternative reading misses the slide's update by >= 100 times that (best
   seed), so rule 1 can fail.
3. lecture: ||w|| falls monotonically with lambda (zero start): per seed, the largest
   ratio of ||w|| at a lambda to ||w|| at the next smaller one; mean < 1.
4. lecture: lambda = 0 overfits (zero start): train loss / test loss <= 0.01 (a ratio, not
   its log: a train loss of exactly 0 in float32 is a possible outcome).
5. lecture: decay lowers the test loss (zero start): log10(test loss at the
   validation-chosen lambda / test loss at lambda = 0) < 0.
6. beyond: from the Glorot start, the same log10 ratio <= -1: decay removes tenfold the
   test loss that initialization noise adds.

Seeds: design and pilots on development seeds 100-199; verdict seeds 0-11, fixed before the
full run; shifted seeds 1000-1011 run only after the design was frozen. In the earlier
design (Glorot start for every arm, tenfold threshold) the verdict seeds 0-9 had been run,
and a review of their numbers led to this design.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from repro.backend import keras, seed_everything
from repro.figures import figure, save_figure, seed_band
from repro.models import fit, predict
from repro.records import progress, read_csv, write_csv
from repro.rules import BEYOND, CHECK, LECTURE, Rule, Verdict, mean_interval, seed_agreement, spread

CLAIM_ID = "weight-decay"
SLIDE = "Norms and Weight Decay"
STATEMENT = (
    "With 200 features and 20 examples, linear regression trained from zero fits its "
    "examples far better than new data; the penalty (lambda/2)||w||^2 makes each SGD step "
    "w <- (1 - eta lambda) w - eta grad, shrinks ||w|| monotonically in lambda, and at a "
    "lambda chosen on validation data lowers the test loss below that of lambda = 0."
)


@dataclass(frozen=True)
class Config:
    features: int = 200
    train_examples: int = 20
    validation_examples: int = 500
    test_examples: int = 1000
    noise_sd: float = 0.01
    lambdas: tuple[float, ...] = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    learning_rate: float = 0.05
    steps: int = 300  # full-batch SGD steps, one per epoch of `fit`
    record_every: int = 10  # steps between points of the loss curves

    def __post_init__(self):
        if min(self.features, self.train_examples, self.validation_examples) < 1:
            raise ValueError("features and example counts must be positive")
        if self.test_examples < 1 or self.steps < 1 or self.record_every < 1:
            raise ValueError("test_examples, steps and record_every must be positive")
        if self.steps % self.record_every:
            raise ValueError("steps must be a multiple of record_every")
        if min(self.lambdas) < 0 or list(self.lambdas) != sorted(set(self.lambdas)):
            raise ValueError("lambdas must be non-negative, distinct and increasing")
        if len(self.lambdas) < 2 or self.lambdas[0] != 0:
            raise ValueError("the sweep must start at lambda = 0 and have a lambda > 0")
        if not 0 < self.learning_rate * max(self.lambdas) < 1:
            raise ValueError("need 0 < learning_rate * lambda < 1 so that decay shrinks w")
        if self.noise_sd < 0:
            raise ValueError("noise_sd must be non-negative")


PROFILES = {
    "quick": Config(lambdas=(0.0, 0.01, 0.1, 1.0, 10.0), steps=200, record_every=20),
    "full": Config(),
}
SEEDS = {"quick": (0, 1, 2), "full": tuple(range(12))}
TABLES = {  # csv name: its columns
    "one_step.csv": tuple(
        "seed setup lam keras_l2 learning_rate feature w_before w_keras_step w_rule_step".split()
    ),
    "sweep.csv": tuple(
        "seed start lam weight_norm train_loss validation_loss test_loss true_weight_norm "
        "test_loss_zero_weights".split()
    ),
    "curves.csv": ("seed", "start", "lam", "step", "train_loss", "test_loss"),
}
FIGURES = ("regularization_path.png", "loss_curves.png")

TRUE_WEIGHT, TRUE_BIAS = 0.01, 0.05  # y = TRUE_BIAS + TRUE_WEIGHT * sum(x) + noise
STARTS = ("zero", "glorot")  # the lecture arms start from zero; the Glorot arm is beyond
LECTURE_START = "zero"
STEP_TOLERANCE = 1e-5
STEP_ROUNDING = 1e-6  # how far a float32 rounding-level error may move on another CPU
WRONG_FACTOR_MARGIN = 100  # the other reading of lambda must miss by 100x the tolerance
OVERFIT_RATIO = 0.01  # train loss at most 1% of test loss at lambda = 0
LOWER_LOG10_RATIO = 0  # the validation-chosen lambda's test loss below lambda = 0's
GLOROT_LOG10_RATIO = -1  # beyond: a tenth of lambda = 0's test loss from the Glorot start


def make_data(rng, examples: int, config: Config):
    x = rng.normal(size=(examples, config.features))
    y = TRUE_BIAS + TRUE_WEIGHT * x.sum(axis=1) + rng.normal(0, config.noise_sd, examples)
    return x.astype("float32"), y.astype("float32")[:, None]


def squared_error(y, prediction):
    """The squared error of one example (no 1/2, as Keras' "mse"), summed over the heads."""
    return keras.ops.sum(keras.ops.square(prediction - y), axis=-1)


def half_squared_error(y, prediction):
    """The slide's loss of one example, 1/2 (w^T x + b - y)^2, summed over the heads."""
    return 0.5 * squared_error(y, prediction)


# How the lecture's lambda becomes Keras settings: (c of L2(c) per unit of lambda, the
# loss). The lecture's: (lambda / 2)||w||^2 on 1/2 (w^T x + b - y)^2. The alternative
# reading: L2(lambda) on the squared error without the 1/2, as Keras' "mse" computes it.
SETUPS = {"lecture": 0.5, "plain_mse_l2_lambda": 1.0}
LOSSES = {"lecture": half_squared_error, "plain_mse_l2_lambda": squared_error}


def decay_model(config: Config, starts=STARTS, setup: str = "lecture"):
    """The slide's f(x) = w^T x + b (a Dense(1)) for every (start, lambda), side by side on
    one input of `features` numbers, compiled with plain SGD."""
    inputs = keras.Input((config.features,))
    heads = [
        keras.layers.Dense(
            1,
            kernel_regularizer=keras.regularizers.L2(SETUPS[setup] * lam),
            name=f"{start}_start_lambda_{i}",
        )(inputs)
        for start in starts
        for i, lam in enumerate(config.lambdas)
    ]
    model = keras.Model(inputs, keras.layers.Concatenate()(heads))
    model.compile(optimizer=keras.optimizers.SGD(config.learning_rate), loss=LOSSES[setup])
    return model


def dense_heads(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def start(model, seed: int):
    """Every head at its start for this seed, with a fresh optimizer: w = 0, or the seed's
    GlorotNormal kernel (the same for every lambda, so that the lambdas are compared from
    one start); b = 0. Nothing else in training is random: every batch is the whole
    training set. The model is built and compiled once and started again per seed."""
    initializers = {
        "zero": keras.initializers.Zeros(),
        "glorot": keras.initializers.GlorotNormal(seed=seed),
    }
    for layer in dense_heads(model):
        layer.kernel.assign(initializers[layer.name.split("_")[0]](layer.kernel.shape))
        layer.bias.assign(keras.ops.zeros(layer.bias.shape))
    model.optimizer.iterations.assign(0)
    return model


def kernels(model) -> np.ndarray:
    """Every head's weights as the columns of a (features x heads) float64 array."""
    return np.hstack([np.asarray(head.kernel, dtype=np.float64) for head in dense_heads(model)])


def losses(model, *sets) -> list[np.ndarray]:
    """Each head's mean squared error on each (x, y) of `sets`."""
    return [((predict(model, x) - y) ** 2).mean(axis=0) for x, y in sets]


def one_step(model, setup: str, x, y, config: Config, seed: int) -> pd.DataFrame:
    """One full-batch Keras step of every Glorot head, beside the slide's update in float64."""
    lams = np.asarray(config.lambdas)
    glorot = slice(-len(lams), None)  # the Glorot heads are the model's last ones
    before = kernels(model)[:, glorot]
    fit(model, x, y, epochs=1, batch_size=len(x), seed=seed)
    after = kernels(model)[:, glorot]
    x64, y64, eta = x.astype(np.float64), y.astype(np.float64), config.learning_rate
    residual = x64 @ before - y64  # every head's residuals; the bias starts at 0
    rule = (1 - eta * lams) * before - (eta / len(x)) * (x64.T @ residual)
    features = config.features
    return pd.DataFrame(
        {
            "seed": seed,
            "setup": setup,
            "lam": np.repeat(lams, features),
            "keras_l2": np.repeat(SETUPS[setup] * lams, features),
            "learning_rate": eta,
            "feature": np.tile(np.arange(features), len(lams)),
            "w_before": before.T.ravel(),
            "w_keras_step": after.T.ravel(),
            "w_rule_step": rule.T.ravel(),
        }
    )


def sweep(model, train, validation, test, config: Config, seed: int):
    """`steps` full-batch steps of every head; the final table, and the loss curves (a
    point every `record_every` steps: `fit` takes that many in one compiled call, then
    its `evaluate` records the point)."""
    heads = pd.DataFrame(  # the (start, lambda) of each output column
        [(s, lam) for s in STARTS for lam in config.lambdas], columns=["start", "lam"]
    )
    points = []

    def record(model):
        step = int(model.optimizer.iterations)
        train_loss, _, test_loss = losses(model, train, validation, test)
        points.append(heads.assign(step=step, train_loss=train_loss, test_loss=test_loss))
        return {}

    record(model)
    x, y = train
    fit(
        model,
        x,
        y,
        epochs=config.steps,
        batch_size=len(x),
        seed=seed,
        evaluate=record,
        epochs_per_call=config.record_every,  # a point of the curves after each call
    )
    train_loss, validation_loss, test_loss = losses(model, train, validation, test)
    final = heads.assign(
        seed=seed,
        weight_norm=np.linalg.norm(kernels(model), axis=0),
        train_loss=train_loss,
        validation_loss=validation_loss,
        test_loss=test_loss,
        # References: the true weights' norm, and the test loss of w = 0 with the true bias.
        true_weight_norm=TRUE_WEIGHT * np.sqrt(config.features),
        test_loss_zero_weights=float(((test[1] - TRUE_BIAS) ** 2).mean()),
    )
    return final, pd.concat(points).assign(seed=seed)


def run(config: Config, seeds, out_dir):
    seed_everything(seeds[0])
    model = decay_model(config)
    alternative = decay_model(config, ("glorot",), "plain_mse_l2_lambda")
    steps, finals, curves = [], [], []
    for seed in progress(seeds, CLAIM_ID):
        rng = np.random.default_rng(seed)
        train = make_data(rng, config.train_examples, config)
        validation = make_data(rng, config.validation_examples, config)
        test = make_data(rng, config.test_examples, config)
        steps.append(one_step(start(model, seed), "lecture", *train, config, seed))
        steps.append(
            one_step(start(alternative, seed), "plain_mse_l2_lambda", *train, config, seed)
        )
        final, curve = sweep(start(model, seed), train, validation, test, config, seed)
        finals.append(final)
        curves.append(curve)
    write_csv(pd.concat(steps, ignore_index=True), out_dir / "one_step.csv")
    for name, frames in (("sweep.csv", finals), ("curves.csv", curves)):
        write_csv(pd.concat(frames, ignore_index=True)[list(TABLES[name])], out_dir / name)


# ------------------------------------------------------------------------------ verdict


def per_seed(rows: pd.DataFrame, column: str) -> np.ndarray:
    """`column` as a (seeds x rows of a seed) array, `rows` sorted by seed: every seed has
    the same rows. Rows are found by position (lambda = 0 is each seed's first), not by
    comparing float keys, so that a last-bit change of the stored lambdas cannot lose them.
    """
    return rows[column].to_numpy().reshape(rows["seed"].nunique(), -1)


def step_error(steps: pd.DataFrame, setup: str) -> np.ndarray:
    """Per seed, largest |Keras step - slide's update| relative to the update's largest |w|
    (NumPy's max, so that a NaN weight gives a NaN error)."""
    rows = steps[steps["setup"] == setup].sort_values(["seed", "lam", "feature"])
    keras_step, rule_step = per_seed(rows, "w_keras_step"), per_seed(rows, "w_rule_step")
    return np.abs(keras_step - rule_step).max(axis=1) / np.abs(rule_step).max(axis=1)


def at_zero_and_chosen(table: pd.DataFrame, column: str, start: str):
    """Per seed, `column` at lambda = 0 and at the validation-chosen lambda, and that lambda."""
    rows = table[table["start"] == start].sort_values(["seed", "lam"])
    values, lams = per_seed(rows, column), per_seed(rows, "lam")
    chosen = (np.arange(len(values)), per_seed(rows, "validation_loss").argmin(axis=1))
    return values[:, 0], values[chosen], lams[chosen]


def log10_test_ratio(table: pd.DataFrame, start: str):
    """Per seed, log10(test loss at the validation-chosen lambda / at lambda = 0); lambdas."""
    at_zero, chosen, lams = at_zero_and_chosen(table, "test_loss", start)
    return np.log10(chosen / at_zero), lams


def norm_ratio(table: pd.DataFrame, start: str) -> np.ndarray:
    """Per seed, the largest ||w(next lambda)|| / ||w(lambda)||: below 1 means decreasing."""
    norms = per_seed(table[table["start"] == start].sort_values(["seed", "lam"]), "weight_norm")
    return (norms[:, 1:] / norms[:, :-1]).max(axis=1)


def chosen_lambdas(lams) -> str:
    values, counts = np.unique(lams, return_counts=True)
    return ", ".join(f"{v:g} ({c}x)" for v, c in zip(values, counts, strict=True))


def verdict(out_dir) -> Verdict:
    steps = read_csv(out_dir / "one_step.csv")
    table = read_csv(out_dir / "sweep.csv")

    keras_error = step_error(steps, "lecture")
    alternative_error = step_error(steps, "plain_mse_l2_lambda")
    train_at_zero, _, _ = at_zero_and_chosen(table, "train_loss", LECTURE_START)
    test_at_zero, test_at_chosen, _ = at_zero_and_chosen(table, "test_loss", LECTURE_START)
    overfit = train_at_zero / test_at_zero
    lower, lams = log10_test_ratio(table, LECTURE_START)
    glorot, glorot_lams = log10_test_ratio(table, "glorot")
    glorot_at_zero = at_zero_and_chosen(table, "test_loss", "glorot")[0]
    zero_weights = table["test_loss_zero_weights"].to_numpy()
    lecture = {"kind": LECTURE, "slide": SLIDE}
    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "one Keras SGD step (half squared error + L2(lambda/2)) vs the slide's "
                "w <- (1 - eta lambda) w - (eta/|B|) sum x r: relative error, worst seed",
                keras_error.max(),
                "<=",
                STEP_TOLERANCE,
                f"exact: float32 step against float64 formula; "
                f"{seed_agreement(keras_error <= STEP_TOLERANCE)}; {spread(keras_error)}",
                **lecture,
                tolerance=STEP_ROUNDING,
            ),
            Rule(
                "the alternative (squared error without 1/2 + L2(lambda)) vs the same "
                "update: relative error, best seed",
                alternative_error.min(),
                ">=",
                WRONG_FACTOR_MARGIN * STEP_TOLERANCE,
                f"exact; {spread(alternative_error)}",
                kind=CHECK,
                tolerance=STEP_ROUNDING,
            ),
            Rule.over_seeds(
                "zero start: largest ratio of ||w|| at a lambda to ||w|| at the next "
                "smaller lambda",
                norm_ratio(table, LECTURE_START),
                "<",
                1.0,
                **lecture,
            ),
            Rule.over_seeds(
                "zero start, lambda = 0 overfits: train loss / test loss",
                overfit,
                "<=",
                OVERFIT_RATIO,
                f"test loss at lambda = 0 {spread(test_at_zero)}; "
                f"w = 0 with the true bias: {spread(zero_weights)}",
                **lecture,
            ),
            Rule.over_seeds(
                "zero start: log10(test loss at the validation-chosen lambda / test loss at "
                "lambda = 0)",
                lower,
                "<",
                LOWER_LOG10_RATIO,
                f"chosen lambda {chosen_lambdas(lams)}; test loss there {spread(test_at_chosen)}",
                **lecture,
            ),
            Rule.over_seeds(
                "Glorot start: log10(test loss at the validation-chosen lambda / test loss at "
                "lambda = 0)",
                glorot,
                "<=",
                GLOROT_LOG10_RATIO,
                f"chosen lambda {chosen_lambdas(glorot_lams)}; test loss at lambda = 0 "
                f"{spread(glorot_at_zero)}",
                kind=BEYOND,
            ),
        ),
    )


# --------------------------------------------------------------------------------- plot

COLORS = {"zero": "tab:blue", "glorot": "tab:purple"}
START_LABELS = {"zero": "start w = 0 (lecture)", "glorot": "Glorot start (beyond)"}
LAMBDA_LABEL = "lambda (penalty (lambda/2) ||w||^2)"
THRESHOLD = {"color": "tab:red", "lw": 1.5}
LOSS_FLOOR = 1e-8  # the loss curves' axis ends here; the train loss at lambda = 0 falls lower


def relative_test_loss(ax, table: pd.DataFrame, start: str):
    """Each seed's test loss against lambda, divided by its own test loss at lambda = 0
    (paired: the seeds' different test sets cancel), and each seed's chosen lambda."""
    rows = table[table["start"] == start].sort_values(["seed", "lam"])
    at_zero = rows.groupby("seed")["test_loss"].transform("first")
    rows = rows.assign(
        relative=rows["test_loss"] / at_zero, zero_weights=rows["test_loss_zero_weights"] / at_zero
    )
    seed_band(ax, rows[rows["lam"] > 0], "lam", "relative", color=COLORS[start])
    ax.axhline(1, color=COLORS[start], ls=":", lw=1.5)
    ratio, lams = log10_test_ratio(table, start)
    ax.scatter(lams[lams > 0], 10 ** ratio[lams > 0], color="k", s=14, zorder=3)
    ax.axhline(rows["zero_weights"].mean(), color="k", ls="--", lw=1)
    ax.set(
        xscale="log",
        xlabel=LAMBDA_LABEL,
        ylabel="test loss / the seed's test loss at lambda = 0",
        title=f"test loss, {START_LABELS[start]}",
    )


def plot(out_dir):
    table = read_csv(out_dir / "sweep.csv")
    curves = read_csv(out_dir / "curves.csv")
    n_seeds = table["seed"].nunique()
    band = f"lines: mean; bands and bar: 95% t-interval over {n_seeds} seeds"

    fig, (ax_norm, ax_zero, ax_glorot, ax_rule) = figure(
        f"weight-decay: 200 features, 20 training examples ({n_seeds} seeds)",
        ncols=2,
        nrows=2,
        width=6.0,
        height=4.2,
    )
    for start in STARTS:
        rows = table[table["start"] == start]
        color = COLORS[start]
        seed_band(ax_norm, rows[rows["lam"] > 0], "lam", "weight_norm", color=color)
        ax_norm.axhline(rows.loc[rows["lam"] == 0, "weight_norm"].mean(), color=color, ls=":")
    true_norm = table["true_weight_norm"].iloc[0]
    ax_norm.axhline(true_norm, color="k", ls="-.", lw=1)
    ax_norm.text(1e-3, true_norm * 1.15, f"true ||w|| = {true_norm:.3g}", fontsize=10)
    ax_norm.set(xscale="log", yscale="log", xlabel=LAMBDA_LABEL, ylabel="||w|| after training")
    ax_norm.set_title("size of the fitted weights")

    relative_test_loss(ax_zero, table, "zero")
    relative_test_loss(ax_glorot, table, "glorot")
    ax_glorot.axhline(10**GLOROT_LOG10_RATIO, ls="--", **THRESHOLD)
    ax_glorot.text(1e-3, 10**GLOROT_LOG10_RATIO * 1.15, "beyond rule threshold", fontsize=10)
    ax_glorot.set_yscale("log")

    ratio, _ = log10_test_ratio(table, LECTURE_START)
    mean, low, high = mean_interval(ratio)
    ax_rule.scatter(np.zeros(len(ratio)), ratio, color=COLORS["zero"], s=18, alpha=0.7)
    ax_rule.errorbar(0.3, mean, yerr=[[mean - low], [high - mean]], color="k", capsize=6, fmt="o")
    ax_rule.axhline(LOWER_LOG10_RATIO, **THRESHOLD)
    ax_rule.text(0.45, LOWER_LOG10_RATIO, "lecture rule threshold", va="bottom", fontsize=10)
    ax_rule.set_xticks([0, 0.3], ["each seed", "mean"])
    ax_rule.set(
        xlim=(-0.3, 0.9),
        ylabel="log10(test loss at chosen lambda\n/ test loss at lambda = 0)",
        title="the lecture rule: start w = 0",
    )
    handles = [
        Line2D([], [], color=COLORS["zero"], lw=2, label=START_LABELS["zero"]),
        Line2D([], [], color=COLORS["glorot"], lw=2, label=START_LABELS["glorot"]),
        Line2D([], [], color="gray", ls=":", lw=1.5, label="dotted, same colour: lambda = 0"),
        Line2D([], [], color="k", ls="--", lw=1, label="test loss of w = 0"),
        Line2D([], [], color="k", ls="", marker="o", ms=4, label="validation-chosen lambda"),
        Line2D([], [], color="tab:red", lw=1.5, label="rule thresholds"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, title=band)
    save_figure(fig, out_dir / "regularization_path.png")

    fig, axes = figure(
        f"weight-decay: loss during training, lambda = 0 against the most often chosen lambda "
        f"({n_seeds} seeds)",
        ncols=2,
        width=5.8,
        height=4.3,
    )
    for ax, start in zip(axes, STARTS, strict=True):
        _, lams = log10_test_ratio(table, start)
        values, counts = np.unique(lams[lams > 0], return_counts=True)
        good = values[counts.argmax()] if len(values) else table["lam"].max()
        rows = curves[curves["start"] == start]
        for lam, style in ((0.0, ":"), (good, "-")):
            subset = rows[np.isclose(rows["lam"], lam)]
            for column, color, name in (
                ("train_loss", "tab:green", "train"),
                ("test_loss", "tab:orange", "test"),
            ):
                line = f"{name}, lambda = {lam:g}"
                seed_band(ax, subset, "step", column, label=line, color=color, ls=style)
        ax.set(
            yscale="log",
            ylim=(LOSS_FLOOR, None),
            xlabel="full-batch SGD step (one pass over the 20 examples)",
            ylabel="mean squared error",
            title=START_LABELS[start],
        )
        ax.legend(loc="lower right", title=band.replace(" and bar", ""))
    axes[0].text(
        30, 1.5 * LOSS_FLOOR, "train loss at lambda = 0\nfalls below the axis", fontsize=10
    )
    save_figure(fig, out_dir / "loss_curves.png")
