"""Claim: no learner is best on every distribution; two learners swap ranks (Wolpert, 1995).

Results: results/no-free-lunch/. Slide "Generalization in Deep Learning". Averaged over all
possible target functions every learner does equally well, so a learner can only beat
another on some distributions by losing on others: what makes a learner good is how well
its assumptions (its inductive bias) match the data.

The theorem, computed exactly. On a finite domain, fix a training set and its labels; a
learner's predictions on the points off the training set then no longer depend on those
points' labels. Averaged over all 2^k ways of labelling the k off-training points, each
prediction is right in exactly half of them, so every learner's mean off-training-set
accuracy is exactly 1/2: out of all targets consistent with the training data, no learner
is favoured. We compute this by enumeration for the same two learners, on the 16 centres
of a 4x4 grid in [-1, 1]^2 with 6 training points, labelled once by a line and once by
the checkerboard below: all 2^10 = 1024 labellings of the other 10 points, counting for
each labelling how many of the 10 each learner gets right (theorem.csv). The rule on it is
exact, not statistical: the mean is a ratio of integer counts, and it must equal 1/2 to
the last bit. The same table gives each learner's accuracy on the target's own labelling
of the 10 points, where the two learners do differ: the theorem says nothing about one
target, only about all of them.

The illustration: two learners with opposite biases, on two distributions of points drawn
uniformly from the square [-1, 1]^2, 200 training and 5000 test points per seed.
- Learner A, logistic regression: assumes a straight class boundary, averages over all
  training points, so it shrugs off label noise but cannot bend.
- Learner B, the 1-nearest-neighbour rule: assumes nothing about the boundary's shape and
  copies the label of the closest training point, noise included.
- Distribution "noisy line": the class is the side of a line through the origin (a random
  direction per seed), and 20% of the labels, in training and test alike, are flipped.
  The best possible accuracy is 0.8, which the line model nearly reaches; 1-NN copies the
  flipped labels and loses about 2 x 0.2 x 0.8 = 0.32 of the points near wrong neighbours.
- Distribution "checkerboard": the class is the XOR of the signs of the two coordinates
  (a 2x2 checkerboard), labels exact. No straight boundary separates it, and logistic
  regression stays near chance; 1-NN follows the quadrants easily.
Both learners come from scikit-learn: they need no training loop and are exact and
deterministic, which keeps the comparison about the learners' assumptions alone.

Rules:
1. the theorem (exact): for both learners and both training labellings, the mean
   off-training-set accuracy over all labellings differs from 1/2 by exactly 0;
2. and 3. the swap of ranks: per seed, A's minus B's test accuracy on the noisy line, and
   B's minus A's on the checkerboard; the 95% t-interval of each mean over seeds lies above
   0.05, a clear win (the test-set noise of one accuracy on 5000 points is about 0.006).
History: the margins were first judged on the worst seed against 0, a rule that could
hardly fail; 0.05 and the intervals were set from the committed ten seeds (noisy-line
margins 0.07 to 0.13, mean 0.099, standard deviation 0.023; checkerboard 0.34 to 0.62)
before the run with intervals: ten seeds give about +-0.016 on the smaller margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import comb

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from repro.figures import figure, save_figure
from repro.records import progress, read_csv, write_csv
from repro.rules import Rule, Verdict, seed_agreement

CLAIM_ID = "no-free-lunch"
SLIDE = "Generalization in Deep Learning"
STATEMENT = (
    "No learner beats every other on every data distribution: averaged over every labelling "
    "of the points off the training set, every learner is right on exactly half of them; a "
    "linear model beats 1-nearest-neighbour on a noisy linear problem, and "
    "1-nearest-neighbour beats the linear model on a checkerboard."
)

LEARNERS = {
    "logistic regression": lambda: LogisticRegression(),
    "1-nearest neighbour": lambda: KNeighborsClassifier(n_neighbors=1),
}
LINEAR, NEIGHBOUR = LEARNERS
NOISY_LINE, CHECKERBOARD = "noisy line", "checkerboard"


@dataclass(frozen=True)
class Config:
    train_size: int = 200
    test_size: int = 5000
    label_flip_rate: float = 0.2  # noisy line only

    def __post_init__(self):
        if self.train_size < 4 or self.test_size < 10:
            raise ValueError("train_size >= 4 and test_size >= 10 required")
        if not 0 <= self.label_flip_rate < 0.5:
            raise ValueError(f"label_flip_rate must lie in [0, 0.5), got {self.label_flip_rate}")


PROFILES = {"quick": Config(test_size=1000), "full": Config()}
SEEDS = {"quick": (0, 1), "full": tuple(range(10))}
TABLES = {
    "accuracy.csv": ("seed", "distribution", "learner", "test_accuracy"),
    "theorem.csv": (
        "target",
        "learner",
        "off_training_points",
        "correct",
        "labellings",
        "target_correct",
    ),
}
FIGURES = ("accuracy.png",)

MIN_MARGIN = 0.05
# The theorem's finite domain: the centres of a 4x4 grid on [-1, 1]^2, and which of them
# are the training points (a fixed choice in which both targets show both classes).
GRID = np.array([(a, b) for a in (-0.75, -0.25, 0.25, 0.75) for b in (-0.75, -0.25, 0.25, 0.75)])
TRAINING_POINTS = (0, 3, 5, 9, 12, 14)
LINE_DIRECTION = np.array([1.0, 0.5])  # no grid point lies on this line


def sample(distribution: str, size: int, rng, direction, flip_rate: float):
    """Points uniform on [-1, 1]^2 and their (possibly noisy) labels."""
    x = rng.uniform(-1.0, 1.0, size=(size, 2))
    if distribution == NOISY_LINE:
        y = (x @ direction > 0).astype(int)
        flip = rng.random(size) < flip_rate
        return x, np.where(flip, 1 - y, y)
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)


def run(config: Config, seeds, out_dir):
    rows = []
    for seed in progress(seeds, CLAIM_ID):
        rng = np.random.default_rng(seed)
        angle = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        for distribution in (NOISY_LINE, CHECKERBOARD):
            x, y = sample(distribution, config.train_size, rng, direction, config.label_flip_rate)
            x_test, y_test = sample(
                distribution, config.test_size, rng, direction, config.label_flip_rate
            )
            for learner, make in LEARNERS.items():
                model = make().fit(x, y)
                rows.append(
                    {
                        "seed": seed,
                        "distribution": distribution,
                        "learner": learner,
                        "test_accuracy": float((model.predict(x_test) == y_test).mean()),
                    }
                )
    write_csv(pd.DataFrame(rows), out_dir / "accuracy.csv")
    write_csv(theorem_table(), out_dir / "theorem.csv")


def grid_target(distribution: str) -> np.ndarray:
    """The noise-free labels of the grid points under a distribution's rule."""
    if distribution == NOISY_LINE:
        return (GRID @ LINE_DIRECTION > 0).astype(int)
    return ((GRID[:, 0] > 0) ^ (GRID[:, 1] > 0)).astype(int)


def theorem_table() -> pd.DataFrame:
    """For each target's training labels and learner: over all labellings of the points off
    the training set, how many labellings give each count of correct off-training points."""
    train = np.array(TRAINING_POINTS)
    off = np.setdiff1d(np.arange(len(GRID)), train)
    # Every labelling of the off-training points, one row each: bit i of the row number.
    labellings = (np.arange(2 ** len(off))[:, None] >> np.arange(len(off))) & 1
    rows = []
    for distribution in (NOISY_LINE, CHECKERBOARD):
        target = grid_target(distribution)
        for learner, make in LEARNERS.items():
            predictions = make().fit(GRID[train], target[train]).predict(GRID[off])
            correct = (labellings == predictions).sum(axis=1)
            for count, labelling_count in enumerate(np.bincount(correct, minlength=len(off) + 1)):
                rows.append(
                    {
                        "target": distribution,
                        "learner": learner,
                        "off_training_points": len(off),
                        "correct": count,
                        "labellings": int(labelling_count),
                        "target_correct": int((predictions == target[off]).sum()),
                    }
                )
    return pd.DataFrame(rows)


def margins(table: pd.DataFrame, distribution: str, winner: str, loser: str) -> pd.Series:
    """Per seed, winner's minus loser's test accuracy on one distribution."""
    wide = table[table["distribution"] == distribution].pivot(
        index="seed", columns="learner", values="test_accuracy"
    )
    return wide[winner] - wide[loser]


def theorem_deviation(theorem: pd.DataFrame) -> tuple[Fraction, pd.Series]:
    """Largest |mean off-training-set accuracy - 1/2| over targets and learners, as an exact
    fraction of integer counts, and each pair's mean accuracy (floats, for the figure)."""
    deviations, means = [], {}
    for key, group in theorem.groupby(["target", "learner"]):
        correct = sum(
            int(c) * int(n) for c, n in zip(group["correct"], group["labellings"], strict=True)
        )
        total = int(group["labellings"].sum()) * int(group["off_training_points"].iloc[0])
        mean = Fraction(correct, total)
        deviations.append(abs(mean - Fraction(1, 2)))
        means[key] = float(mean)
    return max(deviations), pd.Series(means)


def verdict(out_dir) -> Verdict:
    table = read_csv(out_dir / "accuracy.csv")
    deviation, means = theorem_deviation(read_csv(out_dir / "theorem.csv"))
    rules = [
        Rule(
            "theorem: |mean off-training-set accuracy over all labellings - 1/2|, largest "
            "over learners and targets (exact: a ratio of integer counts)",
            float(deviation),
            "<=",
            0.0,
            f"mean accuracies {', '.join(f'{m:g}' for m in means)} "
            f"({len(means)} learner-target pairs)",
        )
    ]
    for distribution, winner, loser in (
        (NOISY_LINE, LINEAR, NEIGHBOUR),
        (CHECKERBOARD, NEIGHBOUR, LINEAR),
    ):
        margin = margins(table, distribution, winner, loser)
        rules.append(
            Rule.over_seeds(
                f"{distribution}: {winner} minus {loser} accuracy (mean over seeds)",
                margin,
                ">",
                MIN_MARGIN,
                seed_agreement(margin > MIN_MARGIN),
            )
        )
    return Verdict(CLAIM_ID, tuple(rules))


def plot(out_dir):
    table = read_csv(out_dir / "accuracy.csv")
    theorem = read_csv(out_dir / "theorem.csv")
    distributions = [NOISY_LINE, CHECKERBOARD]
    fig, (ax_theorem, ax) = figure(
        "no-free-lunch: averaged over all targets every learner is at chance; "
        "on a given target the better learner depends on the data",
        ncols=2,
        width=5.6,
        height=4.2,
    )
    colors = {LINEAR: "tab:blue", NEIGHBOUR: "tab:orange"}

    # The theorem: the share of labellings at each off-training-set accuracy.
    points = int(theorem["off_training_points"].iloc[0])
    pairs = theorem.groupby(["target", "learner"], sort=False)
    total = int(pairs["labellings"].sum().iloc[0])
    ax_theorem.bar(
        np.arange(points + 1) / points,
        np.array([comb(points, k) for k in range(points + 1)]) / 2**points,
        width=0.5 / points,
        color="lightgrey",
        label=f"theory: Binomial({points}, 1/2)",
    )
    markers = {NOISY_LINE: "o", CHECKERBOARD: "x"}
    own_labelling = []
    for (target, learner), pair in pairs:
        ax_theorem.plot(
            pair["correct"] / points,
            pair["labellings"] / total,
            markers[target],
            color=colors[learner],
            ms=5 if target == NOISY_LINE else 7,
            ls="none",
            label=f"{learner}, {target} training labels",
        )
        own_labelling.append(f"{learner}, {target}: {pair['target_correct'].iloc[0]}/{points}")
    ax_theorem.axvline(0.5, color="black", ls=":", lw=1)
    ax_theorem.text(
        -0.05,
        0.445,
        "mean over all labellings: exactly 1/2 for every pair\n"
        "right on the target's own labelling:\n" + "\n".join(own_labelling),
        fontsize=7,
        va="top",
    )
    ax_theorem.set(
        xlabel=f"off-training-set accuracy ({points} points)",
        ylabel=f"share of the {total} labellings of those points",
        title=f"theorem, enumerated: {len(GRID)}-point grid, {len(TRAINING_POINTS)} trained on",
        ylim=(0, 0.45),
    )
    ax_theorem.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=7)

    for learner, color in colors.items():
        wide = table[table["learner"] == learner].pivot(
            index="seed", columns="distribution", values="test_accuracy"
        )[distributions]
        for i, (_, seed_accuracies) in enumerate(wide.iterrows()):
            ax.plot(
                [0, 1],
                seed_accuracies.to_numpy(),
                color=color,
                marker="o",
                ms=4,
                lw=0.8,
                alpha=0.6,
                label=learner if i == 0 else None,
            )
    ax.set_xticks([0, 1], ["noisy line\n(20% labels flipped)", "checkerboard\n(XOR of signs)"])
    ax.set_xlim(-0.3, 1.3)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.text(1.28, 0.5, "chance", ha="right", va="bottom", color="grey", fontsize=8)
    ax.set(
        ylabel="test accuracy (5000 points)",
        title=f"illustration: {table['seed'].nunique()} seeds, one line each",
    )
    ax.legend(loc="lower left")
    save_figure(fig, out_dir / "accuracy.png")
