"""Claim: where dropout masks disagree, the network gets it wrong more often (results/mc-dropout/).

Slide "Dropout". Dropout is usually off at test time, but some researchers leave it on as a
heuristic for the uncertainty of a prediction: if the predictions of many dropout masks
agree, the network may be called more confident. So the masks should disagree more on the
inputs the network gets wrong than on those it gets right.

Design (data, model, measurements):
- A task the network learns well: scikit-learn's 8 x 8 digits, classes 0-7, half of them
  for training and half for testing (a new split per seed). Beyond the slide, inputs the
  network never saw: the images of classes 8 and 9 (held-out classes), and the test digits
  with their pixels shuffled by one fixed permutation per seed (permuted pixels).
- Model: keras.layers.Dropout(p) before every Dense layer (the input included) of a
  2 x 256 ReLU MLP, trained with Adam through `repro.models.fit` for a fixed number of
  epochs. Then T masks per input: one call with training=True on the input repeated T
  times (every row of a call gets its own mask).
- Mask disagreement: the mutual information between the prediction and the mask, i.e. the
  mean over masks of the KL divergence of each mask's softmax from their mean softmax. It
  is zero when every mask gives the same softmax, whatever that softmax is. Computed from
  differences to the first mask, so T equal passes give exactly 0.
- The prediction is the arg-max of the mean softmax over the masks; "wrong" is wrong by it.
- The control: the same trained network with dropout off, passed T times (training=False).
  Every pass is the same network, so the same detector sees no disagreement at all.
- Beyond the slide, the literal "predictions agree": the variation ratio, the share of
  masks voting against the most common class; and, as the thing to beat, the entropy of
  the deterministic softmax (dropout off), scored on the deterministic prediction's errors.

Rules (95% t-interval over seeds of one per-seed statistic; AUROC 0.5 is chance):
1. lecture: mask disagreement flags errors: AUROC of the mutual information for wrong
   against right test predictions > 0.5.
2. check: with dropout off the same detector is at chance: its AUROC for wrong against
   right deterministic predictions is exactly 0.5 on every seed (exact, from the CSV).
3. beyond: the masks' votes flag errors better than the deterministic softmax: AUROC of
   the variation ratio minus AUROC of the deterministic entropy, paired per seed, > 0
   (the variation ratio was named as this comparison's measure before any run of it).
4. beyond: AUROC of the mutual information for held-out-class inputs against test inputs
   > 0.5.
5. beyond: the same for pixel-permuted digits > 0.5.

Seeds: design and pilots on development seeds 100-107; verdict seeds 0-7, fixed before the
full run; shifted seeds 1000-1007 run only after the design was frozen. The old design's
rules were judged on verdict seeds 0-19 and 1000-1019, and the review that moved its
deterministic-softmax rule to `beyond` knew those outcomes (see the notes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from repro.backend import keras
from repro.data import digits
from repro.figures import figure, save_figure
from repro.models import classifier, fit, predict, restart
from repro.records import progress, read_csv, write_csv
from repro.rules import BEYOND, CHECK, LECTURE, Rule, Verdict, mean_interval, spread

CLAIM_ID = "mc-dropout"
SLIDE = "Dropout"
STATEMENT = (
    "With dropout left on at prediction time, the predictions of many dropout masks "
    "disagree more on the test inputs the network gets wrong than on those it gets right."
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
    "quick": Config(hidden=(64, 64), epochs=8, masks=10),
    "full": Config(),
}
SEEDS = {"quick": (0, 1), "full": tuple(range(8))}  # see docs/claims/mc-dropout.md
TABLES = {
    "predictions.csv": (
        "seed",
        "inputs",
        "label",
        "mc_predicted",
        "mc_correct",
        "deterministic_predicted",
        "deterministic_correct",
        "mutual_information",
        "variation_ratio",
        "deterministic_entropy",
        "dropout_off_mutual_information",
    )
}
FIGURES = ("disagreement.png",)


def dropout_mlp(config: Config, input_dim: int):
    """Dropout before every Dense layer, so that every weight matrix sees masked inputs."""
    layers = [keras.Input((input_dim,))]
    for width in config.hidden:
        layers += [keras.layers.Dropout(config.dropout_rate), keras.layers.Dense(width, "relu")]
    layers += [keras.layers.Dropout(config.dropout_rate), keras.layers.Dense(KNOWN_CLASSES)]
    return classifier(keras.Sequential(layers), config.learning_rate)


def softmax(logits) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy in nats along the last axis."""
    return -(probabilities * np.log(np.clip(probabilities, 1e-300, None))).sum(axis=-1)


def disagreement(probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """From T passes' softmaxes (T, n, classes): the prediction (arg-max of the mean), the
    mutual information between prediction and mask, and the variation ratio.

    The mean is the first pass plus the mean difference to it, and the logarithms of the
    passes and of the mean are taken in one call: T equal passes then give a mean equal to
    each of them and a mutual information of exactly 0.
    """
    mean = probabilities[0] + (probabilities - probabilities[0]).mean(axis=0)
    logs = np.log(np.clip(np.concatenate([probabilities, mean[None]]), 1e-300, None))
    kl = (probabilities * (logs[:-1] - logs[-1])).sum(axis=-1)  # KL(pass || mean), (T, n)
    votes = probabilities.argmax(axis=-1)
    classes = probabilities.shape[-1]
    mode_count = np.stack([(votes == k).sum(axis=0) for k in range(classes)]).max(axis=0)
    return {
        "predicted": mean.argmax(axis=-1),
        "mutual_information": kl.mean(axis=0),
        "variation_ratio": 1 - mode_count / len(probabilities),
    }


def mask_passes(model, x, masks: int) -> np.ndarray:
    """Softmaxes of `masks` dropout masks per input, (masks, n, classes): one call on the
    input repeated, so that each copy of a row gets its own mask."""
    logits = model(np.tile(x, (masks, 1)), training=True)
    return softmax(logits).reshape(masks, len(x), -1)


def dropout_off_passes(model, x, masks: int) -> np.ndarray:
    """The same number of passes with dropout off: `masks` separate calls of the network."""
    return np.stack([softmax(predict(model, x)) for _ in range(masks)])


def run(config: Config, seeds, out_dir):
    model, rows = None, []
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

        def build(input_dim=x_train.shape[1]):
            return dropout_mlp(config, input_dim)

        model = restart(model, build, seed)
        fit(
            model,
            x_train[known_train],
            y_train[known_train],
            epochs=config.epochs,
            batch_size=config.batch_size,
            seed=seed,
        )
        for name, (x, labels) in inputs.items():
            mc = disagreement(mask_passes(model, x, config.masks))
            deterministic = softmax(predict(model, x))
            off = (
                disagreement(dropout_off_passes(model, x, config.masks))["mutual_information"]
                if name == "test"
                else np.full(len(x), np.nan)  # the check is about the test inputs only
            )
            rows.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "inputs": name,
                        "label": labels,
                        "mc_predicted": mc["predicted"],
                        "mc_correct": mc["predicted"] == labels,
                        "deterministic_predicted": deterministic.argmax(axis=1),
                        "deterministic_correct": deterministic.argmax(axis=1) == labels,
                        "mutual_information": mc["mutual_information"],
                        "variation_ratio": mc["variation_ratio"],
                        "deterministic_entropy": entropy(deterministic),
                        "dropout_off_mutual_information": off,
                    }
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
            "mc_errors": int(mc_wrong.sum()),
            "errors_mutual_information": auroc(mc_wrong, test["mutual_information"]),
            "errors_dropout_off": auroc(
                deterministic_wrong, test["dropout_off_mutual_information"]
            ),
            "errors_variation_ratio": auroc(mc_wrong, test["variation_ratio"]),
            "errors_deterministic_entropy": auroc(
                deterministic_wrong, test["deterministic_entropy"]
            ),
        }
        for name in INPUTS[1:]:
            versus = group[group["inputs"].isin(["test", name])]
            unfamiliar = versus["inputs"] == name
            row[f"{name}_mutual_information"] = auroc(unfamiliar, versus["mutual_information"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("seed")


def verdict(out_dir) -> Verdict:
    scores = per_seed_scores(read_csv(out_dir / "predictions.csv"))
    off_distance = (scores["errors_dropout_off"] - 0.5).abs().to_numpy()
    advantage = scores["errors_variation_ratio"] - scores["errors_deterministic_entropy"]

    def mean_of(column):
        return f"{mean_interval(scores[column])[0]:.3f}"

    return Verdict(
        CLAIM_ID,
        (
            Rule.over_seeds(
                "AUROC of mask disagreement (mutual information) for wrong vs right test "
                "predictions",
                scores["errors_mutual_information"].to_numpy(),
                ">",
                0.5,
                f"errors per seed {spread(scores['mc_errors'])}; test accuracy "
                f"{scores['mc_accuracy'].mean():.3f} with masks, "
                f"{scores['deterministic_accuracy'].mean():.3f} with dropout off",
                kind=LECTURE,
                slide=SLIDE,
            ),
            Rule(
                "dropout off, the same detector: largest |AUROC - 0.5| over seeds "
                "(exact: every pass is the same network)",
                off_distance.max(),
                "<=",
                0.0,
                f"{len(off_distance)} seeds",
                kind=CHECK,
            ),
            Rule.over_seeds(
                "AUROC of the variation ratio minus AUROC of the deterministic softmax "
                "entropy, wrong vs right",
                advantage.to_numpy(),
                ">",
                0.0,
                "each on its own prediction's errors, paired per seed; mean AUROCs: variation "
                f"ratio {mean_of('errors_variation_ratio')}, deterministic entropy "
                f"{mean_of('errors_deterministic_entropy')}",
                kind=BEYOND,
            ),
            *(
                Rule.over_seeds(
                    f"AUROC of mask disagreement for {name} vs test inputs",
                    scores[f"{name}_mutual_information"].to_numpy(),
                    ">",
                    0.5,
                    kind=BEYOND,
                )
                for name in INPUTS[1:]
            ),
        ),
    )


def plot(out_dir):
    predictions = read_csv(out_dir / "predictions.csv")
    scores = per_seed_scores(predictions)
    seeds = len(scores)
    test = predictions[predictions["inputs"] == "test"]
    # One colour per kind of input, in every panel; the detectors are told apart by position.
    groups = (
        ("test, right", test[test["mc_correct"]], "tab:blue"),
        ("test, wrong", test[~test["mc_correct"]], "tab:red"),
        ("held-out classes 8, 9", predictions[predictions["inputs"] == INPUTS[1]], "tab:purple"),
        ("permuted pixels", predictions[predictions["inputs"] == INPUTS[2]], "tab:brown"),
    )
    fig, (ax_hist, ax_errors, ax_unfamiliar) = figure(
        f"{CLAIM_ID}: do dropout masks disagree where the network is wrong? (digits 0-7)\n"
        f"AUROC points: mean over {seeds} seeds; bars: 95% t-interval over seeds",
        ncols=3,
        width=5.2,
        height=4.6,
    )
    bins = np.linspace(0, predictions["mutual_information"].max(), 31)
    for label, group, color in groups:
        ax_hist.hist(
            group["mutual_information"],
            bins=bins,
            density=True,
            histtype="step",
            lw=1.8,
            color=color,
            label=f"{label} (n = {len(group)})",
        )
    ax_hist.set(
        xlabel="mask disagreement:\nmutual information (nats)",
        ylabel="density, all seeds (log scale)",
        yscale="log",
        title="mask disagreement by input",
    )
    low, high = ax_hist.get_ylim()
    ax_hist.set_ylim(low, high * 200)  # room for the legend above the bars
    ax_hist.legend(loc="upper center", ncols=2)

    def auroc_points(ax, entries, threshold_label):
        for i, (column, color, marker) in enumerate(entries):
            mean, low, high = mean_interval(scores[column])
            ax.errorbar(
                i, mean, yerr=[[mean - low], [high - mean]], fmt=marker, ms=9, color=color,
                capsize=4,
            )  # fmt: skip
        ax.axhline(0.5, color="k", ls="--", lw=1.2, label=threshold_label)
        ax.set(xlim=(-0.6, len(entries) - 0.4), ylim=(0.4, 1.02))
        ax.legend(loc="lower right")

    # Errors are red as in the histogram; the marker tells the detector.
    auroc_points(
        ax_errors,
        (
            ("errors_mutual_information", "tab:red", "o"),
            ("errors_dropout_off", "tab:red", "s"),
            ("errors_variation_ratio", "tab:red", "D"),
            ("errors_deterministic_entropy", "tab:red", "^"),
        ),
        "lecture rule threshold: 0.5 (chance)",
    )
    ax_errors.set_xticks(
        range(4),
        [
            "mask\ndisagreement\n(lecture rule)",
            "same detector,\ndropout off\n(check: 0.5)",
            "variation\nratio\n(beyond)",
            "softmax\nentropy,\ndropout off\n(beyond)",
        ],
    )
    ax_errors.set(ylabel="AUROC, wrong vs right test inputs", title="finding the test errors")

    auroc_points(
        ax_unfamiliar,
        (
            ("held-out classes_mutual_information", "tab:purple", "o"),
            ("permuted pixels_mutual_information", "tab:brown", "o"),
        ),
        "chance: AUROC 0.5",
    )
    ax_unfamiliar.set_xticks(range(2), ["held-out\nclasses 8, 9", "permuted\npixels"])
    ax_unfamiliar.set(
        ylabel="AUROC of mask disagreement,\nunfamiliar vs test inputs",
        title="unfamiliar inputs (beyond the slide)",
    )
    save_figure(fig, out_dir / "disagreement.png")
