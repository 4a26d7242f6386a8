"""What a grader runs: verify results/ from the files alone, without training anything."""

from __future__ import annotations

import hashlib
import json
import math
import re
from decimal import Decimal
from pathlib import Path

from repro import claims
from repro.figures import twins
from repro.records import identity_digest, read_csv, write_text

MANIFEST = "MANIFEST.sha256"
TOP_LEVEL_FILES = (
    "README.md",
    "report.html",
    "bench.csv",
    "robustness.csv",
    "backends.csv",
    MANIFEST,
)
CLAIM_RECORDS = ("verdict.json", "provenance.json")


def expected_files(claim) -> list[str]:
    """Every file a claim's run leaves in its directory."""
    extra = getattr(claim, "EXTRA_FILES", ())
    return [*claim.TABLES, *twins(claim.FIGURES), *extra, *CLAIM_RECORDS]


# Recomputed numbers must agree with the recorded ones to this relative tolerance. The same
# CSVs reduced on another CPU (other SIMD widths, other summation orders) differ in the last
# bits: a float64 sum of n terms moves by at most about n * 1.1e-16, under 1e-10 for the
# tables here, while any edit that could matter to a verdict moves a number far more.
RELATIVE_TOLERANCE = 1e-9
ABSOLUTE_TOLERANCE = 1e-12  # for statistics that are zero up to rounding


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _same_text(recorded: str, recomputed: str) -> bool:
    """Equal text, except that a rounded number printed in it (in a rule's name or note) may
    differ by one unit in its last printed digit, since a last-bit difference can round
    either way. Integers, such as counts of seeds, must be equal."""
    if recorded == recomputed:
        return True
    if _NUMBER.split(recorded) != _NUMBER.split(recomputed):
        return False
    for a, b in zip(_NUMBER.findall(recorded), _NUMBER.findall(recomputed), strict=True):
        if a == b:
            continue
        if not any(c in a + b for c in ".eE"):
            if Decimal(a) != Decimal(b):  # integers, such as counts, are exact (-0 is 0)
                return False
            continue
        unit = max(10 ** Decimal(a).as_tuple().exponent, 10 ** Decimal(b).as_tuple().exponent)
        if abs(Decimal(a) - Decimal(b)) > unit:
            return False
    return True


# A rule's note describes the spread over seeds for a reader (e.g. how many seeds sit on
# the passing side of a number they may equal exactly); the rule is decided by its
# statistic, interval and threshold, so the note is shown but not compared.
NOT_COMPARED = ("note",)


def same_record(recorded, recomputed) -> bool:
    """Equal verdict records: labels exactly, numbers within the tolerance, printed numbers
    to their last digit, and a NaN (no measurement) equal to a NaN. Notes are not compared."""
    if isinstance(recorded, str) and isinstance(recomputed, str):
        return _same_text(recorded, recomputed)
    if isinstance(recorded, dict) and isinstance(recomputed, dict):
        return recorded.keys() == recomputed.keys() and all(
            same_record(recorded[k], recomputed[k]) for k in recorded if k not in NOT_COMPARED
        )
    if isinstance(recorded, list) and isinstance(recomputed, list):
        return len(recorded) == len(recomputed) and all(map(same_record, recorded, recomputed))
    numbers = (int, float)
    if (
        isinstance(recorded, numbers)
        and isinstance(recomputed, numbers)
        and not isinstance(recorded, bool)
        and not isinstance(recomputed, bool)
    ):
        if math.isnan(recorded) or math.isnan(recomputed):
            return math.isnan(recorded) and math.isnan(recomputed)
        return math.isclose(
            recorded, recomputed, rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE
        )
    return recorded == recomputed


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def results_files(root: Path) -> list[str]:
    """Files under root, relative, skipping hidden scratch entries."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def write_manifest(root: Path) -> None:
    lines = [f"{sha256(root / name)}  {name}" for name in results_files(root) if name != MANIFEST]
    write_text(root / MANIFEST, "\n".join(lines) + "\n")


def check_manifest(root: Path) -> list[str]:
    path = root / MANIFEST
    if not path.exists():
        return [f"{MANIFEST}: missing (run `repro report` to write it)"]
    listed = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    problems = []
    present = set(results_files(root)) - {MANIFEST}
    for name in sorted(present - listed.keys()):
        problems.append(f"{name}: not listed in {MANIFEST}")
    for name, digest in sorted(listed.items()):
        if name not in present:
            problems.append(f"{name}: listed in {MANIFEST} but missing")
        elif sha256(root / name) != digest:
            problems.append(f"{name}: SHA-256 differs from {MANIFEST}")
    return problems


def valid_figure(path: Path) -> bool:
    """A PNG that decodes, or an SVG that parses as XML with an <svg> root."""
    try:
        if path.suffix == ".svg":
            import xml.etree.ElementTree as ElementTree

            return ElementTree.parse(path).getroot().tag.endswith("svg")
        from PIL import Image

        with Image.open(path) as image:
            image.verify()
            return image.format == "PNG"
    except Exception:  # any decoding failure means the file is not a usable figure
        return False


def check_claim(claim, root: Path) -> tuple[str, str, list[str]]:
    """Return (recorded verdict, recomputed verdict, problems) for one claim."""
    out_dir = root / claim.CLAIM_ID
    if not out_dir.is_dir():
        return "-", "-", [f"{claim.CLAIM_ID}/: missing (run `repro run {claim.CLAIM_ID}`)"]
    problems = []
    for name, columns in claim.TABLES.items():
        path = out_dir / name
        try:
            frame = read_csv(path)
        except Exception as err:  # missing, empty or unparsable: all are the same failure
            problems.append(f"{claim.CLAIM_ID}/{name}: unreadable ({type(err).__name__}: {err})")
            continue
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            problems.append(f"{claim.CLAIM_ID}/{name}: missing columns {missing}")
        elif frame.empty:
            problems.append(f"{claim.CLAIM_ID}/{name}: no rows")
    for name in twins(claim.FIGURES):
        if not valid_figure(out_dir / name):
            problems.append(f"{claim.CLAIM_ID}/{name}: missing or not a valid figure")
    for name in [*getattr(claim, "EXTRA_FILES", ()), "provenance.json"]:
        if not (out_dir / name).is_file():
            problems.append(f"{claim.CLAIM_ID}/{name}: missing")
    try:
        recorded = json.loads((out_dir / "verdict.json").read_text())
    except (OSError, ValueError) as err:
        return "-", "-", [*problems, f"{claim.CLAIM_ID}/verdict.json: unreadable ({err})"]
    if problems:
        return recorded.get("verdict", "-"), "-", problems
    try:
        recomputed = claim.verdict(out_dir).to_dict()
    except Exception as err:  # a verdict that cannot be recomputed is a failed check
        return (
            recorded.get("verdict", "-"),
            "-",
            [f"{claim.CLAIM_ID}: verdict could not be recomputed ({type(err).__name__}: {err})"],
        )
    if not same_record(recorded, recomputed):
        problems.append(
            f"{claim.CLAIM_ID}/verdict.json: differs from the verdict recomputed "
            f"from the CSVs ({recomputed['verdict']})"
        )
    return recorded.get("verdict", "-"), recomputed["verdict"], problems


def check(root: Path) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """Rows (claim, recorded, recomputed, status) and every problem found."""
    rows, problems = [], []
    known = set(TOP_LEVEL_FILES)
    for claim in claims.all_claims():
        recorded, recomputed, found = check_claim(claim, root)
        rows.append((claim.CLAIM_ID, recorded, recomputed, "ok" if not found else "FAIL"))
        problems += found
        known |= {f"{claim.CLAIM_ID}/{name}" for name in expected_files(claim)}
    if root.is_dir():
        problems += [
            f"{name}: not produced by any claim"
            for name in results_files(root)
            if name not in known
        ]
    everywhere = [c.CLAIM_ID for c in claims.all_claims()]
    on_jax = [c.CLAIM_ID for c in claims.all_claims() if "jax" in getattr(c, "BACKENDS", "jax")]
    problems += check_rule_table(root, "robustness.csv", "seed_set", "default", everywhere)
    problems += check_rule_table(root, "backends.csv", "backend", "tensorflow", on_jax)
    problems += check_manifest(root)
    return rows, problems


TABLE_TARGETS = {"robustness.csv": "fresh-seeds", "backends.csv": "backends"}


def check_rule_table(root: Path, name: str, column: str, current: str, expected) -> list[str]:
    """A table of every rule on two runs (robustness.csv, backends.csv), if present, must
    hold every `expected` claim and show, for its `current` run, the verdicts that
    results/ holds now.

    Those rows were made with the results of their time. Regenerated on the same machine
    (same identity), every number must be equal; regenerated elsewhere, the table is
    compared as `make verify` compares another machine's results: the same verdicts and
    rule outcomes, each statistic within the two-sample acceptance region.
    """
    from repro.verify import compare_claim, table_rules

    path = root / name
    if not path.exists():
        return []
    from repro.verify import RULE_COLUMNS

    target = TABLE_TARGETS[name]
    try:
        table = read_csv(path)
    except Exception as err:  # missing, empty or unparsable: all are the same failure
        return [f"{name}: unreadable ({type(err).__name__}: {err})"]
    missing = [c for c in (*RULE_COLUMNS, column) if c not in table.columns]
    if missing:
        return [f"{name}: missing columns {missing} (`make {target}`)"]
    rows_now = table[table[column] == current]
    problems = [
        f"{name}: no rows for {claim_id} (`make {target}`)"
        for claim_id in expected
        if claim_id not in set(table["claim"])
    ]
    for claim_id in sorted(set(table["claim"])):
        try:
            verdict = json.loads((root / claim_id / "verdict.json").read_text())
            provenance = json.loads((root / claim_id / "provenance.json").read_text())
        except (OSError, ValueError):
            problems.append(f"{name}: lists {claim_id}, which results/ does not hold")
            continue
        rows = rows_now[rows_now["claim"] == claim_id]
        shown = {"verdict": rows["verdict"].iloc[0], "rules": table_rules(rows)}
        if (rows["identity"] == identity_digest(provenance)).all():
            same = shown["verdict"] == verdict["verdict"] and same_record(
                [[r["name"], r["measured"], r["outcome"]] for r in shown["rules"]],
                [[r["name"], r["measured"], r["outcome"]] for r in verdict["rules"]],
            )
        else:
            same = compare_claim(claim_id, shown, verdict, bytewise=False)[1]
        if not same:
            problems.append(f"{name}: disagrees with {claim_id}'s verdict (`make {target}`)")
    return problems
