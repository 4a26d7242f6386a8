"""Claim: a deep sigmoid net's gradient vanishes, a deep ReLU net's does not.

Results: results/deep-sigmoid-vs-relu/. Slide "Vanishing Gradients" (and "Vanishing and
Exploding Gradients"). Backpropagation carries the loss gradient down the net layer by
layer: the signal reaching the pre-activations z of a layer is the signal of the layer
above, multiplied by that layer's transposed kernel and by the activation's derivative.
The sigmoid's derivative is at most 0.25, so with weights of the usual scale the signal
shrinks at every layer and the first layers of a deep sigmoid MLP barely move; ReLU's
derivative is exactly 1 wherever a unit is active, so with He's initialization (built
for ReLU) the signal keeps its scale through depth and the same net learns.
Notes, pilots and history: docs/claims/deep-sigmoid-vs-relu.md.

Design. MLPs with `depth` hidden layers of `width` units on scikit-learn's digits, biases
zero. Runs on either Keras backend.
- Arms: sigmoid with Glorot-uniform (Keras' default, the scale designed for sigmoid-like
  units) and ReLU with He-normal; two control arms, measured but not trained: ReLU with
  N(0, 1) weights (the signal explodes going down) and ReLU with N(0, 0.01^2) (it
  vanishes). They show that the ReLU signal rule can fail: ReLU alone does not keep the
  signal, ReLU with the right scale does.
- Signal at initialization: on a batch of `gradient_batch` training examples, dL/dz for
  every Dense layer (hidden layers, then the logits) by `repro.backend.gradient`: the
  forward pass adds a zero shift to each layer's z, and the gradient of the mean
  cross-entropy with respect to that shift is dL/dz, all layers in one backward pass. The
  table keeps its Frobenius norm and the largest singular value of the layer's kernel. The
  kernel gradient is not the quantity: it is dL/dz times the layer's input, and in a ReLU
  net with zero biases the input's growth cancels the signal's shrinkage, so its
  first/last ratio stays near 1 for any weight scale and cannot tell the arms apart.
- Theory line: for a sigmoid layer ||dL/dz_l|| <= 0.25 ||W_(l+1)||_2 ||dL/dz_(l+1)||, so
  from the logits down the signal is at most the product of these factors.
- Training through `repro.models.fit`: minibatch SGD with momentum (an adaptive optimizer
  such as Adam rescales each parameter's step by its own gradient and would hide the
  effect), the same epochs and the same batch order for every arm, at each rate of a
  small learning-rate sweep; training and test accuracy after every epoch, with the model
  in inference mode. One compiled net per arm, restarted (`repro.models.restart`) for
  every seed and rate. Each arm is judged at its best rate: the highest mean final
  training accuracy over seeds (rounded to 1e-9; ties to the smaller rate), so that
  "barely trains" is a statement about the activation, not about one step size.

Rules (key statistic per seed; its mean over seeds with the Student-t 95% interval):
1. lecture ("Vanishing Gradients"): sigmoid: log10(||dL/dz|| first hidden layer /
   ||dL/dz|| logits) < -3 ("orders of magnitude" read as at least three).
2. lecture ("Vanishing Gradients"): ReLU with He: |log10| of the same ratio < 1 ("within
   about one order"). It fails on the control arms (tests/test_deep_sigmoid_vs_relu.py).
3. lecture ("Vanishing and Exploding Gradients"): sigmoid at its best rate: final training
   accuracy < 0.2, twice the 0.1 of guessing among ten classes ("barely trains").
4. lecture ("Vanishing Gradients"): ReLU with He at its best rate: final training accuracy
   > 0.8 ("learns"; a ReLU net that failed too would make the contrast empty).

Seeds: pilots and design on development seeds (100-104); verdict seeds 0-4, fixed before
the full run; the shifted seeds 1000-1004 run only once the design is frozen. The verdict
seeds were run with an earlier design whose signal rule could not fail; it was replaced
after a review, not because of their outcome (notes). The learning-rate sweep was widened
once, on a development-seed pilot, before any full run of this design.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from repro import backend
from repro.backend import keras
from repro.data import digits
from repro.figures import figure, save_figure, seed_band, seed_legend
from repro.models import fit, mlp, predict_labels, restart
from repro.records import progress, read_csv, write_csv
from repro.rules import LECTURE, Rule, Verdict

CLAIM_ID = "deep-sigmoid-vs-relu"
SLIDE = "Vanishing Gradients"
STATEMENT = (
    "In a deep MLP (10 hidden layers) the gradient signal reaching the first layer is at "
    "least a thousand times smaller than at the logits with sigmoid activations, but within "
    "one order of magnitude with ReLU and He's initialization; trained by SGD at the best "
    "rate of a sweep, the sigmoid net stays near chance while the ReLU net learns."
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


PROFILES = {"quick": Config(epochs=3, learning_rates=(0.01, 0.1)), "full": Config()}
SEEDS = {"quick": (0, 1), "full": tuple(range(5))}
TABLES = {
    "gradient_signal.csv": ("seed", "arm", "layer", "signal_norm", "kernel_spectral_norm"),
    "training.csv": (
        "seed",
        "arm",
        "learning_rate",
        "epoch",
        "loss",
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


def net(config: Config, input_dim: int, arm: str, learning_rate: float | None = None):
    """The arm's MLP; compiled with SGD and momentum at `learning_rate` if one is given."""
    activation, initializer = ARMS[arm]
    model = mlp(
        input_dim,
        CLASSES,
        hidden=(config.width,) * config.depth,
        activation=activation,
        kernel_initializer=initializer,
    )
    if learning_rate is not None:
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate, momentum=config.momentum),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    return model


def dense_layers(model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def backpropagated_signal(model, x, y) -> list[float]:
    """Frobenius norm of dL/dz for every Dense layer's pre-activation z, input side first.

    The forward pass adds a shift (zero) to every z; the gradient of the loss with respect
    to a layer's shift is dL/dz there, and one backward pass gives every layer's."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    layers = dense_layers(model)

    def loss_of(*shifts):
        signal = keras.ops.convert_to_tensor(x)
        for layer, shift in zip(layers, shifts, strict=True):
            signal = layer.activation(keras.ops.matmul(signal, layer.kernel) + layer.bias + shift)
        return loss(y, signal)

    shifts = [keras.ops.zeros((len(x), layer.units)) for layer in layers]
    _, gradients = backend.gradient(loss_of, *shifts)
    return [
        float(np.linalg.norm(keras.ops.convert_to_numpy(g).astype(np.float64))) for g in gradients
    ]


def spectral_norms(model) -> list[float]:
    return [
        float(np.linalg.norm(keras.ops.convert_to_numpy(layer.kernel).astype(np.float64), ord=2))
        for layer in dense_layers(model)
    ]


def signal_rows(seed: int, arm: str, model, probe) -> list[dict]:
    norms, spectral = backpropagated_signal(model, *probe), spectral_norms(model)
    return [
        {"seed": seed, "arm": arm, "layer": layer, "signal_norm": n, "kernel_spectral_norm": s}
        for layer, (n, s) in enumerate(zip(norms, spectral, strict=True), start=1)
    ]


def run(config: Config, seeds, out_dir):
    x, y, x_test, y_test = digits()
    probe = x[: config.gradient_batch], y[: config.gradient_batch]

    both, split = np.concatenate([x, x_test]), len(x)

    def evaluate(model):  # both sets in one call of the compiled prediction
        correct = predict_labels(model, both) == np.concatenate([y, y_test])
        return {"train_accuracy": correct[:split].mean(), "test_accuracy": correct[split:].mean()}

    signals, curves = [], []
    for seed in seeds:
        for arm in CONTROLS:
            backend.seed_everything(seed)
            signals += signal_rows(seed, arm, net(config, x.shape[1], arm), probe)
    for arm in TRAINED:
        model = None  # one compiled net per arm, restarted for every seed and rate
        for seed in progress(seeds, f"{CLAIM_ID}, {arm}"):
            for i, rate in enumerate(config.learning_rates):
                build = partial(net, config, x.shape[1], arm, rate)
                model = restart(model, build, seed)
                if i == 0:  # every rate starts from the same weights: measure them once
                    signals += signal_rows(seed, arm, model, probe)
                history = fit(
                    model,
                    x,
                    y,
                    epochs=config.epochs,
                    batch_size=config.batch_size,
                    seed=seed,
                    evaluate=evaluate,
                )
                curves += [
                    {"seed": seed, "arm": arm, "learning_rate": rate} | row for row in history
                ]
    columns = list(TABLES["training.csv"])
    write_csv(pd.DataFrame(signals), out_dir / "gradient_signal.csv")
    write_csv(pd.DataFrame(curves)[columns], out_dir / "training.csv")


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
        kind=LECTURE,
        slide="Vanishing Gradients",
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
    rates = ", ".join(f"{rate:g}" for rate in sorted(curves["learning_rate"].unique()))
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
                kind=LECTURE,
                slide="Vanishing Gradients",
            ),
            relu_signal_rule(signals),
            Rule.over_seeds(
                f"{SIGMOID}: training accuracy after {epochs} epochs at its best rate",
                sigmoid_accuracy,
                "<",
                SIGMOID_MAX_ACCURACY,
                f"best rate {sigmoid_rate:g} of {rates}",
                kind=LECTURE,
                slide="Vanishing and Exploding Gradients",
            ),
            Rule.over_seeds(
                f"{RELU}: training accuracy after {epochs} epochs at its best rate",
                relu_accuracy,
                ">",
                RELU_MIN_ACCURACY,
                f"best rate {relu_rate:g} of {rates}; {controls}",
                kind=LECTURE,
                slide="Vanishing Gradients",
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
    signal times the product of 0.25 ||W||_2 over the kernels above (geometric mean over
    seeds)."""
    mine = signals[signals["arm"] == SIGMOID]
    signal = mine.pivot(index="seed", columns="layer", values="signal_norm")
    spectral = mine.pivot(index="seed", columns="layer", values="kernel_spectral_norm")
    factors = SIGMOID_MAX_DERIVATIVE * spectral.shift(-1, axis=1)  # layer l: kernel of l + 1
    top = signal.columns.max()
    bound = signal[top].to_frame().reindex(columns=signal.columns)
    for layer in sorted(signal.columns[:-1], reverse=True):
        bound[layer] = bound[layer + 1] * factors[layer]
    return 10 ** np.log10(bound).mean()


def plot(out_dir):
    signals = read_csv(out_dir / "gradient_signal.csv")
    curves = read_csv(out_dir / "training.csv")
    seeds = signals["seed"].nunique()
    output_layer = int(signals["layer"].max())

    fig, (ax,) = figure(
        f"{CLAIM_ID}: back-propagated signal per layer at initialization", width=11, height=5.2
    )
    for arm in ARMS:
        seed_band(
            ax,
            signals[signals["arm"] == arm],
            "layer",
            "signal_norm",
            label=arm + (" (control, not trained)" if arm in CONTROLS else ""),
            color=COLORS[arm],
            marker="o",
            ms=4,
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
    # Where the lecture rules draw their lines, at the first hidden layer: relative to
    # each arm's own signal at the logits (almost the same for every arm).
    top = signals[signals["layer"] == output_layer]
    logits = {arm: 10 ** np.log10(top[top["arm"] == arm]["signal_norm"]).mean() for arm in TRAINED}
    ax.plot(
        [1],
        [logits[SIGMOID] * 10**SIGMOID_MAX_LOG10_RATIO],
        marker="v",
        ms=11,
        ls="none",
        color=COLORS[SIGMOID],
        markeredgecolor="black",
        label="lecture rule threshold, sigmoid: 1000x below its logits",
    )
    ax.errorbar(
        [1],
        [logits[RELU]],
        yerr=[[logits[RELU] * (1 - 10**-RELU_MAX_ORDERS)], [logits[RELU] * 9]],
        color=COLORS[RELU],
        capsize=6,
        lw=1.5,
        ls="none",
        label="lecture rule band, ReLU He: within 10x of its logits",
    )
    ax.set_yscale("log")
    ax.set_xticks(range(1, output_layer + 1))
    ax.set(
        xlabel=f"Dense layer (1 = first hidden, {output_layer} = logits)",
        ylabel="||dL/dz|| (Frobenius norm over a batch)",
    )
    seed_legend(ax, seeds, loc="upper left", bbox_to_anchor=(1.01, 1))
    save_figure(fig, out_dir / "gradient_signal.png")

    fig, axes = figure(
        f"{CLAIM_ID}: SGD learning-rate sweep and the best rate's training curve",
        ncols=2,
        width=5.4,
        height=4.4,
    )
    sweep_ax, curve_ax = axes
    last = curves[curves["epoch"] == curves["epoch"].max()]
    for arm in TRAINED:
        seed_band(
            sweep_ax,
            last[last["arm"] == arm],
            "learning_rate",
            "train_accuracy",
            label=arm,
            color=COLORS[arm],
            marker="o",
        )
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
        ax.axhline(RELU_MIN_ACCURACY, color=COLORS[RELU], ls="--", lw=1)
        ax.axhline(SIGMOID_MAX_ACCURACY, color=COLORS[SIGMOID], ls="--", lw=1)
        ax.axhline(CHANCE, color="grey", ls=":", lw=1)
        ax.set(ylim=(0, 1.02))
    curve_ax.plot([], [], color=COLORS[RELU], ls="--", lw=1, label="lecture rule: ReLU above")
    curve_ax.plot([], [], color=COLORS[SIGMOID], ls="--", lw=1, label="lecture rule: sigmoid below")
    curve_ax.plot([], [], color="grey", ls=":", lw=1, label="chance (10 classes)")
    sweep_ax.set_xscale("log")
    sweep_ax.set(
        xlabel="SGD learning rate (with momentum)",
        ylabel="training accuracy after the last epoch",
    )
    curve_ax.xaxis.get_major_locator().set_params(integer=True)
    curve_ax.set(xlabel="epoch", ylabel="training accuracy (fraction)")
    sweep_ax.set_title("every rate of the sweep (colours as on the right)")
    curve_ax.set_title("each arm at its best rate")
    seed_legend(curve_ax, seeds, loc="center right")
    save_figure(fig, out_dir / "training_curves.png")
