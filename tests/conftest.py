"""Shared fixtures: each claim's quick profile, run at most once per test session."""

import shutil

import pytest

from repro import claims
from repro.report import write_report
from repro.runner import run_claim


def pytest_configure(config):
    # Deprecations inside keras-tuner (threading names) and Keras (NumPy 2's copy keyword)
    # that this package can neither cause nor fix.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:keras_tuner")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:keras.src.backend")
    config.addinivalue_line(
        "markers",
        "portability: guards results across machines; CI reruns these under the other "
        "kernel choice (TF_ENABLE_ONEDNN_OPTS=1)",
    )
    config.addinivalue_line(
        "markers", "backends: runs on either Keras backend; CI reruns these on JAX"
    )


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """quick_run(claim_id) -> the claim's quick-profile results directory, run on first use.
    The tuning claim's searches go to a directory of the session, not ./tuner-work."""
    root = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_TUNER_WORK", str(tmp_path_factory.mktemp("tuner-work")))
        yield runner_for(root)


def runner_for(root):
    """run(claim_id): the claim's quick run in root, made once."""

    def run(claim_id: str):
        if not (root / claim_id / "verdict.json").exists():
            claim = claims.get(claim_id)
            run_claim(claim, "quick", tuple(claim.SEEDS["quick"]), root)
        return root / claim_id

    run.root = root
    return run


@pytest.fixture(scope="session")
def quick_results(quick_run):
    """A results directory holding every registered claim's quick run and the report."""
    for claim_id in claims.claim_ids():
        quick_run(claim_id)
    write_report(quick_run.root)
    return quick_run.root


@pytest.fixture
def results_copy(quick_results, tmp_path):
    """A private copy of the quick results that a test may damage."""
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    return copy
