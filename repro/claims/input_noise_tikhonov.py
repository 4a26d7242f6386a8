"""Claim: training with input noise is ridge regression (results/input-noise-tikhonov/).

Slide "Dropout" (Bishop 1995: noise added to the inputs during training acts as Tikhonov
regularization). For a linear model without bias and the mean squared error over n
examples, Gaussian noise e ~ N(0, sigma^2 I) added to the inputs gives the expected loss

    E_e (1/n) sum_i (y_i - w.(x_i + e_i))^2 = (1/n) ||y - X w||^2 + sigma^2 ||w||^2,

because the noise has mean zero (the cross term vanishes) and E (w.e)^2 = sigma^2 ||w||^2.
Its minimizer is the ridge solution w = (X^T X + lambda I)^-1 X^T y with lambda = n sigma^2
in the sum-of-squares form ||y - Xw||^2 + lambda ||w||^2 (equivalently Keras' L2(sigma^2)
added to the mean squared error). Training with the noise should therefore land on that
ridge solution, not on ordinary least squares (OLS).

Data, per seed: n = 50 examples of d = 10 correlated features (pairwise correlation 0.5, so
that ridge and OLS differ clearly), y = x.w_true + noise (sd 0.5), w_true ~ N(0, I).

Model and training: for each sigma a head Input -> Keras' `layers.GaussianNoise(sigma)` ->
Dense(1, no bias, zero start); all heads side by side on one input, on a loss that sums the
heads' mean squared errors (each head gets exactly its own gradient). Plain SGD (Keras'
`optimizers.SGD`) with an exponentially decaying learning rate (Keras' `ExponentialDecay`,
from 0.05 to 0.002 over the run), so that what noise is left averages out. One example of
`repro.models.fit` is the training set repeated `copies` times, each copy with its own
fresh noise at every step, so that a step's gradient is close to the expected one; the
example is repeated `steps_per_epoch` times per compiled epoch. The CSV holds, per
feature, the noise-trained weight beside the closed-form ridge and OLS weights.

Rules (both lecture, slide "Dropout"), each on one number per seed (the worst sigma of that
seed), judged by the 95% t-interval of its mean over seeds:
1. the noise-trained weights are the ridge weights: ||w_noise - w_ridge|| / ||w_ridge||
   <= 0.02;
2. they are ridge's, not OLS's: ||w_noise - w_ridge|| / ||w_ridge - w_ols|| <= 0.1 (ten
   times closer to ridge than the ridge solution is to OLS).

Seeds: design and pilots on development seeds 100-199; verdict seeds 0-9, fixed before the
full run; shifted seeds 1000-1009 run only after the design was frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps

from repro.backend import keras, seed_everything
from repro.figures import figure, save_figure, seed_band
from repro.models import fit, restart
from repro.records import progress, read_csv, write_csv
from repro.rules import LECTURE, Rule, Verdict, spread

CLAIM_ID = "input-noise-tikhonov"
SLIDE = "Dropout"
STATEMENT = (
    "Training a linear least-squares model with Gaussian input noise of variance sigma^2 is "
    "ridge regression with lambda = n sigma^2: the noise-trained weights land on the "
    "closed-form ridge solution, not on ordinary least squares (Bishop 1995)."
)


@dataclass(frozen=True)
class Config:
    examples: int = 50
    features: int = 10
    correlation: float = 0.5
    target_noise_sd: float = 0.5
    sigmas: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    copies: int = 20  # noisy copies of the n examples in each step
    steps: int = 600
    steps_per_epoch: int = 100  # full-batch steps per compiled call of `fit`
    learning_rate: float = 0.05
    final_learning_rate: float = 0.002

    def __post_init__(self):
        if self.examples < 2 or self.features < 1 or self.copies < 1 or self.steps < 1:
            raise ValueError("examples >= 2, features >= 1, copies >= 1, steps >= 1 required")
        if self.steps_per_epoch < 1 or self.steps % self.steps_per_epoch:
            raise ValueError("steps must be a positive multiple of steps_per_epoch")
        if not 0 <= self.correlation < 1:
            raise ValueError("correlation must lie in [0, 1)")
        if not self.sigmas or not all(0 < s <= 1 for s in self.sigmas):
            raise ValueError("noise levels sigma must lie in (0, 1], as GaussianNoise requires")
        if not 0 < self.final_learning_rate <= self.learning_rate:
            raise ValueError("need 0 < final_learning_rate <= learning_rate")
        if self.target_noise_sd < 0:
            raise ValueError("target_noise_sd must be non-negative")


# The quick profile keeps the steps: they are what makes the weights reach the solution.
PROFILES = {"quick": Config(sigmas=(0.5, 1.0)), "full": Config()}
SEEDS = {"quick": tuple(range(5)), "full": tuple(range(10))}
TABLES = {
    "weights.csv": ("seed", "sigma", "lam", "feature", "w_noise", "w_ridge", "w_ols"),
}
FIGURES = ("weights.png",)

RIDGE_DISTANCE = 0.02
RIDGE_VS_OLS = 0.1


def make_data(rng, config: Config):
    covariance = np.full((config.features, config.features), config.correlation)
    np.fill_diagonal(covariance, 1.0)
    x = rng.multivariate_normal(np.zeros(config.features), covariance, config.examples)
    w_true = rng.normal(size=config.features)
    y = x @ w_true + rng.normal(0, config.target_noise_sd, config.examples)
    return x, y


def ridge(x, y, lam: float) -> np.ndarray:
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)


def squared_error(y, prediction):
    """Mean squared error over the rows of one data set, summed over the heads (columns)."""
    return keras.ops.sum(keras.ops.mean(keras.ops.square(prediction - y), axis=-2), axis=-1)


def noise_model(config: Config):
    """One GaussianNoise(sigma) -> Dense(1, no bias) head per sigma, side by side on one
    input (a data set: rows x features), compiled for SGD with a decaying learning rate."""
    inputs = keras.Input((None, config.features))
    heads = [
        keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name=f"sigma_{i}")(
            keras.layers.GaussianNoise(sigma)(inputs)
        )
        for i, sigma in enumerate(config.sigmas)
    ]
    model = keras.Model(inputs, keras.layers.Concatenate()(heads))
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate,
        decay_steps=config.steps,
        decay_rate=config.final_learning_rate / config.learning_rate,
    )
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=squared_error)
    return model


def train_with_input_noise(model, x, y, config: Config, seed: int) -> list[np.ndarray]:
    """`steps` steps, each on the n examples `copies` times with fresh noise; the weights."""
    rows = (np.tile(x.astype("float32"), (config.copies, 1)), np.tile(y, config.copies))
    repeats = (config.steps_per_epoch, 1, 1)
    xs = np.tile(rows[0][None], repeats)
    ys = np.tile(rows[1].astype("float32")[None, :, None], repeats)
    fit(model, xs, ys, epochs=config.steps // config.steps_per_epoch, batch_size=1, seed=seed)
    return [
        np.asarray(model.get_layer(f"sigma_{i}").kernel, dtype=np.float64)[:, 0]
        for i in range(len(config.sigmas))
    ]


def run(config: Config, seeds, out_dir):
    def build():
        return noise_model(config)

    # Compiled once; every seed restarts it from zero weights, a fresh learning-rate
    # schedule and the seed's own noise stream.
    seed_everything(seeds[0])
    model = build()
    frames = []
    for seed in progress(seeds, CLAIM_ID):
        x, y = make_data(np.random.default_rng(seed), config)
        trained = train_with_input_noise(restart(model, build, seed), x, y, config, seed)
        w_ols = ridge(x, y, 0.0)
        for sigma, w_noise in zip(config.sigmas, trained, strict=True):
            lam = config.examples * sigma**2
            frames.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "sigma": sigma,
                        "lam": lam,
                        "feature": np.arange(config.features),
                        "w_noise": w_noise,
                        "w_ridge": ridge(x, y, lam),
                        "w_ols": w_ols,
                    }
                )
            )
    write_csv(pd.concat(frames, ignore_index=True), out_dir / "weights.csv")


# ------------------------------------------------------------------------------ verdict


def distances(weights: pd.DataFrame) -> pd.DataFrame:
    """Per seed and sigma: the distances between the three weight vectors."""

    def norm(a, b):
        return float(np.linalg.norm(a.to_numpy() - b.to_numpy()))

    rows = []
    for (seed, sigma), w in weights.groupby(["seed", "sigma"]):
        zero = w["w_ridge"] * 0
        rows.append(
            {
                "seed": seed,
                "sigma": sigma,
                "noise_to_ridge": norm(w["w_noise"], w["w_ridge"]),
                "noise_to_ols": norm(w["w_noise"], w["w_ols"]),
                "ridge_to_ols": norm(w["w_ridge"], w["w_ols"]),
                "ridge_norm": norm(w["w_ridge"], zero),
            }
        )
    return pd.DataFrame(rows)


def worst_per_seed(values: pd.Series, seeds: pd.Series) -> np.ndarray:
    """Largest value of each seed; NumPy's max keeps a NaN (pandas' would skip it)."""
    return values.groupby(seeds).apply(lambda v: v.to_numpy().max()).to_numpy()


def verdict(out_dir) -> Verdict:
    d = distances(read_csv(out_dir / "weights.csv"))
    relative = worst_per_seed(d["noise_to_ridge"] / d["ridge_norm"], d["seed"])
    versus_ols = worst_per_seed(d["noise_to_ridge"] / d["ridge_to_ols"], d["seed"])
    sigmas = ", ".join(f"{s:g}" for s in sorted(d["sigma"].unique()))
    return Verdict(
        CLAIM_ID,
        (
            Rule.over_seeds(
                f"||w_noise - w_ridge|| / ||w_ridge||, lambda = n sigma^2, worst sigma of a "
                f"seed (sigma = {sigmas})",
                relative,
                "<=",
                RIDGE_DISTANCE,
                kind=LECTURE,
                slide=SLIDE,
            ),
            Rule.over_seeds(
                "||w_noise - w_ridge|| / ||w_ridge - w_ols||, worst sigma of a seed",
                versus_ols,
                "<=",
                RIDGE_VS_OLS,
                f"||w_noise - w_ols|| / ||w_ridge - w_ols|| "
                f"{spread(d['noise_to_ols'] / d['ridge_to_ols'])}",
                kind=LECTURE,
                slide=SLIDE,
            ),
        ),
    )


# --------------------------------------------------------------------------------- plot


def plot(out_dir):
    weights = read_csv(out_dir / "weights.csv")
    d = distances(weights)
    n_seeds = weights["seed"].nunique()
    fig, (ax_weights, ax_distance) = figure(
        f"input-noise-tikhonov: training with input noise lands on ridge, lambda = n sigma^2 "
        f"({n_seeds} seeds)",
        ncols=2,
        width=6.0,
        height=4.8,
    )
    sigmas = sorted(weights["sigma"].unique())
    shades = colormaps["viridis"](np.linspace(0, 0.85, len(sigmas)))  # sigma small to large
    colors = dict(zip(sigmas, shades, strict=True))
    ax_weights.scatter(
        weights["w_ridge"],
        weights["w_ols"],
        s=10,
        marker="x",
        color="lightgray",
        label="OLS weight (no noise)",
        zorder=0,
    )
    for sigma, w in weights.groupby("sigma"):
        ax_weights.scatter(
            w["w_ridge"], w["w_noise"], s=9, color=colors[sigma], label=f"sigma = {sigma:g}"
        )
    low, high = weights["w_ridge"].min(), weights["w_ridge"].max()
    ax_weights.plot([low, high], [low, high], "k--", lw=1, label="trained = ridge")
    ax_weights.set(
        xlabel="closed-form ridge weight (lambda = n sigma^2)",
        ylabel="weight trained with input noise",
        title="each dot: one weight of one seed",
    )
    ax_weights.legend(loc="upper left")

    d = d.assign(
        relative_to_ridge=d["noise_to_ridge"] / d["ridge_norm"],
        ridge_vs_ols=d["ridge_to_ols"] / d["ridge_norm"],
        tenth_ridge_vs_ols=RIDGE_VS_OLS * d["ridge_to_ols"] / d["ridge_norm"],
    )
    seed_band(
        ax_distance,
        d,
        "sigma",
        "ridge_vs_ols",
        label="||w_ols - w_ridge|| (OLS, no noise)",
        color="gray",
    )
    seed_band(
        ax_distance,
        d,
        "sigma",
        "relative_to_ridge",
        label="||w_noise - w_ridge|| (trained with noise)",
        color="tab:blue",
    )
    ax_distance.axhline(
        RIDGE_DISTANCE, color="tab:red", ls="--", lw=1.5, label="lecture rule 1 threshold: 2%"
    )
    seed_band(
        ax_distance,
        d,
        "sigma",
        "tenth_ridge_vs_ols",
        label="lecture rule 2 threshold: a tenth of OLS's",
        color="tab:red",
        ls=":",
        lw=1.5,
    )
    ax_distance.set(
        xlabel="input noise sd sigma",
        ylabel="distance / ||w_ridge||",
        yscale="log",
        ylim=(1e-3, 100),  # room for the legend above the lines
        title="distance to the ridge solution",
    )
    ax_distance.legend(loc="upper left", title=f"mean, 95% t-interval over {n_seeds} seeds")
    save_figure(fig, out_dir / "weights.png")
