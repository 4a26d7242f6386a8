"""Claim: the sigmoid's gradient vanishes away from 0 (results: results/sigmoid-vanishes/).

Slide "Vanishing Gradients". The sigmoid's derivative, sigmoid(x) (1 - sigmoid(x)), is
largest at x = 0 and falls off like exp(-|x|), so a unit whose input sits far from 0
passes almost no gradient back (below 1e-3 once |x| >= 7). ReLU, the slide's stable
alternative, has a derivative of exactly 1 for every positive input, however large.
Notes, pilots and history: docs/claims/sigmoid-vanishes.md.

Design. The gradients come from autodiff, as in training: `repro.backend.gradient` of the
sum of `keras.activations.sigmoid` (and `relu`) over a float32 input vector gives each
input's derivative (each output depends only on its own input). It runs on either Keras
backend. The inputs are a fixed grid from -10 to 10 in steps of 0.01 (built from
integers, so it holds 0 and +-7 exactly) and, per seed, uniformly drawn points in the same
interval, so that the rules are checked off the grid too. The closed form
sigmoid(x) (1 - sigmoid(x)), in float64, is stored beside each autodiff value.

Rules. Every rule is exact: the inputs are a grid plus seeded draws and the gradients are
deterministic float32 values, so each rule takes its worst case over every input and
seed, without an interval; a NaN fails as no measurement. `tolerance` is how far the
statistic may move on another CPU or backend (other rounding of float32 operations).
1. lecture ("Vanishing Gradients"): the largest sigmoid gradient over every input with
   |x| >= 7 is below 1e-3 (the number of CLAIMS.md; the exact value at 7 is 9.1e-4, so
   this is a close but fair test). Tolerance 1.2e-7: for x near +7 the gradient is
   y (1 - y) with y just below 1, where float32's spacing is 6e-8.
2. lecture ("Vanishing Gradients"): ReLU's gradient equals 1 at every positive input
   (difference at most 1e-12, i.e. exactly 1 in float32, whose next number after 1 is
   1 + 1.2e-7; robust to a last-bit change of the CSV's text). Tolerance 0.
3. beyond: the sigmoid's gradient at x = 0 is 0.25 within 1e-7 (the slides' text does
   not give the peak's value). Tolerance 6e-8, two float32 steps at 0.25.
4. beyond: no input has a larger gradient than x = 0 (excess at most 1e-12); the slides
   do not say where the peak is. Tolerance 3e-8.
5. check: autodiff matches the closed form to float32 resolution everywhere:
   |autodiff - formula| is at most 8 units of ulp(sigmoid(x)) + eps x formula, where ulp
   is the spacing of float32 numbers at the float32 sigmoid and eps = 2^-23. The unit
   scales with what float32 can resolve: the gradient y (1 - y) with y near 1 turns y's
   absolute error into a large relative one (4.6e-4 at x = 10), so no relative tolerance
   can hold there. An identity of autodiff on a closed form: it checks the instrument.
   Tolerance 2 units.

Seeds: the grid and the rules come from the lecture and float32 arithmetic; development
seeds 100-104 served the pilots. Verdict seeds 0-4 were fixed before the full run; the
shifted seeds 1000-1004 are run only once the design is frozen. Seeds add input points
only: with no seed noise, 5 seeds is the package's least for a full profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from repro import backend
from repro.backend import keras
from repro.figures import figure, save_figure
from repro.records import progress, read_csv, write_csv
from repro.rules import BEYOND, CHECK, LECTURE, Rule, Verdict, seed_agreement

CLAIM_ID = "sigmoid-vanishes"
SLIDE = "Vanishing Gradients"
STATEMENT = (
    "The sigmoid's gradient, computed by autodiff, falls below 1e-3 once |x| >= 7, while "
    "ReLU's gradient is exactly 1 for every positive input."
)


@dataclass(frozen=True)
class Config:
    limit: float = 10.0  # inputs lie in [-limit, limit]
    grid_step: float = 0.01
    random_points: int = 2000  # per seed, drawn uniformly in [-limit, limit]

    def __post_init__(self):
        if self.limit < VANISH_FROM:
            raise ValueError(f"limit must reach |x| = {VANISH_FROM} to test the vanishing")
        if not 0 < self.grid_step <= 1 or self.random_points < 0:
            raise ValueError("0 < grid_step <= 1 and random_points >= 0 required")


VANISH_FROM = 7.0  # |x| from which the gradient must be below VANISH_BELOW
VANISH_BELOW = 1e-3
PEAK = 0.25
PEAK_TOLERANCE = 1e-7
FORMULA_TOLERANCE = 8.0  # units of float32 resolution, see rule 5
EXACT = 1e-12  # "exactly equal" for float32 values read back from float64 text
FLOAT32_EPS = float(np.finfo(np.float32).eps)

PROFILES = {"quick": Config(grid_step=0.1, random_points=200), "full": Config()}
SEEDS = {"quick": (0, 1), "full": tuple(range(5))}
TABLES = {
    "gradients.csv": (
        "seed",
        "source",
        "x",
        "sigmoid",
        "sigmoid_grad",
        "sigmoid_grad_formula",
        "relu_grad",
    )
}
FIGURES = ("sigmoid_gradient.png",)


def grid(config: Config) -> np.ndarray:
    """-limit..limit in grid_step steps, built from integers so that 0 and +-7 are exact."""
    count = int(round(config.limit / config.grid_step))
    return np.arange(-count, count + 1) * config.grid_step


def autodiff(activation, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Activation values and their elementwise derivative by autodiff (float32)."""
    inputs = keras.ops.convert_to_tensor(np.asarray(x, dtype=np.float32))
    # Each output depends only on its own input, so the gradient of the sum is the derivative.
    _, (derivative,) = backend.gradient(lambda v: keras.ops.sum(activation(v)), inputs)
    return keras.ops.convert_to_numpy(activation(inputs)), keras.ops.convert_to_numpy(derivative)


def gradients(x: np.ndarray, sigmoid=None, relu=None) -> pd.DataFrame:
    """The measurement at inputs x: the sigmoid, its autodiff gradient and its closed form,
    and ReLU's autodiff gradient."""
    x = np.asarray(x, dtype=np.float32)  # record exactly the inputs the activations saw
    values, sigmoid_grad = autodiff(sigmoid or keras.activations.sigmoid, x)
    _, relu_grad = autodiff(relu or keras.activations.relu, x)
    exact = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    return pd.DataFrame(
        {
            "x": x.astype(np.float64),
            "sigmoid": values.astype(np.float64),
            "sigmoid_grad": sigmoid_grad.astype(np.float64),
            "sigmoid_grad_formula": exact * (1.0 - exact),
            "relu_grad": relu_grad.astype(np.float64),
        }
    )


def inputs(config: Config, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid and the seed's uniform draws, and which of the two each input came from."""
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [grid(config), rng.uniform(-config.limit, config.limit, config.random_points)]
    )
    source = np.repeat(["grid", "random"], [len(x) - config.random_points, config.random_points])
    return x, source


def measure(config: Config, seeds, sigmoid=None, relu=None) -> pd.DataFrame:
    """One table of every seed's inputs and gradients (tests pass broken activations)."""
    tables = []
    for seed in progress(seeds, CLAIM_ID):
        backend.seed_everything(seed)
        x, source = inputs(config, seed)
        table = gradients(x, sigmoid, relu)
        table.insert(0, "source", source)
        table.insert(0, "seed", seed)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def run(config: Config, seeds, out_dir):
    write_csv(measure(config, seeds), out_dir / "gradients.csv")


def worst(values: pd.Series, seeds: pd.Series) -> pd.Series:
    """Largest value per seed; a NaN in a seed is its result (pandas would skip it)."""
    return values.groupby(seeds).agg(lambda v: v.to_numpy().max())


def formula_error_units(table: pd.DataFrame) -> pd.Series:
    """|autodiff - formula| in units of float32 resolution: ulp(sigmoid) + eps x formula."""
    ulp = np.spacing(table["sigmoid"].to_numpy(np.float32)).astype(np.float64)
    unit = ulp + FLOAT32_EPS * table["sigmoid_grad_formula"]
    return (table["sigmoid_grad"] - table["sigmoid_grad_formula"]).abs() / unit


def verdict(out_dir) -> Verdict:
    table = read_csv(out_dir / "gradients.csv")
    seeds = table["seed"]
    per_seed = seeds.groupby(seeds).size()
    far_rows = table[table["x"].abs() >= VANISH_FROM - EXACT]  # x = 7 itself, to the last bit
    far = worst(far_rows["sigmoid_grad"], far_rows["seed"]).reindex(per_seed.index)
    relu = table[table["x"] > EXACT]
    relu_error = worst((relu["relu_grad"] - 1.0).abs(), relu["seed"]).reindex(per_seed.index)
    positives = relu.groupby("seed").size()
    zero = table[table["x"].abs() <= EXACT]  # x = 0, whatever the last bit of its text
    at_zero = zero["sigmoid_grad"].groupby(zero["seed"]).agg(lambda v: v.to_numpy()[0])
    at_zero = at_zero.reindex(per_seed.index)  # NaN if 0 is missing
    peak_error = (at_zero - PEAK).abs()
    above_zero = worst(table["sigmoid_grad"], seeds) - at_zero
    formula_error = worst(formula_error_units(table), seeds)
    relative = (table["sigmoid_grad"] - table["sigmoid_grad_formula"]).abs()
    relative /= table["sigmoid_grad_formula"]
    return Verdict(
        CLAIM_ID,
        (
            Rule(
                f"largest sigmoid gradient for |x| >= {VANISH_FROM:g}, worst seed",
                far.to_numpy().max(),
                "<",
                VANISH_BELOW,
                f"{seed_agreement(far < VANISH_BELOW)}; {far.min():.4g} to {far.max():.4g}",
                kind=LECTURE,
                slide=SLIDE,
                tolerance=1.2e-7,
            ),
            Rule(
                "largest |ReLU gradient - 1| for x > 0, worst seed",
                relu_error.to_numpy().max(),
                "<=",
                EXACT,
                f"{seed_agreement(relu_error <= EXACT)}; "
                f"{positives.min()} to {positives.max()} positive inputs per seed",
                kind=LECTURE,
                slide=SLIDE,
            ),
            Rule(
                "|sigmoid gradient at x = 0 - 0.25|, worst seed",
                peak_error.to_numpy().max(),
                "<=",
                PEAK_TOLERANCE,
                f"{seed_agreement(peak_error <= PEAK_TOLERANCE)}; "
                f"gradient at 0 is {at_zero.min():.9g} to {at_zero.max():.9g}",
                kind=BEYOND,
                tolerance=6e-8,
            ),
            Rule(
                "largest sigmoid gradient minus the gradient at x = 0, worst seed",
                above_zero.to_numpy().max(),
                "<=",
                EXACT,
                f"{seed_agreement(above_zero <= EXACT)}; {per_seed.iloc[0]} inputs per seed",
                kind=BEYOND,
                tolerance=3e-8,
            ),
            Rule(
                "largest |autodiff - sigmoid(x)(1 - sigmoid(x))| in units of float32 "
                "resolution, ulp(sigmoid) + eps x gradient, worst seed",
                formula_error.to_numpy().max(),
                "<=",
                FORMULA_TOLERANCE,
                f"{seed_agreement(formula_error <= FORMULA_TOLERANCE)}; "
                f"{formula_error.min():.3g} to {formula_error.max():.3g} units; relative error "
                f"at most {relative[table['x'] <= 0].max():.2g} for x <= 0 and "
                f"{relative[table['x'] > 0].max():.2g} for x > 0 (cancellation in 1 - sigmoid)",
                kind=CHECK,
                tolerance=2.0,
            ),
        ),
    )


def plot(out_dir):
    table = read_csv(out_dir / "gradients.csv")
    seeds = table["seed"].unique()
    on_grid = table[(table["source"] == "grid") & (table["seed"] == seeds[0])]
    random = table[table["source"] == "random"]

    fig, (linear, log) = figure(
        "sigmoid-vanishes: the sigmoid's gradient vanishes for large |x|, ReLU's stays 1",
        ncols=2,
        width=6.0,
        height=4.4,
    )
    linear.plot(on_grid["x"], on_grid["sigmoid"], color="tab:blue", lw=1.8, label="sigmoid(x)")
    linear.plot(
        on_grid["x"], on_grid["sigmoid_grad"], color="tab:red", lw=1.8, label="sigmoid's gradient"
    )
    linear.scatter(
        random["x"],
        random["sigmoid_grad"],
        s=2,
        color="tab:red",
        alpha=0.3,
        label=f"sigmoid's gradient at random inputs ({len(seeds)} seeds)",
    )
    linear.plot(
        on_grid["x"],
        on_grid["relu_grad"],
        color="black",
        ls="--",
        lw=1.4,
        label="ReLU's gradient (lecture rule: exactly 1 for x > 0)",
    )
    linear.annotate(
        "peak 0.25 at x = 0", (0, PEAK), xytext=(2.0, 0.45), arrowprops={"arrowstyle": "->"}
    )
    linear.set(
        xlabel="input x",
        ylabel="value of the function or gradient",
        ylim=(-0.05, 1.6),
        title="as in the lecture (linear scale)",
    )
    linear.legend(loc="upper left")

    log.semilogy(
        on_grid["x"], on_grid["sigmoid_grad"], color="tab:red", lw=1.8, label="sigmoid's gradient"
    )
    log.scatter(random["x"], random["sigmoid_grad"], s=2, color="tab:red", alpha=0.3)
    log.semilogy(
        on_grid["x"],
        on_grid["sigmoid_grad_formula"],
        color="black",
        ls=":",
        lw=1.2,
        label="formula sigmoid(x)(1 - sigmoid(x))",
    )
    log.axhline(
        VANISH_BELOW,
        color="tab:purple",
        lw=1.2,
        label=f"lecture rule: below {VANISH_BELOW:g} for |x| >= {VANISH_FROM:g}",
    )
    for side in (-VANISH_FROM, VANISH_FROM):
        log.axvspan(
            side,
            np.sign(side) * table["x"].abs().max(),
            color="tab:purple",
            alpha=0.08,
            label=f"inputs with |x| >= {VANISH_FROM:g}" if side > 0 else None,
        )
    log.set(
        xlabel="input x",
        ylabel="gradient (log scale)",
        ylim=(1e-6, 2),
        title="log scale: the gradient vanishes for large |x|",
    )
    log.legend(loc="lower center")
    save_figure(fig, out_dir / "sigmoid_gradient.png")
