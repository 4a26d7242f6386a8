"""Claim: under label noise, early stopping tests at least as well as training to the end.

Results: results/early-stopping/. Slide "Generalization in Deep Learning". Watch the
validation error after every epoch and stop once `patience` epochs in a row have failed to
improve it by more than epsilon (min_delta). With noisy labels the net fits the clean
pattern first and memorizes the wrong labels later (see label-noise-order), so the model
cut off early keeps a good early solution, and costs only a fraction of the epochs.
Notes, pilots and history: docs/claims/early-stopping.md.

Design. Every seed draws 600 training and 300 validation images from scikit-learn's digits
training split and gives 40% of both a wrong label (`randomize_labels`): the validation
set comes from the same noisy source, as it would in practice. The test set (539 images)
keeps its true labels. A 2x256 ReLU MLP (Adam, learning rate 1e-3, batches of 32) is
trained through `repro.models.fit`, every run of a seed from the same initialization and
in the same data order:
- once for all 40 epochs (full_training.csv: validation and test accuracy per epoch);
- once per patience value (2, 5, 10) with Keras' EarlyStopping(monitor="val_error",
  mode="min", min_delta=0.005, patience, restore_best_weights=False), at most 40 epochs:
  the lecture's plain cut-off, which keeps the weights of the epoch it stops at. The
  validation error is 1 - accuracy on the noisy validation labels; min_delta = 0.005 is
  a little more than one validation image (1/300), so one more image right is not
  progress;
- once per patience value with the same EarlyStopping and restore_best_weights=True:
  Keras' refinement, which goes back to the weights of the best-validation epoch. It is
  shown beside the cut-off (stopping.csv, patience_table.csv, the figure), never judged.
Runs on either Keras backend.

Rules, both `lecture` (slide "Generalization in Deep Learning"), on the plain cut-off, each
on one number per seed (the worst patience value of the seed) and judged by the 95%
t-interval of its mean over seeds:
1. the cut-off model's test accuracy minus that of the model trained for all 40 epochs is
   at least 0 (no margin: the claim is "at least as well");
2. the epochs trained are at most 3/4 of the 40 (a real saving; a patience so large that
   training never stops fails).
A NaN (a failed run) fails as no measurement.

Seeds: development seeds 100-104 served the pilots; verdict seeds 0-4 were fixed before
the full run; the shifted seeds 1000-1004 run only once the design is frozen. Historically
the verdict seeds did influence the design: the count of five seeds was decided from the
curves of a run on seeds 0-4 of an earlier design (see the notes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from repro.backend import keras
from repro.data import digits, randomize_labels
from repro.figures import figure, save_figure, seed_band
from repro.models import accuracy, classifier, fit, mlp, restart, validation
from repro.records import progress, read_csv, write_csv
from repro.rules import LECTURE, Rule, Verdict, agreement_by

CLAIM_ID = "early-stopping"
SLIDE = "Generalization in Deep Learning"
STATEMENT = (
    "Under 40% label noise, cutting training off once the validation error has not "
    "decreased by more than min_delta for `patience` epochs (Keras' EarlyStopping, "
    "without restoring weights) gives a model that tests at least as well as one trained "
    "for all epochs, after at most 3/4 of the epochs."
)


@dataclass(frozen=True)
class Config:
    patiences: tuple[int, ...] = (2, 5, 10)
    min_delta: float = 0.005
    max_epochs: int = 40
    noise_rate: float = 0.4
    train_size: int = 600
    validation_size: int = 300
    hidden: tuple[int, ...] = (256, 256)
    learning_rate: float = 1e-3
    batch_size: int = 32

    def __post_init__(self):
        if not self.patiences or min(self.patiences) < 1:
            raise ValueError("patience values must be >= 1")
        if self.min_delta < 0 or not 0 <= self.noise_rate < 1:
            raise ValueError("min_delta >= 0 and noise_rate in [0, 1) required")
        if self.max_epochs <= max(self.patiences):
            raise ValueError("max_epochs must exceed every patience value")
        if self.train_size < 10 or self.validation_size < 10:
            raise ValueError("train_size and validation_size must be >= 10")
        if self.train_size + self.validation_size > len(digits()[1]):
            raise ValueError(f"train + validation must fit in {len(digits()[1])} images")
        if not self.hidden or min(self.hidden) < 1 or self.learning_rate <= 0:
            raise ValueError("positive hidden widths and learning rate required")
        if self.batch_size < 1:
            raise ValueError("batch_size >= 1 required")


PROFILES = {
    "quick": Config(patiences=(1, 3), max_epochs=6, train_size=300, hidden=(64, 64)),
    "full": Config(),
}
SEEDS = {"quick": (0,), "full": tuple(range(5))}
TABLES = {
    "stopping.csv": (
        "seed",
        "patience",
        "min_delta",
        "max_epochs",
        "noise_rate",
        "epochs_trained",
        "early_test_accuracy",
        "full_test_accuracy",
        "accuracy_gain",
        "epoch_fraction",
        "restored_epochs_trained",
        "restored_best_epoch",
        "restored_test_accuracy",
        "restore_gain",
    ),
    "full_training.csv": ("seed", "epoch", "val_accuracy", "test_accuracy"),
    "patience_table.csv": (
        "patience",
        "seeds",
        "mean_epochs_trained",
        "mean_epoch_fraction",
        "mean_early_test_accuracy",
        "mean_full_test_accuracy",
        "min_accuracy_gain",
        "seeds_at_least_as_good",
        "mean_restored_test_accuracy",
        "mean_restore_gain",
    ),
}
FIGURES = ("early_stopping.png",)

MIN_GAIN = 0.0
MAX_EPOCH_FRACTION = 0.75


def network(config: Config, input_dim: int):
    return classifier(mlp(input_dim, 10, config.hidden), config.learning_rate)


def validation_error(x_val, y_val):
    """An `evaluate` for `fit`: validation loss and accuracy, and the slide's validation
    error, 1 - accuracy, which EarlyStopping monitors."""
    measure = validation(x_val, y_val)

    def evaluate(model):
        logs = measure(model)
        return logs | {"val_error": 1.0 - logs["val_accuracy"]}

    return evaluate


def both(*evaluates):
    """One `evaluate` for `fit` that merges the numbers of several."""
    return lambda model: {k: v for evaluate in evaluates for k, v in evaluate(model).items()}


def stopper(config: Config, patience: int, restore: bool):
    return keras.callbacks.EarlyStopping(
        monitor="val_error",
        mode="min",
        min_delta=config.min_delta,
        patience=patience,
        restore_best_weights=restore,
    )


def train(config: Config, model, build, seed: int, x, y, evaluate, callbacks=()):
    """The shared net restarted as the seed's fresh one, trained for at most max_epochs:
    every run of a seed starts from the same weights and sees the same data order."""
    model = restart(model, build, seed)
    history = fit(
        model,
        x,
        y,
        epochs=config.max_epochs,
        batch_size=config.batch_size,
        seed=seed,
        callbacks=callbacks,
        evaluate=evaluate,
    )
    return model, history


def run(config: Config, seeds, out_dir):
    x_pool, y_pool, x_test, y_test = digits()
    build = partial(network, config, x_pool.shape[1])
    net = build()
    stopping, full_curves = [], []
    for seed in progress(seeds, CLAIM_ID):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y_pool))
        train_index = order[: config.train_size]
        val_index = order[config.train_size : config.train_size + config.validation_size]
        x, x_val = x_pool[train_index], x_pool[val_index]
        y, _ = randomize_labels(y_pool[train_index], config.noise_rate, rng)
        y_val, _ = randomize_labels(y_pool[val_index], config.noise_rate, rng)
        run_seed = partial(train, config, net, build, seed, x, y)
        val = validation_error(x_val, y_val)
        test = validation(x_test, y_test, name="test")

        _, history = run_seed(both(val, test))
        full_curves += [
            {"seed": seed, "epoch": r["epoch"]}
            | {"val_accuracy": r["val_accuracy"], "test_accuracy": r["test_accuracy"]}
            for r in history
        ]
        full_accuracy = history[-1]["test_accuracy"]

        for patience in config.patiences:
            model, plain = run_seed(val, [stopper(config, patience, restore=False)])
            early_accuracy = accuracy(model, x_test, y_test)
            restoring = stopper(config, patience, restore=True)
            model, restored = run_seed(val, [restoring])
            restored_accuracy = accuracy(model, x_test, y_test)
            stopping.append(
                {
                    "seed": seed,
                    "patience": patience,
                    "min_delta": config.min_delta,
                    "max_epochs": config.max_epochs,
                    "noise_rate": config.noise_rate,
                    "epochs_trained": len(plain),
                    "early_test_accuracy": early_accuracy,
                    "full_test_accuracy": full_accuracy,
                    "accuracy_gain": early_accuracy - full_accuracy,
                    "epoch_fraction": len(plain) / config.max_epochs,
                    "restored_epochs_trained": len(restored),
                    "restored_best_epoch": restoring.best_epoch + 1,
                    "restored_test_accuracy": restored_accuracy,
                    "restore_gain": restored_accuracy - early_accuracy,
                }
            )
    stopping = pd.DataFrame(stopping)
    write_csv(stopping, out_dir / "stopping.csv")
    write_csv(pd.DataFrame(full_curves), out_dir / "full_training.csv")
    write_csv(patience_table(stopping), out_dir / "patience_table.csv")


def patience_table(stopping: pd.DataFrame) -> pd.DataFrame:
    """One row per patience value: means over seeds and how many seeds kept up (plain
    cut-off), and what restoring the best weights adds."""
    grouped = stopping.groupby("patience")
    return pd.DataFrame(
        {
            "seeds": grouped.size(),
            "mean_epochs_trained": grouped["epochs_trained"].mean(),
            "mean_epoch_fraction": grouped["epoch_fraction"].mean(),
            "mean_early_test_accuracy": grouped["early_test_accuracy"].mean(),
            "mean_full_test_accuracy": grouped["full_test_accuracy"].mean(),
            "min_accuracy_gain": grouped["accuracy_gain"].min(),
            "seeds_at_least_as_good": grouped["accuracy_gain"].apply(lambda g: (g >= 0).sum()),
            "mean_restored_test_accuracy": grouped["restored_test_accuracy"].mean(),
            "mean_restore_gain": grouped["restore_gain"].mean(),
        }
    ).reset_index()


def verdict(out_dir) -> Verdict:
    stopping = read_csv(out_dir / "stopping.csv")
    per_seed = stopping.groupby("seed")  # the worst patience value of each seed
    judged = {"kind": LECTURE, "slide": SLIDE}
    return Verdict(
        CLAIM_ID,
        (
            Rule.over_seeds(
                "plain cut-off minus full-training test accuracy (worst patience per seed)",
                per_seed["accuracy_gain"].min(skipna=False),
                ">=",
                MIN_GAIN,
                agreement_by(
                    stopping, "patience", "patience", "accuracy_gain", lambda v: v >= MIN_GAIN
                ),
                **judged,
            ),
            Rule.over_seeds(
                "fraction of the epochs trained (worst patience per seed)",
                per_seed["epoch_fraction"].max(skipna=False),
                "<=",
                MAX_EPOCH_FRACTION,
                agreement_by(
                    stopping,
                    "patience",
                    "patience",
                    "epoch_fraction",
                    lambda v: v <= MAX_EPOCH_FRACTION,
                ),
                **judged,
            ),
        ),
    )


def plot(out_dir):
    stopping = read_csv(out_dir / "stopping.csv")
    curves = read_csv(out_dir / "full_training.csv")
    max_epochs = int(stopping["max_epochs"].iloc[0])
    seeds = stopping["seed"].nunique()
    rate = stopping["noise_rate"].iloc[0]
    fig, (ax_curve, ax_gain, ax_epochs) = figure(
        f"early-stopping: with {rate:.0%} of the labels wrong, does cutting training off early "
        f"test as well as training to the end?",
        ncols=3,
        width=4.6,
        height=4.2,
    )
    seed_band(
        ax_curve, curves, "epoch", "test_accuracy", "test accuracy (true labels)", color="black"
    )
    seed_band(
        ax_curve,
        curves,
        "epoch",
        "val_accuracy",
        "validation accuracy (noisy labels)",
        color="tab:gray",
    )
    ax_curve.scatter(
        stopping["epochs_trained"],
        stopping["early_test_accuracy"],
        marker="v",
        s=30,
        zorder=3,
        color="tab:blue",
        label="plain cut-off: epoch stopped and test accuracy",
    )
    ax_curve.set(
        xlabel="epoch",
        ylabel="accuracy",
        ylim=(0, 1.02),
        title=f"training for all {max_epochs} epochs",
    )

    gains = stopping.assign(
        restored_gain=stopping["restored_test_accuracy"] - stopping["full_test_accuracy"]
    )
    seed_band(ax_gain, gains, "patience", "accuracy_gain", "plain cut-off (judged)", "tab:blue")
    seed_band(
        ax_gain,
        gains,
        "patience",
        "restored_gain",
        "best weights restored (shown, not judged)",
        "tab:red",
        ls="--",
    )
    ax_gain.axhline(MIN_GAIN, color="black", lw=1, ls="-.", label="lecture rule threshold")
    ax_gain.set(
        xlabel="patience (epochs)",
        ylabel=f"test accuracy gain over all {max_epochs} epochs",
        title="accuracy gained by stopping",
        xticks=sorted(stopping["patience"].unique()),
    )

    seed_band(
        ax_epochs, stopping, "patience", "epoch_fraction", "plain cut-off (judged)", "tab:blue"
    )
    ax_epochs.axhline(
        MAX_EPOCH_FRACTION, color="black", lw=1, ls="-.", label="lecture rule threshold"
    )
    ax_epochs.set(
        xlabel="patience (epochs)",
        ylabel=f"share of the {max_epochs} epochs trained",
        ylim=(0, 1.02),
        title="share of the epochs trained",
        xticks=sorted(stopping["patience"].unique()),
    )
    handles, labels = [], []
    for ax in (ax_curve, ax_gain):
        more_handles, more_labels = ax.get_legend_handles_labels()
        handles += more_handles
        labels += more_labels
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=3,
        title=f"mean, 95% t-interval over {seeds} seeds (markers: each seed and patience)",
    )
    save_figure(fig, out_dir / "early_stopping.png")
