"""Keras and its backend: imported on first use, quietly, and seeded the same way everywhere.

Everything that differs between Keras' TensorFlow and JAX backends lives here and in the
training step of repro/models.py. `keras` and `tensorflow` below are the real modules,
imported the first time one of their attributes is read: commands that only read results
(`repro check`, `repro report`) never import them, and a claim that trains nothing never
pays the seconds it takes.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import random
import sys
import tempfile

import numpy as np

BACKENDS = ("tensorflow", "jax")


def name() -> str:
    """The Keras backend this process runs on (KERAS_BACKEND, set before Keras loads)."""
    return os.environ["KERAS_BACKEND"]


@contextlib.contextmanager
def quiet_stderr():
    """Hold back what C++ libraries write to the process's stderr inside the block.

    TensorFlow announces oneDNN (and, on some CPUs, its instruction sets) while it is
    imported, through a logger that TF_CPP_MIN_LOG_LEVEL does not reach. The lines are
    shown if the block fails, so that a failed import still explains itself.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@functools.cache
def load(module_name: str):
    with quiet_stderr():
        return importlib.import_module(module_name)


class Deferred:
    """A module imported, by `load`, when one of its attributes is first read."""

    __slots__ = ("module_name",)

    def __init__(self, module_name: str):
        self.module_name = module_name

    def __getattr__(self, attribute):
        return getattr(load(self.module_name), attribute)

    def __repr__(self):
        return f"<{self.module_name}, imported on first use>"


keras = Deferred("keras")
tensorflow = Deferred("tensorflow")  # for the claims about TensorFlow itself


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and Keras (its layers' seed generators and the backend), and make
    TensorFlow's ops deterministic on one thread each. JAX on the CPU is deterministic."""
    with quiet_stderr():  # Keras seeds TensorFlow too where it is installed, importing it
        keras.utils.set_random_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    if name() == "tensorflow":
        tf = load("tensorflow")
        tf.config.experimental.enable_op_determinism()
        tf.get_logger().setLevel("ERROR")  # retracing warnings when claims build many models
        with contextlib.suppress(RuntimeError):  # raises once the runtime is up; set then
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)


def gradient(function, *args):
    """The value of a scalar `function(*args)` and its gradient with respect to every
    argument (each a tensor or a list of tensors), by the backend's reverse-mode autodiff."""
    if name() == "jax":
        import jax

        return jax.value_and_grad(function, argnums=tuple(range(len(args))))(*args)
    tf = load("tensorflow")
    with tf.GradientTape() as tape:
        tape.watch(args)
        value = function(*args)
    return value, tuple(tape.gradient(value, list(args)))
