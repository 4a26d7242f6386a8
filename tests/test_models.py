"""The training path: one compiled call per epoch, the same updates as step-by-step
training, Keras callbacks between epochs, restarts that equal new models."""

import numpy as np
import pytest

from repro import backend
from repro.backend import keras, seed_everything
from repro.data import digits, mnist1d
from repro.models import accuracy, batched, classifier, fit, mlp, predict, restart, validation

pytestmark = pytest.mark.backends  # `make test` reruns these on Keras' JAX backend


def small_data(n=300, features=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = (x[:, :classes].argmax(axis=1)).astype("int64")
    return x, y


def net(seed, dropout_rate=0.0, regularizer=None, hidden=(16, 16)):
    seed_everything(seed)
    model = mlp(12, 4, hidden, dropout_rate=dropout_rate)
    if regularizer:
        for layer in model.layers:
            layer.kernel_regularizer = regularizer
    return classifier(model, 1e-2)


def weights(model):
    return [np.asarray(w) for w in model.get_weights()]


def test_batched_covers_every_example_once_and_pads_the_last_batch_with_weight_zero():
    x, y = small_data(n=10)
    xb, yb, wb = batched(x, y, 4, np.random.default_rng(0))
    assert xb.shape == (3, 4, 12) and yb.shape == (3, 4) and wb.shape == (3, 4)
    assert wb.sum() == 10 and wb[-1].tolist() == [1, 1, 0, 0]
    rows = xb.reshape(12, 12)[wb.reshape(12) == 1]
    assert sorted(map(tuple, rows)) == sorted(map(tuple, x))


def test_a_compiled_epoch_takes_the_same_steps_as_one_step_at_a_time():
    """The epoch as one call equals the same batches stepped one by one, eagerly: the
    padded last batch's loss is the mean over its real examples, penalties included."""
    x, y = small_data(n=50)
    regularizer = keras.regularizers.L2(1e-3)
    model, reference = net(0, regularizer=regularizer), net(0, regularizer=regularizer)
    fit(model, x, y, epochs=1, batch_size=16, seed=3)
    xb, yb, wb = batched(x, y, 16, np.random.default_rng(3))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    reference.optimizer.build(reference.trainable_variables)
    for xs, ys, ws in zip(xb, yb, wb, strict=True):
        real = ws == 1

        def total(trainable, xs=xs[real], ys=ys[real]):
            output, _, penalties = reference.stateless_call(
                trainable, [], xs, training=True, return_losses=True
            )
            return loss(ys, output) + sum(penalties)

        values = [v.value for v in reference.trainable_variables]
        _, (gradients,) = backend.gradient(total, values)
        reference.optimizer.apply(gradients, reference.trainable_variables)
    for a, b in zip(weights(model), weights(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_same_seed_trains_the_same_bytes_and_another_seed_does_not():
    x, y = small_data()
    runs = []
    for order_seed in (1, 1, 2):
        model = net(0, dropout_rate=0.3)
        fit(model, x, y, epochs=3, batch_size=32, seed=order_seed)
        runs.append(b"".join(w.tobytes() for w in weights(model)))
    assert runs[0] == runs[1] != runs[2]


def test_keras_early_stopping_runs_between_epochs_and_restores_the_best_weights():
    x, y = small_data()
    model = net(0)
    stop = keras.callbacks.EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    # A validation set the model cannot learn: its loss soon rises, so training stops.
    x_val, y_val = small_data(seed=1)
    history = fit(
        model,
        x,
        y,
        epochs=200,
        batch_size=32,
        seed=0,
        callbacks=[stop],
        evaluate=validation(x_val, (y_val + 1) % 4),
    )
    assert len(history) < 200
    best = min(row["val_loss"] for row in history)
    assert validation(x_val, (y_val + 1) % 4)(model)["val_loss"] == pytest.approx(best, rel=1e-5)
    assert [row["epoch"] for row in history] == list(range(1, len(history) + 1))


def test_a_restarted_model_trains_exactly_like_a_new_one():
    x, y = small_data()

    def build():
        return classifier(mlp(12, 4, (16, 16), dropout_rate=0.3), 1e-2)

    seed_everything(5)
    reused = build()
    fit(reused, x, y, epochs=2, batch_size=32, seed=0)  # its compiled epoch is kept
    restart(reused, build, 7)
    fit(reused, x, y, epochs=2, batch_size=32, seed=1)
    seed_everything(7)
    new = build()
    fit(new, x, y, epochs=2, batch_size=32, seed=1)
    for a, b in zip(weights(reused), weights(new), strict=True):
        np.testing.assert_array_equal(a, b)


def test_predict_turns_dropout_off_and_accuracy_scores_it():
    x, y = small_data()
    model = net(0, dropout_rate=0.5)
    np.testing.assert_array_equal(predict(model, x), predict(model, x))
    np.testing.assert_allclose(predict(model, x), model(x, training=False), rtol=1e-6)
    assert 0 <= accuracy(model, x, y) <= 1


def test_data_sets_are_offline_and_keep_numpys_global_stream():
    np.random.seed(3)
    expected = np.random.random()
    np.random.seed(3)
    x, y, x_test, y_test = mnist1d(num_samples=200)
    assert np.random.random() == expected  # the generator's reseeding was undone
    assert x.shape == (160, 40) and x_test.shape == (40, 40) and set(y) <= set(range(10))
    x, y, x_test, y_test = digits()
    assert x.shape[1] == 64 and x.max() <= 1 and len(x) + len(x_test) == 1797


def test_nets_that_differ_only_in_dropout_rate_start_from_the_same_weights():
    seed_everything(3)
    plain = mlp(12, 4, (16, 16))
    seed_everything(3)
    with_dropout = mlp(12, 4, (16, 16), dropout_rate=0.5)
    for a, b in zip(weights(plain), weights(with_dropout), strict=True):
        np.testing.assert_array_equal(a, b)


def test_several_epochs_in_one_call_take_the_same_steps_as_one_call_each():
    x, y = small_data(n=40)
    one, several = net(0), net(0)
    fit(one, x, y, epochs=6, batch_size=40, seed=2)
    rows = fit(several, x, y, epochs=6, batch_size=40, seed=2, epochs_per_call=3)
    assert [row["epoch"] for row in rows] == [3, 6]
    for a, b in zip(weights(one), weights(several), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
