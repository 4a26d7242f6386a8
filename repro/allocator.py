"""TensorFlow's CPU allocator as a measuring instrument (TensorFlow only).

`requested_bytes(step)` runs a step and returns the peak of the bytes its tensors asked
for, and `in_fresh_processes(function, tasks)` runs each task in a process of its own, so
that no measurement sees what an earlier one left behind. training-memory uses both.

Why the allocator, and why requested bytes:
- The operating system's resident-set peak depends on the allocator and the kernel: on
  one machine it saw almost nothing of what TensorFlow allocated.
- With TF_CPU_ALLOCATOR_USE_BFC=true, read once when TensorFlow is imported (repro sets it
  by default), TensorFlow's own BFC allocator serves the CPU. It reports every allocation
  and deallocation to TensorFlow's profiler with the bytes the tensor requested; replayed
  in order they give the bytes held at every moment of the step. The allocator's own
  peak (`tf.config.experimental.get_memory_info`) counts the chunks it hands out, which
  depend on the history of free chunks and moved by up to 10% from call to call.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import tempfile
from pathlib import Path

import numpy as np

from repro.records import progress

SETTING = ("TF_CPU_ALLOCATOR_USE_BFC", "true")  # read once, when TensorFlow is imported
SIGNS = {"MemoryAllocation": 1, "MemoryDeallocation": -1}  # the profiler's event names


def require_setting() -> None:
    """Refuse to measure unless this process's TensorFlow counts with the BFC allocator."""
    name, value = SETTING
    if os.environ.get(name) != value:
        raise RuntimeError(f"{name}={value} must be set before TensorFlow is imported")


def requested_bytes(step) -> tuple[int, int]:
    """Run `step()` under TensorFlow's profiler; return the peak of the bytes requested
    since it began and the bytes still held when it ended (both relative to its start).

    A deallocation of a tensor made before the step (a weight's old buffer, freed when the
    update replaces it) counts too, so `held` can be negative. Call `collect_garbage()`
    after making garbage that holds tensors (a replaced model): the collector would free
    them at a moment of its choosing, perhaps inside the step.
    """
    from repro.backend import tensorflow as tf

    with tempfile.TemporaryDirectory() as log_dir:
        tf.profiler.experimental.start(log_dir)
        try:
            step()
        finally:
            tf.profiler.experimental.stop()
        (trace,) = Path(log_dir).glob("plugins/profile/*/*.xplane.pb")
        changes = memory_changes(trace.read_bytes())
    held = np.cumsum([0] + [change for _, change in sorted(changes)])
    return int(held.max()), int(held[-1])


def collect_garbage() -> None:
    """Free now the tensors that unreachable Python objects still hold (a full collection
    takes a few tenths of a second with TensorFlow loaded: call it when garbage was made)."""
    gc.collect()


def memory_changes(trace: bytes) -> list[tuple[int, int]]:
    """(time in picoseconds, bytes: + requested, - released) of every allocator event in a
    profiler trace (TensorFlow's XSpace protocol buffer)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace.FromString(trace)
    changes = []
    for plane in space.planes:
        sign = {key: SIGNS.get(event.name) for key, event in plane.event_metadata.items()}
        size = {key for key, stat in plane.stat_metadata.items() if stat.name == "requested_bytes"}
        for line in plane.lines:
            for event in line.events:
                if sign.get(event.metadata_id):
                    (requested,) = [
                        s.int64_value or s.uint64_value
                        for s in event.stats
                        if s.metadata_id in size
                    ]
                    time = line.timestamp_ns * 1000 + event.offset_ps
                    changes.append((time, sign[event.metadata_id] * requested))
    return changes


def in_fresh_processes(function, tasks, desc: str = "cells") -> list:
    """`function(*task)` for every task, each in a new process that counts allocator bytes.

    The processes are forked from one server process (multiprocessing's forkserver) that
    has imported Keras, TensorFlow and `function`'s module and run nothing: each task then
    starts clean without paying the seconds of importing TensorFlow. The server starts
    with the allocator setting in its environment, and every process forked from it
    inherits it. `function` must be importable by name (a module-level function).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["keras", function.__module__])
    name, value = SETTING
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        with context.Pool(1, maxtasksperchild=1) as pool:  # a new worker for every task
            done = pool.imap(_call, [(function, task) for task in tasks])
            return list(progress(done, desc, total=len(tasks)))
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved


def _call(function_and_task):
    function, task = function_and_task
    return function(*task)
