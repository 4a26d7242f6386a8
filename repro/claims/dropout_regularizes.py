"""Claim: dropout shrinks the generalization gap of a wide MLP (results/dropout-regularizes/).

Slide "Dropout". A wide MLP can fit its training set almost exactly; dropout on its hidden
layers makes that memorizing harder, so the train-test gap shrinks and, for a rate chosen
on validation data, test accuracy goes up.

Design, decided before any new data (issue 14):
- Data in dropout's regime: MNIST-1D from its own generator, 4000 training and 2000
  validation examples drawn per seed from a generated pool of 8000, and one generated test
  set of 20,000 examples (sampling noise of a test accuracy near 0.6: about 0.35 points).
  Srivastava et al. (2014, section 7.4) saw no gain from dropout below about 1,000
  training examples; the earlier design used 500 and a 1,000-example test set.
- Model: a 2 x 256 ReLU MLP (2 x 512 would not fit the budget; see the pilot) with
  keras.layers.Dropout(p) after each hidden layer, for p in {0, 0.1, 0.2, 0.3, 0.5}. All
  five arms are trained side by side in one Keras model, from the same initial weights
  and on the same batches: paired on initial weights and batch order. Every arm gets the
  same budget of epochs and Adam steps.
- Checkpoint: for every arm, the baseline included, the epoch with the lowest validation
  loss (the weights are kept and restored, as EarlyStopping(restore_best_weights=True)
  would, but per arm of the shared model).
- The rate is chosen per seed, as a practitioner would: the highest validation accuracy
  (counted in examples, so ties are exact and go to the smaller rate).
- Accuracies are measured with dropout off (training=False).

Rules (95% t-interval over seeds of a per-seed paired statistic):
1. test gain: test accuracy at the chosen rate minus at p = 0, mean > 0. The lecture's
   "dropout improves test accuracy"; 0 because any gain that the interval excludes from
   0 is the effect, and its size is reported, not required.
2. gap change: (train - test accuracy) at the chosen rate minus at p = 0, mean < 0. The
   lecture's "dropout shrinks the gap", judged at the rate that is actually chosen.

Pilot (seeds 100-104, which the verdict never uses, run after the rules above were
written; the full profile's size was chosen from it, before the final runs):
- 2 x 512 for 60 epochs took over 200 s of one core for three seeds, alone more than the
  budget of both dropout claims, and was stopped; the design uses 2 x 256 for 40 epochs.
- 2 x 256, 40 epochs, 5 seeds: test gain +3.9 points (per seed +2.8 to +4.9, standard
  deviation 0.85 points; chosen rates 0.1-0.3); gap change -0.018 (per seed -0.052 to
  +0.066, standard deviation 0.048). The gap at p = 0 is 0.285: the early-stopped
  baseline stops at epochs 17-24, while p = 0.1 trains to epochs 31-39 and fits its
  training set better, so a seed that picks p = 0.1 can end with a larger gap.
- The gain rule needs 3 seeds to exclude 0; the gap rule would need about 30 at that
  spread, 8 times the budget. The full profile ran 8 seeds (about 25 s of one core
  each): the gain's interval half-width is then about 0.7 points; the gap rule's about
  4 points, so it is expected to stay inconclusive unless the new seeds agree more.
- In the pilot the arms drew their own initial weights; the full runs start every arm
  from the same weights (the design above, fixed before the final runs), which is meant
  to narrow the spread of the paired differences.
- Arms with p >= 0.2 reach their lowest validation loss at the last epoch: the budget
  ends before they do, which if anything understates the gain of dropout.
- Seeds, changed after the full runs for the time budget of sections C and D (issue
  14), not for the verdict: 5 seeds, not 8. The gain rule's per-seed spread stayed near
  the pilot's (half-width about 1 point against a gain of 4); the gap rule's mean sits
  near 0, where no affordable number of seeds would decide it. On the first 5 seeds of
  both 8-seed runs both rules kept their outcomes.

Outcome (full profile): INCONCLUSIVE, the same on seeds 0-4 and 1000-1004 (and on the
8-seed runs before the change of seeds, seeds 0-7 and 1000-1007).
- Test gain: +4.1 points (interval +3.3 to +4.9) on seeds 0-4, +4.1 (+3.6 to +4.7) on
  seeds 1000-1004; every seed gains 3.4 to 4.8 points. Dropout at a validation-chosen
  rate (0.1 or 0.2) improves test accuracy from 0.62 to 0.66.
- Gap change: +0.008 (-0.007 to +0.023) and +0.007 (-0.025 to +0.039): not shown. The
  gap does shrink with p at a fixed rate (0.29 at p = 0, 0.27 at 0.2, 0.13 at 0.5), but
  the chosen rates are small, and their arms train to the end of the budget (best
  epochs 35-40) while the early-stopped baseline stops near epoch 20: they fit the
  training set better (train accuracy 0.96 at p = 0.1 against 0.91) as well as the test
  set, so the gap at the chosen rate is about the baseline's. Dropout here buys test
  accuracy, not a smaller gap.
- About 147 s per run in `make all` (two jobs at once); 8 seeds took about 200 s of one
  core.

History: the first design (500 training examples, 2 x 256, rates up to 0.8, no early
stopping, a 1,000-example test set) judged "at least 1 point in 80% of seeds" and "gap
halved", later relaxed to "gap smaller" after data. Its per-seed gains (+0.7 to +4.2
points) were within the test set's sampling noise, and its verdict flipped between
machines and seed sets. Both rules were replaced by the two above, with intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from repro.data import mnist1d
from repro.figures import figure, save_figure
from repro.models import EPOCH_PER_CALL, Retrainable, batches, mlp
from repro.records import progress, read_csv, write_csv
from repro.rules import Rule, Verdict, mean_interval

CLAIM_ID = "dropout-regularizes"
SLIDE = "Dropout"
STATEMENT = (
    "A wide MLP fits its training set far better than new data; dropout on its hidden "
    "layers shrinks that train-test gap, and a rate chosen on validation data improves "
    "test accuracy."
)


@dataclass(frozen=True)
class Config:
    dropout_rates: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5)
    train_examples: int = 4000
    validation_examples: int = 2000
    pool_examples: int = 8000  # generated; each seed draws its training and validation sets
    test_examples: int = 20000
    hidden: tuple[int, ...] = (256, 256)
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 1e-3

    def __post_init__(self):
        if not self.dropout_rates or not all(0 <= p < 1 for p in self.dropout_rates):
            raise ValueError("every dropout rate must lie in [0, 1)")
        if self.dropout_rates[0] != 0.0 or list(self.dropout_rates) != sorted(self.dropout_rates):
            raise ValueError("the rates must rise from p = 0, the baseline without dropout")
        if min(self.train_examples, self.validation_examples, self.test_examples) < 1:
            raise ValueError("train, validation and test examples must be positive")
        if self.train_examples + self.validation_examples > self.pool_examples:
            raise ValueError("the training and validation sets are drawn from pool_examples")
        if (self.pool_examples + self.test_examples) % 10:
            raise ValueError("MNIST-1D's generator makes the same number of each of 10 classes")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError("hidden widths must be positive")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs, batch_size and learning_rate must be positive")


PROFILES = {
    "quick": Config(
        dropout_rates=(0.0, 0.5),
        train_examples=400,
        validation_examples=200,
        pool_examples=800,
        test_examples=1000,
        hidden=(64, 64),
        epochs=4,
    ),
    "full": Config(),
}
SEEDS = {"quick": (0, 1), "full": tuple(range(5))}  # see the docstring
TABLES = {
    "accuracy.csv": (
        "seed",
        "dropout_rate",
        "best_epoch",
        "validation_loss",
        "validation_correct",
        "train_accuracy",
        "validation_accuracy",
        "test_accuracy",
        "gap",
    )
}
FIGURES = ("accuracy_vs_rate.png",)


def compiled_arms(config: Config, input_dim: int) -> keras.Model:
    """One MLP per rate side by side in one Keras model: the summed losses give each its own
    gradients, so each arm trains as it would alone, on the same batches."""
    inputs = keras.Input((input_dim,))
    arms = [
        mlp(input_dim, 10, hidden=config.hidden, dropout_rate=rate, name=f"p_{i}")
        for i, rate in enumerate(config.dropout_rates)
    ]
    model = keras.Model(inputs, [arm(inputs) for arm in arms])
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * len(arms),
        steps_per_execution=EPOCH_PER_CALL,
    )
    return model


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(len(labels)), labels].mean())


class BestValidationLoss(keras.callbacks.Callback):
    """After each epoch, keep each arm's weights if its validation loss is its lowest yet."""

    def __init__(self, x_validation, y_validation):
        super().__init__()
        self.x, self.y = x_validation, y_validation

    def on_train_begin(self, logs=None):
        arms = len(self.model.outputs)
        self.best_loss, self.best_epoch = [np.inf] * arms, [0] * arms
        self.best_weights = [None] * arms

    def on_epoch_end(self, epoch, logs=None):
        all_logits = self.model.predict_on_batch(self.x)  # dropout off in predict
        for i, logits in enumerate(all_logits):
            loss = cross_entropy(np.asarray(logits), self.y)
            if loss < self.best_loss[i]:
                self.best_loss[i], self.best_epoch[i] = loss, epoch + 1
                self.best_weights[i] = self.arm(i).get_weights()

    def arm(self, i: int) -> keras.Model:
        return self.model.get_layer(f"p_{i}")

    def restore(self) -> None:
        for i, weights in enumerate(self.best_weights):
            self.arm(i).set_weights(weights)


def run(config: Config, seeds, out_dir):
    x_pool, y_pool, x_test, y_test = mnist1d(
        num_samples=config.pool_examples + config.test_examples,
        train_split=config.pool_examples / (config.pool_examples + config.test_examples),
    )
    assert len(y_pool) == config.pool_examples and len(y_test) == config.test_examples
    net = Retrainable(lambda: compiled_arms(config, x_pool.shape[1]))
    rows = []
    for seed in progress(seeds, CLAIM_ID):
        order = np.random.default_rng(seed).permutation(len(y_pool))
        train = order[: config.train_examples]
        validation = order[config.train_examples :][: config.validation_examples]
        model = net.restart(seed)
        # Dropout has no weights, so every arm can start from the same weights as p = 0.
        for i in range(1, len(config.dropout_rates)):
            model.get_layer(f"p_{i}").set_weights(model.get_layer("p_0").get_weights())
        best = BestValidationLoss(x_pool[validation], y_pool[validation])
        model.fit(
            batches(x_pool[train], [y_pool[train]] * len(model.outputs), config.batch_size, seed),
            epochs=config.epochs,
            verbose=0,
            callbacks=[best],
        )
        best.restore()
        sets = {
            "train": (x_pool[train], y_pool[train]),
            "validation": (x_pool[validation], y_pool[validation]),
            "test": (x_test, y_test),
        }
        correct = {
            name: [np.asarray(logits).argmax(axis=1) == y for logits in model.predict_on_batch(x)]
            for name, (x, y) in sets.items()
        }
        for i, rate in enumerate(config.dropout_rates):
            train_accuracy, test_accuracy = correct["train"][i].mean(), correct["test"][i].mean()
            rows.append(
                {
                    "seed": seed,
                    "dropout_rate": rate,
                    "best_epoch": best.best_epoch[i],
                    "validation_loss": best.best_loss[i],
                    "validation_correct": int(correct["validation"][i].sum()),
                    "train_accuracy": train_accuracy,
                    "validation_accuracy": correct["validation"][i].mean(),
                    "test_accuracy": test_accuracy,
                    "gap": train_accuracy - test_accuracy,
                }
            )
    write_csv(pd.DataFrame(rows), out_dir / "accuracy.csv")


def paired(table: pd.DataFrame) -> pd.DataFrame:
    """Per seed: the chosen rate, and its test gain and gap change against p = 0."""
    table = table.sort_values(["seed", "dropout_rate"], kind="stable")
    # idxmax keeps the first of equal counts: ties go to the smaller rate.
    chosen = table.loc[table.groupby("seed")["validation_correct"].idxmax()].set_index("seed")
    baseline = table.groupby("seed").first()  # the smallest rate, p = 0 (Config requires it)
    return pd.DataFrame(
        {
            "chosen_rate": chosen["dropout_rate"],
            "test_gain": chosen["test_accuracy"] - baseline["test_accuracy"],
            "gap_change": chosen["gap"] - baseline["gap"],
            "baseline_gap": baseline["gap"],
        }
    )


def verdict(out_dir) -> Verdict:
    per_seed = paired(read_csv(out_dir / "accuracy.csv"))
    rates = ", ".join(f"{p:g}" for p in per_seed["chosen_rate"])
    return Verdict(
        CLAIM_ID,
        (
            Rule.over_seeds(
                "test gain: test accuracy at the validation-chosen rate minus at p = 0",
                per_seed["test_gain"].to_numpy(),
                ">",
                0.0,
                f"chosen rates {rates}",
            ),
            Rule.over_seeds(
                "gap change: train-test gap at the validation-chosen rate minus at p = 0",
                per_seed["gap_change"].to_numpy(),
                "<",
                0.0,
                f"gap at p = 0: mean {per_seed['baseline_gap'].mean():.3f}",
            ),
        ),
    )


def plot(out_dir):
    table = read_csv(out_dir / "accuracy.csv").sort_values(["seed", "dropout_rate"])
    per_seed = paired(table)
    baseline = table.groupby("seed").first()
    table["test_gain"] = table["test_accuracy"] - table["seed"].map(baseline["test_accuracy"])
    table["gap_change"] = table["gap"] - table["seed"].map(baseline["gap"])
    seeds = table["seed"].nunique()
    fig, axes = figure(
        f"dropout-regularizes: MNIST-1D, wide MLP, {seeds} seeds "
        "(mean and 95% t-interval over seeds)",
        ncols=3,
        width=5.0,
        height=4.0,
    )

    def mean_band(ax, column, label, color):
        rates = sorted(table["dropout_rate"].unique())
        stats = np.array(
            [mean_interval(table.loc[table["dropout_rate"] == p, column]) for p in rates]
        )
        ax.plot(rates, stats[:, 0], color=color, lw=1.8, marker="o", ms=3, label=label)
        ax.fill_between(rates, stats[:, 1], stats[:, 2], color=color, alpha=0.25, lw=0)

    ax_accuracy, ax_gain, ax_gap = axes
    mean_band(ax_accuracy, "train_accuracy", "train", "tab:blue")
    mean_band(ax_accuracy, "test_accuracy", "test", "tab:orange")
    ax_accuracy.set(
        xlabel="dropout rate p (after each hidden layer)",
        ylabel="accuracy (dropout off)",
        title="at each arm's best-validation-loss epoch",
    )
    ax_accuracy.legend()

    for ax, column, name in (
        (ax_gain, "test_gain", "test accuracy gain vs p = 0"),
        (ax_gap, "gap_change", "train-test gap change vs p = 0"),
    ):
        mean_band(ax, column, "each rate, paired with p = 0", "tab:gray")
        mean, low, high = mean_interval(per_seed[column])
        ax.errorbar(
            per_seed["chosen_rate"].mean(),
            mean,
            yerr=[[mean - low], [high - mean]],
            fmt="D",
            color="tab:red",
            capsize=4,
            label="validation-chosen rate (x: mean rate)",
        )
        ax.axhline(0, color="k", lw=0.8, ls="--")
        ax.set(xlabel="dropout rate p", ylabel=name)
        ax.legend(fontsize=8)
    ax_gain.set_title("rule 1: gain > 0")
    ax_gap.set_title("rule 2: gap change < 0")
    save_figure(fig, out_dir / "accuracy_vs_rate.png")
