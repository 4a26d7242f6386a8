"""The shared training path: the batch pipeline and whole epochs per call of the step."""

import keras
import numpy as np

from repro.data import digits
from repro.harness import seed_everything
from repro.models import EPOCH_PER_CALL, adam_classifier, batches


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
