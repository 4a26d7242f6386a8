"""Shared fixtures: the quick profile of every claim, run once per test session."""

import shutil

import pytest

from repro import claims
from repro.harness import run_claim
from repro.report import write_report


def pytest_configure(config):
    # Deprecations inside keras-tuner (threading names) and Keras (NumPy 2's copy keyword)
    # that this package can neither cause nor fix.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:keras_tuner")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:keras.src.backend")
    # Silenced for users in repro.models too; pytest resets warning filters for each test.
    config.addinivalue_line("filterwarnings", "ignore:`shuffle=True` was passed:UserWarning")


@pytest.fixture(scope="session")
def quick_results(tmp_path_factory):
    """A results directory holding every registered claim's quick run and the report."""
    root = tmp_path_factory.mktemp("results")
    for claim in claims.all_claims():
        run_claim(claim, "quick", tuple(claim.SEEDS["quick"]), root)
    write_report(root)
    return root


@pytest.fixture
def results_copy(quick_results, tmp_path):
    """A private copy of the quick results that a test may damage."""
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    return copy
