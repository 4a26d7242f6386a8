"""One look for every figure in results/, readable on a projected slide.

Every figure is saved twice, as a PNG for the report and as an SVG for slides, each with
its title in the file's metadata. Bands over seeds have one meaning everywhere: the mean
over seeds and its 95% Student-t interval (`seed_band`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from repro.records import atomic_path  # noqa: E402
from repro.rules import mean_interval  # noqa: E402

plt.rcParams.update(
    {
        "figure.dpi": 120,
        "font.size": 11,
        "axes.titlesize": 12,
        "axes.labelsize": 11,
        "legend.fontsize": 9.5,
        "legend.title_fontsize": 9.5,
        "xtick.labelsize": 10,
        "ytick.labelsize": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "svg.hashsalt": "repro",  # fixed ids: the same figure gives the same SVG bytes
        "svg.fonttype": "none",  # text stays text in the SVG, editable on a slide
    }
)

FORMATS = ("png", "svg")


def figure(title: str, ncols: int = 1, width: float = 5.0, height: float = 3.8, nrows: int = 1):
    """A titled figure of `nrows` x `ncols` axes; returns (fig, flat list of axes)."""
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained"
    )
    fig.suptitle(title, fontweight="bold", fontsize=13)
    return fig, list(axes.flat)


def seed_band(ax, frame, x: str, y: str, label: str | None = None, color=None, **line):
    """The mean of `y` over seeds at each `x` as a line, its 95% t-interval as a band."""
    stats = [(key, *mean_interval(group)) for key, group in frame.groupby(x)[y]]
    xs, mean, low, high = (np.asarray(v, dtype=float) for v in zip(*stats, strict=True))
    (drawn,) = ax.plot(xs, mean, label=label, color=color, lw=line.pop("lw", 2), **line)
    ax.fill_between(xs, low, high, color=drawn.get_color(), alpha=0.2, lw=0)
    return drawn


def seed_legend(ax, seeds: int, **kwargs):
    """A legend titled with what its lines and bands show."""
    ax.legend(title=f"mean, 95% t-interval over {seeds} seeds", **kwargs)


def save_figure(fig, path: Path) -> None:
    """`path` (a .png) and its SVG twin, written atomically, with the title in the metadata.

    Fixed metadata (no software version, no date) keeps the bytes stable between runs.
    """
    title, path = fig.get_suptitle(), Path(path)
    for fmt in FORMATS:
        metadata = {"Title": title, "Software": None} if fmt == "png" else {"Title": title}
        if fmt == "svg":
            metadata["Date"] = None
        with atomic_path(path.with_suffix(f".{fmt}")) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight", metadata=metadata)
    plt.close(fig)


def twins(png_names) -> list[str]:
    """Every file the named PNG figures are saved as."""
    return [str(Path(name).with_suffix(f".{fmt}")) for name in png_names for fmt in FORMATS]
