"""The command line: bad input gives one line and exit status 2."""

import gc
import subprocess
import sys

import pytest

from repro import claims
from repro.cli import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "no-such-claim"], "unknown claim 'no-such-claim'"),
        (["run", "exploding-product", "--seeds", "5-2"], "bad seed range"),
        (["run", "exploding-product", "--set", "chains=1"], "chains >= 2"),
        (["run", "exploding-product", "--set", "colour=red"], "unknown setting"),
        (["run", "exploding-product", "--profile", "huge"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_console_script_reports_a_bad_claim_without_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "repro.cli", "run", "nope"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "repro: error: unknown claim 'nope'; known claims: "
        + ", ".join(__import__("repro.claims", fromlist=["claim_ids"]).claim_ids())
    )


def test_list_shows_every_claim(quick_results, capsys):
    from repro import claims

    assert main(["list", "--out", str(quick_results)]) == 0
    out = capsys.readouterr().out
    for claim_id in claims.claim_ids():
        assert claim_id in out


def test_claims_run_with_garbage_collection_on(tmp_path, monkeypatch):
    # `repro` pauses the collector while it imports; a claim's run turns it on again.
    claim, during_run = claims.get("no-free-lunch"), []
    run = claim.run
    monkeypatch.setattr(claim, "run", lambda *a: during_run.append(gc.isenabled()) or run(*a))
    assert main(["run", "no-free-lunch", "--profile", "quick", "--out", str(tmp_path)]) == 0
    assert during_run == [True] and gc.isenabled()
    assert main(["run", "no-such-claim"]) == 2
    assert gc.isenabled()
