"""Claim: weight decay shrinks w and rescues an overfit regression (results/weight-decay/).

Slide "Weight Decay". The classic high-dimensional setting: 200 features, 20 training
examples, y = 0.05 + 0.01 * sum(x) + noise (sd 0.01), x ~ N(0, I). Without a penalty a
linear model interpolates the 20 points (train loss ~ 0) and keeps whatever its
initialization put into the 180 directions the data never sees, so the test loss stays
large. An L2 penalty shrinks those directions away.

Which lambda: the lecture writes the penalty as (lambda / 2) ||w||^2, whose gradient is
lambda w, so one SGD step is w <- (1 - eta lambda) w - eta grad. Keras'
`keras.regularizers.L2(c)` adds c * sum(w^2), whose gradient is 2 c w. Every lambda in this
module is the lecture's; the Keras regularizer is built as L2(lambda / 2). The loss is
Keras' "mse" (mean of squared errors, no 1/2), so grad = (2 / n) X^T (X w + b - y).

Experiment, per seed:
1. Exactness: one full-batch `train_on_batch` of Dense(1) heads with L2(lambda / 2) and
   plain SGD, against the rule computed in float64 from the same starting weights, for a few
   lambdas. The CSV holds both weight vectors, and the rule read with the other factor
   (lambda = c), which must be clearly wrong.
2. Sweep: one Keras model with one Dense(1) head per lambda (all heads start from the same
   seeded GlorotNormal weights; the summed losses give each head its own gradient), trained
   by full-batch SGD. An "epoch" is one pass over the 20 examples, i.e. one step. Train and
   test loss are recorded along the way, ||w|| and losses at the end.
The "good" lambda of a seed is the one with the lowest loss on a separate validation set
(not the test set), so the test-loss rule is not tuned on the numbers it judges.

Thresholds: the step must match to 1e-5 relative (float32 arithmetic gives ~1e-7; the
other factor is off by eta * lambda / 2 * |w|, ~5e-4 to 5e-2 relative here). "Far below"
is read as at least ten times lower test loss than lambda = 0, in every seed. Monotone: at
every seed ||w|| strictly decreases from each lambda of the grid to the next.

What makes lambda = 0 fail here is the initialization: gradient descent only moves w inside
the 20-dimensional span of the training inputs, so the random initial weights in the other
180 directions survive untouched and cost about ||w_init||^2 ~ 1.8 of test loss. Decay
multiplies them by (1 - eta lambda) every step. With 20 examples for 200 weights the data
cannot pin down w itself, so the best lambdas are large ones whose test loss approaches that
of w = 0 (about 200 * 0.01^2 = 0.02, drawn in the figure).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

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
from repro.models import repeated_batch

CLAIM_ID = "weight-decay"
SLIDE = "Weight Decay"
STATEMENT = (
    "With 200 features and 20 examples, linear regression overfits without decay; an L2 "
    "penalty (lambda/2)||w||^2 makes each SGD step w <- (1 - eta lambda) w - eta grad, shrinks "
    "||w|| monotonically in lambda and lowers the test loss far below lambda = 0."
)


@dataclass(frozen=True)
class Config:
    features: int = 200
    train_examples: int = 20
    validation_examples: int = 500
    test_examples: int = 1000
    noise_sd: float = 0.01
    lambdas: tuple[float, ...] = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
    step_lambdas: tuple[float, ...] = (0.1, 1.0, 10.0)  # lambdas of the one-step check
    learning_rate: float = 0.01
    epochs: int = 300
    record_every: int = 5  # epochs between points of the loss curves

    def __post_init__(self):
        if min(self.features, self.train_examples, self.validation_examples) < 1:
            raise ValueError("features and example counts must be positive")
        if self.test_examples < 1 or self.epochs < 1 or self.record_every < 1:
            raise ValueError("test_examples, epochs and record_every must be positive")
        if min(self.lambdas + self.step_lambdas) < 0 or list(self.lambdas) != sorted(
            set(self.lambdas)
        ):
            raise ValueError("lambdas must be non-negative, distinct and increasing")
        if self.lambdas[0] != 0:
            raise ValueError("the sweep must start at lambda = 0, the unregularized baseline")
        if not 0 < self.learning_rate * max(self.lambdas + self.step_lambdas) < 1:
            raise ValueError("need 0 < learning_rate * lambda < 1 so that decay shrinks w")
        if self.noise_sd < 0:
            raise ValueError("noise_sd must be non-negative")


PROFILES = {
    "quick": Config(lambdas=(0.0, 0.1, 1.0, 10.0), step_lambdas=(1.0,), epochs=100),
    "full": Config(),
}
SEEDS = {"quick": (0, 1), "full": tuple(range(10))}
TABLES = {
    "one_step.csv": (
        "seed",
        "lam",
        "keras_l2",
        "learning_rate",
        "feature",
        "w_before",
        "w_keras_step",
        "w_rule_step",
        "w_rule_step_if_lambda_were_c",
    ),
    "sweep.csv": (
        "seed",
        "lam",
        "weight_norm",
        "train_loss",
        "validation_loss",
        "test_loss",
        "true_weight_norm",
        "test_loss_zero_weights",
    ),
    "curves.csv": ("seed", "lam", "epoch", "train_loss", "test_loss"),
}
FIGURES = ("regularization_path.png", "loss_curves.png")

TRUE_WEIGHT, TRUE_BIAS = 0.01, 0.05  # y = TRUE_BIAS + TRUE_WEIGHT * sum(x) + noise
STEP_TOLERANCE = 1e-5
WRONG_FACTOR_MARGIN = 100  # the other reading of lambda must miss by 100x the tolerance
TEST_LOSS_RATIO = 0.1


def make_data(rng, examples: int, config: Config):
    x = rng.normal(size=(examples, config.features))
    y = TRUE_BIAS + TRUE_WEIGHT * x.sum(axis=1) + rng.normal(0, config.noise_sd, examples)
    return x.astype("float32"), y.astype("float32")[:, None]


def decay_model(lambdas, config: Config):
    """One Dense(1) head with L2(lambda / 2) per lambda, sharing only the input.

    The summed losses give each head exactly the gradient it would get alone, so one model
    trains every lambda at once. The model is built once and reset for every seed, because
    tracing its training step costs far more than the training itself.
    """
    inputs = keras.Input((config.features,))
    heads = [
        keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L2(lam / 2), name=f"lambda_{i}")
        for i, lam in enumerate(lambdas)
    ]
    model = keras.Model(inputs, [head(inputs) for head in heads])
    model.compile(
        optimizer=keras.optimizers.SGD(config.learning_rate),
        loss=["mse"] * len(heads),
        # One compiled call per point of the loss curves, which are recorded between calls.
        steps_per_execution=config.record_every,
    )
    return model, heads


def reset(heads, seed: int) -> None:
    """Every head starts from the same seeded GlorotNormal kernel and a zero bias."""
    kernel = keras.initializers.GlorotNormal(seed=seed)(heads[0].kernel.shape)
    for head in heads:
        head.kernel.assign(kernel)
        head.bias.assign(np.zeros(head.bias.shape, dtype="float32"))


def one_step(model, heads, x, y, config: Config, seed: int) -> pd.DataFrame:
    """One Keras SGD step with L2(lambda / 2) beside the update rule in float64."""
    reset(heads, seed)
    before = [[np.asarray(v, dtype=np.float64) for v in head.get_weights()] for head in heads]
    model.train_on_batch(x, [y] * len(heads))
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    eta = config.learning_rate
    frames = []
    for lam, head, (kernel, bias) in zip(config.step_lambdas, heads, before, strict=True):
        grad = 2 / len(x) * x64.T @ (x64 @ kernel + bias - y64)
        frames.append(
            pd.DataFrame(
                {
                    "seed": seed,
                    "lam": lam,
                    "keras_l2": lam / 2,
                    "learning_rate": eta,
                    "feature": np.arange(config.features),
                    "w_before": kernel[:, 0],
                    "w_keras_step": np.asarray(head.kernel)[:, 0],
                    "w_rule_step": ((1 - eta * lam) * kernel - eta * grad)[:, 0],
                    "w_rule_step_if_lambda_were_c": ((1 - eta * lam / 2) * kernel - eta * grad)[
                        :, 0
                    ],
                }
            )
        )
    return pd.concat(frames)


def mse(model_heads, x, y) -> np.ndarray:
    """Data loss (no penalty) of every head, evaluated in NumPy from the current weights."""
    kernels = np.concatenate([np.asarray(h.kernel) for h in model_heads], axis=1)
    biases = np.concatenate([np.asarray(h.bias) for h in model_heads])
    return ((x @ kernels + biases - y) ** 2).mean(axis=0)


class LossCurves(keras.callbacks.Callback):
    """Train and test loss of every head every few full-batch steps (= epochs)."""

    def __init__(self, heads, lambdas, train, test, every: int, seed: int):
        super().__init__()
        self.heads, self.lambdas, self.train, self.test = heads, lambdas, train, test
        self.every, self.seed, self.rows = every, seed, []

    def record(self, epoch: int):
        train_loss, test_loss = mse(self.heads, *self.train), mse(self.heads, *self.test)
        for lam, tr, te in zip(self.lambdas, train_loss, test_loss, strict=True):
            self.rows.append(
                {"seed": self.seed, "lam": lam, "epoch": epoch, "train_loss": tr, "test_loss": te}
            )

    def on_train_begin(self, logs=None):
        self.record(0)

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every == 0:
            self.record(batch + 1)


def sweep(model, heads, x, y, validation, test, config: Config, seed: int):
    reset(heads, seed)
    curves = LossCurves(heads, config.lambdas, (x, y), test, config.record_every, seed)
    # The training set repeated once per epoch, one full batch each: every step of this
    # single Keras epoch is one epoch of full-batch gradient descent.
    model.fit(repeated_batch(x, [y] * len(heads), config.epochs), verbose=0, callbacks=[curves])
    final = pd.DataFrame(
        {
            "seed": seed,
            "lam": config.lambdas,
            "weight_norm": [float(np.linalg.norm(h.kernel)) for h in heads],
            "train_loss": mse(heads, x, y),
            "validation_loss": mse(heads, *validation),
            "test_loss": mse(heads, *test),
            # References: the true weights' norm, and the test loss of w = 0 with the true bias.
            "true_weight_norm": TRUE_WEIGHT * np.sqrt(config.features),
            "test_loss_zero_weights": float(((test[1] - TRUE_BIAS) ** 2).mean()),
        }
    )
    return final, pd.DataFrame(curves.rows)


def run(config: Config, seeds, out_dir):
    steps, finals, curves = [], [], []
    step_model = decay_model(config.step_lambdas, config)
    sweep_model = decay_model(config.lambdas, config)
    for seed in progress(seeds, CLAIM_ID):
        seed_everything(seed)
        rng = np.random.default_rng(seed)
        x, y = make_data(rng, config.train_examples, config)
        validation = make_data(rng, config.validation_examples, config)
        test = make_data(rng, config.test_examples, config)
        steps.append(one_step(*step_model, x, y, config, seed))
        final, curve = sweep(*sweep_model, x, y, validation, test, config, seed)
        finals.append(final)
        curves.append(curve)
    write_csv(pd.concat(steps, ignore_index=True), out_dir / "one_step.csv")
    write_csv(pd.concat(finals, ignore_index=True), out_dir / "sweep.csv")
    write_csv(pd.concat(curves, ignore_index=True), out_dir / "curves.csv")


def step_error(steps: pd.DataFrame, rule_column: str) -> pd.Series:
    """Per seed, largest |Keras step - rule| relative to the largest weight of the rule."""

    def error(group):
        return (group["w_keras_step"] - group[rule_column]).abs().max() / group[
            rule_column
        ].abs().max()

    return steps.groupby("seed").apply(error, include_groups=False)


def good_lambdas(sweep_table: pd.DataFrame) -> pd.Series:
    """Per seed, the lambda with the lowest validation loss."""
    best = sweep_table.loc[sweep_table.groupby("seed")["validation_loss"].idxmin()]
    return best.set_index("seed")["lam"]


def verdict(out_dir) -> Verdict:
    steps = read_csv(out_dir / "one_step.csv")
    table = read_csv(out_dir / "sweep.csv").sort_values(["seed", "lam"])

    rule_error = step_error(steps, "w_rule_step")
    wrong_error = step_error(steps, "w_rule_step_if_lambda_were_c")

    # Largest ratio ||w(next lambda)|| / ||w(lambda)||: below 1 means strictly decreasing.
    norm_ratio = table.groupby("seed")["weight_norm"].apply(
        lambda norms: (norms.to_numpy()[1:] / norms.to_numpy()[:-1]).max()
    )

    good = good_lambdas(table)
    by_seed = table.set_index(["seed", "lam"])
    test_at_zero = by_seed["test_loss"].xs(0.0, level="lam")
    train_at_zero = by_seed["train_loss"].xs(0.0, level="lam")
    test_at_good = pd.Series(
        {seed: by_seed.loc[(seed, lam), "test_loss"] for seed, lam in good.items()}
    )
    test_ratio = test_at_good / test_at_zero
    chosen = ", ".join(f"{lam:g}" for lam in sorted(good.unique()))

    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "one Keras SGD step with L2(lambda/2) vs (1 - eta lambda) w - eta grad: "
                "relative error (worst seed)",
                rule_error.max(),
                "<=",
                STEP_TOLERANCE,
                f"{seed_agreement(rule_error <= STEP_TOLERANCE)}; {spread(rule_error)}",
            ),
            Rule(
                "same step vs the rule read with lambda = c (1 - eta c): relative error "
                "(best seed)",
                wrong_error.min(),
                ">=",
                WRONG_FACTOR_MARGIN * STEP_TOLERANCE,
                f"{seed_agreement(wrong_error >= WRONG_FACTOR_MARGIN * STEP_TOLERANCE)}; "
                f"{spread(wrong_error)}",
            ),
            Rule(
                "largest ratio of ||w|| at the next larger lambda to ||w|| (worst seed)",
                norm_ratio.max(),
                "<",
                1.0,
                f"{seed_agreement(norm_ratio < 1)} strictly decreasing; {spread(norm_ratio)}",
            ),
            Rule(
                "lambda = 0 overfits: train loss / test loss (worst seed)",
                (train_at_zero / test_at_zero).max(),
                "<=",
                0.01,
                f"{seed_agreement(train_at_zero / test_at_zero <= 0.01)}; "
                f"test loss {spread(test_at_zero)}",
            ),
            Rule(
                "test loss at the validation-chosen lambda / test loss at lambda = 0 (worst seed)",
                test_ratio.max(),
                "<=",
                TEST_LOSS_RATIO,
                f"{seed_agreement(test_ratio <= TEST_LOSS_RATIO)}; {spread(test_ratio)}; "
                f"chosen lambda {chosen}",
            ),
        ),
    )


def plot(out_dir):
    table = read_csv(out_dir / "sweep.csv")
    curves = read_csv(out_dir / "curves.csv")
    n_seeds = table["seed"].nunique()
    positive = table[table["lam"] > 0]
    at_zero = table[table["lam"] == 0]

    fig, (ax_norm, ax_loss) = figure(
        f"weight-decay: 200 features, 20 examples ({n_seeds} seeds, mean and min-max)",
        ncols=2,
        height=4.0,
    )
    seed_band(ax_norm, positive, "lam", "weight_norm", label="||w|| after training")
    ax_norm.axhline(
        at_zero["weight_norm"].mean(), color="tab:blue", ls=":", label="lambda = 0 (no decay)"
    )
    true_norm = table["true_weight_norm"].iloc[0]
    ax_norm.axhline(true_norm, color="k", ls="--", lw=1, label=f"true ||w|| = {true_norm:.3g}")
    ax_norm.set(xscale="log", xlabel="lambda (penalty lambda/2 ||w||^2)", ylabel="||w||")
    ax_norm.legend(fontsize=8)

    for column, color, label in (
        ("train_loss", "tab:blue", "train"),
        ("test_loss", "tab:orange", "test"),
    ):
        seed_band(ax_loss, positive, "lam", column, label=label, color=color)
        ax_loss.axhline(at_zero[column].mean(), color=color, ls=":", label=f"{label}, lambda = 0")
    ax_loss.axhline(
        table["test_loss_zero_weights"].mean(),
        color="k",
        ls="--",
        lw=1,
        label="test loss of w = 0 (bias only)",
    )
    ax_loss.set(
        xscale="log", yscale="log", xlabel="lambda", ylabel="mean squared error after training"
    )
    ax_loss.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1, 0.1))
    save_figure(fig, out_dir / "regularization_path.png")

    good = good_lambdas(table).mode().max()  # the lambda chosen by validation most often
    fig, (ax,) = figure(
        f"weight-decay: loss curves, lambda = 0 vs lambda = {good:g} ({n_seeds} seeds)",
        width=6.4,
        height=4.2,
    )
    for lam, style in ((0.0, ":"), (good, "-")):
        subset = curves[curves["lam"] == lam]
        for column, color, label in (
            ("train_loss", "tab:blue", "train"),
            ("test_loss", "tab:orange", "test"),
        ):
            line = seed_band(
                ax, subset, "epoch", column, label=f"{label}, lambda = {lam:g}", color=color
            )
            line.set_linestyle(style)
    ax.set(yscale="log", xlabel="epoch (one full-batch SGD step)", ylabel="mean squared error")
    ax.legend(fontsize=8)
    save_figure(fig, out_dir / "loss_curves.png")
