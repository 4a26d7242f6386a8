"""Claim: the initialization decides whether signals survive depth (results/initialization/).

(Longer than most claim modules: five schemes on two activations, each measured at rest and
trained over a learning-rate sweep, with nine rules and two figures.)

Slide "Numerical Stability and Initialization" (with "Vanishing and Exploding Gradients"
and "Exploding Gradients"). In a ReLU layer with n inputs and weights of variance v, the
mean square of the activations is multiplied by n v / 2 (n v from the sum, 1/2 because
ReLU zeroes half of a symmetric pre-activation), so their scale changes by sqrt(n v / 2)
per layer. N(0, 1) weights (v = 1) multiply it by sqrt(n / 2) per layer and explode it;
N(0, 0.01^2) weights multiply it by 0.01 sqrt(n / 2) and make it vanish. Glorot
(v = 2 / (fan_in + fan_out)) was derived for units that are linear near 0, such as tanh:
it keeps a tanh net's scale, but with ReLU it loses a factor sqrt(2) per layer; He
(v = 2 / fan_in) puts the 1/2 back and keeps a ReLU net's scale. The right scale depends on
the activation: the lecture's point that initialization is tied to the nonlinearity, and
that it decides how fast (or whether) training converges.
Notes, pilots and history: docs/claims/initialization.md.

Design. MLPs with `depth` hidden layers of `width` units on scikit-learn's digits, biases
zero, one arm (scheme) per (activation, initializer): ReLU with Keras' RandomNormal of
stddev 1 and 0.01, with GlorotNormal (the mismatch) and with HeNormal, and tanh with
GlorotNormal. Runs on either Keras backend.
- At initialization a forward pass of `probe_batch` training images gives the standard
  deviation of every hidden layer's output; for the ReLU arms the per-layer growth factor is
  exp of the slope of ln(std) against the layer, compared with sqrt(n v / 2) computed from
  the kernels actually drawn (no such formula for tanh; its column is empty).
- Then every arm trains through `repro.models.fit`: minibatch SGD with momentum for the
  same epochs, at each rate of a small learning-rate sweep, on the same batches; test
  accuracy after every epoch; a diverging run's NaN loss is kept as it is. One compiled net
  per activation (the architecture), restarted (`repro.models.restart`) for every scheme,
  rate and seed: the initializer and the learning rate come from the restart's fresh model.
  Each arm is judged at its best rate: the largest area under its test-accuracy curve (mean
  over epochs, then over seeds, rounded to 1e-9; ties to the smaller rate), which rewards
  both reaching high and getting there fast. A poor scheme is then poor at every step size.
- Each Dense layer gets its own initializer, built from a name or a config: a Keras 3
  initializer object fixes its seed when made, so one shared object would give every
  hidden layer the same kernel.

Rules (key statistic per seed; its mean over seeds with the Student-t 95% interval):
1. lecture ("Vanishing and Exploding Gradients"): ReLU, N(0,1) explodes:
   log10(last hidden layer's std / input's std) > 3.
2. lecture ("Vanishing and Exploding Gradients"): ReLU, N(0,0.01^2) vanishes: the same
   log10 ratio < -3.
3. lecture ("Numerical Stability and Initialization"): ReLU, He stays: the largest
   |log10(layer std / input std)| over the layers < 1.
4. lecture ("Numerical Stability and Initialization"): tanh, Glorot stays: the same < 1
   (Glorot is the right scale for tanh).
5. beyond: ReLU, Glorot (the mismatch) falls out of that band: log10(last / input) < -1
   (the arithmetic above predicts about -1.4 at depth 10); the slides predict no outcome
   for this pairing.
6. beyond: growth factor: the mean over the four ReLU arms of |fitted / sqrt(n v / 2) - 1|
   < 0.1 (a quantitative theory the slides do not give).
7. lecture ("Exploding Gradients"): the poor schemes never reach test accuracy 0.8 (eight
   times chance, well below the 0.9+ of a working 10-layer net on digits): the highest test
   accuracy of either poor arm over every rate and epoch < 0.8.
8. lecture ("Numerical Stability and Initialization"): the sound schemes reach it: the
   lowest, over ReLU with He, ReLU with Glorot and tanh with Glorot, of the highest test
   accuracy within the budget at the arm's best rate > 0.8.
9. lecture ("Numerical Stability and Initialization"): He converges faster than Glorot
   with ReLU: area under the test-accuracy curve, He minus Glorot, each at its best rate,
   > 0.

Seeds: pilots and design on development seeds (100-105); verdict seeds 0-4, fixed before
the full run; the shifted seeds 1000-1004 run only once the design is frozen. One design
choice was made after a full run on verdict seeds: the learning-rate grid was refined to
half-decades after the first full run of this design (notes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from repro.backend import keras
from repro.data import digits
from repro.figures import figure, save_figure, seed_band, seed_legend
from repro.models import fit, mlp, predict_labels, restart
from repro.records import progress, read_csv, write_csv
from repro.rules import BEYOND, LECTURE, Rule, Verdict

CLAIM_ID = "initialization"
SLIDE = "Numerical Stability and Initialization"
STATEMENT = (
    "In a deep ReLU MLP, N(0, 1) weights make the activations explode with depth and "
    "N(0, 0.01^2) weights make them vanish, and neither reaches the target accuracy at any "
    "rate of a sweep; the scale that keeps the signal depends on the activation (He for "
    "ReLU, Glorot for tanh), these sound schemes train, and He trains a ReLU net faster "
    "than Glorot."
)

# arm -> (activation, initializer: a name or a config, never a shared object; see above)
SCHEMES = {
    "ReLU, N(0,1)": ("relu", {"class_name": "RandomNormal", "config": {"stddev": 1.0}}),
    "ReLU, N(0,0.01^2)": ("relu", {"class_name": "RandomNormal", "config": {"stddev": 0.01}}),
    "ReLU, Glorot": ("relu", "glorot_normal"),
    "ReLU, He": ("relu", "he_normal"),
    "tanh, Glorot": ("tanh", "glorot_normal"),
}
EXPLODING, VANISHING = "ReLU, N(0,1)", "ReLU, N(0,0.01^2)"
POOR = (EXPLODING, VANISHING)
WORKING = ("ReLU, He", "ReLU, Glorot", "tanh, Glorot")
RELU_SCHEMES = tuple(scheme for scheme, (activation, _) in SCHEMES.items() if activation == "relu")
CLASSES = 10


@dataclass(frozen=True)
class Config:
    depth: int = 10  # hidden layers
    width: int = 64
    epochs: int = 20  # the training budget
    batch_size: int = 64
    learning_rates: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1)
    momentum: float = 0.9
    target_accuracy: float = 0.8
    probe_batch: int = 512  # training images whose activations are measured at init

    def __post_init__(self):
        if self.depth < 3 or self.width < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("depth >= 3, and width, epochs and batch_size positive, required")
        if not self.learning_rates or min(self.learning_rates) <= 0:
            raise ValueError("learning_rates must be positive, at least one")
        if not 0 <= self.momentum < 1:
            raise ValueError("momentum must lie in [0, 1)")
        if not 1 / CLASSES < self.target_accuracy <= 1:
            raise ValueError("target_accuracy must lie above chance (0.1) and at most 1")
        if self.probe_batch < 2:
            raise ValueError("probe_batch must be at least 2")


PROFILES = {"quick": Config(epochs=3, learning_rates=(0.01, 0.03)), "full": Config()}
SEEDS = {"quick": (0, 1), "full": tuple(range(5))}
TABLES = {
    "activation_scale.csv": ("seed", "scheme", "layer", "activation_std", "predicted_growth"),
    "training.csv": (
        "seed",
        "scheme",
        "learning_rate",
        "target_accuracy",
        "epoch",
        "train_loss",
        "test_accuracy",
    ),
}
FIGURES = ("activation_scale.png", "accuracy_curves.png")

EXPLODE_MIN_ORDERS = 3.0
VANISH_MAX_ORDERS = -3.0
BAND_ORDERS = 1.0
GROWTH_TOLERANCE = 0.10


def net(config: Config, input_dim: int, scheme: str, learning_rate: float | None = None):
    """The scheme's MLP; compiled with SGD and momentum at `learning_rate` if one is given."""
    activation, initializer = SCHEMES[scheme]
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


def activation_stds(model, x) -> list[float]:
    """Std of the input (layer 0) and of every hidden layer's output, in order."""
    stds, signal = [float(np.std(x))], keras.ops.convert_to_tensor(x)
    for layer in model.layers[:-1]:  # every Dense but the output layer
        signal = layer(signal)
        stds.append(float(np.std(keras.ops.convert_to_numpy(signal).astype(np.float64))))
    return stds


def predicted_growth(model) -> float:
    """sqrt(n v / 2) averaged over the hidden-to-hidden kernels, v their drawn variance."""
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers[1:-1]]
    return float(
        np.mean([np.sqrt(k.shape[0] * np.mean(k.astype(np.float64) ** 2) / 2) for k in kernels])
    )


def run(config: Config, seeds, out_dir):
    x, y, x_test, y_test = digits()
    probe = x[: config.probe_batch]

    def evaluate(model):
        return {"test_accuracy": float((predict_labels(model, x_test) == y_test).mean())}

    scales, curves = [], []
    for activation in sorted({activation for activation, _ in SCHEMES.values()}):
        model = None  # one compiled net per activation (the architecture), restarted
        schemes = [s for s, (a, _) in SCHEMES.items() if a == activation]
        for scheme in schemes:
            for seed in progress(seeds, f"{CLAIM_ID}, {scheme}"):
                for i, rate in enumerate(config.learning_rates):
                    build = partial(net, config, x.shape[1], scheme, rate)
                    model = restart(model, build, seed)
                    if i == 0:  # every rate starts from the seed's weights: measure once
                        growth = predicted_growth(model) if activation == "relu" else np.nan
                        scales += [
                            {
                                "seed": seed,
                                "scheme": scheme,
                                "layer": layer,
                                "activation_std": std,
                                "predicted_growth": growth,
                            }
                            for layer, std in enumerate(activation_stds(model, probe))
                        ]
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
                        {
                            "seed": seed,
                            "scheme": scheme,
                            "learning_rate": rate,
                            "target_accuracy": config.target_accuracy,
                            "epoch": row["epoch"],
                            "train_loss": row["loss"],
                            "test_accuracy": row["test_accuracy"],
                        }
                        for row in history
                    ]
    order = {scheme: i for i, scheme in enumerate(SCHEMES)}
    scales = pd.DataFrame(scales).sort_values(["seed", "scheme", "layer"], key=_scheme_order(order))
    curves = pd.DataFrame(curves).sort_values(
        ["seed", "scheme", "learning_rate", "epoch"], key=_scheme_order(order)
    )
    write_csv(scales, out_dir / "activation_scale.csv")
    write_csv(curves, out_dir / "training.csv")


def _scheme_order(order):
    """Sort key: schemes in SCHEMES' order, other columns by value."""
    return lambda column: column.map(order) if column.name == "scheme" else column


def log10_ratios(scales: pd.DataFrame, scheme: str) -> pd.DataFrame:
    """Per seed (rows) and layer (columns): log10 of the layer's std over the input's."""
    stds = scales[scales["scheme"] == scheme].pivot(
        index="seed", columns="layer", values="activation_std"
    )
    return np.log10(stds.div(stds[0], axis=0))


def last_layer_orders(scales: pd.DataFrame, scheme: str) -> np.ndarray:
    ratios = log10_ratios(scales, scheme)
    return ratios[ratios.columns.max()].to_numpy()


def largest_orders(scales: pd.DataFrame, scheme: str) -> np.ndarray:
    """Per seed: the largest |log10(layer std / input std)| over the layers (NaN kept)."""
    return log10_ratios(scales, scheme).abs().max(axis=1, skipna=False).to_numpy()


def growth_factor(scales: pd.DataFrame) -> float:
    """exp of the slope of ln(std) against the hidden layer, for one profile of layers."""
    hidden = scales[scales["layer"] >= 1].sort_values("layer")
    log_std = np.log(hidden["activation_std"].to_numpy())
    if not np.isfinite(log_std).all():  # an overflowing or missing layer: no measurement
        return np.nan
    return float(np.exp(np.polyfit(hidden["layer"], log_std, 1)[0]))


def growth_errors(scales: pd.DataFrame) -> pd.DataFrame:
    """|fitted growth / sqrt(n v / 2) - 1| per seed (rows) and ReLU scheme (columns)."""
    relu = scales[scales["scheme"].isin(RELU_SCHEMES)]
    return (
        relu.groupby(["seed", "scheme"])
        .apply(
            lambda profile: abs(growth_factor(profile) / profile["predicted_growth"].iloc[0] - 1),
            include_groups=False,
        )
        .unstack("scheme")
    )


def per_seed(curves: pd.DataFrame, reduce) -> pd.Series:
    """`reduce` (NumPy's, so that a NaN is kept) of each seed's test accuracies."""
    return curves.groupby("seed")["test_accuracy"].agg(lambda values: reduce(values.to_numpy()))


def best_rate(curves: pd.DataFrame, scheme: str) -> float:
    """The rate with the largest area under the test-accuracy curve; ties to the smaller."""
    mine = curves[curves["scheme"] == scheme]
    area = {rate: per_seed(group, np.mean).mean() for rate, group in mine.groupby("learning_rate")}
    return float(pd.Series(area).round(9).sort_index().idxmax())


def at_best_rate(curves: pd.DataFrame, scheme: str) -> pd.DataFrame:
    rate = best_rate(curves, scheme)
    return curves[(curves["scheme"] == scheme) & (curves["learning_rate"] == rate)]


def verdict(out_dir) -> Verdict:
    scales = read_csv(out_dir / "activation_scale.csv")
    curves = read_csv(out_dir / "training.csv")
    target = float(curves["target_accuracy"].iloc[0])
    budget = int(curves["epoch"].max())
    errors = growth_errors(scales)
    poor_best = per_seed(curves[curves["scheme"].isin(POOR)], np.max)
    working_best = pd.DataFrame({s: per_seed(at_best_rate(curves, s), np.max) for s in WORKING})
    area = {s: per_seed(at_best_rate(curves, s), np.mean) for s in WORKING}
    rates = ", ".join(f"{s} {best_rate(curves, s):g}" for s in WORKING)
    stability = "Vanishing and Exploding Gradients"
    return Verdict(
        CLAIM_ID,
        (
            Rule.over_seeds(
                f"{EXPLODING}: log10(last hidden layer's std / input std)",
                last_layer_orders(scales, EXPLODING),
                ">",
                EXPLODE_MIN_ORDERS,
                "explodes: more than three orders up",
                kind=LECTURE,
                slide=stability,
            ),
            Rule.over_seeds(
                f"{VANISHING}: log10(last hidden layer's std / input std)",
                last_layer_orders(scales, VANISHING),
                "<",
                VANISH_MAX_ORDERS,
                "vanishes: more than three orders down",
                kind=LECTURE,
                slide=stability,
            ),
            Rule.over_seeds(
                "ReLU, He: largest |log10(layer std / input std)| over the layers",
                largest_orders(scales, "ReLU, He"),
                "<",
                BAND_ORDERS,
                "stays within one order",
                kind=LECTURE,
                slide=SLIDE,
            ),
            Rule.over_seeds(
                "tanh, Glorot: largest |log10(layer std / input std)| over the layers",
                largest_orders(scales, "tanh, Glorot"),
                "<",
                BAND_ORDERS,
                "stays within one order",
                kind=LECTURE,
                slide=SLIDE,
            ),
            Rule.over_seeds(
                "ReLU, Glorot (mismatch): log10(last hidden layer's std / input std)",
                last_layer_orders(scales, "ReLU, Glorot"),
                "<",
                -BAND_ORDERS,
                "falls out of the one-order band",
                kind=BEYOND,
            ),
            Rule.over_seeds(
                "ReLU arms: mean |fitted growth per layer / sqrt(n v / 2) - 1|",
                errors.mean(axis=1, skipna=False).to_numpy(),
                "<",
                GROWTH_TOLERANCE,
                "per arm, mean over seeds: "
                + ", ".join(f"{s} {errors[s].mean():.3f}" for s in RELU_SCHEMES),
                kind=BEYOND,
            ),
            Rule.over_seeds(
                f"N(0,1) and N(0,0.01^2): highest test accuracy over every rate and epoch "
                f"(budget {budget})",
                poor_best.to_numpy(),
                "<",
                target,
                f"never reach {target}",
                kind=LECTURE,
                slide="Exploding Gradients",
            ),
            Rule.over_seeds(
                f"He, Glorot (ReLU) and tanh Glorot: lowest of their highest test accuracy "
                f"at their best rates (budget {budget})",
                working_best.min(axis=1, skipna=False).to_numpy(),
                ">",
                target,
                f"reach {target}; best rates: {rates}",
                kind=LECTURE,
                slide=SLIDE,
            ),
            Rule.over_seeds(
                "ReLU: area under the test-accuracy curve, He minus Glorot, at their best rates",
                (area["ReLU, He"] - area["ReLU, Glorot"]).to_numpy(),
                ">",
                0.0,
                "He converges faster",
                kind=LECTURE,
                slide=SLIDE,
            ),
        ),
    )


COLORS = {
    "ReLU, N(0,1)": "tab:red",
    "ReLU, N(0,0.01^2)": "tab:purple",
    "ReLU, Glorot": "tab:orange",
    "ReLU, He": "tab:blue",
    "tanh, Glorot": "tab:green",
}
MARKERS = {
    "ReLU, N(0,1)": "^",
    "ReLU, N(0,0.01^2)": "v",
    "ReLU, Glorot": "s",
    "ReLU, He": "o",
    "tanh, Glorot": "D",
}


def plot(out_dir):
    scales = read_csv(out_dir / "activation_scale.csv")
    curves = read_csv(out_dir / "training.csv")
    seeds = scales["seed"].nunique()

    fig, (ax,) = figure(
        f"{CLAIM_ID}: activation scale per layer at initialization", width=12, height=5.2
    )
    input_std = scales[scales["layer"] == 0]["activation_std"].mean()
    last = int(scales["layer"].max())
    ax.axhspan(
        input_std / 10,
        input_std * 10,
        color="grey",
        alpha=0.15,
        label="lecture rule band: He and tanh-Glorot stay within 10x of the input",
    )
    for factor, name in (
        (10**EXPLODE_MIN_ORDERS, "N(0,1) ends above"),
        (10**VANISH_MAX_ORDERS, "N(0,0.01^2) ends below"),
    ):
        ax.plot(
            [last],
            [input_std * factor],
            marker="_",
            ms=22,
            mew=2.5,
            ls="none",
            color=COLORS[EXPLODING if factor > 1 else VANISHING],
            label=f"lecture rule: {name} {factor:g}x the input",
        )
    for scheme, (activation, _) in SCHEMES.items():
        mine = scales[scales["scheme"] == scheme]
        seed_band(
            ax,
            mine,
            "layer",
            "activation_std",
            label=scheme,
            color=COLORS[scheme],
            marker=MARKERS[scheme],
            ms=5,
        )
        if activation == "relu":  # theory: geometric from the first hidden layer
            growth = mine["predicted_growth"].mean()
            layers = np.arange(1, last + 1)
            first = np.exp(np.log(mine[mine["layer"] == 1]["activation_std"]).mean())
            ax.plot(
                layers,
                first * growth ** (layers - 1),
                color=COLORS[scheme],
                ls="--",
                lw=1,
                label=f"theory sqrt(n v / 2) = {growth:.3g} per layer",
            )
    ax.set_yscale("log")
    ax.set_xticks(sorted(scales["layer"].unique()))
    ax.set(xlabel="layer (0 = input, then hidden layers)", ylabel="std of the layer's output")
    seed_legend(ax, seeds, loc="upper left", bbox_to_anchor=(1.01, 1))
    save_figure(fig, out_dir / "activation_scale.png")

    # One panel per scheme, every rate of the sweep in it: no scheme hides another.
    target = float(curves["target_accuracy"].iloc[0])
    rates = sorted(curves["learning_rate"].unique())
    shades = dict(zip(rates, ("#9ecae1", "#4292c6", "#08519c", "#08306b", "#041b3d"), strict=False))
    fig, axes = figure(
        f"{CLAIM_ID}: test accuracy per epoch, every learning rate of the SGD sweep",
        ncols=3,
        nrows=2,
        width=4.6,
        height=3.6,
    )
    for ax, scheme in zip(axes, SCHEMES, strict=False):
        best = best_rate(curves, scheme)
        for rate in rates:
            mine = curves[(curves["scheme"] == scheme) & (curves["learning_rate"] == rate)]
            seed_band(
                ax,
                mine,
                "epoch",
                "test_accuracy",
                label=f"rate {rate:g}",
                color=shades.get(rate),
                lw=3 if rate == best else 1.3,
                ls="-" if rate == best else "--",
            )
        area = per_seed(at_best_rate(curves, scheme), np.mean).mean()
        ax.axhline(target, color="black", ls=":", lw=1.2)
        ax.set_title(
            f"{scheme}\nbest rate {best:g} (thick), area under curve {area:.2f}",
            color=COLORS[scheme],
        )
        ax.set(ylim=(0, 1), xlabel="epoch", ylabel="test accuracy (fraction)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    legend_ax = axes[-1]
    legend_ax.axis("off")
    handles = [Line2D([], [], color=shades.get(rate), lw=2.5) for rate in rates]
    labels = [f"rate {rate:g}" for rate in rates]
    handles += [
        Line2D([], [], color="grey", lw=3),
        Line2D([], [], color="grey", lw=1.3, ls="--"),
        Line2D([], [], color="black", ls=":", lw=1.2),
    ]
    labels += [
        "thick: the scheme's best rate (judged)",
        "thin dashed: its other rates",
        f"target {target:g} (lecture rules: poor schemes\nnever reach it, sound ones do)",
    ]
    legend_ax.legend(
        handles,
        labels,
        loc="center",
        title=f"SGD learning rate; mean and 95% t-interval\nover {seeds} seeds",
    )
    save_figure(fig, out_dir / "accuracy_curves.png")
