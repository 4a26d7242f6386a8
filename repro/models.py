"""Keras models and the one training path every claim that trains goes through.

The path (`fit`) is the training loop written from scratch, as the Keras guides write it,
with one difference: a whole epoch is one compiled call. Each epoch the training set is
shuffled, cut into batches and stacked into one tensor; one call of a compiled function
(a `tf.function` looping over the batches on TensorFlow, a jitted `lax.scan` on JAX) then
takes every step of the epoch. Between epochs the loop is plain Python: validation, the
per-epoch record and Keras' own callbacks (EarlyStopping with patience, min_delta and
restore_best_weights) see the model exactly as `model.fit` would show it to them.

The model brings its own parts, set by `model.compile(optimizer=..., loss=...)`: Keras'
layers, initializers, regularizers (their penalties are added to the loss of every step),
losses and optimizers, used as Keras intends. The last batch of an epoch may be short: it
is padded to the batch size and the padding gets weight zero, so every example counts
once per epoch and the step's loss is the mean over the real examples, as in `model.fit`.
"""

from __future__ import annotations

import random

import numpy as np

from repro import backend
from repro.backend import keras


def mlp(
    input_dim: int,
    outputs: int,
    hidden=(512, 512),
    activation="relu",
    kernel_initializer="glorot_uniform",
    dropout_rate: float = 0.0,
    output_activation=None,
    name: str = "mlp",
):
    """Dense layers of the given widths; Keras' Dropout after each hidden layer if asked.

    The Dense layers are made first: each draws its initializer's seed from the global
    stream when it is made, and so does each Dropout layer, so nets that differ only in
    their dropout rate start from the same weights (paired comparisons need that).
    """
    dense = [
        keras.layers.Dense(width, activation, kernel_initializer=fresh(kernel_initializer))
        for width in hidden
    ]
    output = keras.layers.Dense(
        outputs, activation=output_activation, kernel_initializer=fresh(kernel_initializer)
    )
    layers = [keras.Input((input_dim,))]
    for layer in dense:
        layers.append(layer)
        if dropout_rate > 0:
            layers.append(keras.layers.Dropout(dropout_rate))
    layers.append(output)
    return keras.Sequential(layers, name=name)


def fresh(initializer):
    """A new initializer object per layer, its seed drawn from the global (seeded) stream.

    One Keras 3 initializer object fixes its seed when it is made, so sharing it between
    layers would give every layer of the same shape the same kernel.
    """
    if isinstance(initializer, keras.initializers.Initializer):
        config = {k: v for k, v in initializer.get_config().items() if k != "seed"}
        return type(initializer).from_config(config)
    return initializer


def classifier(model, learning_rate: float = 1e-3):
    """`model` compiled with Adam and cross-entropy on its logits."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


# ------------------------------------------------------------------- the training path


def fit(
    model,
    x,
    y,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    callbacks=(),
    evaluate=None,
    epochs_per_call: int = 1,
):
    """Train the compiled `model` on (x, y) for up to `epochs` epochs; one row per call.

    Each epoch's order is a permutation drawn from `seed`. After each call, `evaluate`
    (if given) returns more numbers for that epoch's row (e.g. `validation(...)`); the row
    is then handed to every Keras callback as its logs, and training stops when one of them
    sets `model.stop_training`, as EarlyStopping does.

    One call takes one epoch, or `epochs_per_call` of them where nothing needs the model
    in between: full-batch gradient descent takes one step per epoch, and a compiled call
    per step would cost more than the step (a row then closes every `epochs_per_call`-th
    epoch, and its loss is the mean over the call's steps).
    """
    step = compiled(model).epoch
    order = np.random.default_rng(seed)
    model.stop_training = False
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    history = []
    for first in range(0, epochs, epochs_per_call):
        count = min(epochs_per_call, epochs - first)
        parts = [batched(x, y, batch_size, order) for _ in range(count)]
        loss = step(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))
        epoch = first + count - 1
        logs = {"epoch": epoch + 1, "loss": float(loss)}
        logs |= evaluate(model) if evaluate else {}
        history.append(logs)
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    for callback in callbacks:
        callback.on_train_end()
    return history


def batched(x, y, batch_size: int, order):
    """One epoch of (x, y) in a new random order as stacked batches, and each example's
    weight: 1, or 0 for the rows that pad the last batch to full size."""
    n = len(x)
    steps = -(-n // batch_size)
    index = order.permutation(n)
    index = np.concatenate([index, np.zeros(steps * batch_size - n, dtype=index.dtype)])
    weight = np.arange(steps * batch_size) < n
    shape = (steps, batch_size)
    return (
        x[index].reshape(shape + x.shape[1:]),
        y[index].reshape(shape + y.shape[1:]),
        weight.reshape(shape).astype(x.dtype),
    )


def predict(model, x) -> np.ndarray:
    """The model's outputs for x with dropout and noise layers off, in one compiled call."""
    return np.asarray(compiled(model).predict(x))


def predict_labels(model, x) -> np.ndarray:
    """Arg-max class of each row."""
    return predict(model, x).argmax(axis=1)


def accuracy(model, x, y) -> float:
    return float((predict_labels(model, x) == y).mean())


def validation(x, y, name: str = "val"):
    """An `evaluate` for `fit`: loss (the data term, without penalties) and accuracy of a
    classifier with logits on (x, y), logged as `<name>_loss` and `<name>_accuracy`."""

    def evaluate(model):
        logits = predict(model, x)
        loss = keras.ops.mean(per_example_loss(model.loss)(y, logits))
        accuracy = (logits.argmax(axis=1) == y).mean()
        return {f"{name}_loss": float(loss), f"{name}_accuracy": float(accuracy)}

    return evaluate


class Compiled:
    """A model's compiled epoch and prediction, built once per model and optimizer."""

    def __init__(self, model):
        if model.optimizer is None or model.loss is None:
            raise ValueError("compile the model with an optimizer and a loss before fitting it")
        self.optimizer = model.optimizer
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        make = jax_functions if backend.name() == "jax" else tensorflow_functions
        self.epoch, self.predict = make(model, per_example_loss(model.loss))


def compiled(model) -> Compiled:
    """The model's compiled functions, made on first use and kept on the model itself (they
    refer to the model, so a model and its functions are freed together)."""
    found = getattr(model, "repro_compiled", None)
    if found is None or found.optimizer is not model.optimizer:
        found = model.repro_compiled = Compiled(model)
    return found


def per_example_loss(loss):
    """The loss of each example: a Keras Loss object's `call`, or a loss function itself."""
    loss = keras.losses.get(loss) if isinstance(loss, str) else loss
    return loss.call if isinstance(loss, keras.losses.Loss) else loss


def weighted_mean(values, weights):
    return keras.ops.sum(values * weights) / keras.ops.sum(weights)


def tensorflow_functions(model, per_example):
    """TensorFlow: a tf.function whose loop over the epoch's batches takes one
    GradientTape step each, updating the model's variables in place."""
    tf = backend.load("tensorflow")

    @tf.function
    def epoch(x, y, weight):
        total = tf.constant(0.0, dtype=model.compute_dtype)
        for i in tf.range(tf.shape(x)[0]):
            with tf.GradientTape() as tape:
                output = model(x[i], training=True)
                loss = weighted_mean(per_example(y[i], output), weight[i])
                loss += sum(model.losses, tf.constant(0.0, dtype=loss.dtype))
            gradients = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply(gradients, model.trainable_variables)
            total += loss
        return total / tf.cast(tf.shape(x)[0], total.dtype)

    @tf.function
    def predict(x):
        return model(x, training=False)

    return epoch, predict


def jax_functions(model, per_example):
    """JAX: a jitted lax.scan over the epoch's batches of a pure step (Keras'
    stateless_call and the optimizer's stateless_apply); the model's variables are read
    before the epoch and written back after it."""
    import jax

    def loss_and_state(trainable, non_trainable, x, y, weight):
        output, non_trainable, penalties = model.stateless_call(
            trainable, non_trainable, x, training=True, return_losses=True
        )
        return weighted_mean(per_example(y, output), weight) + sum(penalties), non_trainable

    gradient = jax.value_and_grad(loss_and_state, has_aux=True)

    def step(state, batch):
        trainable, non_trainable, optimizer = state
        (loss, non_trainable), gradients = gradient(trainable, non_trainable, *batch)
        trainable, optimizer = model.optimizer.stateless_apply(optimizer, gradients, trainable)
        return (list(trainable), list(non_trainable), list(optimizer)), loss

    @jax.jit
    def scan_epoch(state, x, y, weight):
        state, losses = jax.lax.scan(step, state, (x, y, weight))
        return state, losses.mean()

    groups = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables)

    def epoch(x, y, weight):
        state, loss = scan_epoch(tuple([v.value for v in g] for g in groups), x, y, weight)
        for variables, values in zip(groups, state, strict=True):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        return loss

    @jax.jit
    def stateless_predict(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    def predict(x):
        return stateless_predict(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            x,
        )

    return epoch, predict


def restart(model, build, seed: int):
    """`model` as `build()` would make it after seed_everything(seed), optimizer included,
    keeping its compiled epoch: for claims that train one architecture many times. With
    `model` None (the first run) it is that new model.

    `variables`, unlike the weights, include the state of every layer's random stream:
    without it a restarted model's dropout masks would depend on the runs before.
    Building a model draws every seed it needs (initializers, dropout layers) from Python's
    random module, so that and NumPy are what is seeded here: seed_everything would also
    reseed TensorFlow, which clears its kernel cache and makes the next compiled call cost
    a tenth of a second (a test checks that the restart equals a new model).
    """
    if model is None:
        backend.seed_everything(seed)
        return build()
    random.seed(seed)
    np.random.seed(seed)
    new = build()
    for variable, value in zip(model.variables, new.variables, strict=True):
        variable.assign(value)
    for compiled_model in (model, new):
        if not compiled_model.optimizer.built:
            compiled_model.optimizer.build(compiled_model.trainable_variables)
    for variable, value in zip(model.optimizer.variables, new.optimizer.variables, strict=True):
        variable.assign(value)
    return model
