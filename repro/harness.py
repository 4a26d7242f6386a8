"""The shared harness every claim uses: seeding, atomic writes, provenance, verdicts.

Kept deliberately small. A claim module only ever calls `seed_everything`, `write_csv`,
`read_csv`, `save_figure`, `progress` and builds a `Verdict` out of `Rule`s; `run_claim`
is what the CLI calls to run one claim end to end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
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

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from repro import NUMERICS_ENVIRONMENT


class UsageError(ValueError):
    """Bad input from the user: reported as one line and exit status 2."""


# --------------------------------------------------------------------------- seeding


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and Keras, make TensorFlow's ops deterministic, one thread each."""
    keras, tf = _tensorflow()
    keras.utils.set_random_seed(seed)  # seeds random, numpy and the backend
    random.seed(seed)
    np.random.seed(seed)
    tf.config.experimental.enable_op_determinism()
    tf.get_logger().setLevel("ERROR")  # retracing warnings when claims build many models
    with contextlib.suppress(RuntimeError):  # raises once the runtime is up; already set then
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


@functools.cache
def _tensorflow():
    """Keras and TensorFlow, imported when an experiment first seeds them, not before: a
    claim that never uses them spares the seconds of importing them."""
    import keras
    import tensorflow as tf

    freeze_surviving_objects()
    return keras, tf


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
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
CONFIDENCE = 0.95


def mean_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean over seeds and its two-sided Student-t interval (scipy's t quantile).

    The t-interval suits a mean of a few independent seeds; with one seed the interval is
    unbounded, and a NaN among the values makes all three NaN: no value is dropped silently.
    """
    from scipy import stats

    values = np.asarray(list(values), dtype=float)
    mean = float(values.mean()) if values.size else float("nan")
    if values.size < 2 or np.isnan(mean):
        return mean, (-np.inf if values.size == 1 else mean), (np.inf if values.size == 1 else mean)
    half = stats.t.ppf((1 + confidence) / 2, values.size - 1) * values.std(ddof=1)
    half /= np.sqrt(values.size)
    return mean, float(mean - half), float(mean + half)


@dataclass(frozen=True)
class Rule:
    """A key statistic against its threshold; the outcome is computed, never given.

    `low` and `high` bound the statistic's 95% interval over seeds. A rule whose number is
    exact by construction (a count, a float64 gradient check) leaves them None and says so
    in its note. The rule passes when the whole interval lies on the passing side of the
    threshold, fails when it lies wholly on the other side, and is inconclusive otherwise.
    A NaN anywhere is no measurement, and fails.
    """

    name: str
    measured: float
    op: str
    threshold: float
    note: str = ""  # e.g. "5/5 seeds; median 0.557, range 0.551 to 0.563"
    low: float | None = None
    high: float | None = None

    def __post_init__(self):
        if self.op not in _OPS:
            raise ValueError(f"unknown comparison {self.op!r}")
        if (self.low is None) != (self.high is None):
            raise ValueError("give both ends of the interval or neither")
        for name in ("measured", "threshold", "low", "high"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def over_seeds(cls, name: str, values, op: str, threshold: float, note: str = ""):
        """The rule on the mean of per-seed values, with its t-interval."""
        values = list(values)
        mean, low, high = mean_interval(values)
        spread_note = f"{len(values)} seeds; {spread(values)}"
        return cls(
            name, mean, op, threshold, f"{spread_note}; {note}" if note else spread_note, low, high
        )

    @property
    def exact(self) -> bool:
        return self.low is None

    @property
    def interval(self) -> tuple[float, float]:
        return (self.measured, self.measured) if self.exact else (self.low, self.high)

    @property
    def outcome(self) -> str:
        low, high = self.interval
        if np.isnan([self.measured, low, high]).any():
            return FAIL
        holds = _OPS[self.op]
        if holds(low, self.threshold) and holds(high, self.threshold):
            return PASS
        if not holds(low, self.threshold) and not holds(high, self.threshold):
            return FAIL
        return INCONCLUSIVE

    @property
    def passed(self) -> bool:
        return self.outcome == PASS

    @property
    def reason(self) -> str:
        return "no measurement" if np.isnan([self.measured, *self.interval]).any() else ""

    def describe(self) -> str:
        shown = "exact" if self.exact else f"95% CI [{self.low:.4g}, {self.high:.4g}]"
        text = f"{self.name}: {self.measured:.4g} ({shown}) {self.op} {self.threshold:.4g}"
        return f"{text}: {self.reason}" if self.reason else text


@dataclass(frozen=True)
class Verdict:
    claim: str
    rules: tuple[Rule, ...]

    @property
    def label(self) -> str:
        outcomes = {rule.outcome for rule in self.rules}
        if FAIL in outcomes:
            return "NOT REPRODUCED"
        return "INCONCLUSIVE" if INCONCLUSIVE in outcomes else "REPRODUCED"

    @property
    def reproduced(self) -> bool:
        return self.label == "REPRODUCED"

    def describe(self) -> str:
        lines = [f"{self.claim}: {self.label}"]
        lines += [f"  [{r.outcome}] {r.describe()}  ({r.note})" for r in self.rules]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "claim": self.claim,
            "verdict": self.label,
            "rules": [
                dataclasses.asdict(r) | {"outcome": r.outcome, "reason": r.reason}
                for r in self.rules
            ],
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


def machine() -> dict[str, str]:
    """What decides whether two runs may agree to the byte: the CPU model and architecture."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    return {"architecture": platform.machine(), "cpu": cpu}


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


def freeze_surviving_objects() -> None:
    """Collect garbage, then exempt every object still alive from garbage collection: at
    a claim's start, what the process has imported (above all TensorFlow and Keras, which
    `seed_everything` imports); in a search, also what each finished trial leaves behind.

    Keras' clear_session and keras-tuner call gc.collect() for every model they discard,
    and each full collection would otherwise walk the ~400,000 objects of the imported
    libraries again (0.3 s a call); objects made later are still collected. Collection is
    switched on afterwards, as `repro` switches it off while it imports (repro/cli.py).
    """
    gc.collect()
    gc.freeze()
    gc.enable()


def leftover_scratch(out_root: Path, claim_id: str = "*") -> list[Path]:
    """Scratch directories that a killed run left behind (`.<claim>.XXXX`)."""
    return sorted(p for p in Path(out_root).glob(f".{claim_id}.*") if p.is_dir())


def run_claim(claim, profile: str, seeds: tuple[int, ...], out_root: Path, config=None) -> Verdict:
    """Run, judge and plot one claim into a scratch directory, then swap it into place.

    The claim's directory therefore holds either the previous complete run or the new
    complete run, never a mixture; the verdict is computed from the CSVs as written.
    """
    config = config or claim.PROFILES[profile]
    freeze_surviving_objects()
    final = Path(out_root) / claim.CLAIM_ID
    final.parent.mkdir(parents=True, exist_ok=True)
    # Make never runs one claim twice at once, so a scratch directory of this claim that
    # exists now was left by a run that was killed.
    for stale in leftover_scratch(out_root, claim.CLAIM_ID):
        print(f"{claim.CLAIM_ID}: removing {stale}, left by an interrupted run", file=sys.stderr)
        shutil.rmtree(stale, ignore_errors=True)
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
                "machine": machine(),
                "numerics": {name: os.environ.get(name) for name in NUMERICS_ENVIRONMENT},
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
