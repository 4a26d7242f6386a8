"""The shared harness every claim uses: seeding, atomic writes, provenance, verdicts.

Kept deliberately small. A claim module only ever calls `seed_everything`, `write_csv`,
`read_csv`, `save_figure`, `progress` and builds a `Verdict` out of `Rule`s; `run_claim`
is what the CLI calls to run one claim end to end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import operator
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# One thread per op and per op pool: runs are then deterministic and independent claims
# get their speed from separate processes (make -j) instead of from threads.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ log noise; errors still raise
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402


class UsageError(ValueError):
    """Bad input from the user: reported as one line and exit status 2."""


# --------------------------------------------------------------------------- seeding


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and Keras, make TensorFlow's ops deterministic, one thread each."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # seeds random, numpy and the backend
    random.seed(seed)
    np.random.seed(seed)
    tf.config.experimental.enable_op_determinism()
    tf.get_logger().setLevel("ERROR")  # retracing warnings when claims build many models
    with contextlib.suppress(RuntimeError):  # raises once the runtime is up; already set then
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def progress(iterable, desc: str, **kwargs):
    """A progress bar on stderr, silent when stderr is not a terminal."""
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=None, **kwargs)


# ---------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Tidy CSV, full float precision, no index: the same frame always gives the same bytes."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    # Fixed metadata keeps the PNG bytes stable from one run to the next.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


# ------------------------------------------------------------------------- verdicts

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class Rule:
    """One measured number compared with its threshold; `passed` is computed, never given."""

    name: str
    measured: float
    op: str
    threshold: float
    seeds: str = ""  # e.g. "5/5 seeds agree; spread 0.551-0.563"

    def __post_init__(self):
        if self.op not in _OPS:
            raise ValueError(f"unknown comparison {self.op!r}")
        object.__setattr__(self, "measured", float(self.measured))
        object.__setattr__(self, "threshold", float(self.threshold))

    @property
    def passed(self) -> bool:
        return bool(_OPS[self.op](self.measured, self.threshold))

    def describe(self) -> str:
        return f"{self.name}: {self.measured:.4g} {self.op} {self.threshold:.4g}"


@dataclass(frozen=True)
class Verdict:
    claim: str
    rules: tuple[Rule, ...]

    @property
    def reproduced(self) -> bool:
        return all(rule.passed for rule in self.rules)

    @property
    def label(self) -> str:
        return "REPRODUCED" if self.reproduced else "NOT REPRODUCED"

    def to_dict(self) -> dict:
        return {
            "claim": self.claim,
            "verdict": self.label,
            "rules": [dataclasses.asdict(r) | {"passed": r.passed} for r in self.rules],
        }


def seed_agreement(passed_per_seed) -> str:
    passed = list(passed_per_seed)
    return f"{sum(map(bool, passed))}/{len(passed)} seeds"


def spread(values, fmt: str = ".3g") -> str:
    """Median and range of a per-seed measurement, for a rule's note."""
    values = np.asarray(list(values), dtype=float)
    return f"median {np.median(values):{fmt}}, range {values.min():{fmt}} to {values.max():{fmt}}"


def agreement_by(frame: pd.DataFrame, key: str, name: str, column: str, passes) -> str:
    """Seeds passing and range of `column` per value of `key`, e.g. 'rate 0.2: 5/5 seeds, ...'."""
    parts = []
    for value, group in frame.groupby(key):
        values = group[column]
        parts.append(
            f"{name} {value:g}: {int(passes(values).sum())}/{len(values)} seeds, "
            f"range {values.min():.3g} to {values.max():.3g}"
        )
    return "; ".join(parts)


# ------------------------------------------------------------------ configs and seeds


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0-4' or '3' or '0,2,5' -> a tuple of non-negative seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not match or int(match[2] or match[1]) < int(match[1]):
            raise UsageError(f"bad seed range {text!r}: use e.g. 0-4, 7 or 0,2,5")
        seeds.extend(range(int(match[1]), int(match[2] or match[1]) + 1))
    return tuple(seeds)


def choose_seeds(profile_seeds, text: str | None, offset: int) -> tuple[int, ...]:
    """The seeds given as text (see parse_seeds), else the profile's shifted by `offset`."""
    if text and offset:
        raise UsageError("give either --seeds or --seed-offset, not both")
    return parse_seeds(text) if text else tuple(seed + offset for seed in profile_seeds)


def override(config, assignments: list[str]):
    """Apply NAME=VALUE overrides, converting each value to the field's type."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes = {}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        if not sep or name not in fields:
            raise UsageError(f"unknown setting {name!r}; settings are: {', '.join(fields)}")
        current = getattr(config, name)
        try:
            if isinstance(current, tuple):
                kind = type(current[0]) if current else float
                changes[name] = tuple(kind(v) for v in text.split(","))
            elif isinstance(current, bool):
                changes[name] = text.lower() in ("1", "true", "yes")
            else:
                changes[name] = type(current)(text)
        except ValueError:
            raise UsageError(f"setting {name}={text!r} is not a valid value") from None
    try:
        return dataclasses.replace(config, **changes)
    except ValueError as err:  # raised by the config's own validation
        raise UsageError(str(err)) from None


# ------------------------------------------------------------------------ provenance

PACKAGES = (
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "keras-tuner",
    "numpy",
    "pandas",
    "matplotlib",
    "scikit-learn",
    "mnist1d",
)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ------------------------------------------------------------------ running a claim


def freeze_imported_objects() -> None:
    """Exempt what TensorFlow and Keras create at import time from garbage collection.

    Keras' clear_session and keras-tuner call gc.collect() for every model they discard,
    and each full collection would otherwise walk the ~400,000 objects of the imported
    libraries again (0.3 s a call); the experiment's own objects are still collected.
    """
    import keras  # noqa: F401  (imports TensorFlow)

    gc.collect()
    gc.freeze()


def run_claim(claim, profile: str, seeds: tuple[int, ...], out_root: Path, config=None) -> Verdict:
    """Run, judge and plot one claim into a scratch directory, then swap it into place.

    The claim's directory therefore holds either the previous complete run or the new
    complete run, never a mixture; the verdict is computed from the CSVs as written.
    """
    config = config or claim.PROFILES[profile]
    freeze_imported_objects()
    final = Path(out_root) / claim.CLAIM_ID
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{claim.CLAIM_ID}."))
    scratch.chmod(0o755)
    try:
        started = time.time()
        claim.run(config, seeds, scratch)
        verdict = claim.verdict(scratch)
        write_json(scratch / "verdict.json", verdict.to_dict())
        claim.plot(scratch)
        write_json(
            scratch / "provenance.json",
            {
                "claim": claim.CLAIM_ID,
                "profile": profile,
                "seeds": list(seeds),
                "config": dataclasses.asdict(config),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                "versions": _versions(),
                "git_commit": _git_commit(),
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "wall_seconds": round(time.time() - started, 2),
            },
        )
        old = final.with_name(f".{claim.CLAIM_ID}.old")
        if final.exists():
            os.replace(final, old)
        os.replace(scratch, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return verdict
