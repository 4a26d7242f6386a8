"""Data sets that need no network: MNIST-1D from its generator, and scikit-learn's digits."""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def mnist1d(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42):
    """MNIST-1D made by the `mnist1d` package's own generator (10 classes, 40 features).

    The generator reseeds NumPy's global generator, so its state is saved and restored:
    generating data never changes the random stream a claim has already seeded.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    return (
        data["x"].astype("float32"),
        data["y"].astype("int64"),
        data["x_test"].astype("float32"),
        data["y_test"].astype("int64"),
    )


@functools.cache
def digits(test_fraction: float = 0.3, seed: int = 0):
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = (x[order] / 16.0).astype("float32"), y[order].astype("int64")
    n_test = int(round(len(y) * test_fraction))
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


def randomize_labels(labels: np.ndarray, rate: float, rng, num_classes: int = 10):
    """Give round(rate * n) randomly chosen examples a wrong label, uniform over the others.

    Returns (noisy labels, sorted indices of the relabeled examples). Every relabeled
    example is wrong, so 'agreement with the noisy labels' on them measures memorization.
    """
    noisy_index = np.sort(rng.choice(len(labels), size=round(rate * len(labels)), replace=False))
    noisy_labels = labels.copy()
    shift = rng.integers(1, num_classes, size=len(noisy_index))
    noisy_labels[noisy_index] = (labels[noisy_index] + shift) % num_classes
    return noisy_labels, noisy_index
