"""Small Keras building blocks several claims share: an MLP and per-epoch bookkeeping."""

from __future__ import annotations

import warnings

import keras
import numpy as np

from repro.harness import seed_everything


def mlp(
    input_dim: int,
    outputs: int,
    hidden=(512, 512),
    activation="relu",
    kernel_initializer="glorot_uniform",
    dropout_rate: float = 0.0,
    output_activation=None,
    name: str = "mlp",
) -> keras.Sequential:
    """Dense layers of the given widths; Keras' Dropout after each hidden layer if asked."""
    layers = [keras.Input((input_dim,))]
    for width in hidden:
        layers.append(
            keras.layers.Dense(
                width, activation=activation, kernel_initializer=_fresh(kernel_initializer)
            )
        )
        if dropout_rate > 0:
            layers.append(keras.layers.Dropout(dropout_rate))
    layers.append(
        keras.layers.Dense(
            outputs, activation=output_activation, kernel_initializer=_fresh(kernel_initializer)
        )
    )
    return keras.Sequential(layers, name=name)


def _fresh(initializer):
    """A new initializer object per layer, its seed drawn from the global (seeded) stream.

    One Keras 3 initializer object fixes its seed when it is made, so sharing it between
    layers would give every layer of the same shape the same kernel.
    """
    if isinstance(initializer, keras.initializers.Initializer):
        config = {k: v for k, v in initializer.get_config().items() if k != "seed"}
        return type(initializer).from_config(config)
    return initializer


def predict_labels(model, x) -> np.ndarray:
    """Arg-max class of each row, with dropout off (training=False)."""
    return np.asarray(model(x, training=False)).argmax(axis=1)


def accuracy(model, x, y) -> float:
    return float((predict_labels(model, x) == y).mean())


class EpochAccuracy(keras.callbacks.Callback):
    """After every epoch, accuracy on each named (x, y) set, kept as tidy rows."""

    def __init__(self, sets: dict[str, tuple[np.ndarray, np.ndarray]], **tags):
        super().__init__()
        # All sets go through the model in one call per epoch, then are scored apart: an
        # eager call costs about 6 ms of Python, which added up to a fifth of the time of
        # the claims that score every epoch.
        self.names = list(sets)
        self.inputs = np.concatenate([x for x, _ in sets.values()])
        self.labels = np.concatenate([y for _, y in sets.values()])
        self.set_ends = np.cumsum([len(y) for _, y in sets.values()])[:-1]
        self.tags, self.rows = tags, []

    def on_epoch_end(self, epoch, logs=None):
        # Keras' compiled predict step: traced once (one input shape), then cheaper still.
        logits = self.model.predict_on_batch(self.inputs)
        correct = np.asarray(logits).argmax(axis=1) == self.labels
        row = {**self.tags, "epoch": epoch + 1}
        for name, hits in zip(self.names, np.split(correct, self.set_ends), strict=True):
            row[name] = float(hits.mean())
        self.rows.append(row)


# Passed to compile(): one call of the compiled training step runs up to this many batches,
# a whole epoch of the small data sets here, instead of returning to Python after each.
# The updates are the same (tested); only callbacks that act per batch would notice.
EPOCH_PER_CALL = 1000


# model.fit's default shuffle=True does not apply to a tf.data pipeline, and Keras says so
# once per process; `batches` shuffles the pipeline itself.
warnings.filterwarnings("ignore", message="`shuffle=True` was passed, but will be ignored")


def batches(x, y, batch_size: int, shuffle_seed: int | None = None):
    """(x, y) as a tf.data pipeline of batches for model.fit, reshuffled every epoch if seeded.

    model.fit accepts NumPy arrays too, but then rebuilds an index-gathering pipeline for
    every epoch, which on one thread costs about as much as the training steps of these
    small nets; this pipeline is built once and halves the time of a fit. `y` may be a
    list, one target per output.
    """
    import tensorflow as tf

    targets = tuple(y) if isinstance(y, list) else y
    data = tf.data.Dataset.from_tensor_slices((x, targets))
    if shuffle_seed is not None:
        data = data.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    return without_prefetch(data.batch(batch_size))


def repeated_batch(x, y, steps: int):
    """(x, y) whole as one batch, `steps` times: full-batch gradient descent as one Keras
    epoch, which steps_per_execution=EPOCH_PER_CALL runs without returning to Python.

    One tensor repeated, not the rows batched anew for every step, which cost more than
    the steps themselves. `y` may be a list, one target per output.
    """
    import tensorflow as tf

    targets = tuple(y) if isinstance(y, list) else y
    return without_prefetch(tf.data.Dataset.from_tensors((x, targets)).repeat(steps))


def without_prefetch(data):
    """The pipeline without the prefetch that tf.data adds by default, which makes each
    batch on a thread of its own. A process here runs on one core, so the prefetch only
    adds a hand-over between threads per batch: without it, 40 epochs of a 10 x 64 MLP on
    digits-sized data took 1.35 instead of 1.66 CPU-seconds, with the same weights. (In a
    whole claim the gain is a few percent, within the machine's noise.)"""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    return data.with_options(options)


class Retrainable:
    """One compiled model trained again and again, each time as a new one would be: from new
    starting weights, new random streams for its Dropout and noise layers, and a freshly
    built optimizer.

    Tracing a new model's training step costs these small nets more than training them;
    this model's steps are traced once, on its first run. `build()` makes the compiled model.
    """

    def __init__(self, build):
        self.build = build
        self.model = build()
        self.model.optimizer.build(self.model.trainable_variables)
        self.fresh_optimizer = [variable.numpy() for variable in self.model.optimizer.variables]

    def restart(self, seed: int) -> keras.Model:
        """The model as `build()` would make it after seed_everything(seed).

        `variables`, unlike the weights, include the state of every layer's random stream:
        without it a restarted model's dropout masks would depend on the runs before.
        """
        seed_everything(seed)
        for variable, fresh in zip(self.model.variables, self.build().variables, strict=True):
            variable.assign(fresh)
        return self._fresh_optimizer()

    def restart_from(self, weights) -> keras.Model:
        """The model from the given starting weights, with a freshly built optimizer."""
        self.model.set_weights(weights)
        return self._fresh_optimizer()

    def _fresh_optimizer(self) -> keras.Model:
        for variable, value in zip(
            self.model.optimizer.variables, self.fresh_optimizer, strict=True
        ):
            variable.assign(value)
        return self.model


def adam_classifier(input_dim: int, hidden, learning_rate: float, num_classes: int = 10):
    """The MLP of repro.models compiled with Adam and cross-entropy on its logits."""
    model = mlp(input_dim, num_classes, hidden=hidden)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=EPOCH_PER_CALL,
    )
    return model
