"""Claim: where dropout masks disagree, the network is less sure (results/mc-dropout/).

Slide "Dropout". Keep dropout on at prediction time (model(x, training=True)) and predict
each input with many masks: where the masks agree, the network may be called more
confident. So disagreement across masks should be larger on the examples the network gets
wrong.

Design, decided before any new data (issue 14):
- A task the network learns well: scikit-learn's 8 x 8 digits, classes 0-7, half of them
  for training and half for testing (a new split per seed). Inputs the network never saw:
  the images of classes 8 and 9 (held-out classes), and the test digits with their pixels
  shuffled by one fixed permutation per seed (far-out inputs).
- Model: Dropout(p) before every dense layer (the input included) of a 2 x 256 ReLU MLP,
  trained with Adam; then T = 100 masks per input, drawn in one call on the input repeated
  T times.
- "Disagreement across masks" is measured by the mutual information between the prediction
  and the mask (BALD: entropy of the mean softmax minus the mean entropy of each mask's
  softmax). It is zero when every mask gives the same softmax, whatever that softmax is, so
  it is the part of the uncertainty that the masks add. The variation ratio (the share of
  masks voting against the most common class) is the literal "predictions agree" and is
  reported beside it. The entropy of the mean softmax (total uncertainty) is a reference.
- The control: the same trained network with dropout off (training=False), its prediction
  and the entropy of its softmax, which a deterministic network has without any masks.
- Each detector is scored on its own system's errors: mutual information on the errors of
  the MC prediction (arg-max of the mean softmax), the deterministic entropy on the errors
  of the deterministic prediction.

Rules (95% t-interval over seeds of one per-seed statistic; AUROC 0.5 is chance):
1. [lecture] disagreement flags errors: AUROC of the mutual information for wrong against
   right test predictions > 0.5.
2. [lecture, against the control] AUROC of the mutual information minus AUROC of the
   deterministic softmax entropy, paired per seed, > 0. A separate named rule, and part of
   the verdict: the lecture's claim is about what the masks tell, and a single network's
   softmax already ranks its errors, so rule 1 alone cannot show that the masks add
   anything; this rule is the test that they do.
3. [beyond the lecture] held-out classes: AUROC of the mutual information for held-out
   class inputs against test inputs > 0.5.
4. [beyond the lecture] far-out inputs: the same for pixel-permuted digits > 0.5.

Pilot (full profile on seeds 100-102, which the verdict never uses, run after the rules
above were written): test accuracy 0.975 with masks, 0.979 without; about 18 errors per
seed. Error AUROCs: mutual information 0.956-0.971, variation ratio 0.985, deterministic
entropy 0.980 (means). Rule 2's paired difference: -0.029, -0.027, +0.006 (mean -0.017,
standard deviation 0.020). A t-interval narrower than that mean needs about 8 seeds; the
full profile ran 20 (half-width about 0.009 at the pilot's spread), so that seeds with a
larger spread still give a conclusive interval. The rules were not changed after the pilot.

Seeds, changed after the full runs for the time budget of sections C and D (issue 14), not
for any verdict: 12 seeds. Rule 2, the closest to its threshold, had a per-seed standard
deviation of 0.012 and 0.013 on the two 20-seed sets, so 12 seeds give a half-width of
about 0.008 against a mean of -0.019 or -0.028. On the first 12 seeds of those runs every
rule kept its outcome.

Outcome (full profile, seeds 0-11): NOT REPRODUCED. Disagreement across masks does flag
errors (mutual information AUROC 0.958, interval 0.949 to 0.967) and unfamiliar inputs
(held-out classes 0.953, permuted pixels 0.969), but it flags errors worse than the
entropy of the same network's softmax with dropout off (difference -0.017, interval
-0.025 to -0.009; 11 of 12 seeds below 0). The variation ratio roughly ties the control
(mean difference +0.003). Seeds 1000-1011 give the same verdict: error AUROC 0.955
(0.947 to 0.963), difference from the control -0.029 (-0.038 to -0.020; 12 of 12 seeds
below 0), held-out classes 0.963, permuted pixels 0.951. (The 20-seed runs before the
change: -0.019 (-0.024 to -0.013) and -0.028 (-0.034 to -0.022).) On this task, what the
masks say about errors is already in the deterministic softmax; on unfamiliar inputs they
say a little more than it. The full profile takes about 67 s in `make all` (two jobs at
once); 20 seeds took 87 s of one core, 123 s before repro set TensorFlow's BFC allocator
for the CPU, which reuses freed memory (45 s of system time went to mapping memory).

History: the first design trained on MNIST-1D classes 0-7 (about 59% accurate), scored the
entropy of the mean softmax (which a deterministic network has too) and had no
deterministic control. Its error rule passed (AUROC 0.75-0.78) and its held-out-class rule
failed (AUROC 0.51-0.59), so the verdict hung on the extension to unseen classes, which
goes beyond the lecture, with a score that was not disagreement across masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from repro.data import digits
from repro.figures import figure, save_figure
from repro.models import EPOCH_PER_CALL, Retrainable, batches
from repro.records import progress, read_csv, write_csv
from repro.rules import Rule, Verdict, mean_interval

CLAIM_ID = "mc-dropout"
SLIDE = "Dropout"
STATEMENT = (
    "With dropout left on at prediction time, the predictions of many dropout masks "
    "disagree more on the examples the network gets wrong: agreement across masks is "
    "confidence."
)

KNOWN_CLASSES = 8  # digits 0..7 are trained on; 8 and 9 are held out
INPUTS = ("test", "held-out classes", "permuted pixels")


@dataclass(frozen=True)
class Config:
    test_fraction: float = 0.5
    hidden: tuple[int, ...] = (256, 256)
    dropout_rate: float = 0.3
    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 1e-3
    masks: int = 100  # T stochastic forward passes per input

    def __post_init__(self):
        if not 0 < self.dropout_rate < 1:
            raise ValueError("dropout_rate must lie strictly between 0 and 1")
        if not 0 < self.test_fraction < 1:
            raise ValueError("test_fraction must lie strictly between 0 and 1")
        if self.masks < 2:
            raise ValueError("masks must be at least 2 for masks to disagree")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError("hidden widths must be positive")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs, batch_size and learning_rate must be positive")


PROFILES = {
    "quick": Config(hidden=(64, 64), epochs=5, masks=10),
    "full": Config(),
}
SEEDS = {"quick": (0, 1), "full": tuple(range(12))}  # see the docstring
TABLES = {
    "predictions.csv": (
        "seed",
        "inputs",
        "label",
        "mc_predicted",
        "mc_correct",
        "deterministic_predicted",
        "deterministic_correct",
        "votes_against_mode",
        "mutual_information",
        "predictive_entropy",
        "deterministic_entropy",
    )
}
FIGURES = ("disagreement.png",)


def dropout_mlp(config: Config, input_dim: int) -> keras.Sequential:
    """Dropout before every dense layer, so that every weight matrix sees masked inputs."""
    layers = [keras.Input((input_dim,))]
    for width in config.hidden:
        layers += [keras.layers.Dropout(config.dropout_rate), keras.layers.Dense(width, "relu")]
    layers += [keras.layers.Dropout(config.dropout_rate), keras.layers.Dense(KNOWN_CLASSES)]
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=EPOCH_PER_CALL,
    )
    return model


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy in nats along the last axis."""
    return -(probabilities * np.log(np.clip(probabilities, 1e-30, None))).sum(axis=-1)


def mask_scores(model, x, masks: int) -> dict[str, np.ndarray]:
    """MC prediction and disagreement over `masks` masks, and the deterministic control."""
    # Every row of one call gets its own mask, so the input repeated T times is T masks.
    logits = model(np.tile(x, (masks, 1)), training=True)
    probabilities = np.asarray(keras.ops.softmax(logits), dtype="float64")
    probabilities = probabilities.reshape(masks, len(x), -1)
    mean = probabilities.mean(axis=0)
    votes = probabilities.argmax(axis=2)
    mode_count = np.stack([(votes == k).sum(axis=0) for k in range(mean.shape[1])]).max(axis=0)
    deterministic = np.asarray(keras.ops.softmax(model(x, training=False)), dtype="float64")
    return {
        "mc_predicted": mean.argmax(axis=1),
        "deterministic_predicted": deterministic.argmax(axis=1),
        "votes_against_mode": masks - mode_count,
        "mutual_information": entropy(mean) - entropy(probabilities).mean(axis=0),
        "predictive_entropy": entropy(mean),
        "deterministic_entropy": entropy(deterministic),
    }


def run(config: Config, seeds, out_dir):
    net = Retrainable(lambda: dropout_mlp(config, 64))
    rows = []
    for seed in progress(seeds, CLAIM_ID):
        x_train, y_train, x_test, y_test = digits(config.test_fraction, seed)
        known_train, known_test = y_train < KNOWN_CLASSES, y_test < KNOWN_CLASSES
        permutation = np.random.default_rng(seed).permutation(x_test.shape[1])
        inputs = {
            "test": (x_test[known_test], y_test[known_test]),
            "held-out classes": (
                np.concatenate([x_train[~known_train], x_test[~known_test]]),
                np.concatenate([y_train[~known_train], y_test[~known_test]]),
            ),
            "permuted pixels": (x_test[known_test][:, permutation], y_test[known_test]),
        }
        model = net.restart(seed)
        model.fit(
            batches(x_train[known_train], y_train[known_train], config.batch_size, seed),
            epochs=config.epochs,
            verbose=0,
        )
        for name, (x, labels) in inputs.items():
            scores = mask_scores(model, x, config.masks)
            rows.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "inputs": name,
                        "label": labels,
                        "mc_predicted": scores["mc_predicted"],
                        "mc_correct": scores["mc_predicted"] == labels,
                        "deterministic_predicted": scores["deterministic_predicted"],
                        "deterministic_correct": scores["deterministic_predicted"] == labels,
                    }
                    | {k: v for k, v in scores.items() if not k.endswith("predicted")}
                )
            )
    write_csv(pd.concat(rows, ignore_index=True), out_dir / "predictions.csv")


def auroc(positive, score) -> float:
    """AUROC of `score` for the positive rows; NaN (no measurement) if one class is empty."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, score))


def per_seed_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per seed: the AUROCs of every score as a detector of errors and of unfamiliar inputs."""
    rows = []
    for seed, group in predictions.groupby("seed"):
        test = group[group["inputs"] == "test"]
        mc_wrong, deterministic_wrong = ~test["mc_correct"], ~test["deterministic_correct"]
        row = {
            "seed": seed,
            "mc_accuracy": test["mc_correct"].mean(),
            "deterministic_accuracy": test["deterministic_correct"].mean(),
            "errors_mutual_information": auroc(mc_wrong, test["mutual_information"]),
            "errors_variation_ratio": auroc(mc_wrong, test["votes_against_mode"]),
            "errors_predictive_entropy": auroc(mc_wrong, test["predictive_entropy"]),
            "errors_deterministic_entropy": auroc(
                deterministic_wrong, test["deterministic_entropy"]
            ),
        }
        for name in INPUTS[1:]:
            versus = group[group["inputs"].isin(["test", name])]
            unfamiliar = versus["inputs"] == name
            row[f"{name}_mutual_information"] = auroc(unfamiliar, versus["mutual_information"])
            row[f"{name}_deterministic_entropy"] = auroc(
                unfamiliar, versus["deterministic_entropy"]
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("seed")


def verdict(out_dir) -> Verdict:
    scores = per_seed_scores(read_csv(out_dir / "predictions.csv"))
    advantage = scores["errors_mutual_information"] - scores["errors_deterministic_entropy"]
    votes_advantage = scores["errors_variation_ratio"] - scores["errors_deterministic_entropy"]
    error_note = (
        f"variation ratio {mean_interval(scores['errors_variation_ratio'])[0]:.3f}, "
        f"predictive entropy {mean_interval(scores['errors_predictive_entropy'])[0]:.3f}, "
        f"deterministic entropy {mean_interval(scores['errors_deterministic_entropy'])[0]:.3f} "
        f"(mean AUROCs); test accuracy {scores['mc_accuracy'].mean():.3f} with masks, "
        f"{scores['deterministic_accuracy'].mean():.3f} without"
    )
    return Verdict(
        CLAIM_ID,
        (
            Rule.over_seeds(
                "[lecture] AUROC of mask disagreement (mutual information) for wrong vs right",
                scores["errors_mutual_information"].to_numpy(),
                ">",
                0.5,
                error_note,
            ),
            Rule.over_seeds(
                "[lecture, control] that AUROC minus the deterministic softmax entropy's",
                advantage.to_numpy(),
                ">",
                0.0,
                "each on its own prediction's errors, paired per seed; the variation ratio's "
                f"AUROC minus the control's: mean {votes_advantage.mean():.4f}",
            ),
            *(
                Rule.over_seeds(
                    f"[beyond the lecture] AUROC of mask disagreement for {name} vs test",
                    scores[f"{name}_mutual_information"].to_numpy(),
                    ">",
                    0.5,
                    "deterministic entropy's AUROC: mean "
                    f"{scores[f'{name}_deterministic_entropy'].mean():.3f}",
                )
                for name in INPUTS[1:]
            ),
        ),
    )


def plot(out_dir):
    predictions = read_csv(out_dir / "predictions.csv")
    scores = per_seed_scores(predictions)
    test = predictions[predictions["inputs"] == "test"]
    groups = (
        ("right (test)", test[test["mc_correct"]], "tab:blue"),
        ("wrong (test)", test[~test["mc_correct"]], "tab:red"),
        ("held-out classes 8, 9", predictions[predictions["inputs"] == INPUTS[1]], "tab:purple"),
        ("pixel-permuted digits", predictions[predictions["inputs"] == INPUTS[2]], "tab:gray"),
    )
    fig, (ax_hist, ax_auroc) = figure(
        f"mc-dropout: disagreement across dropout masks, digits 0-7 ({len(scores)} seeds)",
        ncols=2,
        width=5.6,
        height=4.2,
    )
    bins = np.linspace(0, predictions["mutual_information"].max(), 31)
    for label, group, color in groups:
        ax_hist.hist(
            group["mutual_information"],
            bins=bins,
            density=True,
            histtype="step",
            lw=1.6,
            color=color,
            label=f"{label} (n={len(group)})",
        )
    ax_hist.set(
        xlabel="mutual information between prediction and mask (nats)",
        ylabel="density (all seeds pooled, log scale)",
        yscale="log",
        title="disagreement by kind of input",
    )
    ax_hist.legend(fontsize=8)

    tasks = (
        ("errors", "wrong vs right\n(test)"),
        (INPUTS[1], "held-out classes\nvs test"),
        (INPUTS[2], "permuted pixels\nvs test"),
    )
    detectors = (
        ("mutual_information", "mask disagreement (mutual information)", "tab:red"),
        ("variation_ratio", "variation ratio (votes)", "tab:orange"),
        ("predictive_entropy", "entropy of the mean softmax", "tab:purple"),
        ("deterministic_entropy", "control: softmax entropy, dropout off", "tab:blue"),
    )
    for j, (column, label, color) in enumerate(detectors):
        positions, means, errors = [], [], []
        for i, (task, _) in enumerate(tasks):
            if f"{task}_{column}" not in scores:
                continue
            mean, low, high = mean_interval(scores[f"{task}_{column}"])
            positions.append(i + (j - 1.5) * 0.18)
            means.append(mean)
            errors.append((mean - low, high - mean))
        ax_auroc.errorbar(
            positions, means, yerr=np.array(errors).T, fmt="o", color=color, capsize=3, label=label
        )
    ax_auroc.axhline(0.5, color="grey", ls="--", lw=1, label="chance (rule threshold)")
    ax_auroc.set_xticks(range(len(tasks)), [label for _, label in tasks], fontsize=8)
    ax_auroc.set(ylabel="AUROC (mean, 95% t-interval over seeds)", title="as a detector")
    ax_auroc.legend(fontsize=7, loc="center left")
    save_figure(fig, out_dir / "disagreement.png")
