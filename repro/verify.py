"""Compare a regenerated results directory with the committed one, and tabulate robustness.

Which comparison is fair depends on where the new results were made:
- on the same machine (same CPU model, architecture, package versions and numerics
  settings, such as oneDNN on or off, in provenance),
  the same command must write the same bytes, so every CSV must be byte-identical;
- on another machine, floating-point libraries round differently in the last bits, and
  training amplifies such differences until curves differ by percents. What must agree
  there is what the results claim: every verdict, and each rule's key statistic inside
  the committed 95% interval (exact rules: the same outcome).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from repro import claims
from repro.harness import UsageError

SAME_MACHINE = (
    "bytes (same CPU, package versions and numerics settings: the CSVs must be identical)"
)
OTHER_MACHINE = (
    "verdicts and each rule's statistic within the committed 95% interval (another CPU, "
    "package versions or numerics settings: training amplifies last-bit rounding "
    "differences, so bytes cannot match)"
)


def _record(root: Path, claim, name: str) -> dict | None:
    path = root / claim.CLAIM_ID / name
    return json.loads(path.read_text()) if path.exists() else None


def _platform(provenance: dict | None):
    return provenance and tuple(provenance.get(k) for k in ("machine", "versions", "numerics"))


def same_machine(new: Path, old: Path) -> bool:
    """Whether every claim of both directories ran on the same CPU with the same packages
    and numerics settings."""
    pairs = [
        (_record(new, c, "provenance.json"), _record(old, c, "provenance.json"))
        for c in claims.all_claims()
    ]
    pairs = [(a, b) for a, b in pairs if a and b]
    return bool(pairs) and all(
        _platform(a) == _platform(b) and a.get("machine") is not None for a, b in pairs
    )


def _statistic_rows(claim, new_verdict: dict, old_verdict: dict):
    """(row, ok) per rule: the new statistic inside the old interval, or the same outcome."""
    old_rules = {r["name"]: r for r in old_verdict["rules"]}
    for rule in new_verdict["rules"]:
        old = old_rules.get(rule["name"])
        if old is None:
            yield (claim.CLAIM_ID, rule["name"], "NEW RULE", ""), False
        elif old["low"] is None:
            same = rule["outcome"] == old["outcome"]
            status = "same outcome (exact rule)" if same else "OUTCOME CHANGED"
            yield (claim.CLAIM_ID, rule["name"], status, f"{rule['measured']:.4g}"), same
        else:
            no_measurement = math.isnan(rule["measured"]) and math.isnan(old["measured"])
            inside = no_measurement or old["low"] <= rule["measured"] <= old["high"]
            detail = f"{rule['measured']:.4g} in [{old['low']:.4g}, {old['high']:.4g}]"
            yield (
                (claim.CLAIM_ID, rule["name"], "inside" if inside else "OUTSIDE", detail),
                inside,
            )


def compare(new: Path, old: Path, verdicts_only: bool = False):
    """Rows (claim, what, status, detail), whether everything matched, and the comparison made."""
    bytewise = same_machine(new, old)
    rows, ok = [], True
    for claim in claims.all_claims():
        new_verdict, old_verdict = (
            _record(new, claim, "verdict.json"),
            _record(old, claim, "verdict.json"),
        )
        if new_verdict is None or old_verdict is None:
            rows.append((claim.CLAIM_ID, "verdict", "MISSING", ""))
            ok = False
            continue
        same = new_verdict["verdict"] == old_verdict["verdict"]
        change = f"CHANGED: {old_verdict['verdict']} -> {new_verdict['verdict']}"
        rows.append((claim.CLAIM_ID, "verdict", "same" if same else change, new_verdict["verdict"]))
        ok &= same
        if verdicts_only:
            continue
        if not bytewise:
            for row, matched in _statistic_rows(claim, new_verdict, old_verdict):
                rows.append(row)
                ok &= matched
            continue
        for name in claim.TABLES:
            a, b = new / claim.CLAIM_ID / name, old / claim.CLAIM_ID / name
            identical = a.exists() and b.exists() and a.read_bytes() == b.read_bytes()
            rows.append((claim.CLAIM_ID, name, "identical" if identical else "DIFFERENT", ""))
            ok &= identical
    return rows, ok, SAME_MACHINE if bytewise else OTHER_MACHINE


ROBUSTNESS_COLUMNS = (
    "claim",
    "rule",
    "seed_set",
    "seeds",
    "verdict",
    "statistic",
    "low",
    "high",
    "outcome",
)


def robustness(default: Path, shifted: Path) -> pd.DataFrame:
    """One row per claim, rule and seed set: the statistic, its interval and the outcome,
    on the profile's seeds (default) and on as many seeds nobody chose (shifted)."""
    from repro.report import seed_text

    rows = []
    for claim in claims.all_claims():
        for seed_set, root in (("default", default), ("shifted", shifted)):
            verdict = _record(root, claim, "verdict.json")
            provenance = _record(root, claim, "provenance.json")
            if verdict is None or provenance is None:
                raise UsageError(f"{root}/{claim.CLAIM_ID}/: no complete run of the claim")
            for rule in verdict["rules"]:
                rows.append(
                    {
                        "claim": claim.CLAIM_ID,
                        "rule": rule["name"],
                        "seed_set": seed_set,
                        "seeds": seed_text(provenance["seeds"]),
                        "verdict": verdict["verdict"],
                        "statistic": rule["measured"],
                        "low": rule["low"],
                        "high": rule["high"],
                        "outcome": rule["outcome"],
                    }
                )
    return pd.DataFrame(rows, columns=ROBUSTNESS_COLUMNS)


ROBUSTNESS = "robustness.csv"
