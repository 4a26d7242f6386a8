"""The shared training path: the batch pipelines, whole epochs per call of the step, and
one compiled model restarted for many runs."""

import keras
import numpy as np

from repro.data import digits, mnist1d
from repro.harness import seed_everything
from repro.models import EPOCH_PER_CALL, Retrainable, adam_classifier, batches, repeated_batch


def epoch_orders(data, epochs: int) -> list[list[int]]:
    return [np.concatenate([x[:, 0] for x, _ in data]).astype(int).tolist() for _ in range(epochs)]


def test_batches_shuffle_every_epoch_and_repeat_for_the_same_seed():
    x = np.arange(10, dtype="float32")[:, None]
    y = np.arange(10)
    first, second = epoch_orders(batches(x, y, 3, shuffle_seed=1), 2)
    assert sorted(first) == sorted(second) == list(range(10))  # each example once per epoch
    assert first != second  # a new order every epoch
    assert epoch_orders(batches(x, y, 3, shuffle_seed=1), 2) == [first, second]
    assert epoch_orders(batches(x, y, 3), 1) == [list(range(10))]  # no seed: in order
    (_, targets), *_ = batches(x, [y, 2 * y], 4)  # one target per output
    assert [t.numpy().tolist() for t in targets] == [[0, 1, 2, 3], [0, 2, 4, 6]]


def test_a_whole_epoch_per_call_trains_exactly_like_one_batch_per_call():
    x, y, _, _ = digits()
    x, y = x[:200], y[:200]

    def train(steps_per_execution):
        seed_everything(3)
        model = adam_classifier(x.shape[1], (32,), 1e-2)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            steps_per_execution=steps_per_execution,
        )
        history = model.fit(batches(x, y, 16, shuffle_seed=3), epochs=3, verbose=0)
        return history.history["loss"], model.get_weights()

    (loss_one, weights_one), (loss_epoch, weights_epoch) = train(1), train(EPOCH_PER_CALL)
    assert loss_one == loss_epoch
    for one, epoch in zip(weights_one, weights_epoch, strict=True):
        np.testing.assert_array_equal(one, epoch)


def test_repeated_batch_is_the_whole_set_every_step():
    x, y = np.arange(6, dtype="float32").reshape(3, 2), np.arange(3)
    steps = list(repeated_batch(x, [y, y], 4))
    assert len(steps) == 4
    for inputs, (first, second) in steps:
        np.testing.assert_array_equal(inputs, x)
        np.testing.assert_array_equal(first, y)
        np.testing.assert_array_equal(second, y)


def test_a_restarted_model_trains_exactly_like_a_new_one():
    x, y, _, _ = digits()
    x, y = x[:200], y[:200]

    def fit(model, seed):
        history = model.fit(batches(x, y, 16, shuffle_seed=seed), epochs=3, verbose=0)
        return history.history["loss"], model.get_weights()

    def new_model(seed):
        seed_everything(seed)
        return adam_classifier(x.shape[1], (32,), 1e-2)

    net = Retrainable(lambda: adam_classifier(x.shape[1], (32,), 1e-2))
    train_functions = set()
    for seed in (3, 4, 3):  # each run after other runs of the same compiled model
        (new_loss, new_weights), (loss, weights) = (
            fit(new_model(seed), seed),
            fit(net.restart(seed), seed),
        )
        assert loss == new_loss
        for got, want in zip(weights, new_weights, strict=True):
            np.testing.assert_array_equal(got, want)
        train_functions.add(net.model.train_function)
    assert len(train_functions) == 1  # one compiled step served every run


def test_a_restarted_model_draws_the_dropout_masks_of_a_new_one():
    import keras

    x = np.ones((8, 16), dtype="float32")

    def build():
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dropout(0.5)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    net = Retrainable(build)
    for seed in (5, 6, 5):  # after other runs, and after itself
        seed_everything(seed)
        expected = np.asarray(build()(x, training=True))
        np.testing.assert_array_equal(np.asarray(net.restart(seed)(x, training=True)), expected)


def test_mnist1d_is_the_packages_generator_to_the_bit():
    from mnist1d.data import get_dataset_args, make_dataset

    for seed in (42, 7):
        args = get_dataset_args()
        args.num_samples, args.seed = 500, seed
        package = make_dataset(args)
        ours = mnist1d.__wrapped__(num_samples=500, seed=seed)  # not the cached copy
        for name, array in zip(("x", "y", "x_test", "y_test"), ours, strict=True):
            assert np.array_equal(array, package[name].astype(array.dtype)), (seed, name)
