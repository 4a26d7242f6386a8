"""Plotting helpers shared by the claims: one look for every figure in results/."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update(
    {
        "figure.dpi": 120,
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
    }
)


def figure(title: str, ncols: int = 1, width: float = 5.0, height: float = 3.6):
    """A titled figure with `ncols` side-by-side axes; returns (fig, axes list)."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    fig.suptitle(title, fontweight="bold")
    return fig, list(axes[0])


def seed_band(ax, frame, x: str, y: str, label: str | None = None, color=None):
    """Mean over seeds as a line, min-max over seeds as a shaded band."""
    grouped = frame.groupby(x)[y]
    mean, low, high = grouped.mean(), grouped.min(), grouped.max()
    (line,) = ax.plot(mean.index, mean.values, label=label, color=color, lw=1.8)
    ax.fill_between(mean.index, low.values, high.values, color=line.get_color(), alpha=0.2, lw=0)
    return line


def seed_legend(ax, seeds: int):
    """The legend beside the axes, titled with what the lines and bands show."""
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
        title=f"mean, min-max over {seeds} seeds",
        title_fontsize=8,
    )
