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

# What decides which kernels run and how they round; provenance records them, and results
# made with other values are compared as if from another machine (oneDNN is on unless
# TF_ENABLE_ONEDNN_OPTS=0: turning it off changed no number here and saved no time).
NUMERICS_ENVIRONMENT = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "TF_ENABLE_ONEDNN_OPTS",
)
