"""Compare a regenerated results directory with the committed one.

On the same machine the CSVs must be byte-identical. Across machines floating-point
libraries may round differently, so numbers must agree within RTOL/ATOL (relative and
absolute) and every verdict must be the same. A claim that measures the machine itself
(memory, time) declares VERIFY_RTOL = None: its numbers are shown, but only its verdict
has to match.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from repro import claims
from repro.harness import read_csv

RTOL, ATOL = 1e-4, 1e-6


def _verdict(root: Path, claim) -> str:
    path = root / claim.CLAIM_ID / "verdict.json"
    return json.loads(path.read_text())["verdict"] if path.exists() else "missing"


def compare_table(new: Path, old: Path, name: str, rtol: float = RTOL) -> tuple[str, float]:
    """('identical' | 'within tolerance' | 'DIFFERENT' | 'missing', max relative difference)."""
    a, b = new / name, old / name
    if not a.exists() or not b.exists():
        return "missing", float("nan")
    if a.read_bytes() == b.read_bytes():
        return "identical", 0.0
    x, y = read_csv(a), read_csv(b)
    if list(x.columns) != list(y.columns) or x.shape != y.shape:
        return "DIFFERENT", float("inf")
    numeric = x.select_dtypes("number").columns
    others = [c for c in x.columns if c not in numeric]
    if not x[others].equals(y[others]):
        return "DIFFERENT", float("inf")
    u, v = x[numeric].to_numpy(float), y[numeric].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(u == v, 0.0, np.abs(u - v) / np.maximum(np.abs(v), ATOL))
    worst = float(np.nanmax(relative)) if relative.size else 0.0
    close = np.allclose(u, v, rtol=rtol, atol=ATOL, equal_nan=True)
    return ("within tolerance" if close else "DIFFERENT"), worst


def compare(new: Path, old: Path, verdicts_only: bool = False):
    """Rows (claim, file, status, max relative difference) and whether everything matched."""
    rows, ok = [], True
    for claim in claims.all_claims():
        new_verdict, old_verdict = _verdict(new, claim), _verdict(old, claim)
        same = new_verdict == old_verdict != "missing"
        ok &= same
        rows.append(
            (
                claim.CLAIM_ID,
                "verdict",
                "same" if same else f"CHANGED: {old_verdict} -> {new_verdict}",
                "",
            )
        )
        if verdicts_only:
            continue
        for name in claim.TABLES:
            rtol = getattr(claim, "VERIFY_RTOL", RTOL)
            status, worst = compare_table(
                new / claim.CLAIM_ID, old / claim.CLAIM_ID, name, rtol or RTOL
            )
            if rtol is None and status == "DIFFERENT":
                status = "measured (not compared)"
            else:
                ok &= status in ("identical", "within tolerance")
            rows.append((claim.CLAIM_ID, name, status, f"{worst:.2g}"))
    return rows, ok
