"""What a run writes, and how: atomic files, tidy CSVs, progress bars, and the provenance
record that says which code, settings and machine made a result."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

from repro import NUMERICS_ENVIRONMENT

PACKAGE = Path(__file__).resolve().parent

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


def progress(iterable, desc: str, **kwargs):
    """A progress bar on stderr, silent when stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=None, **kwargs)


# ------------------------------------------------------------------------ provenance

PACKAGES = (
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "jax",
    "jaxlib",
    "keras-tuner",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "scikit-learn",
    "mnist1d",
)

# The shared modules every claim's numbers depend on besides its own (the Makefile's
# CLAIM_DEPS lists the same files; a test keeps the two equal).
CORE_MODULES = (
    "__init__.py",
    "backend.py",
    "data.py",
    "figures.py",
    "models.py",
    "records.py",
    "rules.py",
)

# CPU features that decide which kernels TensorFlow, oneDNN, Eigen and XLA pick, and so
# how results round. Two machines that differ in any of them may differ in the last bits.
KERNEL_FEATURES = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512dq",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",  # Arm's vector unit
    "sve",
)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def machine() -> dict:
    """What decides whether two runs may agree to the byte, as far as the CPU goes: its
    architecture, model name and the instruction-set features that select kernels."""
    cpu, flags = platform.processor(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu in ("", platform.machine()):
                cpu = value.strip()
            if key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    return {
        "architecture": platform.machine(),
        "cpu": cpu,
        "kernel_features": [f for f in KERNEL_FEATURES if f in flags],
    }


def numerics() -> dict:
    """The settings in force that choose kernels and threads (repro/__init__.py sets them)."""
    return {name: os.environ.get(name) for name in NUMERICS_ENVIRONMENT}


def identity(provenance: dict) -> str:
    """What must match for two results to be compared byte for byte: the CPU's kernel
    features, the numerics settings and the versions of the packages that computed them
    (JAX's only where it was the backend: installing it changes no TensorFlow number)."""
    numbers = provenance.get("numerics") or {}
    packages = dict(provenance.get("versions") or {})
    if numbers.get("KERAS_BACKEND") != "jax":
        packages.pop("jax", None), packages.pop("jaxlib", None)
    return json.dumps([provenance.get("machine"), packages, numbers], sort_keys=True)


def identity_digest(provenance: dict) -> str:
    """A short name for a run's identity, for tables that hold runs of several machines."""
    return hashlib.sha256(identity(provenance).encode()).hexdigest()[:12]


def code_text(path: Path) -> bytes:
    """A module's code without its docstrings, comments and layout: what it computes.

    Editing a module's prose then keeps the results (and tuner searches) it made.
    """
    tree = ast.parse(Path(path).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def code_digest(paths) -> str:
    """A short digest of what the given modules compute (see `code_text`)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(code_text(path))
    return digest.hexdigest()[:12]


def claim_code(claim) -> list[Path]:
    """The claim's module, the core modules its numbers depend on, and every other module
    of the package the claim imports, at its top or inside a function (repro/allocator.py,
    repro/search.py)."""
    core = [PACKAGE / name for name in CORE_MODULES]
    used = set()
    for node in ast.walk(ast.parse(Path(claim.__file__).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("repro"):
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            path = PACKAGE / f"{name.removeprefix('repro.')}.py"
            if name.startswith("repro.") and path.exists():
                used.add(path)
    return [Path(claim.__file__), *core, *sorted(used - set(core))]


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=PACKAGE, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(claim, profile: str, seeds, config: dict, started: float) -> dict:
    """Everything needed to tell how, where and from which code a claim's results came."""
    return {
        "claim": claim.CLAIM_ID,
        "profile": profile,
        "seeds": list(seeds),
        "config": config,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "module": f"repro/claims/{Path(claim.__file__).name}",
        "code_digest": code_digest(claim_code(claim)),
        "git_commit": git_commit(),
        "versions": versions(),
        "machine": machine(),
        "numerics": numerics(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 2),
    }
