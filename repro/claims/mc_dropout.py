"""Claim: with dropout on at prediction, masks disagree on errors (results/mc-dropout/).

Slide "Dropout". Monte Carlo dropout: keep dropout active when predicting
(model(x, training=True)) and average the softmax over many masks. Where the masks
disagree the network is unsure, and unsure predictions should be the wrong ones more often;
inputs unlike anything in training should also make the masks disagree.

Experiment: MNIST-1D restricted to classes 0-7 for training (`train_examples` of them); the
test examples of classes 8 and 9 are held-out-class inputs, and Gaussian noise with the
training data's per-feature mean and standard deviation is a second kind of unfamiliar
input. A 2 x 256 ReLU MLP with Dropout(`dropout_rate`) is trained with Adam; each example
then gets `masks` stochastic forward passes. The prediction is the arg-max of the mean
softmax; the disagreement scores are the entropy of the mean softmax (predictive entropy)
and the share of masks that vote against the majority class.

Rules (thresholds fixed from the meaning of AUROC, 0.5 = chance): predictive entropy as a
detector of wrong predictions on the in-distribution test set has AUROC >= 0.7 in every
seed; as a detector of held-out-class inputs against in-distribution test inputs it has
AUROC >= 0.6 in every seed (held-out digits look like digits, so a weaker margin), and
noise inputs get a higher mean entropy than in-distribution inputs in every seed.

Outcome (full profile): the error-detection and noise rules hold, the held-out-class rule
does not: AUROC 0.53-0.57, above chance in every seed but short of the 0.6 fixed
beforehand. The network is only about 59% accurate on the eight known MNIST-1D classes, so
it is already unsure about much of its own test set; held-out classes get the entropy of
its wrong predictions (see the histogram), not more. Disagreement across masks separates
what the network gets wrong, and pure noise, but not unseen classes of similar-looking
signals, so the verdict is NOT REPRODUCED for that part of the claim.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from repro.data import mnist1d
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
from repro.models import EPOCH_PER_CALL, batches, mlp

CLAIM_ID = "mc-dropout"
SLIDE = "Dropout"
STATEMENT = (
    "With dropout left on at prediction time, the disagreement across masks is larger on the "
    "examples the network gets wrong and on inputs unlike its training data."
)

KNOWN_CLASSES = 8  # classes 0..7 are trained on; 8 and 9 are held out


@dataclass(frozen=True)
class Config:
    train_examples: int = 2000
    hidden: tuple[int, ...] = (256, 256)
    dropout_rate: float = 0.3
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    masks: int = 50  # stochastic forward passes per example
    noise_examples: int = 500

    def __post_init__(self):
        if not 0 < self.dropout_rate < 1:
            raise ValueError("dropout_rate must lie strictly between 0 and 1")
        if self.train_examples < 1 or self.noise_examples < 1 or self.masks < 2:
            raise ValueError("train_examples, noise_examples >= 1 and masks >= 2 required")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError("hidden widths must be positive")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs, batch_size and learning_rate must be positive")


PROFILES = {
    "quick": Config(train_examples=500, epochs=3, masks=10, noise_examples=100),
    "full": Config(),
}
SEEDS = {"quick": (0,), "full": tuple(range(6))}
TABLES = {
    "predictions.csv": (
        "seed",
        "inputs",
        "label",
        "predicted",
        "correct",
        "predictive_entropy",
        "vote_disagreement",
    )
}
FIGURES = ("disagreement.png",)

ERROR_AUROC = 0.7
HELD_OUT_AUROC = 0.6


def mc_predict(model, x, masks: int):
    """Mean softmax over `masks` dropout masks, and the share of masks outvoting the majority."""
    probabilities = np.stack(
        [
            keras.ops.convert_to_numpy(keras.ops.softmax(model(x, training=True)))
            for _ in range(masks)
        ]
    )
    mean = probabilities.mean(axis=0)
    predicted = mean.argmax(axis=1)
    votes = probabilities.argmax(axis=2)
    majority_share = np.stack([(votes == k).mean(axis=0) for k in range(mean.shape[1])]).max(axis=0)
    entropy = -(mean * np.log(np.clip(mean, 1e-12, None))).sum(axis=1)
    return predicted, entropy, 1.0 - majority_share


def run(config: Config, seeds, out_dir):
    x_pool, y_pool, x_test, y_test = mnist1d()
    known_pool = np.flatnonzero(y_pool < KNOWN_CLASSES)
    rows = []
    for seed in progress(seeds, CLAIM_ID):
        rng = np.random.default_rng(seed)
        train = rng.choice(known_pool, config.train_examples, replace=False)
        x_train, y_train = x_pool[train], y_pool[train]
        noise = rng.normal(
            x_train.mean(axis=0), x_train.std(axis=0), (config.noise_examples, x_train.shape[1])
        ).astype("float32")
        seed_everything(seed)
        model = mlp(
            x_train.shape[1], KNOWN_CLASSES, hidden=config.hidden, dropout_rate=config.dropout_rate
        )
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            steps_per_execution=EPOCH_PER_CALL,
        )
        model.fit(
            batches(x_train, y_train, config.batch_size, shuffle_seed=seed),
            epochs=config.epochs,
            verbose=0,
        )
        known = y_test < KNOWN_CLASSES
        for name, x, labels in (
            ("test", x_test[known], y_test[known]),
            ("held-out classes", x_test[~known], y_test[~known]),
            ("noise", noise, np.full(len(noise), -1)),
        ):
            predicted, entropy, disagreement = mc_predict(model, x, config.masks)
            rows.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "inputs": name,
                        "label": labels,
                        "predicted": predicted,
                        "correct": predicted == labels,
                        "predictive_entropy": entropy,
                        "vote_disagreement": disagreement,
                    }
                )
            )
    write_csv(pd.concat(rows, ignore_index=True), out_dir / "predictions.csv")


def per_seed_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per seed: error-detection AUROC, held-out AUROC, and mean entropy of each input kind."""
    rows = []
    for seed, group in predictions.groupby("seed"):
        test = group[group["inputs"] == "test"]
        held_out = group[group["inputs"] == "held-out classes"]
        noise = group[group["inputs"] == "noise"]
        versus_held_out = pd.concat([test, held_out])
        rows.append(
            {
                "seed": seed,
                "test_accuracy": test["correct"].mean(),
                "error_auroc": roc_auc_score(~test["correct"], test["predictive_entropy"]),
                "error_auroc_votes": roc_auc_score(~test["correct"], test["vote_disagreement"]),
                "held_out_auroc": roc_auc_score(
                    versus_held_out["inputs"] == "held-out classes",
                    versus_held_out["predictive_entropy"],
                ),
                "entropy_test": test["predictive_entropy"].mean(),
                "entropy_noise": noise["predictive_entropy"].mean(),
            }
        )
    return pd.DataFrame(rows).set_index("seed")


def verdict(out_dir) -> Verdict:
    scores = per_seed_scores(read_csv(out_dir / "predictions.csv"))
    noise_excess = scores["entropy_noise"] - scores["entropy_test"]
    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "AUROC of predictive entropy for wrong vs right test predictions (worst seed)",
                scores["error_auroc"].min(),
                ">=",
                ERROR_AUROC,
                f"{seed_agreement(scores['error_auroc'] >= ERROR_AUROC)}; "
                f"{spread(scores['error_auroc'])}; with vote disagreement "
                f"{spread(scores['error_auroc_votes'])}; test accuracy "
                f"{spread(scores['test_accuracy'])}",
            ),
            Rule(
                "AUROC of predictive entropy for held-out classes vs test inputs (worst seed)",
                scores["held_out_auroc"].min(),
                ">=",
                HELD_OUT_AUROC,
                f"{seed_agreement(scores['held_out_auroc'] >= HELD_OUT_AUROC)}; "
                f"{spread(scores['held_out_auroc'])}",
            ),
            Rule(
                "mean entropy on noise inputs minus on test inputs (worst seed)",
                noise_excess.min(),
                ">",
                0.0,
                f"{seed_agreement(noise_excess > 0)}; {spread(noise_excess)}",
            ),
        ),
    )


def plot(out_dir):
    predictions = read_csv(out_dir / "predictions.csv")
    scores = per_seed_scores(predictions)
    test = predictions[predictions["inputs"] == "test"]
    groups = (
        ("right (test)", test[test["correct"]], "tab:blue"),
        ("wrong (test)", test[~test["correct"]], "tab:red"),
        (
            "held-out classes 8, 9",
            predictions[predictions["inputs"] == "held-out classes"],
            "tab:purple",
        ),
        ("Gaussian noise", predictions[predictions["inputs"] == "noise"], "tab:gray"),
    )
    fig, (ax_hist, ax_auroc) = figure(
        f"mc-dropout: disagreement across dropout masks ({len(scores)} seeds)",
        ncols=2,
        height=4.0,
    )
    bins = np.linspace(0, np.log(KNOWN_CLASSES), 31)
    for label, group, color in groups:
        ax_hist.hist(
            group["predictive_entropy"],
            bins=bins,
            density=True,
            histtype="step",
            lw=1.6,
            color=color,
            label=f"{label} (n={len(group)})",
        )
    ax_hist.set(
        xlabel="predictive entropy of the mean softmax (nats)",
        ylabel="density (all seeds pooled)",
        title="entropy by kind of input",
    )
    ax_hist.legend(fontsize=8)

    measures = (
        ("error_auroc", "wrong vs right\n(entropy)"),
        ("error_auroc_votes", "wrong vs right\n(vote disagreement)"),
        ("held_out_auroc", "held-out classes\nvs test (entropy)"),
    )
    for i, (column, _) in enumerate(measures):
        ax_auroc.scatter(np.full(len(scores), i), scores[column], color="k", s=14, zorder=3)
    ax_auroc.axhline(0.5, color="grey", ls="--", lw=1, label="chance")
    ax_auroc.hlines(
        [ERROR_AUROC, HELD_OUT_AUROC],
        [-0.3, 1.7],
        [0.3, 2.3],
        color="tab:red",
        label="rule threshold",
    )
    ax_auroc.set_xticks(range(3), [label for _, label in measures], fontsize=8)
    ax_auroc.set(ylim=(0.4, 1.0), ylabel="AUROC (one dot per seed)", title="as a detector")
    ax_auroc.legend(fontsize=8, loc="lower left")
    save_figure(fig, out_dir / "disagreement.png")
