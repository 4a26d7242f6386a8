"""The command line: bad input gives one line and exit status 2; interrupted runs leave no
half-written result; `repro list` shows the kinds of rule apart."""

import shutil
import subprocess
import sys

import pytest

from repro import claims
from repro.cli import main
from repro.runner import run_claim


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "no-such-claim"], "unknown claim 'no-such-claim'"),
        (["run", "exploding-product", "--seeds", "5-2"], "bad seed range"),
        (["run", "exploding-product", "--seed-offset", "-3"], "must be non-negative"),
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
        "repro: error: unknown claim 'nope'; known claims: " + ", ".join(claims.claim_ids())
    )


def test_check_of_a_missing_directory_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results directory" in err


def test_run_into_a_path_that_cannot_be_created_is_one_line_and_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["run", "exploding-product", "--out", str(blocker / "results")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot create the output directory" in err


def test_a_killed_runs_scratch_is_ignored_by_check_and_removed_by_the_next_run(
    quick_results, tmp_path, capsys
):
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    stale = copy / ".exploding-product.k1ll3d"
    stale.mkdir()
    (stale / "half.csv").write_text("x\n1\n")
    assert main(["check", str(copy)]) == 0
    assert f"ignoring {stale}" in capsys.readouterr().out
    claim = claims.get("exploding-product")
    run_claim(claim, "quick", claim.SEEDS["quick"], copy)
    assert not stale.exists()
    assert f"removing {stale}" in capsys.readouterr().err


def test_list_shows_every_claim_with_its_rules_by_kind(quick_results, capsys):
    assert main(["list", "--out", str(quick_results)]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:3] == ["claim", "slide", "verdict"] and {"lecture", "beyond", "check"} <= set(
        header
    )
    for claim_id in claims.claim_ids():
        assert claim_id in out
