"""Claim: L1 selects features, L2 shares weight between duplicates (results/l1-vs-l2/).

Slide "Norms and Weight Decay". An L1 penalty concentrates the weights on a few features and
clears the others to exactly zero, so on a sparse problem it picks out the relevant
features; an L2 penalty, which punishes large components most, spreads weight evenly over
features that carry the same information.

Data, per seed: n = 100 examples of 30 independent N(0, 1) features; 5 of them carry the
signal (weights of size 1 to 2, random signs), y = x.w_true + noise (sd 0.5). Three of the
5 relevant features get a near-duplicate column x + 0.1 z (correlation 0.995), placed right
after the original: 33 columns in 30 groups (a group = a feature and its duplicate).

Model and training: the linear model w^T x (a Keras Dense(1) without bias) once per
penalty, all starting from zero weights, trained by full-batch plain SGD (Keras'
`optimizers.SGD`) with a constant learning rate eta for `steps` steps: the batch of
`repro.models.fit` is the whole training set, so each epoch is one step. The loss of an
example is its squared error; `fit` averages it into the mean squared error (MSE) and adds
the penalties. The three models are the heads of one Keras model on one input, their losses
summed (each head gets exactly its own gradient), so that one compiled call steps all
three: one model per penalty costs three times the calls (the notes give the seconds).
- L1: the objective MSE + l1 ||w||_1, minimized by the proximal gradient step: a gradient
  step on the MSE, then soft-thresholding w <- sign(w) max(|w| - eta l1, 0), which Keras
  applies as the kernel's constraint (`SoftThreshold`) after every update. Reference:
  scikit-learn's Lasso with alpha = l1 / 2 (its objective ||y - Xw||^2 / (2n) +
  alpha ||w||_1 is half of MSE + l1 ||w||_1), solved to tol 1e-10.
- L2: Keras' `regularizers.L2(l2)`, the objective MSE + l2 ||w||^2; reference: the
  closed-form ridge solution w = (X^T X + n l2 I)^-1 X^T y.
- Keras' own `regularizers.L1(l1)` on plain SGD, for the record only: it adds the
  subgradient l1 sign(w), under which a weight that should be zero jumps back and forth
  across zero by eta l1 and never rests on it.
Trained to convergence, the proximal head has the lasso's exact zeros, so "zero" needs no
threshold; two checks make sure both heads reached their references.

Rules, one number per seed, each judged by the 95% t-interval of its mean over seeds:
1. check: L1 converged, ||w_L1 - w_lasso|| / ||w_lasso|| <= 0.01 (a condition of the design,
   not the claim);
2. check: L2 converged, ||w_L2 - w_ridge|| / ||w_ridge|| <= 0.01;
3. lecture: support recovery, recall of the relevant groups by L1 (a group is selected when
   any of its columns is nonzero) >= 0.9;
4. lecture: precision of the groups L1 selects >= 0.8;
5. lecture: share of the irrelevant groups' weights that L1 sets exactly to zero >= 0.9;
6. lecture: L2 splits duplicated pairs evenly: smaller / larger |w| of a pair, mean over the
   pairs, >= 0.8;
7. lecture: L1 concentrates where L2 spreads: that split ratio under L2 minus under L1
   >= 0.5.
Support is scored by group because which member of a near-duplicate pair the lasso keeps is
close to arbitrary. The L2 head has no exact zeros at all (the ridge solution has none), so
a rule on its zero share could not fail; the count is in rule 5's note instead.

Seeds: design and pilots on development seeds 100-199; verdict seeds 0-9, fixed before the
full run; shifted seeds 1000-1009 run only after the design was frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from repro.backend import keras, seed_everything
from repro.figures import figure, save_figure
from repro.models import fit, restart
from repro.records import progress, read_csv, write_csv
from repro.rules import CHECK, LECTURE, Rule, Verdict, mean_interval, spread

CLAIM_ID = "l1-vs-l2"
SLIDE = "Norms and Weight Decay"
STATEMENT = (
    "An L1 penalty clears most weights to exactly zero and picks out the true features of a "
    "sparse problem; an L2 penalty spreads weight evenly over duplicated features, where L1 "
    "concentrates it on one of them."
)


@dataclass(frozen=True)
class Config:
    examples: int = 100
    features: int = 30
    relevant: int = 5
    duplicated: int = 3  # how many relevant features get a near-duplicate column
    duplicate_noise: float = 0.1
    target_noise_sd: float = 0.5
    l1: float = 0.3  # objective MSE + l1 * sum |w|
    l2: float = 0.1  # Keras L2(l2): adds l2 * sum w^2
    steps: int = 3000  # full-batch SGD steps, one per epoch of `fit`
    learning_rate: float = 0.2

    def __post_init__(self):
        if not 0 < self.relevant <= self.features:
            raise ValueError("need 0 < relevant <= features")
        if not 0 <= self.duplicated <= self.relevant:
            raise ValueError("need 0 <= duplicated <= relevant")
        if self.examples < 2 or self.steps < 1:
            raise ValueError("need examples >= 2 and steps >= 1")
        if self.l1 <= 0 or self.l2 <= 0:
            raise ValueError("both penalties must be positive")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")
        if self.duplicate_noise < 0 or self.target_noise_sd < 0:
            raise ValueError("noise levels must be non-negative")


# The quick profile keeps the steps: with fewer, the L1 head has not reached the lasso. Its
# five seeds are the fewest that give precision (steps of 1/6 per seed) a useful interval.
PROFILES = {"quick": Config(), "full": Config()}
SEEDS = {"quick": tuple(range(5)), "full": tuple(range(10))}
TABLES = {  # csv name: its columns
    "weights.csv": tuple(
        "seed column group is_duplicate true_weight w_l1 w_l2 w_l1_keras_regularizer w_lasso "
        "w_ridge".split()
    )
}
FIGURES = ("weights.png",)

CONVERGENCE_TOLERANCE = 0.01
MIN_RECALL = 0.9
MIN_PRECISION = 0.8
MIN_L1_ZERO_SHARE = 0.9
MIN_L2_SPLIT_RATIO = 0.8
MIN_SPLIT_CONTRAST = 0.5
HEADS = ("l1", "l2", "l1_keras_regularizer")


def make_data(rng, config: Config):
    """Columns ordered group by group: a duplicated feature is followed by its duplicate."""
    x = rng.normal(size=(config.examples, config.features))
    w_true = np.zeros(config.features)
    w_true[: config.relevant] = rng.uniform(1, 2, config.relevant) * rng.choice(
        [-1, 1], config.relevant
    )
    y = x @ w_true + rng.normal(0, config.target_noise_sd, config.examples)
    columns, groups, duplicate, truth = [], [], [], []
    for j in range(config.features):
        columns.append(x[:, j])
        groups.append(j)
        duplicate.append(False)
        truth.append(w_true[j])
        if j < config.duplicated:
            columns.append(x[:, j] + config.duplicate_noise * rng.normal(size=config.examples))
            groups.append(j)
            duplicate.append(True)
            truth.append(0.0)  # y was made from the original column only
    return np.stack(columns, axis=1), y, np.array(groups), np.array(duplicate), np.array(truth)


@dataclass(frozen=True)
class SoftThreshold:
    """The proximal step of l1 ||w||_1 after a gradient step of size eta: shrink every weight
    towards zero by eta * l1, and set those that would cross zero exactly to zero. A Keras
    kernel constraint: the optimizer applies it to the kernel after every update."""

    threshold: float

    def __call__(self, w):
        return keras.ops.sign(w) * keras.ops.maximum(keras.ops.abs(w) - self.threshold, 0.0)


def squared_error(y, prediction):
    """The squared error of one example, summed over the heads: `fit` averages it over the
    batch, so each head gets exactly the gradient of its own mean squared error."""
    return keras.ops.sum(keras.ops.square(prediction - y), axis=-1)


def penalized_heads(config: Config, columns: int):
    """Linear models w^T x without bias, one per penalty (proximal L1, Keras' L2, Keras'
    L1), side by side on one input of `columns` numbers, from zero, compiled for plain SGD."""
    eta = config.learning_rate
    penalties = {
        "l1": {"kernel_constraint": SoftThreshold(eta * config.l1)},
        "l2": {"kernel_regularizer": keras.regularizers.L2(config.l2)},
        "l1_keras_regularizer": {"kernel_regularizer": keras.regularizers.L1(config.l1)},
    }
    inputs = keras.Input((columns,))
    heads = [
        keras.layers.Dense(
            1, use_bias=False, kernel_initializer="zeros", name=name, **penalties[name]
        )(inputs)
        for name in HEADS
    ]
    model = keras.Model(inputs, keras.layers.Concatenate()(heads))
    model.compile(optimizer=keras.optimizers.SGD(eta), loss=squared_error)
    return model


def train(model, x, y, config: Config, seed: int) -> list[np.ndarray]:
    """`steps` full-batch steps (the batch is the whole training set, so an epoch of `fit`
    is one step, and nothing is read between steps: `fit` takes them all in one compiled
    call); the kernels of the three heads."""
    x, y = x.astype("float32"), y.astype("float32")[:, None]
    fit(
        model, x, y, epochs=config.steps, batch_size=len(x), seed=seed, epochs_per_call=config.steps
    )
    return [np.asarray(model.get_layer(name).kernel, dtype=np.float64)[:, 0] for name in HEADS]


def run(config: Config, seeds, out_dir):
    from sklearn.linear_model import Lasso  # here, so that reading results never imports it

    frames = []
    columns = config.features + config.duplicated

    def build():
        return penalized_heads(config, columns)

    # Built and compiled once; every seed restarts it from zero weights and a fresh optimizer.
    seed_everything(seeds[0])
    model = build()
    for seed in progress(seeds, CLAIM_ID):
        x, y, groups, duplicate, truth = make_data(np.random.default_rng(seed), config)
        w_l1, w_l2, w_l1_keras = train(restart(model, build, seed), x, y, config, seed)
        lasso = Lasso(alpha=config.l1 / 2, fit_intercept=False, tol=1e-10, max_iter=100_000)
        frames.append(
            pd.DataFrame(
                {
                    "seed": seed,
                    "column": np.arange(columns),
                    "group": groups,
                    "is_duplicate": duplicate,
                    "true_weight": truth,
                    "w_l1": w_l1,
                    "w_l2": w_l2,
                    "w_l1_keras_regularizer": w_l1_keras,
                    "w_lasso": lasso.fit(x, y).coef_,
                    "w_ridge": np.linalg.solve(
                        x.T @ x + len(x) * config.l2 * np.eye(columns), x.T @ y
                    ),
                }
            )
        )
    write_csv(pd.concat(frames, ignore_index=True), out_dir / "weights.csv")


# ------------------------------------------------------------------------------ verdict


def is_zero(weights: pd.Series) -> pd.Series:
    """Exactly zero as a float32 weight, which is what the Keras heads hold.

    A last-bit change of a stored 0.0 (another machine's CSV, or a test emulating one) gives
    a float64 denormal that is still 0 in float32; any weight the heads can hold is not.
    """
    return pd.Series(weights.to_numpy().astype(np.float32) == 0, index=weights.index)


def split_ratio(weights: pd.Series, pairs: pd.Series) -> float:
    """Smaller / larger |w| inside each duplicated pair, averaged over the pairs.

    A pair with both weights zero has no split: NaN, which fails the rules that use it.
    """
    magnitude = weights[pairs.notna()].abs().groupby(pairs[pairs.notna()])
    return float(np.mean((magnitude.min() / magnitude.max()).to_numpy()))


def scores(table: pd.DataFrame) -> pd.DataFrame:
    """Per seed: convergence gaps, L1's support recovery (by group), zero shares, splits."""

    def gap(w, reference):
        return np.linalg.norm(w - reference) / np.linalg.norm(reference)

    rows = []
    for seed, w in table.groupby("seed"):
        relevant_group = (~is_zero(w["true_weight"])).groupby(w["group"]).any()
        irrelevant = ~w["group"].map(relevant_group)
        duplicated = w["group"].isin(w.loc[w["is_duplicate"], "group"])
        pairs = w["group"].where(duplicated)
        selected = (~is_zero(w["w_l1"])).groupby(w["group"]).any()
        hits = (selected & relevant_group).sum()
        rows.append(
            {
                "seed": seed,
                "l1_gap": gap(w["w_l1"], w["w_lasso"]),
                "l2_gap": gap(w["w_l2"], w["w_ridge"]),
                "l1_recall": hits / relevant_group.sum(),
                "l1_precision": hits / max(selected.sum(), 1),
                **{
                    f"{name}_zero_share": is_zero(w.loc[irrelevant, f"w_{name}"]).mean()
                    for name in ("l1", "l2", "l1_keras_regularizer", "lasso")
                },
                **{
                    f"{name}_split_ratio": split_ratio(w[f"w_{name}"], pairs)
                    for name in ("l1", "l2", "lasso")
                },
            }
        )
    return pd.DataFrame(rows).set_index("seed")


def verdict(out_dir) -> Verdict:
    s = scores(read_csv(out_dir / "weights.csv"))
    contrast = s["l2_split_ratio"] - s["l1_split_ratio"]
    lecture = {"kind": LECTURE, "slide": SLIDE}
    return Verdict(
        CLAIM_ID,
        (
            Rule.over_seeds(
                "L1 (proximal SGD) converged: ||w - w_lasso|| / ||w_lasso||",
                s["l1_gap"].to_numpy(),
                "<=",
                CONVERGENCE_TOLERANCE,
                kind=CHECK,
            ),
            Rule.over_seeds(
                "L2 converged: ||w - w_ridge|| / ||w_ridge||",
                s["l2_gap"].to_numpy(),
                "<=",
                CONVERGENCE_TOLERANCE,
                kind=CHECK,
            ),
            Rule.over_seeds(
                "L1: recall of the relevant feature groups",
                s["l1_recall"].to_numpy(),
                ">=",
                MIN_RECALL,
                **lecture,
            ),
            Rule.over_seeds(
                "L1: precision of the selected feature groups",
                s["l1_precision"].to_numpy(),
                ">=",
                MIN_PRECISION,
                **lecture,
            ),
            Rule.over_seeds(
                "L1: share of irrelevant weights exactly zero",
                s["l1_zero_share"].to_numpy(),
                ">=",
                MIN_L1_ZERO_SHARE,
                f"L2: {spread(s['l2_zero_share'])}; Keras' L1 regularizer on plain SGD: "
                f"{spread(s['l1_keras_regularizer_zero_share'])}",
                **lecture,
            ),
            Rule.over_seeds(
                "L2: smaller / larger |w| in a duplicated pair, mean over pairs",
                s["l2_split_ratio"].to_numpy(),
                ">=",
                MIN_L2_SPLIT_RATIO,
                **lecture,
            ),
            Rule.over_seeds(
                "duplicated pairs: split ratio under L2 minus under L1",
                contrast.to_numpy(),
                ">=",
                MIN_SPLIT_CONTRAST,
                f"L1 split ratio {spread(s['l1_split_ratio'])}",
                **lecture,
            ),
        ),
    )


# --------------------------------------------------------------------------------- plot

COLORS = {"l1": "tab:green", "l2": "tab:blue", "contrast": "tab:gray"}
TITLES = {"l1": "L1 penalty (proximal SGD)", "l2": "L2 penalty (SGD)"}


def weights_panel(ax, first: pd.DataFrame, penalty: str):
    """One seed's weights of a penalty's Keras head, its reference and the true weights."""
    columns = first["column"].to_numpy()
    pair_columns = columns[first["group"].isin(first.loc[first["is_duplicate"], "group"])]
    for start in pair_columns[::2]:  # each duplicated pair shaded and bounded
        ax.axvspan(start - 0.5, start + 1.5, color="tab:orange", alpha=0.15, lw=0)
        for edge in (start - 0.5, start + 1.5):
            ax.axvline(edge, color="tab:orange", ls="--", lw=0.8)
    ax.fill_between([], [], color="tab:orange", alpha=0.15, label="duplicated pair")
    name = "scikit-learn Lasso" if penalty == "l1" else "closed-form ridge"
    reference = "w_lasso" if penalty == "l1" else "w_ridge"
    ax.bar(columns, first[f"w_{penalty}"], color=COLORS[penalty], width=0.7, label="Keras head")
    ax.scatter(columns, first[reference], marker="_", s=90, color="k", label=name)
    if penalty == "l1":
        ax.scatter(
            columns,
            first["w_l1_keras_regularizer"],
            marker="o",
            s=16,
            facecolors="none",
            edgecolors="tab:purple",
            label="Keras' L1 regularizer, plain SGD",
        )
    relevant = ~is_zero(first["true_weight"]).to_numpy()
    ax.scatter(
        columns[relevant],
        first.loc[relevant, "true_weight"],
        marker="*",
        s=70,
        color="tab:red",
        label="true weight",
    )
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(
        xlabel="column (a feature, or its near-duplicate)",
        ylabel="weight",
        title=f"{TITLES[penalty]}, seed {first['seed'].iloc[0]}",
    )
    ax.legend(loc="lower right")


def rules_panel(ax, measures, n_seeds: int):
    """Per-seed values of lecture-rule statistics, their mean and interval, and thresholds.

    `measures`: (label, per-seed values, colour, threshold or None) for each column."""
    for i, (_, values, color, threshold) in enumerate(measures):
        values = np.asarray(values, dtype=float)
        ax.scatter(np.full(len(values), i - 0.1), values, color=color, s=16, alpha=0.8)
        mean, low, high = mean_interval(values)
        ax.errorbar(
            i + 0.15, mean, yerr=[[mean - low], [high - mean]], color="k", capsize=4, fmt="o"
        )
        if threshold is not None:
            ax.hlines(threshold, i - 0.35, i + 0.35, color="tab:red", lw=2)
    ax.plot([], [], color="tab:red", lw=2, label="lecture rule threshold")
    ax.errorbar([], [], yerr=[], color="k", capsize=4, fmt="o", label="mean, 95% t-interval")
    ax.scatter([], [], color="gray", s=16, label=f"a dot per seed ({n_seeds} seeds)")
    ax.set_xticks(range(len(measures)), [label for label, *_ in measures])
    ax.set(ylim=(-0.05, 1.35), xlim=(-0.6, len(measures) - 0.4), ylabel="share or ratio (0 to 1)")
    ax.legend(loc="upper center", ncols=2)


def plot(out_dir):
    table = read_csv(out_dir / "weights.csv")
    first = table[table["seed"] == table["seed"].min()]
    s = scores(table)
    fig, axes = figure(
        f"l1-vs-l2: L1 selects features, L2 splits weight over duplicates ({len(s)} seeds)",
        ncols=2,
        nrows=2,
        width=6.6,
        height=4.4,
    )
    weights_panel(axes[0], first, "l1")
    weights_panel(axes[1], first, "l2")
    green, blue = COLORS["l1"], COLORS["l2"]
    rules_panel(
        axes[2],
        (
            ("L1: recall of\nrelevant groups", s["l1_recall"], green, MIN_RECALL),
            ("L1: precision of\nselected groups", s["l1_precision"], green, MIN_PRECISION),
            ("L1: irrelevant\nweights exactly 0", s["l1_zero_share"], green, MIN_L1_ZERO_SHARE),
            ("L2: irrelevant\nweights exactly 0", s["l2_zero_share"], blue, None),
        ),
        len(s),
    )
    axes[2].set_title("feature selection (green: L1, blue: L2)")
    rules_panel(
        axes[3],
        (
            ("L1", s["l1_split_ratio"], green, None),
            ("L2", s["l2_split_ratio"], blue, MIN_L2_SPLIT_RATIO),
            (
                "L2 minus L1",
                s["l2_split_ratio"] - s["l1_split_ratio"],
                COLORS["contrast"],
                MIN_SPLIT_CONTRAST,
            ),
        ),
        len(s),
    )
    axes[3].set_title("duplicated pairs: smaller / larger |w|, mean over pairs")
    save_figure(fig, out_dir / "weights.png")
