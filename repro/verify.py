"""Compare results made elsewhere (another machine, another run, other seeds) with the
committed ones, and tabulate robustness.

Which comparison is fair depends on where the new results were made. Two runs are on "the
same machine" when their provenance has the same identity (records.identity: the CPU's
kernel-selecting instruction-set features, the numerics settings and package versions):
the same command must then write the same bytes. Anywhere else floating-point libraries
round differently in the last bits, training amplifies that until curves differ by
percents, and a rerun is in effect a new sample of seeds. What must agree there is what
the results claim:
- every verdict, and every rule's outcome;
- each rule's statistic within the acceptance region of a two-sample test: Welch's t-test
  of the two means, each with its standard error recovered from its 95% interval, at a
  family-wise 5% per claim (Bonferroni over the claim's rules with intervals). Requiring
  the new statistic inside the old 95% interval instead would raise false alarms on about
  one rule in six by chance alone; a test simulates reruns to keep this under 5% a claim;
- an exact rule (no interval) within its stated tolerance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from repro import UsageError, claims
from repro.check import ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE
from repro.records import identity, identity_digest
from repro.rules import CONFIDENCE, t_quantile

SAME_MACHINE = "bytes (same machine: CPU features, package versions and numerics settings)"
OTHER_MACHINE = (
    "statistics (another machine: every verdict and rule outcome the same, each statistic "
    "within a two-sample test's acceptance region at 5% per claim, exact rules within "
    "their tolerance)"
)


def record(root: Path, claim_id: str, name: str) -> dict | None:
    path = root / claim_id / name
    return json.loads(path.read_text()) if path.exists() else None


def same_machine(new: Path, old: Path) -> bool:
    """Whether every claim of both directories ran with the same identity."""
    pairs = [
        (record(new, c, "provenance.json"), record(old, c, "provenance.json"))
        for c in claims.claim_ids()
    ]
    pairs = [(a, b) for a, b in pairs if a and b]
    return bool(pairs) and all(identity(a) == identity(b) for a, b in pairs)


def standard_error(rule: dict) -> float:
    """The standard error of a rule's mean, recovered from its 95% t-interval."""
    return (rule["high"] - rule["low"]) / 2 / t_quantile(rule["seeds"])


def welch_limit(old: dict, new: dict, tests: int) -> float:
    """The largest |new - old| that Welch's test accepts at 5% / `tests` (two-sided)."""
    if min(old["seeds"], new["seeds"]) < 2:
        return math.inf  # one seed has no spread to test against: nothing to compare
    se_old, se_new = standard_error(old), standard_error(new)
    variance = se_old**2 + se_new**2
    if variance == 0:
        return 0.0
    # Welch-Satterthwaite degrees of freedom
    df = variance**2 / (se_old**4 / (old["seeds"] - 1) + se_new**4 / (new["seeds"] - 1))
    from scipy import stats

    alpha = (1 - CONFIDENCE) / tests
    return float(stats.t.ppf(1 - alpha / 2, df) * math.sqrt(variance))


def statistic_agrees(old: dict, new: dict, tests: int) -> tuple[bool, str]:
    """(whether `new` is an acceptable rerun of `old`, a line saying why)."""
    if math.isnan(old["measured"]) or math.isnan(new["measured"]):
        both = math.isnan(old["measured"]) and math.isnan(new["measured"])
        return both, "no measurement in both" if both else "NaN in one run only"
    difference = new["measured"] - old["measured"]
    if old["low"] is None or new["low"] is None:
        # With no stated tolerance, equal but for the rounding `repro check` allows.
        rounding = max(RELATIVE_TOLERANCE * abs(old["measured"]), ABSOLUTE_TOLERANCE)
        limit = max(old.get("tolerance", 0.0), rounding)
        return abs(difference) <= limit, f"{difference:+.3g} (exact rule, tolerance {limit:.3g})"
    limit = welch_limit(old, new, tests)
    return abs(difference) <= limit, f"{difference:+.3g} (Welch limit {limit:.3g})"


def compare_claim(claim_id: str, old: dict, new: dict, bytewise: bool):
    """Rows (claim, what, status, detail) and whether all agree, for one claim's verdicts."""
    rows, ok = [], old["verdict"] == new["verdict"]
    change = f"CHANGED: {old['verdict']} -> {new['verdict']}"
    rows.append((claim_id, "verdict", "same" if ok else change, new["verdict"]))
    if bytewise:
        return rows, ok
    old_rules = {r["name"]: r for r in old["rules"]}
    tests = max(1, sum(r["low"] is not None for r in old["rules"]))
    for rule in new["rules"]:
        before = old_rules.get(rule["name"])
        if before is None:
            rows.append((claim_id, rule["name"], "NEW RULE", ""))
            ok = False
            continue
        agrees, detail = statistic_agrees(before, rule, tests)
        same_outcome = before["outcome"] == rule["outcome"]
        status = "OUTSIDE" if not agrees else "agrees" if same_outcome else "OUTCOME CHANGED"
        rows.append((claim_id, rule["name"], status, detail))
        ok &= agrees and same_outcome
    return rows, ok


def compare(new: Path, old: Path, verdicts_only: bool = False):
    """Rows (claim, what, status, detail), whether everything matched, and the comparison made."""
    bytewise = same_machine(new, old)
    rows, ok = [], True
    for claim in claims.all_claims():
        new_verdict = record(new, claim.CLAIM_ID, "verdict.json")
        old_verdict = record(old, claim.CLAIM_ID, "verdict.json")
        if new_verdict is None or old_verdict is None:
            rows.append((claim.CLAIM_ID, "verdict", "MISSING", ""))
            ok = False
            continue
        if verdicts_only:
            same = new_verdict["verdict"] == old_verdict["verdict"]
            rows.append((claim.CLAIM_ID, "verdict", "same" if same else "CHANGED", ""))
            ok &= same
            continue
        claim_rows, claim_ok = compare_claim(claim.CLAIM_ID, old_verdict, new_verdict, bytewise)
        rows += claim_rows
        ok &= claim_ok
        if bytewise:
            for name in claim.TABLES:
                a, b = new / claim.CLAIM_ID / name, old / claim.CLAIM_ID / name
                identical = a.exists() and b.exists() and a.read_bytes() == b.read_bytes()
                rows.append((claim.CLAIM_ID, name, "identical" if identical else "DIFFERENT", ""))
                ok &= identical
    return rows, ok, SAME_MACHINE if bytewise else OTHER_MACHINE


# ------------------------------------------------------- robustness and backends

ROBUSTNESS, BACKENDS = "robustness.csv", "backends.csv"
RULE_COLUMNS = (
    "claim",
    "rule",
    "kind",
    "seeds",
    "verdict",
    "statistic",
    "low",
    "high",
    "seed_count",
    "tolerance",
    "outcome",
    "identity",
)


def rule_table(column: str, runs: dict[str, Path], claim_ids=None) -> pd.DataFrame:
    """One row per claim, rule and run: the statistic, its interval, its kind and the
    outcome, each run labelled in `column` (e.g. seed_set: default and shifted)."""
    from repro.report import seed_text

    rows = []
    for claim_id in claim_ids or claims.claim_ids():
        for label, root in runs.items():
            verdict = record(root, claim_id, "verdict.json")
            provenance = record(root, claim_id, "provenance.json")
            if verdict is None or provenance is None:
                raise UsageError(f"{root}/{claim_id}/: no complete run of the claim")
            machine = identity_digest(provenance)
            for rule in verdict["rules"]:
                rows.append(
                    {
                        "claim": claim_id,
                        "rule": rule["name"],
                        "kind": rule["kind"],
                        column: label,
                        "seeds": seed_text(provenance["seeds"]),
                        "verdict": verdict["verdict"],
                        "statistic": rule["measured"],
                        "low": rule["low"],
                        "high": rule["high"],
                        "seed_count": rule["seeds"],
                        "tolerance": rule["tolerance"],
                        "outcome": rule["outcome"],
                        "identity": machine,
                    }
                )
    columns = [*RULE_COLUMNS[:3], column, *RULE_COLUMNS[3:]]
    return pd.DataFrame(rows, columns=columns)


def robustness(default: Path, shifted: Path) -> pd.DataFrame:
    """Every rule on the profile's seeds (default) and on as many seeds shifted by 1000,
    which no design was decided on (shifted)."""
    return rule_table("seed_set", {"default": default, "shifted": shifted})


def backends(tensorflow: Path, jax: Path) -> pd.DataFrame:
    """Every rule of every claim that runs on both backends, on TensorFlow and on JAX."""
    both = [c.CLAIM_ID for c in claims.all_claims() if "jax" in getattr(c, "BACKENDS", "jax")]
    return rule_table("backend", {"tensorflow": tensorflow, "jax": jax}, both)


def table_rules(rows: pd.DataFrame) -> list[dict]:
    """Rows of a rule table as rule records, as verdict.json holds them."""
    return [
        {
            "name": r.rule,
            "kind": r.kind,
            "measured": r.statistic,
            "low": None if pd.isna(r.low) else r.low,  # empty for an exact rule
            "high": None if pd.isna(r.high) else r.high,
            "seeds": None if pd.isna(r.seed_count) else int(r.seed_count),
            "tolerance": r.tolerance,
            "outcome": r.outcome,
        }
        for r in rows.itertuples()
    ]
