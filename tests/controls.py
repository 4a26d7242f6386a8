"""Negative controls for lecture rules, built with a claim's own per-seed spread.

A control is a synthetic table in the claim's own format whose per-seed numbers carry
realistic seed noise: the spread the claim measured (recovered from the committed
results' 95% interval), or its pilot's where the committed results predate the rule.
A zero-noise table proves nothing: its interval is a point.

For every lecture rule, two controls:
- a null effect (the statistic sits at its threshold: centre the noise so that the seeds'
  mean is the threshold, or a null passes one draw in forty by chance) must not pass;
- a clearly reversed or absent effect, at the full profile's seed count, must fail the
  rule, and the claim must then be NOT REPRODUCED.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from repro.rules import FAIL, NOT_REPRODUCED, PASS, t_quantile

COMMITTED = Path(__file__).resolve().parent.parent / "results"
DRAWS = 5  # independent noisy tables per control


def measured_spread(claim_id: str, rule_name: str, pilot: float) -> float:
    """The per-seed standard deviation of a rule's statistic in the committed results, or
    `pilot` (the spread a pilot measured) if they do not hold the rule yet."""
    path = COMMITTED / claim_id / "verdict.json"
    if path.exists():
        for rule in json.loads(path.read_text())["rules"]:
            if rule["name"] == rule_name and rule.get("seeds") and rule["low"] is not None:
                half = (rule["high"] - rule["low"]) / 2
                return half / t_quantile(rule["seeds"]) * np.sqrt(rule["seeds"])
    return pilot


def rule_outcome(claim, out_dir: Path, rule_name: str) -> tuple[str, str]:
    """(the named rule's outcome, the verdict) recomputed from the tables in out_dir."""
    verdict = claim.verdict(out_dir)
    (rule,) = [r for r in verdict.rules if r.name == rule_name]
    return rule.outcome, verdict.label


def assert_controls(claim, write_tables, rule_name: str, tmp_path: Path) -> None:
    """`write_tables(out_dir, effect, rng)` writes the claim's tables for effect "null" or
    "reversed", with seed noise drawn from rng, for the full profile's seeds."""
    for draw in range(DRAWS):
        for effect in ("null", "reversed"):
            out_dir = tmp_path / f"{effect}-{draw}"
            out_dir.mkdir(parents=True)
            write_tables(out_dir, effect, np.random.default_rng(draw))
            outcome, label = rule_outcome(claim, out_dir, rule_name)
            if effect == "null":
                assert outcome != PASS, f"null control {draw} passed {rule_name!r}"
            else:
                assert (outcome, label) == (FAIL, NOT_REPRODUCED), (
                    f"reversed control {draw}: {rule_name!r} {outcome}, verdict {label}"
                )
