"""What a grader runs: verify results/ from the files alone, without training anything."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from repro import claims
from repro.harness import read_csv, write_text

MANIFEST = "MANIFEST.sha256"
TOP_LEVEL_FILES = ("README.md", "report.html", "bench.csv", MANIFEST)
CLAIM_RECORDS = ("verdict.json", "provenance.json")


def expected_files(claim) -> list[str]:
    """Every file a claim's run leaves in its directory."""
    return [*claim.TABLES, *claim.FIGURES, *getattr(claim, "EXTRA_FILES", ()), *CLAIM_RECORDS]


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


def _valid_png(path: Path) -> bool:
    from PIL import Image

    try:
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
    for name in claim.FIGURES:
        if not _valid_png(out_dir / name):
            problems.append(f"{claim.CLAIM_ID}/{name}: missing or not a valid PNG")
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
    if recomputed != recorded:
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
    problems += check_manifest(root)
    return rows, problems
