"""`make bench`: how fast the package runs on this machine, written to results/bench.csv.

1. `make all` from scratch into a scratch directory at the default parallelism (one job
   more than cores), each claim's own wall time (from its provenance), and the no-op
   `make all`.
2. The training path (repro.models.fit: a compiled epoch) against Keras' own `model.fit`
   (a tf.data pipeline, `steps_per_execution` = one epoch) on two nets, in the same run:
   a 10 x 64 ReLU MLP, 4 seeds x 20 epochs, and a 2 x 512 ReLU MLP with dropout 0.5, 1 seed
   x 30 epochs; synthetic data of 4,000 examples, 40 features, 10 classes, batch 128, Adam.
   Seeds of one net reuse its compiled epoch (`restart`), as the claims do.
3. The training path's arithmetic rate (float operations per second: about 6 per weight
   and example per epoch, forward and backward) against one core's float32 matrix-product
   peak measured in the same process.
Steps 2 and 3 run on TensorFlow, and on JAX where it is installed, each in a fresh
process on one thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from repro import claims
from repro.records import write_csv

NETS = {  # name: (hidden widths, dropout rate, seeds, epochs)
    "10x64": ((64,) * 10, 0.0, 4, 20),
    "2x512 dropout 0.5": ((512, 512), 0.5, 1, 30),
}
EXAMPLES, FEATURES, CLASSES, BATCH = 4000, 40, 10, 128


def timed_make(*args: str, env=None) -> float:
    # Without the calling make's flags: under `make bench` they would hand the inner make a
    # job server it cannot reach, and it would fall back to one job.
    env = {k: v for k, v in (env or os.environ).items() if k not in ("MAKEFLAGS", "MFLAGS")}
    started = time.perf_counter()
    subprocess.run(
        ["make", "--no-print-directory", *args], check=True, stdout=subprocess.DEVNULL, env=env
    )
    return time.perf_counter() - started


def synthetic_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(EXAMPLES, FEATURES)).astype("float32")
    y = (x @ rng.normal(size=(FEATURES, CLASSES))).argmax(axis=1).astype("int64")
    return x, y


def training_seconds(net: str, path: str) -> float:
    """Seconds (process CPU time) to train one bench net: 'path' or 'keras-fit'."""
    from repro import backend, models
    from repro.backend import seed_everything

    hidden, dropout_rate, seeds, epochs = NETS[net]
    x, y = synthetic_data()

    def build():
        return models.classifier(models.mlp(FEATURES, CLASSES, hidden, dropout_rate=dropout_rate))

    started = time.process_time()
    model = None
    for seed in range(seeds):
        if path == "path":
            if model is None:
                seed_everything(seed)
                model = build()
            else:
                models.restart(model, build, seed)
            models.fit(model, x, y, epochs=epochs, batch_size=BATCH, seed=seed)
        else:
            seed_everything(seed)
            model = build()
            model.compile(optimizer=model.optimizer, loss=model.loss, steps_per_execution=1000)
            if backend.name() == "jax":  # Keras shuffles and batches the arrays itself
                model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0)
            else:  # what a TensorFlow user hands model.fit: a tf.data pipeline built once
                tf = backend.load("tensorflow")
                data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
                model.fit(data.batch(BATCH), epochs=epochs, verbose=0)
    return time.process_time() - started


def flops_per_second(net: str, seconds: float) -> float:
    """Float operations per second of a training run: forward 2 per weight and example,
    backward 4, over every epoch and seed."""
    hidden, _, seeds, epochs = NETS[net]
    widths = (FEATURES, *hidden, CLASSES)
    weights = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    return 6 * weights * EXAMPLES * epochs * seeds / seconds


def matmul_peak() -> float:
    """One core's float32 matrix-product rate: 512 x 512 products, best of five runs."""
    from repro.backend import keras

    a = keras.ops.convert_to_tensor(np.random.default_rng(0).normal(size=(512, 512)), "float32")
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(20):
            b = keras.ops.matmul(a, a)
        np.asarray(b)
        best = min(best, time.perf_counter() - started)
    return 20 * 2 * 512**3 / best


def path_rows() -> list[dict]:
    """This process's backend: the training path against Keras' fit, and its FLOP rate."""
    from repro import backend

    name, rows = backend.name(), []
    peak = matmul_peak()
    rows.append(
        {
            "measure": f"{name}: float32 matmul peak, one core",
            "value": peak / 1e9,
            "unit": "GFLOP/s",
        }
    )
    for net in NETS:
        ours, keras_fit = training_seconds(net, "path"), training_seconds(net, "keras-fit")
        rows += [
            {"measure": f"{name}: {net}, training path", "value": ours, "unit": "CPU s"},
            {"measure": f"{name}: {net}, Keras model.fit", "value": keras_fit, "unit": "CPU s"},
            {
                "measure": f"{name}: {net}, Keras fit / path",
                "value": keras_fit / ours,
                "unit": "ratio",
            },
            {
                "measure": f"{name}: {net}, path FLOP rate / matmul peak",
                "value": flops_per_second(net, ours) / peak,
                "unit": "ratio",
            },
        ]
    return rows


def in_fresh_process(backend_name: str) -> list[dict]:
    env = os.environ | {"KERAS_BACKEND": backend_name}
    done = subprocess.run(
        [sys.executable, "-m", "repro.bench", "--path-only"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(done.stdout.splitlines()[-1])


def make_rows() -> list[dict]:
    jobs = len(os.sched_getaffinity(0)) + 1  # the Makefile's default: nproc + 1
    out, searches = Path("build") / "bench", Path("build") / "bench-tuner-work"
    for path in (out, searches):
        shutil.rmtree(path, ignore_errors=True)
    env = dict(os.environ, REPRO_TUNER_WORK=str(searches.resolve()))
    rows = [
        {
            "measure": f"make all (default: -j{jobs}, one job more than cores)",
            "value": timed_make("all", f"RESULTS={out}", env=env),
            "unit": "s",
        }
    ]
    for claim in claims.all_claims():
        provenance = json.loads((out / claim.CLAIM_ID / "provenance.json").read_text())
        rows.append(
            {
                "measure": f"claim {claim.CLAIM_ID} (full, {len(provenance['seeds'])} seeds)",
                "value": provenance["wall_seconds"],
                "unit": "s",
            }
        )
    rows.append(
        {
            "measure": "make all, nothing to do",
            "unit": "s",
            "value": timed_make("all", f"RESULTS={out}", env=env),
        }
    )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("results/bench.csv"))
    parser.add_argument("--path-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-make", action="store_true", help="only the training path")
    args = parser.parse_args(argv)
    if args.path_only:
        print(json.dumps(path_rows()))
        return 0
    rows = [] if args.skip_make else make_rows()
    rows += in_fresh_process("tensorflow")
    if importlib.util.find_spec("jax"):
        rows += in_fresh_process("jax")
    frame = pd.DataFrame(rows)[["measure", "value", "unit"]]
    frame["value"] = frame["value"].round(3)
    write_csv(frame, args.out)
    print(frame.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
