"""`make bench`: wall times of the whole workflow on this machine, written to results/bench.csv.

Measures `make all` (full profile, every claim) from scratch into a scratch directory at
the default parallelism (one job more than cores), then the no-op `make all`. Each claim's
own wall time comes from its provenance: every claim process runs on one thread, and with
one job more than cores the claims share them, so a claim's time there is up to a third
above its time on an idle core. Last, one training run through the package's harness
against the same model trained by a bare `model.fit` on NumPy arrays, to show that the
harness costs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from repro import claims
from repro.records import write_csv


def timed_make(*args: str, env=None) -> float:
    # Without the calling make's flags: under `make bench` they would hand the inner make a
    # job server it cannot reach, and it would fall back to one job.
    env = {k: v for k, v in (env or os.environ).items() if k not in ("MAKEFLAGS", "MFLAGS")}
    started = time.perf_counter()
    subprocess.run(
        ["make", "--no-print-directory", *args], check=True, stdout=subprocess.DEVNULL, env=env
    )
    return time.perf_counter() - started


def scratch() -> tuple[Path, Path, dict]:
    """An empty results directory, an empty tuner work directory, and an environment that
    makes the tuner searches start afresh there."""
    out, searches = Path("build") / "bench", Path("build") / "bench-tuner-work"
    for path in (out, searches):
        shutil.rmtree(path, ignore_errors=True)
    return out, searches, dict(os.environ, REPRO_TUNER_WORK=str(searches.resolve()))


def fit_seconds(mode: str, epochs: int = 20) -> float:
    """One fit of a 2x256 MLP on digits: via the harness ('harness') or bare Keras ('bare')."""
    import keras

    from repro.data import digits

    x, y, _, _ = digits()
    if mode == "harness":
        from repro.backend import seed_everything
        from repro.models import adam_classifier, batches

        seed_everything(0)  # also exempts the imported libraries from gc
        model = adam_classifier(64, (256, 256), 1e-3)
        started = time.perf_counter()
        model.fit(batches(x, y, 64, shuffle_seed=0), epochs=epochs, verbose=0)
        return time.perf_counter() - started
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return time.perf_counter() - started


def fit_seconds_in_fresh_process(mode: str) -> float:
    # Same thread settings for both, so only the code path differs.
    env = dict(
        os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3"
    )
    done = subprocess.run(
        [sys.executable, "-m", "repro.bench", "--fit", mode],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("results/bench.csv"))
    parser.add_argument("--fit", choices=("harness", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fit:
        print(fit_seconds(args.fit))
        return 0
    jobs = len(os.sched_getaffinity(0)) + 1  # the Makefile's default: nproc + 1
    out, searches, env = scratch()
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
    # Each finished tuning shard's stamp holds its wall seconds (see the Makefile).
    shards = sorted((searches / "shards").glob("*/*-of-*"))
    rows.append(
        {
            "measure": f"tuning search shards ({len(shards)} processes), summed",
            "value": sum(float(stamp.read_text()) for stamp in shards),
            "unit": "s",
        }
    )
    rows.append(
        {
            "measure": "make all, nothing to do",
            "unit": "s",
            "value": timed_make("all", f"RESULTS={out}", env=env),  # the same searches
        }
    )
    harness, bare = (fit_seconds_in_fresh_process(mode) for mode in ("harness", "bare"))
    rows += [
        {"measure": "2x256 MLP, 20 epochs, via the harness", "value": harness, "unit": "s"},
        {"measure": "same model via a bare model.fit", "value": bare, "unit": "s"},
        {"measure": "harness / bare", "value": harness / bare, "unit": "ratio"},
    ]
    frame = pd.DataFrame(rows)[["measure", "value", "unit"]]
    frame["value"] = frame["value"].round(3)
    write_csv(frame, args.out)
    print(frame.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
