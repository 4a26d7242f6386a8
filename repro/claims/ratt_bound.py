"""Claim: randomly labeled extra data certifies the test error (RATT, Garg et al. 2021).

Results: results/ratt-bound/. Slide "Generalization in Deep Learning". Add m unlabeled
points to the n labeled training points, give each a label drawn uniformly at random, and
train on all n + m as usual. As long as the net fits the clean data but not yet the random
labels, the error on the clean points and the error on the randomly labeled points give an
upper bound on the true test error, with no held-out labeled data needed.

What we compute (binary form, Theorem 1 of Garg, Balakrishnan, Kolter and Lipton, "RATT:
Leveraging Unlabeled Data to Guarantee Generalization", ICML 2021, arXiv:2105.00303): with
E_S the 0-1 error on the n clean training points (true labels), E_R the 0-1 error on the m
randomly labeled points (measured against their random labels), with probability at least
1 - delta

    test error <= E_S + (1 - 2 E_R) + (sqrt(2) E_R + 2 + m / (2n)) * sqrt(log(4 / delta) / m).

These are the constants of the catalogue's statement and of Theorem 1 as we recall it: the
m / (2n) inside the factor and log(4 / delta) under the root, with no factor 2 in the
denominator (the paper itself could not be reread offline when this was written; a smaller
constant would only make the bound tighter, and rule 1 checks that it holds). The bound is
evaluated after each of the E epochs and the best epoch is picked afterwards, so it must
hold at all E at once: by a union bound each epoch uses delta / E. We use delta = 0.1
overall, 0.1 / E per epoch (`delta` in the CSV is the per-epoch value). The CSV keeps the
three terms: `clean_error` (E_S), `random_term` (1 - 2 E_R) and `confidence_term` (the
square-root term). A net that ignores the random labels gets E_R = 1/2 on average, so the
middle term vanishes and the bound is E_S plus the confidence term; once the random labels
are memorized E_R -> 0 and the bound exceeds 1 (vacuous, but still true). The theorem is
proved for 0-1 ERM and linear models; for deep nets the paper relies on an "early learning"
assumption, which is exactly what this experiment tests. The multiclass form (leading part
E_S + (k - 1)(1 - k E_R / (k - 1)) and a larger confidence term) is not used: the paper's
own experiments with deep nets are binary, and with k = 10 and m of a few hundred its
confidence term alone exceeds 1.

Experiment: scikit-learn's digits as a binary task (digits 0-4 against 5-9). Every seed
shuffles the 1258 training images into n = 658 clean labeled points and m = 600 points
whose labels are replaced by fair coin flips. A 2x256 ReLU MLP is trained with Adam on all
1258 for E = 20 epochs; after each epoch we record E_S, E_R, the bound and the true error on
the 539 test images.

Rules, each on one number per seed, judged by the 95% t-interval of its mean over seeds:
1. the test error minus the bound, largest over the epochs, is below 0 (the bound holds at
   every epoch, including the late ones where it is vacuous and the check is trivial);
2. the smallest bound over the epochs is below 0.5, chance for a binary task
   (non-vacuous), reached while the random labels are still unfit (E_R near 1/2, reported).

History of the design. The first version used m = 210 (n / 5, the paper's ratio), 40
epochs, no union bound, and read "non-vacuous" as below 1. For a binary task a bound is
informative only below 0.5; and with delta / 40 the confidence term at m = 210 is 0.53 on
its own, so no net could have passed: recomputed from that run the best bounds were 0.47 to
0.63. The design was changed before any run of the new rules: the confidence term with the
union bound is smallest near m = 600 to 700 of the 1258 images (it falls with m,
while m / (2n) grows), about 0.33 at m = 600 with E = 20 (fewer epochs shrink it little; in
the pilot the best epochs were 1 to 5, and 20 epochs still show the bound turning vacuous). A pilot
on seeds 500-504 (not used by any verdict) gave best bounds 0.38 to 0.44 (mean 0.417,
standard deviation 0.023) and a largest excess of -0.28 to -0.37, so five seeds were
chosen. The first full runs showed more spread: seeds 0-4 gave best bounds 0.36 to 0.48
(REPRODUCED, interval up to 0.46), seeds 1000-1004 0.39 to 0.51 (INCONCLUSIVE, interval
[0.38, 0.50]). Over those 15 seeds the best bound has mean 0.42 and standard deviation
0.042, so the full profile now runs ten seeds (interval about +-0.03, its upper end about
0.45); the rules and thresholds are unchanged. A larger m from MNIST-1D was not chosen: an
MLP learns it poorly (see label-noise-order), so E_S and the test error would be far higher.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from repro.data import digits
from repro.figures import figure, save_figure, seed_band
from repro.models import EpochAccuracy, Retrainable, adam_classifier, batches
from repro.records import progress, read_csv, write_csv
from repro.rules import Rule, Verdict, seed_agreement, spread

CLAIM_ID = "ratt-bound"
SLIDE = "Generalization in Deep Learning"
STATEMENT = (
    "Training on clean labeled data plus points given uniformly random labels, the clean "
    "training error and the error on the random labels bound the test error (Garg et al., "
    "2021): the bound holds at every epoch and is non-vacuous while the random labels are "
    "not yet fit."
)


@dataclass(frozen=True)
class Config:
    random_size: int = 600  # m: points with coin-flip labels; the other 1258 - m are clean
    delta: float = 0.1  # over all epochs together; each epoch's bound uses delta / epochs
    epochs: int = 20
    hidden: tuple[int, ...] = (256, 256)
    learning_rate: float = 1e-3
    batch_size: int = 32

    def __post_init__(self):
        if not 10 <= self.random_size <= len(digits()[1]) // 2:
            raise ValueError(f"random_size must lie in [10, {len(digits()[1]) // 2}]")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must lie in (0, 1), got {self.delta}")
        if self.epochs < 1 or not self.hidden or min(self.hidden) < 1:
            raise ValueError("epochs >= 1 and positive hidden widths required")
        if self.learning_rate <= 0 or self.batch_size < 1:
            raise ValueError("learning_rate > 0 and batch_size >= 1 required")


PROFILES = {
    "quick": Config(epochs=4, hidden=(64, 64)),
    "full": Config(),
}
SEEDS = {"quick": (0,), "full": tuple(range(10))}
TABLES = {
    "bound.csv": (
        "seed",
        "epoch",
        "n_clean",
        "m_random",
        "delta",
        "clean_error",
        "random_error",
        "random_term",
        "confidence_term",
        "bound",
        "test_error",
    ),
}
FIGURES = ("bound_vs_test_error.png",)

CHANCE = 0.5  # error of a coin flip on a binary task: a bound above it says nothing


def binary(labels: np.ndarray) -> np.ndarray:
    """Digits 0-4 -> class 0, digits 5-9 -> class 1."""
    return (labels >= 5).astype("int64")


def ratt_terms(clean_error, random_error, n: int, m: int, delta: float) -> dict:
    """The binary RATT bound and its three terms (numbers or NumPy arrays)."""
    random_term = 1.0 - 2.0 * np.asarray(random_error)
    confidence_term = (np.sqrt(2.0) * np.asarray(random_error) + 2.0 + m / (2.0 * n)) * np.sqrt(
        np.log(4.0 / delta) / m
    )
    return {
        "clean_error": clean_error,
        "random_error": random_error,
        "random_term": random_term,
        "confidence_term": confidence_term,
        "bound": clean_error + random_term + confidence_term,
    }


def run(config: Config, seeds, out_dir):
    x, digit, x_test, digit_test = digits()
    y, y_test = binary(digit), binary(digit_test)
    m = config.random_size
    n = len(y) - m
    net = Retrainable(
        partial(adam_classifier, x.shape[1], config.hidden, config.learning_rate, num_classes=2)
    )
    frames = []
    for seed in progress(seeds, CLAIM_ID):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y))
        clean, randomized = order[:n], order[n:]
        labels = y.copy()
        labels[randomized] = rng.integers(0, 2, size=m)  # fair coins, independent of x

        model = net.restart(seed)
        tracker = EpochAccuracy(
            {
                "clean": (x[clean], labels[clean]),
                "random": (x[randomized], labels[randomized]),
                "test": (x_test, y_test),
            }
        )
        model.fit(
            batches(x, labels, config.batch_size, shuffle_seed=seed),
            epochs=config.epochs,
            verbose=0,
            callbacks=[tracker],
        )
        accuracies = pd.DataFrame(tracker.rows)
        epoch_delta = config.delta / config.epochs  # union bound over the epochs
        terms = ratt_terms(1.0 - accuracies["clean"], 1.0 - accuracies["random"], n, m, epoch_delta)
        frames.append(
            pd.DataFrame(
                {
                    "seed": seed,
                    "epoch": accuracies["epoch"],
                    "n_clean": n,
                    "m_random": m,
                    "delta": epoch_delta,
                    **terms,
                    "test_error": 1.0 - accuracies["test"],
                }
            )
        )
    write_csv(pd.concat(frames, ignore_index=True), out_dir / "bound.csv")


def best_epochs(table: pd.DataFrame) -> pd.DataFrame:
    """Per seed, the row of the epoch with the smallest bound."""
    return table.loc[table.groupby("seed")["bound"].idxmin()].set_index("seed")


def verdict(out_dir) -> Verdict:
    table = read_csv(out_dir / "bound.csv")
    # The bound is recomputed from its inputs, not read from the bound column.
    first = table.iloc[0]
    bound = ratt_terms(
        table["clean_error"],
        table["random_error"],
        int(first["n_clean"]),
        int(first["m_random"]),
        float(first["delta"]),
    )["bound"]
    excess = (table["test_error"] - bound).groupby(table["seed"]).max(skipna=False)
    best = best_epochs(table.assign(bound=bound))
    return Verdict(
        CLAIM_ID,
        (
            Rule.over_seeds(
                "test error minus bound, largest over the epochs (mean over seeds)",
                excess,
                "<",
                0.0,
                f"{seed_agreement(excess < 0)} hold at every epoch",
            ),
            Rule.over_seeds(
                "smallest bound over the epochs, below chance 0.5 (mean over seeds)",
                best["bound"],
                "<",
                CHANCE,
                f"at epochs {best['epoch'].min()}-{best['epoch'].max()}, where E_R is "
                f"{spread(best['random_error'])} and the test error {spread(best['test_error'])}",
            ),
        ),
    )


def plot(out_dir):
    table = read_csv(out_dir / "bound.csv")
    first = table.iloc[0]
    n, m, delta = int(first["n_clean"]), int(first["m_random"]), float(first["delta"])
    fig, (ax_bound, ax_terms) = figure(
        f"ratt-bound: random labels certify the test error "
        f"(binary digits, n={n} clean, m={m} random; {table['seed'].nunique()} seeds)",
        ncols=2,
        width=5.4,
        height=4.0,
    )
    seed_band(
        ax_bound,
        table,
        "epoch",
        "bound",
        f"RATT bound (delta={delta:.2g} per epoch, {delta * table['epoch'].max():.2g} overall)",
        color="tab:red",
    )
    seed_band(ax_bound, table, "epoch", "test_error", "true test error", color="black")
    best = best_epochs(table)
    ax_bound.scatter(
        best["epoch"], best["bound"], color="tab:red", s=18, zorder=3, label="best bound per seed"
    )
    ax_bound.axhline(CHANCE, color="grey", ls=":", lw=1)
    ax_bound.text(
        table["epoch"].max(),
        CHANCE,
        "chance: vacuous above 0.5 ",
        ha="right",
        va="bottom",
        color="grey",
        fontsize=8,
    )
    ax_bound.set(
        xlabel="epoch",
        ylabel="0-1 error (mean; band: min-max over seeds)",
        title="bound and test error",
        ylim=(0, 1.05),
    )
    ax_bound.legend(loc="upper left", fontsize=8)

    seed_band(
        ax_terms, table, "epoch", "clean_error", "E_S: clean training error", color="tab:blue"
    )
    seed_band(
        ax_terms, table, "epoch", "random_error", "E_R: error on random labels", color="tab:orange"
    )
    seed_band(ax_terms, table, "epoch", "confidence_term", "confidence term", color="tab:green")
    ax_terms.axhline(0.5, color="grey", ls=":", lw=1)
    ax_terms.text(1, 0.5, "E_R = 1/2: random labels unfit", va="bottom", color="grey", fontsize=8)
    ax_terms.set(xlabel="epoch", ylabel="value", title="terms of the bound", ylim=(0, 0.68))
    ax_terms.legend(loc="upper right", fontsize=8)
    save_figure(fig, out_dir / "bound_vs_test_error.png")
