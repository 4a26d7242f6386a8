"""Claim: weight decay shrinks w and rescues an overfit regression (results/weight-decay/).

Slide "Weight Decay". The classic high-dimensional setting: 200 features, 20 training
examples, y = 0.05 + 0.01 * sum(x) + noise (sd 0.01), x ~ N(0, I). Without a penalty a
linear model interpolates the 20 points (train loss ~ 0) and keeps whatever its
initialization put into the 180 directions the data never sees, so the test loss stays
large. An L2 penalty shrinks those directions away.

Which lambda and which loss: the lecture writes the data loss as (1/n) sum 1/2 (w^T x + b -
y)^2 and the penalty as (lambda / 2) ||w||^2, so that one minibatch SGD step is

    w <- (1 - eta lambda) w - (eta / |B|) sum_B x (w^T x + b - y).

Keras' "mse" has no 1/2, and `keras.regularizers.L2(c)` adds c * sum(w^2), whose gradient is
2 c w. Here every head is compiled with "mse" at loss weight 1/2 and with L2(lambda / 2):
then Keras' step is the slide's update term by term, with the lecture's own lambda and eta.
The real alternative, plain "mse" with the lecture's lambda passed as Keras' c (L2(lambda)),
doubles both the decay and the data step; it is run beside it as the check's control.

Experiment, per seed:
1. One step: one full-batch `train_on_batch` of Dense(1) heads with plain SGD from the same
   starting weights, for a few lambdas, beside the slide's update computed in float64. The
   CSV holds the weights before, Keras' step, the alternative set-up's step and the rule.
2. Sweep: one Keras model with one Dense(1) head per lambda (all heads start from the same
   seeded GlorotNormal weights; the summed losses give each head its own gradient), trained
   by full-batch SGD. An "epoch" is one pass over the 20 examples, i.e. one step. Train and
   test loss are recorded along the way, ||w|| and losses at the end.
The "good" lambda of a seed is the one with the lowest loss on a separate validation set
(not the test set), so the test-loss rule is not tuned on the numbers it judges. Losses in
the CSVs are mean squared errors (no 1/2), as in the earlier runs.

Rules, decided before the full run (the thresholds are the earlier ones; what changed is
that each sampled rule now judges the 95% t-interval of its mean over seeds):
1. Exact: Keras' step matches the slide's update to 1e-5 relative (largest |difference|
   over the largest |w|, worst seed; float32 arithmetic gives ~1e-7; no sampling involved).
2. Exact: the alternative set-up misses the slide's update by at least 100 times that
   tolerance (best seed), so rule 1 can tell the two readings apart.
3. ||w|| falls monotonically with lambda: per seed, the largest ratio of ||w|| at one lambda
   of the grid to ||w|| at the next smaller one; its mean is below 1.
4. lambda = 0 overfits: per seed, log10(train loss / test loss) at lambda = 0 <= -2.
5. Far below: per seed, log10(test loss at the good lambda / test loss at lambda = 0) <= -1,
   i.e. at least ten times lower.
Negative controls (tests): the alternative set-up's step in place of Keras' (fails 1), the
rule in place of the alternative (fails 2), and doctored sweeps for 3 to 5.

What makes lambda = 0 fail here is the initialization: gradient descent only moves w inside
the 20-dimensional span of the training inputs, so the random initial weights in the other
180 directions survive untouched and cost about ||w_init||^2 ~ 1.8 of test loss. Decay
multiplies them by (1 - eta lambda) every step. With 20 examples for 200 weights the data
cannot pin down w itself, so the best lambdas are large ones whose test loss approaches that
of w = 0 (about 200 * 0.01^2 = 0.02, drawn and labelled in the figure).

Seeds: the per-seed spreads are small against the margins (first full run of this design,
seeds 0-9: norm ratio 0.9911 +- 1e-5 against 1; overfit -12.8 +- 0.15 against -2; far below
-1.98 +- 0.06 against -1), so three seeds would already be conclusive; the full profile
runs ten, as before.

History: until the intervals, rules 3 to 5 judged the worst seed, and the heads were
trained on plain "mse" with L2(lambda / 2), which is half the lecture's lambda at twice its
learning rate for the data term; the one-step rule then compared Keras with a rule that
carried the factor 2 as well. Both were corrected before this run.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from repro.backend import seed_everything
from repro.figures import figure, save_figure, seed_band
from repro.models import repeated_batch
from repro.records import progress, read_csv, write_csv
from repro.rules import Rule, Verdict, seed_agreement, spread

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
    record_every: int = 10  # epochs between points of the loss curves (each costs a call)

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
        "w_keras_step_plain_mse_l2_lambda",
        "w_rule_step",
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
OVERFIT_LOG10_RATIO = -2  # train loss at most 1% of test loss at lambda = 0
TEST_LOSS_LOG10_RATIO = -1  # test loss at the good lambda at most a tenth of lambda = 0's

# How the lecture's lambda becomes Keras settings: (factor c of L2(c) per unit of lambda,
# loss weight of Keras' "mse"). The lecture's: (lambda / 2)||w||^2 on (1/n) sum 1/2 r^2.
LECTURE_SETUP = (0.5, 0.5)
PLAIN_MSE_L2_LAMBDA = (1.0, 1.0)  # the alternative: L2(lambda) on plain "mse"


def make_data(rng, examples: int, config: Config):
    x = rng.normal(size=(examples, config.features))
    y = TRUE_BIAS + TRUE_WEIGHT * x.sum(axis=1) + rng.normal(0, config.noise_sd, examples)
    return x.astype("float32"), y.astype("float32")[:, None]


def decay_model(lambdas, config: Config, setup=LECTURE_SETUP):
    """One Dense(1) head per lambda, sharing only the input, with L2 and loss as `setup` says.

    The summed losses give each head exactly the gradient it would get alone, so one model
    trains every lambda at once. The model is built once and reset for every seed, because
    tracing its training step costs far more than the training itself.
    """
    l2_per_lambda, loss_weight = setup
    inputs = keras.Input((config.features,))
    heads = [
        keras.layers.Dense(
            1, kernel_regularizer=keras.regularizers.L2(l2_per_lambda * lam), name=f"lambda_{i}"
        )
        for i, lam in enumerate(lambdas)
    ]
    model = keras.Model(inputs, [head(inputs) for head in heads])
    model.compile(
        optimizer=keras.optimizers.SGD(config.learning_rate),
        loss=["mse"] * len(heads),
        loss_weights=[loss_weight] * len(heads),
        # One compiled call per point of the loss curves, which are recorded between calls.
        steps_per_execution=config.record_every,
    )
    return model, heads


def reset(heads, seed: int) -> np.ndarray:
    """Every head starts from the same seeded GlorotNormal kernel (returned) and a zero bias."""
    kernel = keras.initializers.GlorotNormal(seed=seed)(heads[0].kernel.shape)
    for head in heads:
        head.kernel.assign(kernel)
        head.bias.assign(np.zeros(head.bias.shape, dtype="float32"))
    return np.asarray(kernel, dtype=np.float64)


def keras_step(model, heads, x, y, seed: int):
    """The seed's starting kernel, and every head's kernel after one full-batch SGD step."""
    kernel = reset(heads, seed)
    model.train_on_batch(x, [y] * len(heads))
    return kernel, [np.asarray(head.kernel, dtype=np.float64)[:, 0] for head in heads]


def one_step(step_models, x, y, config: Config, seed: int) -> pd.DataFrame:
    """Keras' step (lecture set-up and the alternative) beside the slide's update in float64."""
    (kernel, lecture), (_, alternative) = (keras_step(*model, x, y, seed) for model in step_models)
    x64, y64, eta = x.astype(np.float64), y.astype(np.float64), config.learning_rate
    residual = x64 @ kernel - y64  # the bias starts at 0
    data_step = (eta / len(x)) * (x64.T @ residual)[:, 0]
    return pd.concat(
        pd.DataFrame(
            {
                "seed": seed,
                "lam": lam,
                "keras_l2": LECTURE_SETUP[0] * lam,
                "learning_rate": eta,
                "feature": np.arange(config.features),
                "w_before": kernel[:, 0],
                "w_keras_step": w_lecture,
                "w_keras_step_plain_mse_l2_lambda": w_alternative,
                "w_rule_step": (1 - eta * lam) * kernel[:, 0] - data_step,
            }
        )
        for lam, w_lecture, w_alternative in zip(
            config.step_lambdas, lecture, alternative, strict=True
        )
    )


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
    step_models = [
        decay_model(config.step_lambdas, config, setup)
        for setup in (LECTURE_SETUP, PLAIN_MSE_L2_LAMBDA)
    ]
    sweep_model = decay_model(config.lambdas, config)
    for seed in progress(seeds, CLAIM_ID):
        seed_everything(seed)
        rng = np.random.default_rng(seed)
        x, y = make_data(rng, config.train_examples, config)
        validation = make_data(rng, config.validation_examples, config)
        test = make_data(rng, config.test_examples, config)
        steps.append(one_step(step_models, x, y, config, seed))
        final, curve = sweep(*sweep_model, x, y, validation, test, config, seed)
        finals.append(final)
        curves.append(curve)
    write_csv(pd.concat(steps, ignore_index=True), out_dir / "one_step.csv")
    write_csv(pd.concat(finals, ignore_index=True), out_dir / "sweep.csv")
    write_csv(pd.concat(curves, ignore_index=True), out_dir / "curves.csv")


def per_seed(frame: pd.DataFrame, statistic) -> np.ndarray:
    """`statistic(group)` for each seed's rows, in seed order."""
    return np.array([statistic(group) for _, group in frame.groupby("seed")], dtype=float)


def step_error(steps: pd.DataFrame, keras_column: str) -> np.ndarray:
    """Per seed, largest |Keras step - slide's update| relative to the update's largest |w|.

    NumPy's max, not pandas', so that a NaN weight gives a NaN error.
    """
    return per_seed(
        steps,
        lambda g: (
            np.abs(g[keras_column] - g["w_rule_step"]).to_numpy().max()
            / np.abs(g["w_rule_step"]).to_numpy().max()
        ),
    )


def good_lambdas(sweep_table: pd.DataFrame) -> pd.Series:
    """Per seed, the lambda with the lowest validation loss."""
    best = sweep_table.loc[sweep_table.groupby("seed")["validation_loss"].idxmin()]
    return best.set_index("seed")["lam"]


def at_zero_and_good(table: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Per seed, `column` at lambda = 0 and at the validation-chosen lambda.

    Rows are found by position (lambda = 0 is each seed's smallest), not by comparing float
    keys, so that a last-bit change of the stored lambdas cannot lose them.
    """
    rows = table.sort_values(["seed", "lam"]).groupby("seed")
    at_zero = rows[column].apply(lambda v: v.to_numpy()[0]).to_numpy()
    good = rows.apply(
        lambda g: g[column].to_numpy()[g["validation_loss"].to_numpy().argmin()],
        include_groups=False,
    ).to_numpy()
    return at_zero, good


def verdict(out_dir) -> Verdict:
    steps = read_csv(out_dir / "one_step.csv")
    table = read_csv(out_dir / "sweep.csv").sort_values(["seed", "lam"])

    keras_error = step_error(steps, "w_keras_step")
    alternative_error = step_error(steps, "w_keras_step_plain_mse_l2_lambda")
    # Largest ratio ||w(next lambda)|| / ||w(lambda)||: below 1 means strictly decreasing.
    norm_ratio = per_seed(
        table, lambda g: (g["weight_norm"].to_numpy()[1:] / g["weight_norm"].to_numpy()[:-1]).max()
    )
    test_at_zero, test_at_good = at_zero_and_good(table, "test_loss")
    train_at_zero, _ = at_zero_and_good(table, "train_loss")
    overfit = np.log10(train_at_zero / test_at_zero)
    good = good_lambdas(table)
    far_below = np.log10(test_at_good / test_at_zero)
    chosen = ", ".join(f"{lam:g}" for lam in sorted(good.unique()))

    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "one Keras SGD step, half mse + L2(lambda/2), vs (1 - eta lambda) w - "
                "(eta/|B|) sum x r: relative error, worst seed (exact: one float32 step "
                "against the formula in float64, no sampling)",
                keras_error.max(),
                "<=",
                STEP_TOLERANCE,
                f"{seed_agreement(keras_error <= STEP_TOLERANCE)}; {spread(keras_error)}",
            ),
            Rule(
                "the alternative, plain mse + L2(lambda), vs the same update: relative error, "
                "best seed (exact, as above)",
                alternative_error.min(),
                ">=",
                WRONG_FACTOR_MARGIN * STEP_TOLERANCE,
                f"{seed_agreement(alternative_error >= WRONG_FACTOR_MARGIN * STEP_TOLERANCE)}; "
                f"{spread(alternative_error)}",
            ),
            Rule.over_seeds(
                "largest ratio of ||w|| at a lambda to ||w|| at the next smaller lambda",
                norm_ratio,
                "<",
                1.0,
                f"{seed_agreement(norm_ratio < 1)} strictly decreasing",
            ),
            Rule.over_seeds(
                "lambda = 0 overfits: log10(train loss / test loss)",
                overfit,
                "<=",
                OVERFIT_LOG10_RATIO,
                f"test loss at lambda = 0 {spread(test_at_zero)}",
            ),
            Rule.over_seeds(
                "log10(test loss at the validation-chosen lambda / test loss at lambda = 0)",
                far_below,
                "<=",
                TEST_LOSS_LOG10_RATIO,
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
    test_at_good = at_zero_and_good(table, "test_loss")[1].mean()
    ax_loss.text(
        0.03,
        0.74,
        f"validation-chosen lambda: test loss {test_at_good:.3g},\n"
        f"close to w = 0's {table['test_loss_zero_weights'].mean():.3g}: with 20 examples\n"
        "for 200 weights, the best decay shrinks w nearly to 0",
        transform=ax_loss.transAxes,
        va="top",
        fontsize=8,
    )
    ax_loss.set(
        xscale="log",
        yscale="log",
        xlabel="lambda (penalty lambda/2 ||w||^2)",
        ylabel="mean squared error after training",
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
