"""Results judged the same way on any machine: tolerant recomputation, NaN, verify, robustness."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from repro import claims
from repro.check import check, same_record, write_manifest
from repro.cli import main
from repro.records import read_csv, write_csv
from repro.rules import Rule, Verdict
from repro.runner import run_claim
from repro.verify import compare, robustness

COMMITTED = Path(__file__).resolve().parent.parent / "results"


def move_last_bits(root: Path, toward: float = np.inf) -> int:
    """Move every float in every claim's CSVs under root by one unit in the last place, zeros
    included (0 becomes a denormal): what another CPU's rounding does to the same numbers at
    least. Returns how many floats moved."""
    moved = 0
    for claim in claims.all_claims():
        for name in claim.TABLES:
            path = root / claim.CLAIM_ID / name
            if not path.exists():
                continue
            frame = read_csv(path)
            for column in frame.select_dtypes("float").columns:
                frame[column] = np.nextafter(frame[column].to_numpy(), toward)
                moved += int(frame[column].notna().sum())
            write_csv(frame, path)
    return moved


def test_committed_verdicts_survive_another_cpus_rounding(tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(COMMITTED, copy)
    assert move_last_bits(copy) > 1000
    write_manifest(copy)  # the hashes change with the bytes; the verdicts must not
    rows, problems = check(copy)
    assert not problems, problems
    assert all(status == "ok" for *_, status in rows)


@pytest.mark.parametrize("claim_id", claims.claim_ids())
def test_every_quick_verdict_survives_last_bit_changes(quick_results, tmp_path, claim_id):
    claim = claims.get(claim_id)
    recorded = claim.verdict(quick_results / claim_id).to_dict()
    for toward in (np.inf, -np.inf):
        copy = tmp_path / str(toward)
        shutil.copytree(quick_results / claim_id, copy / claim_id)
        move_last_bits(copy, toward)
        assert same_record(recorded, claim.verdict(copy / claim_id).to_dict()), toward


def test_check_compares_numbers_within_a_tolerance_and_labels_exactly():
    recorded = {"verdict": "REPRODUCED", "measured": 0.25977902918773565, "name": "rate 0.557"}
    assert same_record(recorded, recorded | {"measured": 0.2597790291877357})
    assert same_record(recorded, recorded | {"name": "rate 0.558"})  # rounded either way
    assert not same_record(recorded, recorded | {"measured": 0.2598})
    assert not same_record(recorded, recorded | {"verdict": "INCONCLUSIVE"})
    assert not same_record({"name": "5 of 10 layers"}, {"name": "4 of 10 layers"})  # exact
    assert same_record({"name": "from 0"}, {"name": "from -0"})
    assert same_record({"note": "5/5 seeds"}, {"note": "4/5 seeds"})  # notes are not compared


def test_a_nan_measurement_is_recorded_fails_and_equals_itself():
    verdict = Verdict("c", (Rule.over_seeds("x", [0.9, float("nan")], ">", 0.5),))
    record = json.loads(json.dumps(verdict.to_dict()))
    assert record["verdict"] == "NOT REPRODUCED"
    assert record["rules"][0]["reason"] == "no measurement"
    assert same_record(record, verdict.to_dict())


def test_check_of_a_missing_directory_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results directory" in err


def test_run_into_a_path_that_cannot_be_created_is_one_line_and_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["run", "sigmoid-vanishes", "--out", str(blocker / "results")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot create the output directory" in err


def test_a_killed_runs_scratch_is_ignored_by_check_and_removed_by_the_next_run(
    quick_results, tmp_path, capsys
):
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    stale = copy / ".sigmoid-vanishes.k1ll3d"
    stale.mkdir()
    (stale / "half.csv").write_text("x\n1\n")
    assert main(["check", str(copy)]) == 0
    assert f"ignoring {stale}" in capsys.readouterr().out
    claim = claims.get("sigmoid-vanishes")
    run_claim(claim, "quick", claim.SEEDS["quick"], copy)
    assert not stale.exists()
    assert f"removing {stale}" in capsys.readouterr().err


def test_repro_run_prints_only_its_own_lines(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "repro.cli", "run", "sigmoid-vanishes", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0
    assert done.stderr == ""  # no TensorFlow start-up lines
    lines = done.stdout.splitlines()
    assert lines[0].startswith("sigmoid-vanishes: ")
    assert all(line.startswith("  [") for line in lines[1:])


def _set_provenance(root: Path, field: str, value) -> None:
    for path in root.glob("*/provenance.json"):
        provenance = json.loads(path.read_text())
        provenance[field] = value
        path.write_text(json.dumps(provenance))


def _as_other_machine(root: Path) -> None:
    _set_provenance(root, "machine", {"architecture": "x86_64", "cpu": "another CPU"})


def test_verify_wants_bytes_on_the_same_machine_and_intervals_elsewhere(quick_results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    rows, ok, comparison = compare(copy, quick_results)
    assert ok and comparison.startswith("bytes")
    move_last_bits(copy)  # same machine: a last-bit difference is a real difference
    assert not compare(copy, quick_results)[1]
    _as_other_machine(copy)  # another CPU: the statistics must sit inside the intervals
    rows, ok, comparison = compare(copy, quick_results)
    assert ok and comparison.startswith("verdicts and each rule's statistic"), rows


def test_verify_compares_runs_with_other_kernels_as_from_another_machine(quick_results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    numerics = json.loads(next(copy.glob("*/provenance.json")).read_text())["numerics"]
    _set_provenance(copy, "numerics", numerics | {"TF_ENABLE_ONEDNN_OPTS": "1"})
    assert compare(copy, quick_results)[2].startswith("verdicts and each rule's statistic")


def test_verify_across_machines_flags_a_statistic_outside_its_interval(quick_results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    _as_other_machine(copy)
    path = copy / "exploding-product" / "verdict.json"
    verdict = json.loads(path.read_text())
    moved = next(r for r in verdict["rules"] if r["low"] is not None)
    moved["measured"] = moved["high"] + 1 + abs(moved["high"])
    path.write_text(json.dumps(verdict))
    rows, ok, _ = compare(copy, quick_results)
    assert not ok and any(row[2] == "OUTSIDE" and row[1] == moved["name"] for row in rows)


def test_robustness_table_and_its_staleness_check(quick_results, tmp_path, capsys):
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    assert main(["robustness", str(quick_results), "--against", str(copy)]) == 0
    table = read_csv(copy / "robustness.csv")
    assert set(table["seed_set"]) == {"default", "shifted"}
    assert set(table["claim"]) == set(claims.claim_ids())
    assert main(["report", "--out", str(copy)]) == 0
    assert "Robustness" in (copy / "README.md").read_text()
    assert main(["check", str(copy)]) == 0
    (copy / "robustness.csv").write_text(
        (copy / "robustness.csv").read_text().replace("sigmoid-vanishes", "no-such-claim")
    )
    write_manifest(copy)
    assert any("robustness.csv: stale for sigmoid-vanishes" in p for p in check(copy)[1])


def test_robustness_of_identical_runs_shows_no_changed_verdict(quick_results):
    table = robustness(quick_results, quick_results)
    default = table[table["seed_set"] == "default"].drop(columns="seed_set")
    shifted = table[table["seed_set"] == "shifted"].drop(columns="seed_set")
    assert default.reset_index(drop=True).equals(shifted.reset_index(drop=True))


@pytest.mark.parametrize("rate", ["1.5", "-0.1"])
def test_a_dropout_rate_outside_zero_to_one_is_refused_in_one_line(rate, tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "dropout-unbiased",
                "--set",
                f"dropout_rates=0.5,{rate}",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
