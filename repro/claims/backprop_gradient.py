"""Claim: backpropagation gives the exact gradient (results: results/backprop-gradient/).

Slide "Training Neural Networks" (forward propagation, backpropagation, computational
graphs). Backpropagation walks the computational graph in reverse, applying the chain rule
to the values the forward pass stored, so the gradient it returns is the true derivative of
the loss, not an approximation: it must agree with an independent numerical estimate to
the precision that estimate allows.

Experiment: a small Keras MLP (`repro.models.mlp`) built in float64 (Keras' floatx is
switched to float64 while it is built, so every layer computes in float64), with a
softmax cross-entropy loss on a batch of random inputs and labels. Autodiff: the gradient
of the loss with respect to every weight and bias from `tf.GradientTape` over the model's
trainable variables. Numerical: for every single parameter, the central difference
(L(w + h) - L(w - h)) / 2h, where L is computed by the same model through
`stateless_call`, so the model's own weights are never touched. The step h = 1e-5 is near
the best for central differences in float64 (cube root of the machine epsilon, 6e-6),
where truncation error (order h^2) and rounding error (order eps / h) are both about
1e-11 for a loss of order 1. Both a smooth (tanh) and a ReLU net are checked; ReLU's kink
could spoil the numerical estimate (not the autodiff one) if a pre-activation lay within
h of zero, which for random data is very unlikely.

Relative error, entry by entry: |autodiff - numerical| / max(|autodiff|, |numerical|,
floor), where floor = 1e-3 x the largest |numerical| entry of that net. Without a floor,
an entry that is nearly zero (a dead ReLU unit's weight, a weight whose contributions
cancel) would be compared with rounding noise alone and its "relative" error would be
meaningless; with it, entries a thousand times smaller than the largest are judged on the
absolute scale that the finite differences can resolve. (Measured: with the floor the
worst entry is about 1e-7; without it, an entry of size 1e-5 in a ReLU net shows 2.5e-6,
from an absolute difference of 2.5e-11, which is the finite differences' own noise.)

Economy. The slide's other point is that backpropagation reuses the values the forward
pass stored instead of recomputing them, so one backward pass costs a small constant
times one forward pass, whatever the number of parameters P, while central differences
need 2P forward passes. The cost is counted, not timed (wall time depends on the machine
and its load): for MLPs of several widths, TensorFlow's own profiler counts the float
operations of the traced graphs of one forward pass (the loss) and of one gradient (the
loss and its backward pass, as `tf.GradientTape` builds it). The backward pass's cost is
the difference. Theory: a dense layer's backward pass is two matrix products of the
forward's size (the weight gradient and the input gradient), so the ratio approaches 2.

Rules, decided before the full run:
1. The largest relative error over every entry, activation and seed is below 1e-6 (the
   CLAIMS.md number); a wrong gradient (a missing term, a transposed matrix) gives errors
   of order 1. Exact: a float64 computation, deterministic; the rule compares the worst
   entry, without an interval over seeds.
2. Backward pass / forward pass, counted float operations, below 5 at every P (the
   lecture's "small constant"; theory 2, a gradient that recomputed the forward pass per
   parameter would give about P). Exact: operation counts of the traced graphs, the same
   for every seed and machine.
3. The saving grows in proportion to P: the least-squares slope of ln(central-difference
   cost / backpropagation cost) against ln P is at least 0.9 (1 if the ratio of rule 2 is
   constant in P). Exact, as rule 2.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from repro.backend import seed_everything
from repro.figures import figure, save_figure
from repro.records import progress, read_csv, write_csv
from repro.rules import Rule, Verdict, seed_agreement

CLAIM_ID = "backprop-gradient"
SLIDE = "Training Neural Networks"
STATEMENT = (
    "Backpropagation, the reverse pass over the computational graph that reuses the forward "
    "pass's stored values, gives the exact gradient: in float64 it matches central finite "
    "differences to a relative error below 1e-6 for every weight of an MLP."
)


@dataclass(frozen=True)
class Config:
    input_dim: int = 8
    hidden: tuple[int, ...] = (16, 16)
    classes: int = 3
    batch_size: int = 32
    activations: tuple[str, ...] = ("tanh", "relu")
    step: float = 1e-5  # h of the central difference
    economy_widths: tuple[int, ...] = (4, 16, 64, 256)  # two hidden layers of each width

    def __post_init__(self):
        if self.input_dim < 1 or self.classes < 2 or self.batch_size < 1:
            raise ValueError("input_dim >= 1, classes >= 2 and batch_size >= 1 required")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError("hidden must list at least one positive width")
        if not self.activations:
            raise ValueError("at least one activation required")
        if not 0 < self.step < 1e-2:
            raise ValueError("the finite-difference step must lie in (0, 0.01)")
        if len(set(self.economy_widths)) < 2 or min(self.economy_widths) < 1:
            raise ValueError("economy_widths needs at least two different positive widths")


PROFILES = {
    "quick": Config(hidden=(6,), batch_size=8, activations=("tanh",), economy_widths=(4, 32)),
    "full": Config(),
}
SEEDS = {"quick": (0, 1), "full": tuple(range(5))}
TABLES = {
    "entries.csv": ("seed", "activation", "variable", "index", "autodiff", "numerical"),
    "economy.csv": (
        "width",
        "parameters",
        "forward_flops",
        "gradient_flops",
        "backward_flops",
        "central_difference_flops",
    ),
}
FIGURES = ("gradient_check.png", "economy.png")

MAX_RELATIVE_ERROR = 1e-6
FLOOR_FRACTION = 1e-3  # floor of the relative error's denominator, as a fraction of max |g|
MAX_BACKWARD_RATIO = 5.0
MIN_SAVING_SLOPE = 0.9


@contextlib.contextmanager
def float64():
    """Build Keras layers in float64 inside the block; floatx and dtype policy are restored.

    Keras caches its global dtype policy the first time it is asked for, so setting floatx
    alone would leave every later model of the process in float64.
    """
    import keras

    previous_floatx, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(previous_floatx)
        keras.config.set_dtype_policy(previous_policy)


def gradient_pair(config: Config, activation: str, seed: int) -> pd.DataFrame:
    """Autodiff and central-difference gradient of one seeded net, one row per parameter."""
    import keras
    import tensorflow as tf

    from repro.models import mlp

    seed_everything(seed)
    with float64():  # the loss too: a Keras loss computes in the floatx of its creation
        model = mlp(config.input_dim, config.classes, config.hidden, activation=activation)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(config.batch_size, config.input_dim)))
    y = tf.constant(rng.integers(0, config.classes, config.batch_size))

    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    autodiff = tape.gradient(loss, model.trainable_variables)

    @tf.function
    def loss_at(weights):
        logits, _ = model.stateless_call(weights, model.non_trainable_variables, x)
        return loss_fn(y, logits)

    weights = [tf.constant(v.numpy()) for v in model.trainable_variables]
    rows = []
    for k, (variable, grad) in enumerate(zip(model.trainable_variables, autodiff, strict=True)):
        values = weights[k].numpy()
        for index in range(values.size):
            losses = []
            for sign in (1.0, -1.0):
                shifted = values.copy()
                shifted.flat[index] += sign * config.step
                trial = [*weights[:k], tf.constant(shifted), *weights[k + 1 :]]
                losses.append(float(loss_at(trial)))
            rows.append(
                {
                    "seed": seed,
                    "activation": activation,
                    "variable": variable.path,
                    "index": index,
                    "autodiff": float(grad.numpy().ravel()[index]),
                    "numerical": (losses[0] - losses[1]) / (2 * config.step),
                }
            )
    return pd.DataFrame(rows)


def graph_flops(function, *args) -> int:
    """Float operations of `function`'s traced graph, as TensorFlow's profiler counts them."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder(
        option_builder.ProfileOptionBuilder.float_operation()
    )
    graph = function.get_concrete_function(*args).graph
    return model_analyzer.profile(
        graph, options=options.with_empty_output().build()
    ).total_float_ops


def operation_counts(config: Config, width: int, seed: int) -> dict:
    """Counted cost of one forward pass and of one gradient of an MLP with two hidden layers."""
    import keras
    import tensorflow as tf

    from repro.models import mlp

    seed_everything(seed)
    model = mlp(config.input_dim, config.classes, (width, width), activation="tanh")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(config.batch_size, config.input_dim)).astype("float32"))
    y = tf.constant(rng.integers(0, config.classes, config.batch_size))

    @tf.function
    def loss(x, y):
        return loss_fn(y, model(x, training=True))

    @tf.function
    def gradient(x, y):
        with tf.GradientTape() as tape:
            value = loss_fn(y, model(x, training=True))
        return tape.gradient(value, model.trainable_variables)

    forward, both = graph_flops(loss, x, y), graph_flops(gradient, x, y)
    parameters = model.count_params()
    return {
        "width": width,
        "parameters": parameters,
        "forward_flops": forward,
        "gradient_flops": both,
        "backward_flops": both - forward,
        "central_difference_flops": 2 * parameters * forward,
    }


def run(config: Config, seeds, out_dir):
    tables = []
    for seed in progress(seeds, CLAIM_ID):
        for activation in config.activations:
            tables.append(gradient_pair(config, activation, seed))
    write_csv(pd.concat(tables, ignore_index=True), out_dir / "entries.csv")
    # Counted operations do not depend on the seed: one net per width.
    economy = [operation_counts(config, width, seeds[0]) for width in config.economy_widths]
    write_csv(pd.DataFrame(economy), out_dir / "economy.csv")


def saving_slope(economy: pd.DataFrame) -> float:
    """Least-squares slope of ln(central-difference cost / gradient cost) against ln P."""
    saving = (economy["central_difference_flops"] / economy["gradient_flops"]).to_numpy(float)
    if np.isnan(saving).any():
        return float("nan")  # no measurement
    return float(np.polyfit(np.log(economy["parameters"]), np.log(saving), 1)[0])


def relative_errors(entries: pd.DataFrame) -> pd.Series:
    """|a - n| / max(|a|, |n|, floor), floor = FLOOR_FRACTION x max |n| of the same net."""
    scale = entries.groupby(["seed", "activation"])["numerical"].transform(lambda n: n.abs().max())
    denominator = np.maximum.reduce(
        [entries["autodiff"].abs(), entries["numerical"].abs(), FLOOR_FRACTION * scale]
    )
    return (entries["autodiff"] - entries["numerical"]).abs() / denominator


def verdict(out_dir) -> Verdict:
    entries = read_csv(out_dir / "entries.csv")
    errors = relative_errors(entries)
    per_seed = errors.groupby(entries["seed"]).max()
    worst = errors.groupby(entries["activation"]).max()
    economy = read_csv(out_dir / "economy.csv")
    backward_ratio = economy["backward_flops"] / economy["forward_flops"]
    saving = economy["central_difference_flops"] / economy["gradient_flops"]
    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "largest relative error, autodiff vs central differences, all entries "
                "(exact: float64, deterministic)",
                errors.max(skipna=False),
                "<",
                MAX_RELATIVE_ERROR,
                f"{seed_agreement(per_seed < MAX_RELATIVE_ERROR)}; "
                f"{len(entries) // entries['seed'].nunique()} entries per seed; worst per "
                + ", ".join(f"{name} {value:.2g}" for name, value in worst.items())
                + f"; median {errors.median():.2g}",
            ),
            Rule(
                "backward / forward pass, counted float operations, worst P "
                "(exact: TensorFlow's count of the traced graphs)",
                backward_ratio.to_numpy().max(),
                "<",
                MAX_BACKWARD_RATIO,
                ", ".join(
                    f"P={p}: {r:.3f}"
                    for p, r in zip(economy["parameters"], backward_ratio, strict=True)
                ),
            ),
            Rule(
                "slope of ln(central-difference cost / backprop cost) against ln P (exact)",
                saving_slope(economy),
                ">=",
                MIN_SAVING_SLOPE,
                "central differences cost "
                + ", ".join(
                    f"{s:.3g}x at P={p}" for p, s in zip(economy["parameters"], saving, strict=True)
                ),
            ),
        ),
    )


def plot(out_dir):
    entries = read_csv(out_dir / "entries.csv")
    errors = relative_errors(entries)
    n_seeds = entries["seed"].nunique()
    fig, (scatter, histogram) = figure(
        "backprop-gradient: autodiff equals central finite differences (float64 MLP)",
        ncols=2,
        width=5.4,
        height=4.2,
    )
    for activation, group in entries.groupby("activation"):
        scatter.scatter(
            group["numerical"],
            group["autodiff"],
            s=6,
            alpha=0.5,
            label=f"{activation} net, {len(group)} entries ({n_seeds} seeds)",
        )
    limit = entries[["numerical", "autodiff"]].abs().max().max() * 1.5
    scatter.plot([-limit, limit], [-limit, limit], "k--", lw=0.8, label="autodiff = numerical")
    # Entries span decades around 0: symmetric log axes, linear only within +-1e-5.
    scatter.set_xscale("symlog", linthresh=1e-5)
    scatter.set_yscale("symlog", linthresh=1e-5)
    ticks = [-1e-1, -1e-3, -1e-5, 0, 1e-5, 1e-3, 1e-1]
    scatter.set_xticks(ticks)
    scatter.set_yticks(ticks)
    scatter.set(
        xlabel="central finite difference (symmetric log scale)",
        ylabel="autodiff, tf.GradientTape (symmetric log scale)",
        title="every weight and bias, entry by entry",
    )
    scatter.legend(fontsize=8, loc="upper left")

    positive = errors[errors > 0]
    bins = np.logspace(np.log10(positive.min()) - 0.2, np.log10(positive.max()) + 0.2, 40)
    for activation, group in entries.groupby("activation"):
        in_net = errors[group.index]
        exact = int((in_net == 0).sum())
        histogram.hist(
            in_net[in_net > 0],
            bins=bins,
            alpha=0.6,
            label=f"{activation} net"
            + (f" ({exact} entries with error exactly 0)" if exact else ""),
        )
    histogram.axvline(
        MAX_RELATIVE_ERROR, color="tab:red", lw=1.2, label=f"threshold {MAX_RELATIVE_ERROR:g}"
    )
    histogram.set(
        xscale="log",
        xlabel="relative error |a - n| / max(|a|, |n|, 1e-3 max|n|)",
        ylabel="number of entries",
        title="relative error of each entry (all seeds)",
    )
    histogram.set_xlim(right=max(bins[-1], MAX_RELATIVE_ERROR * 10))
    histogram.legend(fontsize=8, loc="upper left")
    save_figure(fig, out_dir / "gradient_check.png")
    plot_economy(out_dir)


def plot_economy(out_dir):
    economy = read_csv(out_dir / "economy.csv")
    parameters = economy["parameters"]
    fig, (costs, ratio) = figure(
        "backprop-gradient: one backward pass costs about two forward passes, at any size",
        ncols=2,
        width=5.4,
        height=4.2,
    )
    for column, marker, label in (
        ("forward_flops", "o", "one forward pass (loss)"),
        ("backward_flops", "s", "one backward pass (gradient minus forward)"),
        ("central_difference_flops", "^", "central differences: 2P forward passes"),
    ):
        costs.plot(parameters, economy[column], marker=marker, label=label)
    costs.plot(
        parameters,
        2 * economy["forward_flops"],
        "k:",
        lw=1,
        label="theory for backward: 2 x forward",
    )
    costs.set(
        xscale="log",
        yscale="log",
        xlabel=f"parameters P (MLPs with two hidden layers of {economy['width'].min()} to "
        f"{economy['width'].max()} units)",
        ylabel="float operations (TensorFlow's count of the graph)",
        title="cost of one gradient",
    )
    costs.legend(fontsize=8, loc="upper left")

    ratio.plot(
        parameters,
        economy["backward_flops"] / economy["forward_flops"],
        marker="s",
        label="backward / forward (counted)",
    )
    ratio.axhline(2, color="black", ls=":", lw=1, label="theory: 2 (two products per layer)")
    ratio.axhline(
        MAX_BACKWARD_RATIO, color="tab:red", lw=1.2, label=f"rule: below {MAX_BACKWARD_RATIO:g}"
    )
    ratio.set(
        xscale="log",
        ylim=(0, MAX_BACKWARD_RATIO + 1),
        xlabel="parameters P",
        ylabel="cost ratio (float operations / float operations)",
        title="a constant, independent of P",
    )
    ratio.legend(fontsize=8, loc="upper left")
    save_figure(fig, out_dir / "economy.png")
