"""The registry: every module in this package is a claim, keyed by its CLAIM_ID.

A claim module defines CLAIM_ID, SLIDE, STATEMENT, a frozen `Config` dataclass,
PROFILES ({"quick": Config, "full": Config}), SEEDS ({"quick": seeds, "full": seeds}),
TABLES ({csv name: required columns}), FIGURES (png names), and the functions
`run(config, seeds, out_dir)`, `verdict(out_dir) -> Verdict` and `plot(out_dir)`.
Adding a claim is adding a module.
"""

import importlib
import pkgutil

from repro import UsageError

MODULES = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def _load(name):
    return importlib.import_module(f"{__name__}.{name}")


def claim_ids() -> list[str]:
    """Ids without importing the modules: a claim's id is its module name with dashes."""
    return [name.replace("_", "-") for name in MODULES]


def get(claim_id: str):
    if claim_id not in claim_ids():
        raise UsageError(f"unknown claim {claim_id!r}; known claims: {', '.join(claim_ids())}")
    module = _load(claim_id.replace("-", "_"))
    assert module.CLAIM_ID == claim_id, f"{module.__name__} must declare CLAIM_ID={claim_id!r}"
    return module


def all_claims():
    return [get(claim_id) for claim_id in claim_ids()]
