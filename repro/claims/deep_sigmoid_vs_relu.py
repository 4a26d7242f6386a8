"""Claim: a deep sigmoid net's gradient vanishes, a deep ReLU net's does not.

Results: results/deep-sigmoid-vs-relu/. Slide "Vanishing and Exploding Gradients".
Backpropagation carries the loss gradient down the net layer by layer: the signal reaching
the pre-activations z of a layer is the signal of the layer above, multiplied by that
layer's transposed kernel and by the activation's derivative. The sigmoid's derivative is
at most 0.25, so with weights of the usual scale the signal shrinks at every layer and the
first layers of a deep sigmoid MLP barely move; ReLU's derivative is exactly 1 wherever a
unit is active, so with He's initialization (built for ReLU) the signal keeps its scale
through depth and the same net learns.

Experiment: MLPs with `depth` hidden layers of `width` units on scikit-learn's digits.
- Arms: sigmoid with Glorot-uniform (Keras' default, the scale designed for sigmoid-like
  units) and ReLU with He-normal, and two control arms that are measured but not trained:
  ReLU with N(0, 1) weights (the signal explodes going down) and ReLU with N(0, 0.01^2)
  (it vanishes). The controls show that the ReLU rule below can fail: ReLU alone does not
  keep the signal, ReLU with the right scale does. Biases start at zero everywhere.
- At initialization, a GradientTape on `gradient_batch` training examples gives dL/dz for
  every Dense layer (hidden layers, then the logits), z watched as the tape computes it; the
  table keeps its Frobenius norm and the largest singular value of the layer's kernel. The
  kernel gradient is not the quantity: it is dL/dz times the layer's input, and in a ReLU
  net with zero biases the input's growth cancels the signal's shrinkage (and vice versa),
  so its first/last ratio stays near 1 for any weight scale and cannot tell the arms apart.
- Theory line: for a sigmoid layer ||dL/dz_l|| <= 0.25 ||W_(l+1)||_2 ||dL/dz_(l+1)||, so
  from the logits down the signal is at most the product of these factors.
- Training: minibatch SGD with momentum (an adaptive optimizer such as Adam rescales each
  parameter's step by its own gradient and so hides the effect), the same budget of epochs
  and the same batches for every arm, at each rate of a small learning-rate sweep. Each arm
  is judged at its best rate: the highest mean final training accuracy over seeds (rounded
  to 1e-9 so that float noise cannot reorder equal rates; ties go to the smaller rate).
  "Cannot train" is then a statement about the activation, not about one step size.

Rules, decided from the lecture before the pilot (key statistic per seed, its mean over
seeds with the Student-t 95% interval):
1. sigmoid: log10(||dL/dz|| first hidden layer / ||dL/dz|| logits) < -3: "orders of
   magnitude" read as at least three.
2. ReLU with He: |log10| of the same ratio < 1: "within about one order". On the control
   arms this rule fails (tests/test_deep_init_symmetry.py runs it on them).
3. sigmoid at its best rate: final training accuracy < 0.2, twice the 0.1 of guessing among
   ten classes ("barely trains").
4. ReLU with He at its best rate: final training accuracy > 0.8 ("learns").
Pilot on seeds 100-102 (never used for the verdict): mean log10 ratio -6.1 (sigmoid, seeds
-6.19 to -6.07), |0.08| (ReLU, He), and +7.6 and -12.5 on the controls; the sigmoid net at
chance (training accuracy 0.101 to 0.105) at every rate, the ReLU net at 0.99 to 1.00 at its
best rate, 0.01. The pilot's sweep (0.003 to 0.1) was then widened to 0.001 to 1.0 before any
full run, to give the sigmoid net, whose first layer gets a millionth of the signal, every
chance: it stayed at chance up to 1.0. With half-widths of 0.2 decades and 0.02 in accuracy
at three seeds, five seeds put every interval far on one side of its threshold.

History: the first version compared kernel-gradient norms (see above why that cannot fail
for ReLU), judged its worst seed instead of an interval, trained both nets with the same
Glorot initializer at one learning rate (0.01), and had no control arm (issue 13).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from repro.backend import seed_everything
from repro.data import digits
from repro.figures import figure, save_figure, seed_band, seed_legend
from repro.models import EPOCH_PER_CALL, EpochAccuracy, Retrainable, batches, mlp
from repro.records import progress, read_csv, write_csv
from repro.rules import Rule, Verdict, mean_interval

CLAIM_ID = "deep-sigmoid-vs-relu"
SLIDE = "Vanishing and Exploding Gradients"
STATEMENT = (
    "In a deep MLP (10 or more layers) the gradient signal reaching the first layer is "
    "orders of magnitude smaller than at the top with sigmoid activations but keeps its "
    "order of magnitude with ReLU and He's initialization; trained by SGD at the best rate "
    "of a sweep, the sigmoid net stays near chance while the ReLU net learns."
)

# arm -> (hidden activation, kernel initializer: a name or a config, never a shared object)
ARMS = {
    "sigmoid, Glorot": ("sigmoid", "glorot_uniform"),
    "ReLU, He": ("relu", "he_normal"),
    "ReLU, N(0,1)": ("relu", {"class_name": "RandomNormal", "config": {"stddev": 1.0}}),
    "ReLU, N(0,0.01^2)": ("relu", {"class_name": "RandomNormal", "config": {"stddev": 0.01}}),
}
SIGMOID, RELU = "sigmoid, Glorot", "ReLU, He"
TRAINED = (SIGMOID, RELU)
CONTROLS = ("ReLU, N(0,1)", "ReLU, N(0,0.01^2)")
CLASSES = 10


@dataclass(frozen=True)
class Config:
    depth: int = 10  # hidden layers
    width: int = 64
    epochs: int = 20
    batch_size: int = 64
    learning_rates: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
    momentum: float = 0.9
    gradient_batch: int = 256  # training examples in the batch whose gradient is measured

    def __post_init__(self):
        if self.depth < 10:
            raise ValueError("the claim is about deep nets: depth must be at least 10")
        if self.width < 1 or self.epochs < 1 or self.batch_size < 1 or self.gradient_batch < 1:
            raise ValueError("width, epochs, batch_size and gradient_batch must be positive")
        if not self.learning_rates or min(self.learning_rates) <= 0:
            raise ValueError("learning_rates must be positive, at least one")
        if not 0 <= self.momentum < 1:
            raise ValueError("momentum must lie in [0, 1)")


PROFILES = {"quick": Config(epochs=2, learning_rates=(0.01, 0.1)), "full": Config()}
SEEDS = {"quick": (0, 1), "full": tuple(range(5))}
TABLES = {
    "gradient_signal.csv": ("seed", "arm", "layer", "signal_norm", "kernel_spectral_norm"),
    "training.csv": (
        "seed",
        "arm",
        "learning_rate",
        "epoch",
        "train_accuracy",
        "test_accuracy",
    ),
}
FIGURES = ("gradient_signal.png", "training_curves.png")

SIGMOID_MAX_LOG10_RATIO = -3.0
RELU_MAX_ORDERS = 1.0
CHANCE = 1 / CLASSES
SIGMOID_MAX_ACCURACY = 2 * CHANCE
RELU_MIN_ACCURACY = 0.8
SIGMOID_MAX_DERIVATIVE = 0.25


def backpropagated_signal(model, x, y) -> list[float]:
    """Frobenius norm of dL/dz for every Dense layer's pre-activation z, input side first."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    with tf.GradientTape() as tape:
        signal, pre_activations = tf.convert_to_tensor(x), []
        for layer in dense:
            z = tf.matmul(signal, layer.kernel) + layer.bias
            tape.watch(z)
            pre_activations.append(z)
            signal = layer.activation(z)
        loss = loss_fn(y, signal)
    return [float(tf.norm(gradient)) for gradient in tape.gradient(loss, pre_activations)]


def spectral_norms(model) -> list[float]:
    return [
        float(np.linalg.norm(np.asarray(layer.kernel, dtype=np.float64), ord=2))
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense)
    ]


def net(config: Config, input_dim: int, arm: str) -> keras.Model:
    activation, initializer = ARMS[arm]
    return mlp(
        input_dim,
        CLASSES,
        hidden=(config.width,) * config.depth,
        activation=activation,
        kernel_initializer=initializer,
    )


def compiled_net(config: Config, input_dim: int, arm: str) -> keras.Model:
    model = net(config, input_dim, arm)
    model.compile(
        optimizer=keras.optimizers.SGD(config.learning_rates[0], momentum=config.momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=EPOCH_PER_CALL,
    )
    return model


def run(config: Config, seeds, out_dir):
    x, y, x_test, y_test = digits()
    probe = x[: config.gradient_batch], y[: config.gradient_batch]
    # One compiled net per trained arm, restarted afresh for every seed and rate.
    trainers = {arm: Retrainable(partial(compiled_net, config, x.shape[1], arm)) for arm in TRAINED}
    signals, curves = [], []
    for seed in progress(seeds, CLAIM_ID):
        for arm in ARMS:
            if arm in trainers:
                model = trainers[arm].restart(seed)
            else:
                seed_everything(seed)
                model = net(config, x.shape[1], arm)
            signals += [
                {
                    "seed": seed,
                    "arm": arm,
                    "layer": layer,
                    "signal_norm": norm,
                    "kernel_spectral_norm": spectral,
                }
                for layer, (norm, spectral) in enumerate(
                    zip(backpropagated_signal(model, *probe), spectral_norms(model), strict=True),
                    start=1,
                )
            ]
            if arm not in trainers:
                continue
            start = model.get_weights()
            for rate in config.learning_rates:
                model = trainers[arm].restart_from(start)
                model.optimizer.learning_rate.assign(rate)
                record = EpochAccuracy(
                    {"train_accuracy": (x, y), "test_accuracy": (x_test, y_test)},
                    seed=seed,
                    arm=arm,
                    learning_rate=rate,
                )
                model.fit(
                    batches(x, y, config.batch_size, shuffle_seed=seed),
                    epochs=config.epochs,
                    verbose=0,
                    callbacks=[record],
                )
                curves += record.rows
    write_csv(pd.DataFrame(signals), out_dir / "gradient_signal.csv")
    write_csv(pd.DataFrame(curves), out_dir / "training.csv")


def log10_signal_ratio(signals: pd.DataFrame, arm: str) -> np.ndarray:
    """Per seed: log10 of ||dL/dz|| at the first hidden layer over that at the logits."""
    norms = signals[signals["arm"] == arm].pivot(
        index="seed", columns="layer", values="signal_norm"
    )
    first, last = norms[norms.columns.min()], norms[norms.columns.max()]
    return np.log10((first / last).to_numpy())


def relu_signal_rule(signals: pd.DataFrame, arm: str = RELU) -> Rule:
    """Rule 2, on any arm: the ReLU arm for the verdict, a control arm in the tests."""
    return Rule.over_seeds(
        f"{arm}: |log10(||dL/dz|| first hidden layer / logits)| at init",
        np.abs(log10_signal_ratio(signals, arm)),
        "<",
        RELU_MAX_ORDERS,
        "within one order of magnitude",
    )


def best_rate(curves: pd.DataFrame, arm: str) -> float:
    """The rate with the highest mean final training accuracy; ties to the smaller rate."""
    final = curves[(curves["arm"] == arm) & (curves["epoch"] == curves["epoch"].max())]
    # NumPy's mean keeps a NaN (pandas' would skip it).
    means = final.groupby("learning_rate")["train_accuracy"].agg(lambda v: v.to_numpy().mean())
    means = means.round(9).sort_index()
    return float(means.idxmax())


def final_accuracy_at_best_rate(curves: pd.DataFrame, arm: str) -> tuple[float, np.ndarray]:
    rate = best_rate(curves, arm)
    mine = curves[(curves["arm"] == arm) & (curves["learning_rate"] == rate)]
    final = mine[mine["epoch"] == mine["epoch"].max()].sort_values("seed")
    return rate, final["train_accuracy"].to_numpy()


def verdict(out_dir) -> Verdict:
    signals = read_csv(out_dir / "gradient_signal.csv")
    curves = read_csv(out_dir / "training.csv")
    epochs = int(curves["epoch"].max())
    sigmoid_rate, sigmoid_accuracy = final_accuracy_at_best_rate(curves, SIGMOID)
    relu_rate, relu_accuracy = final_accuracy_at_best_rate(curves, RELU)
    controls = "; ".join(
        f"control {arm}: mean log10 ratio {np.mean(log10_signal_ratio(signals, arm)):.3g}"
        for arm in CONTROLS
        if arm in set(signals["arm"])
    )
    return Verdict(
        CLAIM_ID,
        (
            Rule.over_seeds(
                f"{SIGMOID}: log10(||dL/dz|| first hidden layer / logits) at init",
                log10_signal_ratio(signals, SIGMOID),
                "<",
                SIGMOID_MAX_LOG10_RATIO,
                "at least three orders of magnitude smaller",
            ),
            relu_signal_rule(signals),
            Rule.over_seeds(
                f"{SIGMOID}: training accuracy after {epochs} epochs at its best rate",
                sigmoid_accuracy,
                "<",
                SIGMOID_MAX_ACCURACY,
                f"best rate {sigmoid_rate:g} of "
                + ", ".join(f"{rate:g}" for rate in sorted(curves["learning_rate"].unique())),
            ),
            Rule.over_seeds(
                f"{RELU}: training accuracy after {epochs} epochs at its best rate",
                relu_accuracy,
                ">",
                RELU_MIN_ACCURACY,
                f"best rate {relu_rate:g}; {controls}",
            ),
        ),
    )


COLORS = {
    "sigmoid, Glorot": "tab:orange",
    "ReLU, He": "tab:blue",
    "ReLU, N(0,1)": "tab:red",
    "ReLU, N(0,0.01^2)": "tab:purple",
}


def sigmoid_bound(signals: pd.DataFrame) -> pd.Series:
    """Per layer, the bound on the sigmoid net's ||dL/dz|| from its logits down: the logits'
    signal times the product of 0.25 ||W||_2 over the kernels above (mean over seeds)."""
    mine = signals[signals["arm"] == SIGMOID]
    signal = mine.pivot(index="seed", columns="layer", values="signal_norm")
    spectral = mine.pivot(index="seed", columns="layer", values="kernel_spectral_norm")
    factors = SIGMOID_MAX_DERIVATIVE * spectral.shift(-1, axis=1)  # layer l: kernel of l + 1
    top = signal.columns.max()
    bound = signal[top].to_frame().reindex(columns=signal.columns)
    for layer in sorted(signal.columns[:-1], reverse=True):
        bound[layer] = bound[layer + 1] * factors[layer]
    return np.log10(bound).mean().pipe(lambda log_mean: 10**log_mean)


def plot(out_dir):
    signals = read_csv(out_dir / "gradient_signal.csv")
    curves = read_csv(out_dir / "training.csv")
    seeds = signals["seed"].nunique()
    output_layer = int(signals["layer"].max())

    fig, (ax,) = figure(
        f"{CLAIM_ID}: back-propagated signal per layer at initialization", width=6.8, height=4.6
    )
    for arm in ARMS:
        seed_band(
            ax,
            signals[signals["arm"] == arm],
            "layer",
            "signal_norm",
            label=arm + (" (control)" if arm in CONTROLS else ""),
            color=COLORS[arm],
        )
    bound = sigmoid_bound(signals)
    ax.plot(
        bound.index,
        bound.to_numpy(),
        color=COLORS[SIGMOID],
        ls="--",
        lw=1,
        label="sigmoid bound: logits' signal x product of 0.25 ||W||_2",
    )
    ax.set_yscale("log")
    ax.set_xticks(range(1, output_layer + 1))
    ax.set(
        xlabel=f"Dense layer (1 = first hidden, {output_layer} = logits)",
        ylabel="||dL/dz|| (Frobenius, batch of examples)",
    )
    seed_legend(ax, seeds)
    save_figure(fig, out_dir / "gradient_signal.png")

    fig, axes = figure(
        f"{CLAIM_ID}: SGD learning-rate sweep and the best rate's training curve",
        ncols=2,
        width=5.2,
        height=4.2,
    )
    sweep_ax, curve_ax = axes
    last = curves[curves["epoch"] == curves["epoch"].max()]
    for arm in TRAINED:
        rates = sorted(last["learning_rate"].unique())
        stats = np.array(
            [
                mean_interval(
                    last[(last["arm"] == arm) & (last["learning_rate"] == rate)]["train_accuracy"]
                )
                for rate in rates
            ]
        )
        sweep_ax.plot(rates, stats[:, 0], marker="o", color=COLORS[arm], label=arm)
        sweep_ax.fill_between(rates, stats[:, 1], stats[:, 2], color=COLORS[arm], alpha=0.2, lw=0)
        rate = best_rate(curves, arm)
        seed_band(
            curve_ax,
            curves[(curves["arm"] == arm) & (curves["learning_rate"] == rate)],
            "epoch",
            "train_accuracy",
            label=f"{arm}, best rate {rate:g}",
            color=COLORS[arm],
        )
    for ax in axes:
        ax.axhline(CHANCE, color="grey", ls=":", lw=1, label="chance (10 classes)")
        ax.set(ylim=(0, 1.02))
    sweep_ax.set_xscale("log")
    sweep_ax.set(
        xlabel="SGD learning rate (with momentum)",
        ylabel="final training accuracy (fraction)",
        title=f"mean and 95% t-interval over {seeds} seeds",
    )
    sweep_ax.legend(loc="center left", fontsize=8)
    curve_ax.xaxis.get_major_locator().set_params(integer=True)
    curve_ax.set(
        xlabel="epoch",
        ylabel="training accuracy (fraction)",
        title=f"mean, min-max over {seeds} seeds",
    )
    curve_ax.legend(loc="center right", fontsize=8)
    save_figure(fig, out_dir / "training_curves.png")
