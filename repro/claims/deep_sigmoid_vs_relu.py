"""Claim: a deep sigmoid net's gradient vanishes, a deep ReLU net's does not.

Results: results/deep-sigmoid-vs-relu/. Slide "Vanishing and Exploding Gradients".
Backpropagation multiplies, layer by layer, by the activation's derivative. The sigmoid's
derivative is at most 0.25, so in a deep sigmoid MLP the gradient that reaches the first
layers is smaller than the one at the top by orders of magnitude, and gradient descent
barely moves the first layers; ReLU's derivative is exactly 1 wherever a unit is active,
so the gradient keeps its scale through depth and the same net learns.

Experiment: two MLPs with `depth` hidden layers of `width` units that differ only in the
hidden activation (same Keras default Glorot-uniform initializer, same data order, same
optimizer: minibatch SGD with momentum) on scikit-learn's digits. At initialization, a
GradientTape on one batch gives the Frobenius norm of the loss gradient of every Dense
kernel, from the first hidden layer to the output layer. Then both nets train for the same
number of epochs, and their training and test accuracy is recorded after every epoch.

Thresholds, chosen from what the words mean rather than from the runs:
- "orders of magnitude": the first-layer gradient norm is below 1e-3 of the output layer's
  for sigmoid (three orders); "within about one order" for ReLU: the same ratio lies
  between 0.1 and 10.
- "barely trains": after the budget the sigmoid net's training accuracy is at most 0.2,
  twice the 0.1 of guessing among ten balanced classes; "learns": the ReLU net classifies
  at least 80% of its training set correctly.
The optimizer is SGD (with momentum) on purpose: an adaptive optimizer such as Adam divides
each parameter's step by its own gradient scale and so partly hides the vanishing gradient
that this claim is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from repro.data import digits
from repro.figures import figure, seed_band
from repro.harness import (
    Rule,
    Verdict,
    progress,
    read_csv,
    save_figure,
    seed_agreement,
    spread,
    write_csv,
)
from repro.models import EPOCH_PER_CALL, EpochAccuracy, Retrainable, batches, mlp

CLAIM_ID = "deep-sigmoid-vs-relu"
SLIDE = "Vanishing and Exploding Gradients"
STATEMENT = (
    "In a deep MLP (10 or more layers) the gradient reaching the first layer is orders of "
    "magnitude smaller than at the top with sigmoid activations but keeps its order of "
    "magnitude with ReLU; trained by SGD for the same budget, the sigmoid net stays near "
    "chance while the ReLU net learns."
)

ACTIVATIONS = ("sigmoid", "relu")
CLASSES = 10


@dataclass(frozen=True)
class Config:
    depth: int = 10  # hidden layers
    width: int = 64
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 0.01
    momentum: float = 0.9
    gradient_batch: int = 256  # training examples in the batch whose gradient is measured

    def __post_init__(self):
        if self.depth < 10:
            raise ValueError("the claim is about deep nets: depth must be at least 10")
        if self.width < 1 or self.epochs < 1 or self.batch_size < 1 or self.gradient_batch < 1:
            raise ValueError("width, epochs, batch_size and gradient_batch must be positive")
        if self.learning_rate <= 0 or not 0 <= self.momentum < 1:
            raise ValueError("learning_rate must be positive and momentum in [0, 1)")


PROFILES = {"quick": Config(epochs=2), "full": Config()}
SEEDS = {"quick": (0,), "full": tuple(range(5))}
TABLES = {
    "gradient_norms.csv": ("seed", "activation", "layer", "gradient_norm"),
    "training.csv": ("seed", "activation", "epoch", "train_accuracy", "test_accuracy"),
}
FIGURES = ("gradient_norms.png", "training_curves.png")

SIGMOID_MAX_RATIO = 1e-3
RELU_MAX_ORDERS = 1.0  # |log10(first / last)|
CHANCE = 1 / CLASSES
SIGMOID_MAX_ACCURACY = 2 * CHANCE
RELU_MIN_ACCURACY = 0.8


def kernel_gradient_norms(model, x, y) -> list[float]:
    """Frobenius norm of the loss gradient of each Dense kernel, input side first."""
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=False))
    return [float(tf.norm(gradient)) for gradient in tape.gradient(value, kernels)]


def compiled_net(config: Config, input_dim: int, activation: str) -> keras.Model:
    model = mlp(input_dim, CLASSES, hidden=(config.width,) * config.depth, activation=activation)
    model.compile(
        optimizer=keras.optimizers.SGD(config.learning_rate, momentum=config.momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=EPOCH_PER_CALL,
    )
    return model


def run(config: Config, seeds, out_dir):
    x, y, x_test, y_test = digits()
    # One compiled net per activation, restarted afresh for every seed.
    nets = {a: Retrainable(partial(compiled_net, config, x.shape[1], a)) for a in ACTIVATIONS}
    gradients, curves = [], []
    for seed in progress(seeds, CLAIM_ID):
        for activation in ACTIVATIONS:
            model = nets[activation].restart(seed)
            norms = kernel_gradient_norms(
                model, x[: config.gradient_batch], y[: config.gradient_batch]
            )
            gradients += [
                {"seed": seed, "activation": activation, "layer": layer, "gradient_norm": norm}
                for layer, norm in enumerate(norms, start=1)
            ]
            record = EpochAccuracy(
                {"train_accuracy": (x, y), "test_accuracy": (x_test, y_test)},
                seed=seed,
                activation=activation,
            )
            model.fit(
                batches(x, y, config.batch_size, shuffle_seed=seed),
                epochs=config.epochs,
                verbose=0,
                callbacks=[record],
            )
            curves += record.rows
    write_csv(pd.DataFrame(gradients), out_dir / "gradient_norms.csv")
    write_csv(pd.DataFrame(curves), out_dir / "training.csv")


def first_to_last_ratio(gradients: pd.DataFrame, activation: str) -> pd.Series:
    """Per seed: first hidden layer's gradient norm over the output layer's."""
    norms = gradients[gradients["activation"] == activation].pivot(
        index="seed", columns="layer", values="gradient_norm"
    )
    return norms[norms.columns.min()] / norms[norms.columns.max()]


def final_train_accuracy(curves: pd.DataFrame, activation: str) -> pd.Series:
    mine = curves[curves["activation"] == activation]
    return mine[mine["epoch"] == mine["epoch"].max()].set_index("seed")["train_accuracy"]


def verdict(out_dir) -> Verdict:
    gradients = read_csv(out_dir / "gradient_norms.csv")
    curves = read_csv(out_dir / "training.csv")
    sigmoid_ratio = first_to_last_ratio(gradients, "sigmoid")
    relu_orders = np.log10(first_to_last_ratio(gradients, "relu")).abs()
    sigmoid_accuracy = final_train_accuracy(curves, "sigmoid")
    relu_accuracy = final_train_accuracy(curves, "relu")
    epochs = int(curves["epoch"].max())
    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "sigmoid: first-layer / output-layer gradient norm at init (worst seed)",
                sigmoid_ratio.max(),
                "<",
                SIGMOID_MAX_RATIO,
                f"{seed_agreement(sigmoid_ratio < SIGMOID_MAX_RATIO)}; {spread(sigmoid_ratio)}",
            ),
            Rule(
                "relu: |log10(first-layer / output-layer gradient norm)| at init (worst seed)",
                relu_orders.max(),
                "<=",
                RELU_MAX_ORDERS,
                f"{seed_agreement(relu_orders <= RELU_MAX_ORDERS)}; {spread(relu_orders)}",
            ),
            Rule(
                f"sigmoid: training accuracy after {epochs} epochs (best seed)",
                sigmoid_accuracy.max(),
                "<=",
                SIGMOID_MAX_ACCURACY,
                f"{seed_agreement(sigmoid_accuracy <= SIGMOID_MAX_ACCURACY)}; "
                f"{spread(sigmoid_accuracy)}",
            ),
            Rule(
                f"relu: training accuracy after {epochs} epochs (worst seed)",
                relu_accuracy.min(),
                ">=",
                RELU_MIN_ACCURACY,
                f"{seed_agreement(relu_accuracy >= RELU_MIN_ACCURACY)}; {spread(relu_accuracy)}",
            ),
        ),
    )


COLORS = {"sigmoid": "tab:orange", "relu": "tab:blue"}


def plot(out_dir):
    gradients = read_csv(out_dir / "gradient_norms.csv")
    curves = read_csv(out_dir / "training.csv")
    seeds = gradients["seed"].nunique()
    output_layer = int(gradients["layer"].max())

    fig, (ax,) = figure(
        f"{CLAIM_ID}: gradient norm of each layer at initialization", width=6.4, height=4.2
    )
    for activation in ACTIVATIONS:
        seed_band(
            ax,
            gradients[gradients["activation"] == activation],
            "layer",
            "gradient_norm",
            label=f"{activation} (mean, min-max over {seeds} seeds)",
            color=COLORS[activation],
        )
    ax.set_yscale("log")
    ax.set_xticks(range(1, output_layer + 1))
    ax.set(
        xlabel=f"Dense layer (1 = first hidden, {output_layer} = output)",
        ylabel="norm of loss gradient w.r.t. kernel",
    )
    ax.legend(loc="lower right")
    save_figure(fig, out_dir / "gradient_norms.png")

    fig, (ax,) = figure(
        f"{CLAIM_ID}: training accuracy under the same SGD budget", width=6.4, height=4.2
    )
    for activation in ACTIVATIONS:
        seed_band(
            ax,
            curves[curves["activation"] == activation],
            "epoch",
            "train_accuracy",
            label=f"{activation} (mean, min-max over {seeds} seeds)",
            color=COLORS[activation],
        )
    ax.axhline(CHANCE, color="grey", ls=":", lw=1, label="chance (10 classes)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="epoch", ylabel="accuracy on the training set", ylim=(0, 1))
    ax.legend(loc="center right")
    save_figure(fig, out_dir / "training_curves.png")
