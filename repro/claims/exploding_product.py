"""Claim: a long product of random matrices explodes (results: results/exploding-product/).

Slide "Numerical Stability and Initialization". Start from a 4x4 matrix of standard
normal entries and multiply it by 100 more; the entries end up around 1e23-1e24. The
growth is not luck: Cohen and Newman (1984) give the almost-sure growth rate of the
log-norm of a product of n x n matrices with N(0, s^2) entries,

    rate(s) = ln s + (ln 2 + digamma(n / 2)) / 2      (0.558 per step for n = 4, s = 1),

so the product explodes for s above exp(-rate(1)) = 0.572 and vanishes below it.

Experiment: every seed draws `chains` independent products at once (one batched matmul per
step, no loop over chains) and records the log-norm after each multiplication; a sweep
over the entry scale s measures the growth rate on each side of the critical scale.
The rate is the least-squares slope of the mean log-norm against the step, since the
intercept carries the start matrix's own norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import digamma

from repro.figures import figure
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

CLAIM_ID = "exploding-product"
SLIDE = "Numerical Stability and Initialization"
STATEMENT = (
    "Multiplying a 4x4 standard-normal matrix by 100 more of them gives entries of order "
    "1e23-1e24: the log-norm grows at the Cohen-Newman rate of about 0.558 per step, and the "
    "product only stops exploding when the entry scale drops below about 0.57."
)


@dataclass(frozen=True)
class Config:
    size: int = 4  # n: the matrices are n x n
    steps: int = 100  # multiplications after the start matrix (101 matrices in all)
    chains: int = 2000  # independent products per seed
    scales: tuple[float, ...] = tuple(np.round(np.geomspace(0.4, 0.8, 31), 4))
    sweep_chains: int = 500

    def __post_init__(self):
        if self.size < 1 or self.steps < 2 or self.chains < 2 or self.sweep_chains < 2:
            raise ValueError("size >= 1, steps >= 2, chains >= 2 and sweep_chains >= 2 required")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError("scales must be positive")


PROFILES = {
    "quick": Config(chains=200, scales=(0.4, 0.5, 0.55, 0.6, 0.65, 0.8), sweep_chains=100),
    "full": Config(),
}
SEEDS = {"quick": (0, 1), "full": tuple(range(10))}
TABLES = {
    "trajectories.csv": (
        "seed",
        "step",
        "mean_ln_norm",
        "median_log10_norm",
        "p05_log10_norm",
        "p95_log10_norm",
    ),
    "scale_sweep.csv": ("seed", "scale", "rate", "theory_rate", "median_log10_norm_final"),
}
FIGURES = ("log_norm.png", "growth_rate.png")

MIN_MEDIAN_LOG10 = 20  # the product must reach at least 1e20
RATE_TOLERANCE = 0.02
CRITICAL_TOLERANCE = 0.05


def theory_rate(size: int, scale: float) -> float:
    return float(np.log(scale) + (np.log(2) + digamma(size / 2)) / 2)


def log_norms(rng, chains: int, size: int, steps: int, scale: float) -> np.ndarray:
    """ln of the Frobenius norm of each chain's product after 0..steps multiplications."""
    product = rng.normal(0.0, scale, (chains, size, size))
    out = np.empty((steps + 1, chains))
    out[0] = np.log(np.linalg.norm(product, axis=(1, 2)))
    for step in range(1, steps + 1):
        product = product @ rng.normal(0.0, scale, (chains, size, size))
        out[step] = np.log(np.linalg.norm(product, axis=(1, 2)))
    return out


def slope(steps: np.ndarray, values: np.ndarray) -> float:
    return float(np.polyfit(steps, values, 1)[0])


def run(config: Config, seeds, out_dir):
    trajectories, sweep = [], []
    steps = np.arange(config.steps + 1)
    for seed in progress(seeds, CLAIM_ID):
        rng = np.random.default_rng(seed)
        ln_norm = log_norms(rng, config.chains, config.size, config.steps, 1.0)
        log10 = ln_norm / np.log(10)
        trajectories.append(
            pd.DataFrame(
                {
                    "seed": seed,
                    "step": steps,
                    "mean_ln_norm": ln_norm.mean(axis=1),
                    "median_log10_norm": np.median(log10, axis=1),
                    "p05_log10_norm": np.percentile(log10, 5, axis=1),
                    "p95_log10_norm": np.percentile(log10, 95, axis=1),
                }
            )
        )
        for scale in config.scales:
            ln_norm = log_norms(rng, config.sweep_chains, config.size, config.steps, scale)
            sweep.append(
                {
                    "seed": seed,
                    "scale": scale,
                    "rate": slope(steps, ln_norm.mean(axis=1)),
                    "theory_rate": theory_rate(config.size, scale),
                    "median_log10_norm_final": float(np.median(ln_norm[-1]) / np.log(10)),
                }
            )
    write_csv(pd.concat(trajectories, ignore_index=True), out_dir / "trajectories.csv")
    write_csv(pd.DataFrame(sweep), out_dir / "scale_sweep.csv")


def critical_scale(sweep: pd.DataFrame) -> float:
    """Where the measured rate crosses zero, interpolated linearly in ln s."""
    sweep = sweep.sort_values("scale")
    return float(np.exp(np.interp(0.0, sweep["rate"], np.log(sweep["scale"]))))


def verdict(out_dir) -> Verdict:
    trajectories = read_csv(out_dir / "trajectories.csv")
    sweep = read_csv(out_dir / "scale_sweep.csv")
    final = trajectories[trajectories["step"] == trajectories["step"].max()]
    final_log10 = final.set_index("seed")["median_log10_norm"]

    unit = sweep[np.isclose(sweep["scale"], sweep["scale"].iloc[0])]  # any scale gives theory
    theory_at_one = float((unit["theory_rate"] - np.log(unit["scale"])).iloc[0])
    rates = trajectories.groupby("seed").apply(
        lambda t: slope(t["step"].to_numpy(), t["mean_ln_norm"].to_numpy()), include_groups=False
    )
    rate_error = (rates - theory_at_one).abs() / theory_at_one

    theory_critical = float(np.exp(-theory_at_one))
    criticals = sweep.groupby("seed").apply(critical_scale, include_groups=False)
    critical_error = (criticals - theory_critical).abs() / theory_critical

    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "median log10 norm after 100 products (worst seed)",
                final_log10.min(),
                ">=",
                MIN_MEDIAN_LOG10,
                f"{seed_agreement(final_log10 >= MIN_MEDIAN_LOG10)}; {spread(final_log10)}",
            ),
            Rule(
                f"relative error of growth rate vs theory {theory_at_one:.4f} (worst seed)",
                rate_error.max(),
                "<=",
                RATE_TOLERANCE,
                f"{seed_agreement(rate_error <= RATE_TOLERANCE)}; rate {spread(rates)}",
            ),
            Rule(
                f"relative error of critical scale vs theory {theory_critical:.4f} (worst seed)",
                critical_error.max(),
                "<=",
                CRITICAL_TOLERANCE,
                f"{seed_agreement(critical_error <= CRITICAL_TOLERANCE)}; "
                f"critical scale {spread(criticals)}",
            ),
        ),
    )


def plot(out_dir):
    trajectories = read_csv(out_dir / "trajectories.csv")
    sweep = read_csv(out_dir / "scale_sweep.csv")
    seeds = trajectories["seed"].unique()
    theory_at_one = float((sweep["theory_rate"] - np.log(sweep["scale"])).iloc[0])

    fig, (ax,) = figure(
        "exploding-product: a product of 4x4 N(0,1) matrices explodes", width=6.4, height=4.2
    )
    first = trajectories[trajectories["seed"] == seeds[0]]
    ax.fill_between(
        first["step"],
        first["p05_log10_norm"],
        first["p95_log10_norm"],
        color="tab:blue",
        alpha=0.2,
        lw=0,
        label=f"5-95% of chains (seed {seeds[0]})",
    )
    for i, seed in enumerate(seeds):
        t = trajectories[trajectories["seed"] == seed]
        ax.plot(
            t["step"],
            t["median_log10_norm"],
            color="tab:blue",
            lw=0.8,
            alpha=0.7,
            label=f"median over chains, {len(seeds)} seeds" if i == 0 else None,
        )
    start = trajectories[trajectories["step"] == 0]["mean_ln_norm"].mean()
    steps = np.sort(trajectories["step"].unique())
    ax.plot(
        steps,
        (start + theory_at_one * steps) / np.log(10),
        "k--",
        lw=1.2,
        label=f"Cohen-Newman rate {theory_at_one:.3f}/step",
    )
    ax.set(xlabel="number of multiplications", ylabel="log10 of Frobenius norm")
    ax.legend(loc="upper left")
    save_figure(fig, out_dir / "log_norm.png")

    fig, (ax,) = figure(
        "exploding-product: growth rate against entry scale s", width=6.4, height=4.2
    )
    ax.scatter(sweep["scale"], sweep["rate"], s=10, alpha=0.5, label="measured (every seed)")
    grid = np.geomspace(sweep["scale"].min(), sweep["scale"].max(), 200)
    ax.plot(grid, np.log(grid) + theory_at_one, "k--", lw=1.2, label="ln s + 0.558 (theory)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(
        np.exp(-theory_at_one),
        color="tab:red",
        lw=1,
        label=f"critical s = {np.exp(-theory_at_one):.3f}",
    )
    ax.set(xlabel="entry scale s (entries ~ N(0, s^2))", ylabel="log-norm growth per step")
    ax.text(0.97, 0.55, "explodes", transform=ax.transAxes, ha="right", color="tab:red")
    ax.text(0.2, 0.45, "vanishes", transform=ax.transAxes, color="tab:blue")
    ax.legend(loc="upper left")
    save_figure(fig, out_dir / "growth_rate.png")
