"""repro: the claims of a lecture on training neural networks as Keras experiments.

Process-wide settings that must be in place before TensorFlow is first imported, by
whichever module imports it first.
"""

import os

# One thread per op and per op pool: runs are then deterministic and independent claims
# get their speed from separate processes (make -j) instead of from threads.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ start-up lines; errors still raise
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's BFC allocator on the CPU as well: it keeps freed memory for the next tensor,
# where the default allocator hands large tensors back to the kernel and page-faults every
# new one in (a third of mc-dropout's time). Numbers do not change, only where they live;
# training-memory reads this allocator's byte counts.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
# TensorFlow's own (Eigen) kernels rather than oneDNN's. For nets this small, oneDNN's
# graph rewrites and per-call set-up cost more than they save: measured alone on one
# thread, a tuning search took 12.5 s against 14.7 s and one seed of dropout-regularizes
# 43 s against 54 s. Both kernel sets are deterministic under op determinism; they
# round differently, so results made with and without it agree only as across machines.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# What the settings above decide about the numbers; provenance records them.
NUMERICS_ENVIRONMENT = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "TF_ENABLE_ONEDNN_OPTS",
)
