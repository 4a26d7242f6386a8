"""Rules and verdicts: a statistic, its 95% interval over seeds, a threshold, a kind.

A rule's outcome is computed from the written data, never given. It passes when the whole
interval lies on the passing side of the threshold, fails when the whole interval lies on
the other side, and is inconclusive otherwise.

Rules come in three kinds, fixed from the lecture's text before the data are seen:
- `lecture`: it tests what a slide asserts (the rule names the slide). These alone decide
  the verdict.
- `beyond`: a finding that goes further than the slides, reported beside the verdict.
- `check`: an identity or a fact true by construction, which no realistic broken variant
  can fail. It is not evidence; a failing check means the experiment itself is broken,
  and the claim is then NOT REPRODUCED whatever its lecture rules say.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
LECTURE, BEYOND, CHECK = "lecture", "beyond", "check"
KINDS = (LECTURE, BEYOND, CHECK)
REPRODUCED, NOT_REPRODUCED, UNDECIDED = "REPRODUCED", "NOT REPRODUCED", "INCONCLUSIVE"
CONFIDENCE = 0.95
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def t_quantile(seeds: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t quantile for a mean over `seeds` values."""
    from scipy import stats

    return float(stats.t.ppf((1 + confidence) / 2, seeds - 1))


def mean_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean over seeds and its two-sided Student-t interval.

    With one seed the interval is unbounded; a NaN among the values makes all three NaN:
    no value is dropped silently.
    """
    values = np.asarray(list(values), dtype=float)
    mean = float(values.mean()) if values.size else float("nan")
    if values.size < 2 or np.isnan(mean):
        return mean, (-np.inf if values.size == 1 else mean), (np.inf if values.size == 1 else mean)
    half = t_quantile(values.size, confidence) * values.std(ddof=1) / np.sqrt(values.size)
    return mean, float(mean - half), float(mean + half)


@dataclass(frozen=True)
class Rule:
    """A key statistic against its threshold, of one kind.

    `low` and `high` bound the statistic's 95% interval over `seeds` seeds. A rule whose
    number is exact by construction (a count, a float64 gradient check) leaves them None
    and says so in its name. A NaN anywhere is no measurement, and fails.
    """

    name: str
    measured: float
    op: str
    threshold: float
    note: str = ""  # e.g. "5 seeds; median 0.557, range 0.551 to 0.563"
    low: float | None = None
    high: float | None = None
    seeds: int | None = None  # how many per-seed values the interval is over
    kind: str = field(kw_only=True)
    slide: str = field(default="", kw_only=True)  # a lecture rule's slide
    # An exact rule's statistic may move by this much on another machine (verify.py).
    tolerance: float = field(default=0.0, kw_only=True)

    def __post_init__(self):
        if self.op not in _OPS:
            raise ValueError(f"unknown comparison {self.op!r}")
        if self.kind not in KINDS:
            raise ValueError(f"a rule's kind is one of {KINDS}, not {self.kind!r}")
        if self.kind == LECTURE and not self.slide:
            raise ValueError(f"lecture rule {self.name!r} must name its slide")
        if (self.low is None) != (self.high is None):
            raise ValueError("give both ends of the interval or neither")
        for name in ("measured", "threshold", "low", "high", "tolerance"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def over_seeds(cls, name: str, values, op: str, threshold: float, note: str = "", **kind):
        """The rule on the mean of per-seed values, with its t-interval."""
        values = list(values)
        mean, low, high = mean_interval(values)
        described = f"{len(values)} seeds; {spread(values)}"
        note = f"{described}; {note}" if note else described
        return cls(name, mean, op, threshold, note, low, high, len(values), **kind)

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
    def reason(self) -> str:
        return "no measurement" if np.isnan([self.measured, *self.interval]).any() else ""

    def describe(self) -> str:
        shown = "exact" if self.exact else f"95% CI [{self.low:.4g}, {self.high:.4g}]"
        text = f"[{self.kind}] {self.name}: {self.measured:.4g} ({shown}) {self.op} "
        text += f"{self.threshold:.4g}"
        return f"{text}: {self.reason}" if self.reason else text


@dataclass(frozen=True)
class Verdict:
    """A claim's rules and the verdict they give: the lecture rules decide, unless a
    check has failed, which means the experiment is broken. `untested` says why the
    experiment could not test the claim this time (a premise it needs did not hold): the
    verdict is then INCONCLUSIVE, whatever the lecture rules say, unless a check failed."""

    claim: str
    rules: tuple[Rule, ...]
    untested: str = ""

    def __post_init__(self):
        if not any(rule.kind == LECTURE for rule in self.rules):
            raise ValueError(f"{self.claim}: a verdict needs at least one lecture rule")

    def of_kind(self, kind: str) -> list[Rule]:
        return [rule for rule in self.rules if rule.kind == kind]

    @property
    def label(self) -> str:
        checks = {rule.outcome for rule in self.of_kind(CHECK)}
        lecture = {rule.outcome for rule in self.of_kind(LECTURE)}
        if FAIL in checks or (FAIL in lecture and not self.untested):
            return NOT_REPRODUCED
        if self.untested or INCONCLUSIVE in checks | lecture:
            return UNDECIDED
        return REPRODUCED

    @property
    def reason(self) -> str:
        """Why the verdict is what it is, in a line."""
        failed_checks = [r for r in self.of_kind(CHECK) if r.outcome == FAIL]
        if failed_checks:
            return f"the experiment is broken: check failed: {failed_checks[0].name}"
        if self.untested:
            return f"not tested: {self.untested}"
        lecture = self.of_kind(LECTURE)
        counts = {o: sum(r.outcome == o for r in lecture) for o in (PASS, FAIL, INCONCLUSIVE)}
        shown = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
        return f"lecture rules: {shown}"

    @property
    def reproduced(self) -> bool:
        return self.label == REPRODUCED

    def describe(self) -> str:
        lines = [f"{self.claim}: {self.label} ({self.reason})"]
        lines += [f"  [{r.outcome}] {r.describe()}  ({r.note})" for r in self.rules]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "claim": self.claim,
            "verdict": self.label,
            "reason": self.reason,
            "rules": [
                dataclasses.asdict(r) | {"outcome": r.outcome, "reason": r.reason}
                for r in self.rules
            ],
        }


def deciding_rule(rules: list[dict]) -> dict:
    """The rule a reader should see first: a failing check, else the first failing, else
    inconclusive, else passing lecture rule."""
    for kinds, outcome in (((CHECK,), FAIL), ((LECTURE,), FAIL), ((LECTURE, CHECK), INCONCLUSIVE)):
        for rule in rules:
            if rule["kind"] in kinds and rule["outcome"] == outcome:
                return rule
    return next(rule for rule in rules if rule["kind"] == LECTURE)


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
