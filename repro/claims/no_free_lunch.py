"""Claim: no learner is best on every distribution; two learners swap ranks (Wolpert, 1995).

Results: results/no-free-lunch/. Slide "Generalization in Deep Learning". Averaged over all
possible target functions every learner does equally well, so a learner can only beat
another on some distributions by losing on others: what makes a learner good is how well
its assumptions (its inductive bias) match the data.

Experiment: two learners with opposite biases, on two distributions of points drawn
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

Rules: on every seed, A is more accurate than B on the noisy line and B more accurate than
A on the checkerboard (margin > 0). The measured numbers are the worst seed's margins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from repro.figures import figure
from repro.harness import Rule, Verdict, progress, read_csv, save_figure, seed_agreement, write_csv

CLAIM_ID = "no-free-lunch"
SLIDE = "Generalization in Deep Learning"
STATEMENT = (
    "No learner beats every other on every data distribution: a linear model beats "
    "1-nearest-neighbour on a noisy linear problem, and 1-nearest-neighbour beats the linear "
    "model on a checkerboard."
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
TABLES = {"accuracy.csv": ("seed", "distribution", "learner", "test_accuracy")}
FIGURES = ("accuracy.png",)


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


def margins(table: pd.DataFrame, distribution: str, winner: str, loser: str) -> pd.Series:
    """Per seed, winner's minus loser's test accuracy on one distribution."""
    wide = table[table["distribution"] == distribution].pivot(
        index="seed", columns="learner", values="test_accuracy"
    )
    return wide[winner] - wide[loser]


def verdict(out_dir) -> Verdict:
    table = read_csv(out_dir / "accuracy.csv")
    rules = []
    for distribution, winner, loser in (
        (NOISY_LINE, LINEAR, NEIGHBOUR),
        (CHECKERBOARD, NEIGHBOUR, LINEAR),
    ):
        margin = margins(table, distribution, winner, loser)
        rules.append(
            Rule(
                f"{distribution}: {winner} minus {loser} accuracy (worst seed)",
                margin.min(),
                ">",
                0.0,
                f"{seed_agreement(margin > 0)}; margin median {margin.median():.3g}, "
                f"range {margin.min():.3g} to {margin.max():.3g}",
            )
        )
    return Verdict(CLAIM_ID, tuple(rules))


def plot(out_dir):
    table = read_csv(out_dir / "accuracy.csv")
    distributions = [NOISY_LINE, CHECKERBOARD]
    fig, (ax,) = figure(
        f"no-free-lunch: the better learner depends on the data "
        f"({table['seed'].nunique()} seeds, one line each)",
        width=6.4,
        height=4.2,
    )
    colors = {LINEAR: "tab:blue", NEIGHBOUR: "tab:orange"}
    for learner, color in colors.items():
        wide = table[table["learner"] == learner].pivot(
            index="seed", columns="distribution", values="test_accuracy"
        )[distributions]
        for i, (_, accuracies) in enumerate(wide.iterrows()):
            ax.plot(
                [0, 1],
                accuracies.to_numpy(),
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
    ax.set(ylabel="test accuracy", title="each learner wins on the data that fits its assumption")
    ax.legend(loc="lower left")
    save_figure(fig, out_dir / "accuracy.png")
