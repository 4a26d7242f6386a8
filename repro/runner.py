"""Running one claim end to end: its seeds and settings from the command line, then run,
judge and plot it into a scratch directory that replaces the old results only when done."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from repro import UsageError, backend
from repro.records import provenance, write_json
from repro.rules import Verdict

# Seeds have one job each. Development seeds (100-199, --seeds) are for pilots and design;
# a claim's verdict seeds (its profile's SEEDS) are fixed before its full run; the verdict
# seeds shifted by 1000 (--seed-offset 1000) run only once a design is frozen, and never
# change it.


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
    if offset < 0:
        raise UsageError(f"--seed-offset must be non-negative, got {offset}")
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


def runs_here(claim) -> None:
    """Refuse, in one line, a claim about TensorFlow itself on another backend."""
    backends = getattr(claim, "BACKENDS", backend.BACKENDS)
    if backend.name() not in backends:
        raise UsageError(
            f"{claim.CLAIM_ID} runs on {', '.join(backends)} only, not on KERAS_BACKEND="
            f"{backend.name()}: it is about TensorFlow itself"
        )


def leftover_scratch(out_root: Path, claim_id: str = "*") -> list[Path]:
    """Scratch directories that a killed run left behind (`.<claim>.XXXX`)."""
    return sorted(p for p in Path(out_root).glob(f".{claim_id}.*") if p.is_dir())


def run_claim(claim, profile: str, seeds: tuple[int, ...], out_root: Path, config=None) -> Verdict:
    """Run, judge and plot one claim into a scratch directory, then swap it into place.

    The claim's directory therefore holds either the previous complete run or the new
    complete run, never a mixture; the verdict is computed from the CSVs as written.
    """
    runs_here(claim)
    config = config or claim.PROFILES[profile]
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
        record = provenance(claim, profile, seeds, dataclasses.asdict(config), started)
        write_json(scratch / "provenance.json", record)
        old = final.with_name(f".{claim.CLAIM_ID}.old")
        if final.exists():
            os.replace(final, old)
        os.replace(scratch, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return verdict
