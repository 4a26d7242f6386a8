"""repro: the claims of a lecture on training neural networks as Keras experiments.

Process-wide settings that must be in place before TensorFlow (or JAX) is first imported,
by whichever module imports it first.
"""

import os

# One thread per op and per op pool: runs are then deterministic, and independent claims
# get their speed from separate processes (make -j) instead of from threads.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")  # JAX on one thread
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ log lines; errors still raise
# One choice of kernels on every CPU: TensorFlow's own. TensorFlow turns oneDNN on by
# default only on some CPUs (those with AVX-512), and oneDNN picks its kernels by the
# instruction set, so leaving it to TensorFlow would make the kernels depend on the machine.
# Measured here, oneDNN gave the same weights and was 0-10% faster (docs/performance.md);
# set TF_ENABLE_ONEDNN_OPTS=1 to run the other way, which provenance records.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# TensorFlow's BFC allocator on the CPU as well: it keeps freed memory for the next tensor
# instead of page-faulting every large one in afresh. Numbers do not change, only where
# they live; training-memory reads this allocator's byte counts.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

# What decides which kernels run and how they round: provenance records them, and results
# made with other values are compared as if from another machine.
NUMERICS_ENVIRONMENT = (
    "KERAS_BACKEND",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "XLA_FLAGS",
    "TF_ENABLE_ONEDNN_OPTS",
)


class UsageError(ValueError):
    """Bad input from the user: reported as one line and exit status 2."""
