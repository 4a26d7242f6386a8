"""Claim: under label noise a net fits the clean examples first, the wrong labels much later.

Results: results/label-noise-order/. Slide "Generalization in Deep Learning" (Arpit et al.,
2017; Rolnick et al., 2017). When part of the training labels are replaced by wrong ones,
gradient descent first learns the pattern the correct labels share; only afterwards does
the net memorize the wrong labels one by one. Test accuracy peaks in between and falls as
memorization proceeds.

Experiment: every seed draws 600 of scikit-learn's 1258 digits training images (the test
set is the 539 held-out images). Before training, a fixed share of them (the noise rate:
20% and 40%) gets a wrong label, drawn uniformly from the nine other classes, so every
example of the noisy subset is truly mislabeled; the subset is saved in noisy_labels.csv
(example index into the digits training split, original label, noisy label). A 2x256 ReLU
MLP is trained with Adam on the noisy labels, and after every epoch we record the accuracy
on the clean subset, the agreement with the wrong labels on the noisy subset, the accuracy
of the noisy subset on its original labels and the test accuracy. 600 images, not all
1258, so that memorization completes within the compute budget (60 epochs).

A subset counts as "fit" once 80% of its (given) labels are reproduced, for the clean and
the noisy subset alike. Four rules on digits, each on one number per seed (the worse of the
two noise rates, so the claim must hold at both) and judged by the 95% t-interval of its
mean over seeds (Rule.over_seeds):
1. when the clean subset is first fit, less than 20% of the wrong labels are reproduced;
2. by the last epoch at least 80% are (memorized);
3. the order, the lecture's point: the epoch at which the wrong labels are fit minus the
   epoch of peak test accuracy is above 0 (test accuracy peaks before memorization);
4. the peak test accuracy exceeds the last epoch's by at least 0.05.
A run that never memorizes has no memorization epoch: its NaN fails rule 3 loudly.

The 0.05 of rule 4, decided from the committed seeds 0-4 before the full run with
intervals: the peak minus the last value of a curve that does not fall at all is already
positive, because the peak is the largest of 60 wobbling values. The epoch-to-epoch wobble
of test accuracy on 539 images is about 0.012 (standard deviation, last 20 epochs at 20%
noise), so a flat curve scores about 2.3 x 0.012 = 0.03; 0.05 asks for a fall beyond that.
At 20% noise the per-seed drops were 0.061 to 0.117 (mean 0.088, standard deviation
0.025): eight seeds give an interval of about +-0.021, wholly above 0.05 if unseen seeds
behave alike (five would give +-0.031, too close). Rules 1-3 are far from their thresholds
on any seed count (wrong-label agreement at clean fit 0.01 to 0.05; memorized 0.93 to 0.996;
memorization 35 to 40 epochs after the peak). History: until the intervals every rule was
judged on the worst run over seeds and rates, and the order (rule 3) was not checked.
Measured with eight seeds: the rule-4 interval was [0.072, 0.106] on seeds 0-7 and
[0.086, 0.121] on seeds 1000-1007; rule 3's [34.4, 37.4] and [32.5, 37.3] epochs.

Second data set, reported but not judged: MNIST-1D (40% noise, same net, optimizer and
sizes). An MLP learns MNIST-1D poorly (about 25% test accuracy from 600 examples), so the
premise of the claim (a model that learns the clean signal well) does not hold, and the
wrong labels are fit alongside the clean ones; the figure shows it. The lecture's own
measurements used SGD with momentum on digits and Adam on MNIST-1D; here both data sets use
the same Adam setup, so the difference between them is the data, not the optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from repro.data import digits, mnist1d, randomize_labels
from repro.figures import figure, save_figure, seed_band
from repro.models import EpochAccuracy, Retrainable, adam_classifier, batches
from repro.records import progress, read_csv, write_csv
from repro.rules import Rule, Verdict, spread

CLAIM_ID = "label-noise-order"
SLIDE = "Generalization in Deep Learning"
STATEMENT = (
    "With part of the training labels randomized, a network first fits the correctly "
    "labeled examples and only later memorizes the wrong labels; test accuracy peaks before "
    "memorization and then falls."
)

DATASETS = {"digits": digits, "mnist1d": mnist1d}  # each returns x, y, x_test, y_test


@dataclass(frozen=True)
class Config:
    noise_rates: tuple[float, ...] = (0.2, 0.4)  # digits: share of training labels made wrong
    epochs: int = 60
    train_size: int = 600  # training images drawn per seed
    hidden: tuple[int, ...] = (256, 256)
    learning_rate: float = 1e-3
    batch_size: int = 32
    mnist1d_noise_rate: float = 0.4  # the second data set, one rate
    mnist1d_epochs: int = 25  # its wrong labels are memorized within about 20 epochs

    def __post_init__(self):
        rates = (*self.noise_rates, self.mnist1d_noise_rate)
        if not self.noise_rates or min(rates) <= 0 or max(rates) >= 1:
            raise ValueError(f"noise rates must lie strictly between 0 and 1, got {rates}")
        if self.epochs < 2 or self.mnist1d_epochs < 2:
            raise ValueError("need at least 2 epochs")
        if not 20 <= self.train_size <= len(digits()[1]):
            raise ValueError(f"train_size must lie in [20, {len(digits()[1])}]")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError("hidden widths must be positive")
        if self.learning_rate <= 0 or self.batch_size < 1:
            raise ValueError("learning_rate > 0 and batch_size >= 1 required")


PROFILES = {
    "quick": Config(
        noise_rates=(0.4,), epochs=8, train_size=300, hidden=(64, 64), mnist1d_epochs=4
    ),
    "full": Config(),
}
SEEDS = {"quick": (0,), "full": tuple(range(8))}
TABLES = {
    "curves.csv": (
        "dataset",
        "noise_rate",
        "seed",
        "epoch",
        "clean_accuracy",
        "noisy_agreement",
        "noisy_original_accuracy",
        "test_accuracy",
    ),
    "noisy_labels.csv": (
        "dataset",
        "noise_rate",
        "seed",
        "example_index",
        "original_label",
        "noisy_label",
    ),
}
FIGURES = ("curves.png",)

FIT_LEVEL = 0.8  # a subset is fit once 80% of its given labels are reproduced
MAX_NOISY_WHEN_CLEAN_FIT = 0.2
MIN_TEST_DROP = 0.05
JUDGED_DATASET = "digits"
# Accuracies are counts over a set; equal counts give equal floats, and this margin (far
# below one example, far above a last-bit difference of a CSV read elsewhere) keeps the
# first of tied epochs the first, wherever the CSV is read.
TIE = 1e-9


def train_on_noisy_labels(
    config: Config, net: Retrainable, dataset: str, rate: float, epochs: int, seed: int
):
    """One run: draw the subset and its noise, train, return (per-epoch rows, noise rows)."""
    x_all, y_all, x_test, y_test = DATASETS[dataset]()
    rng = np.random.default_rng([seed, list(DATASETS).index(dataset), round(rate * 1000)])
    subset = np.sort(rng.choice(len(y_all), size=config.train_size, replace=False))
    x, y = x_all[subset], y_all[subset]
    noisy_labels, noisy = randomize_labels(y, rate, rng)
    clean = np.setdiff1d(np.arange(len(y)), noisy)

    model = net.restart(seed)
    tracker = EpochAccuracy(
        {
            "clean_accuracy": (x[clean], y[clean]),
            "noisy_agreement": (x[noisy], noisy_labels[noisy]),
            "noisy_original_accuracy": (x[noisy], y[noisy]),
            "test_accuracy": (x_test, y_test),
        },
        dataset=dataset,
        noise_rate=rate,
        seed=seed,
    )
    model.fit(
        batches(x, noisy_labels, config.batch_size, shuffle_seed=seed),
        epochs=epochs,
        verbose=0,
        callbacks=[tracker],
    )
    noise_rows = pd.DataFrame(
        {
            "dataset": dataset,
            "noise_rate": rate,
            "seed": seed,
            "example_index": subset[noisy],
            "original_label": y[noisy],
            "noisy_label": noisy_labels[noisy],
        }
    )
    return tracker.rows, noise_rows


def run(config: Config, seeds, out_dir):
    runs = [("digits", rate, config.epochs) for rate in config.noise_rates]
    runs.append(("mnist1d", config.mnist1d_noise_rate, config.mnist1d_epochs))
    # One compiled net per data set (their inputs differ), restarted for every run.
    nets = {
        dataset: Retrainable(
            partial(adam_classifier, load()[0].shape[1], config.hidden, config.learning_rate)
        )
        for dataset, load in DATASETS.items()
    }
    curves, noise_tables = [], []
    for seed in progress(seeds, CLAIM_ID):
        for dataset, rate, epochs in runs:
            rows, noise_rows = train_on_noisy_labels(
                config, nets[dataset], dataset, rate, epochs, seed
            )
            curves += rows
            noise_tables.append(noise_rows)
    write_csv(pd.DataFrame(curves), out_dir / "curves.csv")
    write_csv(pd.concat(noise_tables, ignore_index=True), out_dir / "noisy_labels.csv")


def first_epoch_at(run_curve: pd.DataFrame, column: str, level: float = FIT_LEVEL) -> float:
    """First epoch whose value in `column` reaches `level`; NaN if it never does."""
    reached = run_curve.loc[run_curve[column] >= level - TIE, "epoch"]
    return float(reached.min()) if len(reached) else float("nan")


def run_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, noise rate, seed): the numbers the rules and the figure use."""
    rows = []
    for (dataset, rate, seed), run_curve in curves.groupby(["dataset", "noise_rate", "seed"]):
        run_curve = run_curve.sort_values("epoch")
        clean_fit = first_epoch_at(run_curve, "clean_accuracy")
        at_clean_fit = run_curve.loc[run_curve["epoch"] == clean_fit, "noisy_agreement"]
        test = run_curve["test_accuracy"]
        peak = test.max(skipna=False)
        last = run_curve.iloc[-1]
        noisy_fit = first_epoch_at(run_curve, "noisy_agreement")
        peak_epoch = first_epoch_at(run_curve, "test_accuracy", peak)
        rows.append(
            {
                "dataset": dataset,
                "noise_rate": rate,
                "seed": seed,
                "clean_fit_epoch": clean_fit,
                "noisy_fit_epoch": noisy_fit,
                # never fit counts as the worst case: all wrong labels already reproduced
                "noisy_at_clean_fit": float(at_clean_fit.iloc[0]) if len(at_clean_fit) else 1.0,
                "final_noisy_agreement": last["noisy_agreement"],
                "peak_test_epoch": peak_epoch,
                "memorized_after_peak": noisy_fit - peak_epoch,
                "test_drop": peak - last["test_accuracy"],
            }
        )
    return pd.DataFrame(rows)


def verdict(out_dir) -> Verdict:
    curves = read_csv(out_dir / "curves.csv")
    summary = run_summary(curves[curves["dataset"] == JUDGED_DATASET])
    per_seed = summary.groupby("seed")  # the worse noise rate of each seed

    def note(column: str) -> str:
        return "; ".join(
            f"rate {rate:g}: {spread(runs[column])}" for rate, runs in summary.groupby("noise_rate")
        )

    return Verdict(
        CLAIM_ID,
        (
            Rule.over_seeds(
                f"digits: wrong-label agreement when the clean subset first reaches "
                f"{FIT_LEVEL:.0%} (worse rate per seed)",
                per_seed["noisy_at_clean_fit"].max(skipna=False),
                "<",
                MAX_NOISY_WHEN_CLEAN_FIT,
                note("noisy_at_clean_fit"),
            ),
            Rule.over_seeds(
                "digits: wrong-label agreement at the last epoch, memorized (worse rate per seed)",
                per_seed["final_noisy_agreement"].min(skipna=False),
                ">=",
                FIT_LEVEL,
                note("final_noisy_agreement"),
            ),
            Rule.over_seeds(
                f"digits: epochs from peak test accuracy to wrong labels {FIT_LEVEL:.0%} fit "
                f"(worse rate per seed)",
                per_seed["memorized_after_peak"].min(skipna=False),
                ">",
                0.0,
                note("memorized_after_peak"),
            ),
            Rule.over_seeds(
                "digits: peak minus last-epoch test accuracy (worse rate per seed)",
                per_seed["test_drop"].min(skipna=False),
                ">=",
                MIN_TEST_DROP,
                note("test_drop"),
            ),
        ),
    )


DATASET_TITLES = {"digits": "digits", "mnist1d": "MNIST-1D (learned poorly)"}
CURVES = {
    "clean_accuracy": ("clean subset: accuracy", "tab:blue"),
    "noisy_agreement": ("noisy subset: agrees with wrong label", "tab:red"),
    "noisy_original_accuracy": ("noisy subset: true label predicted", "tab:orange"),
    "test_accuracy": ("test accuracy", "black"),
}


def plot(out_dir):
    curves = read_csv(out_dir / "curves.csv")
    summary = run_summary(curves)
    panels = list(curves.groupby(["dataset", "noise_rate"], sort=False))
    fig, axes = figure(
        f"label-noise-order: clean labels are fit first, wrong labels later\n"
        f"(line: mean of {curves['seed'].nunique()} seeds, band: min-max; dashed: median "
        f"epoch at which a subset is {FIT_LEVEL:.0%} fit, and of peak test accuracy)",
        ncols=len(panels),
        width=4.6,
        height=4.0,
    )
    for ax, ((dataset, rate), panel) in zip(axes, panels, strict=True):
        for column, (label, color) in CURVES.items():
            seed_band(ax, panel, "epoch", column, label, color=color)
        runs = summary[(summary["dataset"] == dataset) & (summary["noise_rate"] == rate)]
        for column, name, color, height in (
            ("clean_fit_epoch", f"clean\n {FIT_LEVEL:.0%} fit", "tab:blue", 0.03),
            ("peak_test_epoch", "test\n peak", "black", 0.25),
            ("noisy_fit_epoch", f"wrong labels\n {FIT_LEVEL:.0%} fit", "tab:red", 0.03),
        ):
            epoch = runs[column].median()
            if np.isfinite(epoch):
                ax.axvline(epoch, color=color, ls="--", lw=1)
                ax.text(
                    epoch, height, f" {name}\n ep. {epoch:g}", color=color, fontsize=8, va="bottom"
                )
        ax.axhline(FIT_LEVEL, color="grey", lw=0.6, ls=":")
        ax.set(
            title=f"{DATASET_TITLES[dataset]}, {rate:.0%} of labels wrong\n"
            f"wrong labels fit when clean hits {FIT_LEVEL:.0%}: "
            f"{runs['noisy_at_clean_fit'].median():.0%}",
            xlabel="epoch",
            ylabel="fraction of the subset",
            ylim=(0, 1.02),
        )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.1))
    fig.subplots_adjust(top=0.76, wspace=0.25)
    save_figure(fig, out_dir / "curves.png")
