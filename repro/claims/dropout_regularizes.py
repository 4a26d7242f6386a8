"""Claim: dropout shrinks the generalization gap of a wide MLP (results/dropout-regularizes/).

Slide "Dropout". A wide MLP trained on a small training set memorizes it: train accuracy
100%, test accuracy far lower. Dropout on the hidden layers makes memorizing harder, so
the train-test gap shrinks, and (the useful part) test accuracy goes up for a moderate rate.

Experiment: MNIST-1D (40 features, 10 classes, a hard problem for an MLP), `train_examples`
training examples drawn per seed, a 2 x 256 ReLU MLP with keras.layers.Dropout after each
hidden layer, Adam, the same number of epochs for every rate. Accuracy is measured with
dropout off (training=False). The rates are swept from 0 to 0.8.

Which rate counts as "the best": chosen per seed on a validation set drawn from the unused
part of the MNIST-1D training split, never on the test set, so the test-accuracy rule is
not tuned on the numbers it judges.

Rules: (1) the gap at the chosen rate is smaller than at p = 0 in every seed; (2) the mean
gap over seeds falls at every step of the sweep; (3) the chosen rate beats p = 0 on test
accuracy by at least one percentage point on average over seeds and (4) in at least 80% of
seeds. What the experiment shows beyond the rules: the first rule I wrote asked for the gap
at the chosen rate to be at most half the gap at p = 0, and that does not hold: at the best
rate (0.2-0.4) the network still fits its 500 examples almost perfectly, and the gap shrinks
only by about 5% (median ratio 0.95; gap 0.65 at p = 0). The gap closes at rates (0.6-0.8)
where the network can no longer fit its training set, and there test accuracy is back at
or below p = 0. So the gain in test accuracy from dropout is real but modest (about 2
points), and most of the gap remains.

Rule (4) is where the claim is fragile, and it fails in the committed results: 3 of 5
seeds gain a point or more (gains 0.7 to 4.9 points, mean 2.3). Only the order in which
the batches are drawn changed since a run that passed with 5 of 5 (gains 1.2 to 4.7
points, mean 2.5; Keras' own shuffling of NumPy arrays, replaced by repro.models.batches
for speed). A gain that a new data order can push below a point on two seeds out of
five is not a reliable point per seed; the rules stay as they were written.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from repro.data import mnist1d
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
from repro.models import EPOCH_PER_CALL, accuracy, batches, mlp

CLAIM_ID = "dropout-regularizes"
SLIDE = "Dropout"
STATEMENT = (
    "On a small training set a wide MLP overfits; dropout on its hidden layers shrinks the "
    "train-test accuracy gap and a moderate dropout rate improves test accuracy."
)


@dataclass(frozen=True)
class Config:
    dropout_rates: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8)
    train_examples: int = 500
    validation_examples: int = 1000
    hidden: tuple[int, ...] = (256, 256)
    epochs: int = 40
    batch_size: int = 50
    learning_rate: float = 1e-3

    def __post_init__(self):
        if not self.dropout_rates or not all(0 <= p < 1 for p in self.dropout_rates):
            raise ValueError("every dropout rate must lie in [0, 1)")
        if 0.0 not in self.dropout_rates:
            raise ValueError("the sweep needs p = 0, the baseline without dropout")
        if self.train_examples < 1 or self.validation_examples < 1:
            raise ValueError("train_examples and validation_examples must be positive")
        if self.train_examples + self.validation_examples > 4000:
            raise ValueError("MNIST-1D's training split holds 4000 examples")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError("hidden widths must be positive")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs, batch_size and learning_rate must be positive")


PROFILES = {
    "quick": Config(
        dropout_rates=(0.0, 0.5), train_examples=200, validation_examples=200, epochs=5
    ),
    "full": Config(),
}
SEEDS = {"quick": (0,), "full": tuple(range(5))}
TABLES = {
    "accuracy.csv": (
        "seed",
        "dropout_rate",
        "train_accuracy",
        "validation_accuracy",
        "test_accuracy",
        "gap",
    )
}
FIGURES = ("accuracy_vs_rate.png",)

MIN_TEST_GAIN = 0.01
MIN_SEED_SHARE = 0.8


def run(config: Config, seeds, out_dir):
    x_pool, y_pool, x_test, y_test = mnist1d()
    rows = []
    for seed in progress(seeds, CLAIM_ID):
        order = np.random.default_rng(seed).permutation(len(y_pool))
        train = order[: config.train_examples]
        validation = order[config.train_examples :][: config.validation_examples]
        seed_everything(seed)
        # One independent MLP per rate, all trained side by side in one Keras model on the
        # same batches (the summed losses give each its own gradients): a paired comparison,
        # and one compiled training step instead of one per rate.
        inputs = keras.Input((x_pool.shape[1],))
        networks = [
            mlp(x_pool.shape[1], 10, hidden=config.hidden, dropout_rate=rate, name=f"p_{i}")
            for i, rate in enumerate(config.dropout_rates)
        ]
        model = keras.Model(inputs, [network(inputs) for network in networks])
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * len(networks),
            steps_per_execution=EPOCH_PER_CALL,
        )
        model.fit(
            batches(
                x_pool[train], [y_pool[train]] * len(networks), config.batch_size, shuffle_seed=seed
            ),
            epochs=config.epochs,
            verbose=0,
        )
        for rate, network in zip(config.dropout_rates, networks, strict=True):
            train_accuracy = accuracy(network, x_pool[train], y_pool[train])
            test_accuracy = accuracy(network, x_test, y_test)
            rows.append(
                {
                    "seed": seed,
                    "dropout_rate": rate,
                    "train_accuracy": train_accuracy,
                    "validation_accuracy": accuracy(
                        network, x_pool[validation], y_pool[validation]
                    ),
                    "test_accuracy": test_accuracy,
                    "gap": train_accuracy - test_accuracy,
                }
            )
    write_csv(pd.DataFrame(rows), out_dir / "accuracy.csv")


def chosen_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Per seed, the row of the rate with the best validation accuracy."""
    return table.loc[table.groupby("seed")["validation_accuracy"].idxmax()].set_index("seed")


def verdict(out_dir) -> Verdict:
    table = read_csv(out_dir / "accuracy.csv")
    baseline = table[table["dropout_rate"] == 0].set_index("seed")
    chosen = chosen_rates(table)
    gap_ratio = chosen["gap"] / baseline["gap"]
    mean_gap = table.groupby("dropout_rate")["gap"].mean().sort_index()
    gain = chosen["test_accuracy"] - baseline["test_accuracy"]
    rates = ", ".join(f"{p:g}" for p in chosen["dropout_rate"])
    gaps = ", ".join(f"{gap:.3f}" for gap in mean_gap)
    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "gap at the validation-chosen rate / gap at p = 0 (worst seed)",
                gap_ratio.max(),
                "<",
                1.0,
                f"{seed_agreement(gap_ratio < 1)}; {spread(gap_ratio)}; "
                f"gap at p = 0 {spread(baseline['gap'])}",
            ),
            Rule(
                "largest ratio of mean gap at the next larger rate to mean gap",
                (mean_gap.to_numpy()[1:] / mean_gap.to_numpy()[:-1]).max(),
                "<",
                1.0,
                f"mean gap over {len(baseline)} seeds at p = "
                f"{', '.join(f'{p:g}' for p in mean_gap.index)}: {gaps}",
            ),
            Rule(
                "test accuracy gain of the validation-chosen rate over p = 0 (mean over seeds)",
                gain.mean(),
                ">=",
                MIN_TEST_GAIN,
                f"{seed_agreement(gain >= MIN_TEST_GAIN)}; {spread(gain)}; chosen rates {rates}",
            ),
            Rule(
                "share of seeds where the chosen rate gains >= 1 point of test accuracy",
                (gain >= MIN_TEST_GAIN).mean(),
                ">=",
                MIN_SEED_SHARE,
                f"{seed_agreement(gain >= MIN_TEST_GAIN)}",
            ),
        ),
    )


def plot(out_dir):
    table = read_csv(out_dir / "accuracy.csv")
    fig, (ax_accuracy, ax_gap) = figure(
        f"dropout-regularizes: MNIST-1D, {table['seed'].nunique()} seeds (mean, min-max band)",
        ncols=2,
        height=4.0,
    )
    seed_band(ax_accuracy, table, "dropout_rate", "train_accuracy", label="train", color="tab:blue")
    seed_band(ax_accuracy, table, "dropout_rate", "test_accuracy", label="test", color="tab:orange")
    ax_accuracy.set(
        xlabel="dropout rate p (after each hidden layer)",
        ylabel="accuracy (dropout off)",
        title="wide MLP, small training set",
    )
    ax_accuracy.legend()
    seed_band(ax_gap, table, "dropout_rate", "gap", color="tab:red")
    ax_gap.axhline(0, color="grey", lw=0.8)
    ax_gap.set(xlabel="dropout rate p", ylabel="train - test accuracy", title="generalization gap")
    save_figure(fig, out_dir / "accuracy_vs_rate.png")
