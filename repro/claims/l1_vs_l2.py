"""Claim: L1 selects features, L2 shares weight between duplicates (results/l1-vs-l2/).

Slide "Weight Decay". An L1 penalty pushes weights that do not pay for themselves exactly to
zero, so on a sparse problem it keeps only the relevant features; an L2 penalty prefers,
among weight vectors that fit equally well, the one with the smallest squared norm, which
for two (near-)identical features is the even split.

Experiment, per seed: n = 100 examples of 30 independent N(0, 1) features; 5 of them carry
the signal (weights of size 1 to 2, random signs), y = x.w_true + noise (sd 0.5). Three of
the 5 relevant features get a near-duplicate column x + 0.1 z (correlation 0.995), placed
right after the original: 33 columns in 30 groups (a group = a feature and its duplicate).
Two Keras heads without bias, Dense(1, kernel_regularizer=L1(l1)) and Dense(1,
kernel_regularizer=L2(l2)), start from zero weights and are trained on the mean squared
error by full-batch SGD whose learning rate decays exponentially. Exact references in the
CSV: the closed-form ridge solution of MSE + l2 ||w||^2, w = (X^T X + n l2 I)^-1 X^T y, and
scikit-learn's Lasso with alpha = l1 / 2 (its objective is ||y - Xw||^2 / (2n) +
alpha ||w||_1, half of Keras' MSE + l1 ||w||_1).

What "zero" means: SGD with an L1 subgradient makes weights hover around zero rather than
sit on it, so a weight counts as zero when |w| <= 1% of the largest |w| of its vector. A
group is selected when any of its columns is nonzero. Support recovery is scored on groups
(which column of a near-duplicate pair carries the weight is not the question here).

Rules: L1 group recall = 1 and precision >= 0.8 in every seed; L1 sets at least 90% of the
irrelevant weights to zero in every seed, L2 at most half of them (the contrast);
L2 splits each duplicated pair evenly: the smaller / larger |weight| of the pair, averaged
over the three pairs, is >= 0.8 in every seed; and the trained L2 head is within 1% of the
closed-form ridge solution (to show the experiment reached the solution it is about).

Seen in the figure: inside a near-duplicate pair the L1 objective is almost flat (moving
weight from one column to the other leaves ||w||_1 unchanged while both keep their sign),
so SGD from zero weights keeps a split there (ratio 0.4-0.8) where the exact lasso puts
nearly everything on one column; outside the pairs the two agree. Which member of a pair
the lasso keeps is close to arbitrary, which is why support is scored by group.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
from sklearn.linear_model import Lasso

from repro.figures import figure
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
from repro.models import EPOCH_PER_CALL, repeated_batch

CLAIM_ID = "l1-vs-l2"
SLIDE = "Weight Decay"
STATEMENT = (
    "An L1 penalty drives most weights to zero and picks out the true features of a sparse "
    "problem; an L2 penalty spreads weight evenly over duplicated features."
)


@dataclass(frozen=True)
class Config:
    examples: int = 100
    features: int = 30
    relevant: int = 5
    duplicated: int = 3  # how many relevant features get a near-duplicate column
    duplicate_noise: float = 0.1
    target_noise_sd: float = 0.5
    l1: float = 0.3  # Keras L1(l1): adds l1 * sum |w|
    l2: float = 0.1  # Keras L2(l2): adds l2 * sum w^2
    steps: int = 1000
    learning_rate: float = 0.1
    final_learning_rate: float = 0.001

    def __post_init__(self):
        if not 0 < self.relevant <= self.features:
            raise ValueError("need 0 < relevant <= features")
        if not 0 <= self.duplicated <= self.relevant:
            raise ValueError("need 0 <= duplicated <= relevant")
        if self.examples < 2 or self.steps < 1:
            raise ValueError("examples >= 2 and steps >= 1 required")
        if self.l1 <= 0 or self.l2 <= 0:
            raise ValueError("both penalties must be positive")
        if not 0 < self.final_learning_rate <= self.learning_rate:
            raise ValueError("need 0 < final_learning_rate <= learning_rate")
        if self.duplicate_noise < 0 or self.target_noise_sd < 0:
            raise ValueError("noise levels must be non-negative")


PROFILES = {"quick": Config(steps=300), "full": Config()}
SEEDS = {"quick": (0,), "full": tuple(range(10))}
TABLES = {
    "weights.csv": (
        "seed",
        "column",
        "group",
        "is_duplicate",
        "true_weight",
        "w_l1",
        "w_l2",
        "w_lasso",
        "w_ridge",
    )
}
FIGURES = ("weights.png",)

MIN_PRECISION = 0.8
MIN_L1_ZERO_SHARE = 0.9
MAX_L2_ZERO_SHARE = 0.5
MIN_SPLIT_RATIO = 0.8
RIDGE_TOLERANCE = 0.01
ZERO_FRACTION_OF_MAX = 0.01  # |w| at most 1% of the largest |w| counts as zero


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


def train(x, y, config: Config):
    """Train an L1 head and an L2 head together by full-batch SGD; return both kernels."""
    inputs = keras.Input((x.shape[1],))
    heads = [
        keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", kernel_regularizer=r)
        for r in (keras.regularizers.L1(config.l1), keras.regularizers.L2(config.l2))
    ]
    model = keras.Model(inputs, [head(inputs) for head in heads])
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate,
        decay_steps=config.steps,
        decay_rate=config.final_learning_rate / config.learning_rate,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(schedule),
        loss=["mse", "mse"],
        steps_per_execution=EPOCH_PER_CALL,
    )
    targets = y.astype("float32")[:, None]
    model.fit(repeated_batch(x.astype("float32"), [targets] * 2, config.steps), verbose=0)
    return [np.asarray(head.kernel, dtype=np.float64)[:, 0] for head in heads]


def run(config: Config, seeds, out_dir):
    frames = []
    for seed in progress(seeds, CLAIM_ID):
        x, y, groups, duplicate, truth = make_data(np.random.default_rng(seed), config)
        seed_everything(seed)
        w_l1, w_l2 = train(x, y, config)
        lasso = Lasso(alpha=config.l1 / 2, fit_intercept=False, tol=1e-10, max_iter=100_000)
        frames.append(
            pd.DataFrame(
                {
                    "seed": seed,
                    "column": np.arange(x.shape[1]),
                    "group": groups,
                    "is_duplicate": duplicate,
                    "true_weight": truth,
                    "w_l1": w_l1,
                    "w_l2": w_l2,
                    "w_lasso": lasso.fit(x, y).coef_,
                    "w_ridge": np.linalg.solve(
                        x.T @ x + len(x) * config.l2 * np.eye(x.shape[1]), x.T @ y
                    ),
                }
            )
        )
    write_csv(pd.concat(frames, ignore_index=True), out_dir / "weights.csv")


def is_zero(weights: pd.Series) -> pd.Series:
    return weights.abs() <= ZERO_FRACTION_OF_MAX * weights.abs().max()


def scores(table: pd.DataFrame) -> pd.DataFrame:
    """Per seed: support recovery of L1 (by group), zero shares, duplicate splits, ridge gap."""
    rows = []
    for seed, w in table.groupby("seed"):
        relevant_group = w.groupby("group")["true_weight"].apply(lambda t: (t != 0).any())
        row = {"seed": seed}
        irrelevant = ~w["group"].map(relevant_group)
        for penalty in ("l1", "l2"):
            nonzero = ~is_zero(w[f"w_{penalty}"])
            selected = nonzero.groupby(w["group"]).any()
            hits = (selected & relevant_group).sum()
            row[f"{penalty}_recall"] = hits / relevant_group.sum()
            row[f"{penalty}_precision"] = hits / max(selected.sum(), 1)
            row[f"{penalty}_zero_share"] = (~nonzero[irrelevant]).mean()
            pairs = w[w["group"].isin(w.loc[w["is_duplicate"], "group"])]
            magnitude = pairs[f"w_{penalty}"].abs().groupby(pairs["group"])
            row[f"{penalty}_split_ratio"] = (magnitude.min() / magnitude.max()).mean()
        row["ridge_gap"] = np.linalg.norm(w["w_l2"] - w["w_ridge"]) / np.linalg.norm(w["w_ridge"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("seed")


def verdict(out_dir) -> Verdict:
    s = scores(read_csv(out_dir / "weights.csv"))
    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "L1: recall of the relevant features (worst seed)",
                s["l1_recall"].min(),
                ">=",
                1.0,
                f"{seed_agreement(s['l1_recall'] >= 1)}; {spread(s['l1_recall'])}",
            ),
            Rule(
                "L1: precision of the selected features (worst seed)",
                s["l1_precision"].min(),
                ">=",
                MIN_PRECISION,
                f"{seed_agreement(s['l1_precision'] >= MIN_PRECISION)}; "
                f"{spread(s['l1_precision'])}; L2 precision {spread(s['l2_precision'])}",
            ),
            Rule(
                "L1: share of irrelevant weights at zero (worst seed)",
                s["l1_zero_share"].min(),
                ">=",
                MIN_L1_ZERO_SHARE,
                f"{seed_agreement(s['l1_zero_share'] >= MIN_L1_ZERO_SHARE)}; "
                f"{spread(s['l1_zero_share'])}",
            ),
            Rule(
                "L2: share of irrelevant weights at zero (worst seed)",
                s["l2_zero_share"].max(),
                "<=",
                MAX_L2_ZERO_SHARE,
                f"{seed_agreement(s['l2_zero_share'] <= MAX_L2_ZERO_SHARE)}; "
                f"{spread(s['l2_zero_share'])}",
            ),
            Rule(
                "L2: smaller / larger |weight| in a duplicated pair, mean over pairs (worst seed)",
                s["l2_split_ratio"].min(),
                ">=",
                MIN_SPLIT_RATIO,
                f"{seed_agreement(s['l2_split_ratio'] >= MIN_SPLIT_RATIO)}; "
                f"{spread(s['l2_split_ratio'])}; L1 {spread(s['l1_split_ratio'])}",
            ),
            Rule(
                "L2 head vs closed-form ridge: ||w - w_ridge|| / ||w_ridge|| (worst seed)",
                s["ridge_gap"].max(),
                "<=",
                RIDGE_TOLERANCE,
                f"{seed_agreement(s['ridge_gap'] <= RIDGE_TOLERANCE)}; {spread(s['ridge_gap'])}",
            ),
        ),
    )


def plot(out_dir):
    table = read_csv(out_dir / "weights.csv")
    first = table[table["seed"] == table["seed"].min()]
    s = scores(table)
    fig, axes = figure(
        f"l1-vs-l2: L1 selects features, L2 splits weight over duplicates "
        f"(weights: seed {first['seed'].iloc[0]}; right: all {len(s)} seeds)",
        ncols=3,
        width=5.2,
        height=4.0,
    )
    for ax, penalty, reference, name in (
        (axes[0], "l1", "w_lasso", "L1: sklearn Lasso"),
        (axes[1], "l2", "w_ridge", "L2: closed-form ridge"),
    ):
        columns = first["column"].to_numpy()
        ax.bar(columns, first[f"w_{penalty}"], color="tab:blue", width=0.7, label="Keras SGD")
        ax.scatter(columns, first[reference], marker="_", s=80, color="k", label=name)
        relevant = first["true_weight"] != 0
        ax.scatter(
            columns[relevant],
            first.loc[relevant, "true_weight"],
            marker="*",
            s=60,
            color="tab:red",
            label="true weight (signal)",
        )
        for column in columns[first["is_duplicate"].to_numpy()]:
            ax.axvspan(column - 1.4, column + 0.4, color="tab:orange", alpha=0.15, lw=0)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(
            xlabel="column (shaded: a feature and its near-duplicate)",
            ylabel="weight",
            title=f"{penalty.upper()} penalty",
        )
        ax.legend(fontsize=8, loc="lower right")

    ax = axes[2]
    measures = (
        ("zero_share", "irrelevant weights\nat zero (share)"),
        ("split_ratio", "duplicate pairs:\nsmaller / larger |w|"),
    )
    for i, (measure, _) in enumerate(measures):
        for offset, penalty, color in ((-0.15, "l1", "tab:green"), (0.15, "l2", "tab:blue")):
            ax.scatter(
                np.full(len(s), i + offset),
                s[f"{penalty}_{measure}"],
                color=color,
                s=14,
                label=f"{penalty.upper()} (one dot per seed)" if i == 0 else None,
            )
    ax.set_xticks(range(len(measures)), [label for _, label in measures])
    ax.set(ylim=(-0.05, 1.05), xlim=(-0.6, 1.6), title="every seed")
    ax.legend(fontsize=8)
    save_figure(fig, out_dir / "weights.png")
