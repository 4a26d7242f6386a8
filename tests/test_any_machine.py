"""Results judged the same way on any machine: quiet start-up, a machine identity that
means something, tolerant recomputation, and comparisons of reruns made elsewhere.

The tests marked `portability` run again, under `make test`, with TensorFlow's other
kernel choice (TF_ENABLE_ONEDNN_OPTS=1: oneDNN on, what TensorFlow picks by itself on CPUs
with AVX-512), so that the machine where the package is developed exercises both.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from repro import claims, records
from repro.check import check, same_record, write_manifest
from repro.cli import main
from repro.records import read_csv, write_csv, write_json
from repro.rules import Rule, Verdict
from repro.verify import compare, compare_claim, robustness

COMMITTED = Path(__file__).resolve().parent.parent / "results"
portability = pytest.mark.portability


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


def as_made_elsewhere(root: Path) -> None:
    """Results as another machine would record them: other CPU features, the same bytes
    moved in their last bits, every verdict recomputed from the moved tables."""
    move_last_bits(root)
    for claim in claims.all_claims():
        out_dir = root / claim.CLAIM_ID
        if not out_dir.is_dir():
            continue
        write_json(out_dir / "verdict.json", claim.verdict(out_dir).to_dict())
        provenance = json.loads((out_dir / "provenance.json").read_text())
        provenance["machine"] = {"architecture": "x86_64", "cpu": "other", "kernel_features": []}
        write_json(out_dir / "provenance.json", provenance)
    write_manifest(root)


# ------------------------------------------------------------------ quiet start-up


@portability
def test_repro_run_prints_nothing_on_stderr(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "repro.cli", "run", "sigmoid-vanishes", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no TensorFlow start-up lines, whatever the kernels
    lines = done.stdout.splitlines()
    assert lines[0].startswith("sigmoid-vanishes: ")
    assert all(line.startswith("  [") for line in lines[1:])


@portability
def test_tensorflow_itself_announces_onednn_when_it_is_on():
    """What the quiet start-up hides is real: a bare import of TensorFlow with oneDNN on
    prints its start-up lines (on this machine as on a CPU with AVX-512)."""
    env = os.environ | {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=env
    )
    assert "oneDNN custom operations are on" in done.stderr


@portability
def test_repro_check_runs_without_importing_tensorflow_or_keras(quick_results):
    code = (
        "import sys; from repro.cli import main; "
        f"code = main(['check', {str(quick_results)!r}]); "
        "print(code, 'tensorflow.python' in sys.modules, 'keras.src' in sys.modules, "
        "'jax' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr == ""
    assert done.stdout.splitlines()[-1] == "0 False False False"


# --------------------------------------------------------------- machine identity


def test_provenance_records_what_decides_the_numbers(quick_run):
    provenance = json.loads((quick_run("exploding-product") / "provenance.json").read_text())
    machine = provenance["machine"]
    assert set(machine) == {"architecture", "cpu", "kernel_features"}
    assert set(machine["kernel_features"]) <= set(records.KERNEL_FEATURES)
    # repro sets the kernel choice itself, so provenance always knows it
    assert provenance["numerics"]["TF_ENABLE_ONEDNN_OPTS"] in ("0", "1")
    assert provenance["numerics"]["TF_NUM_INTRAOP_THREADS"] == "1"
    assert provenance["versions"]["keras"] and provenance["code_digest"]


def test_identity_changes_with_kernel_features_kernel_choice_and_versions():
    base = {
        "machine": {"architecture": "x86_64", "cpu": "AMD EPYC", "kernel_features": ["avx2"]},
        "versions": {"tensorflow-cpu": "2.21.0", "jax": "0.10.2"},
        "numerics": {"TF_ENABLE_ONEDNN_OPTS": "0", "KERAS_BACKEND": "tensorflow"},
    }
    avx512 = base | {"machine": base["machine"] | {"kernel_features": ["avx2", "avx512f"]}}
    onednn = base | {"numerics": base["numerics"] | {"TF_ENABLE_ONEDNN_OPTS": "1"}}
    newer = base | {"versions": base["versions"] | {"tensorflow-cpu": "2.22.0"}}
    for other in (avx512, onednn, newer):
        assert records.identity(other) != records.identity(base)
    # JAX's version does not decide TensorFlow's numbers
    no_jax = base | {"versions": {"tensorflow-cpu": "2.21.0"}}
    assert records.identity(no_jax) == records.identity(base)


# ----------------------------------------------------- recomputation from the CSVs


@portability
def test_committed_verdicts_survive_another_cpus_rounding(tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(COMMITTED, copy)
    assert move_last_bits(copy) > 1000
    write_manifest(copy)  # the hashes change with the bytes; the verdicts must not
    rows, problems = check(copy)
    assert not problems, problems
    assert all(status == "ok" for *_, status in rows)


@portability
@pytest.mark.parametrize("claim_id", claims.claim_ids())
def test_every_quick_verdict_survives_last_bit_changes(quick_run, tmp_path, claim_id):
    claim = claims.get(claim_id)
    recorded = claim.verdict(quick_run(claim_id)).to_dict()
    for toward in (np.inf, -np.inf):
        copy = tmp_path / str(toward)
        shutil.copytree(quick_run(claim_id), copy / claim_id)
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
    rule = Rule.over_seeds("x", [0.9, float("nan")], ">", 0.5, kind="lecture", slide="Dropout")
    verdict = Verdict("c", (rule,))
    record = json.loads(json.dumps(verdict.to_dict()))
    assert record["verdict"] == "NOT REPRODUCED"
    assert record["rules"][0]["reason"] == "no measurement"
    assert same_record(record, verdict.to_dict())


# ------------------------------------------------------ make verify's comparison


def test_verify_wants_bytes_on_the_same_machine_and_statistics_elsewhere(quick_results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    rows, ok, comparison = compare(copy, quick_results)
    assert ok and comparison.startswith("bytes")
    move_last_bits(copy)  # same machine: a last-bit difference is a real difference
    assert not compare(copy, quick_results)[1]
    as_made_elsewhere(copy)  # another CPU: the statistics must agree as a rerun would
    rows, ok, comparison = compare(copy, quick_results)
    assert ok and comparison.startswith("statistics (another machine"), rows


@portability
def test_verify_compares_runs_with_other_kernels_as_from_another_machine(quick_results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    for path in copy.glob("*/provenance.json"):
        provenance = json.loads(path.read_text())
        other = "0" if provenance["numerics"]["TF_ENABLE_ONEDNN_OPTS"] == "1" else "1"
        provenance["numerics"]["TF_ENABLE_ONEDNN_OPTS"] = other
        write_json(path, provenance)
    assert compare(copy, quick_results)[2].startswith("statistics (another machine")


def rule_record(values, threshold=0.0, kind="lecture", name="r"):
    rule = Rule.over_seeds(name, values, ">", threshold, kind=kind, slide="Dropout")
    return Verdict("c", (rule,)).to_dict()["rules"][0]


def test_verify_across_machines_flags_a_statistic_far_outside_a_rerun():
    rng = np.random.default_rng(0)
    old = {"verdict": "REPRODUCED", "rules": [rule_record(rng.normal(1, 0.1, 10))]}
    near = {"verdict": "REPRODUCED", "rules": [rule_record(rng.normal(1, 0.1, 10))]}
    far = {"verdict": "REPRODUCED", "rules": [rule_record(rng.normal(1.5, 0.1, 10))]}
    assert compare_claim("c", old, near, bytewise=False)[1]
    rows, ok = compare_claim("c", old, far, bytewise=False)
    assert not ok and rows[-1][2] == "OUTSIDE"


def test_verify_false_alarm_rate_on_simulated_reruns_is_at_most_5_percent_per_claim():
    """Reruns elsewhere are new samples of seeds. Simulated: claims of 1 to 6 rules with 5
    or 10 seeds, each rerun drawn from the same distribution; verify must accept at least
    95% of them. The naive acceptance (the new mean inside the old 95% interval) is shown to
    fail far more often, which is why it is not used."""
    rng = np.random.default_rng(2026)
    alarms, naive_alarms, trials = 0, 0, 0
    for rules in range(1, 7):
        for seeds in (5, 10):
            for _ in range(150):
                means = rng.uniform(5, 10, rules)  # far from the threshold 0: same outcomes
                sds = rng.uniform(0.5, 2, rules)

                def draw(means=means, sds=sds, seeds=seeds):
                    return {
                        "verdict": "REPRODUCED",
                        "rules": [
                            rule_record(rng.normal(m, s, seeds), name=f"r{i}")
                            for i, (m, s) in enumerate(zip(means, sds, strict=True))
                        ],
                    }

                old, new = draw(), draw()
                alarms += not compare_claim("c", old, new, bytewise=False)[1]
                naive_alarms += any(
                    not a["low"] <= b["measured"] <= a["high"]
                    for a, b in zip(old["rules"], new["rules"], strict=True)
                )
                trials += 1
    assert alarms / trials <= 0.05, alarms / trials
    assert naive_alarms / trials > 0.15  # about one rule in six, more per claim


# --------------------------------------------------------------- robustness table


def test_robustness_table_carries_kinds_and_is_checked_against_the_verdicts(
    quick_results, tmp_path, capsys
):
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    assert main(["robustness", str(quick_results), "--against", str(copy)]) == 0
    table = read_csv(copy / "robustness.csv")
    assert set(table["seed_set"]) == {"default", "shifted"}
    assert set(table["claim"]) == set(claims.claim_ids())
    assert set(table["kind"]) <= {"lecture", "beyond", "check"} and "lecture" in set(table["kind"])
    assert main(["report", "--out", str(copy)]) == 0
    assert "Robustness" in (copy / "README.md").read_text()
    assert main(["check", str(copy)]) == 0
    # an outcome that disagrees with the verdict is stale on any machine
    text = (copy / "robustness.csv").read_text()
    first_pass = text.index(",pass,")
    (copy / "robustness.csv").write_text(text[:first_pass] + ",fail," + text[first_pass + 6 :])
    write_manifest(copy)
    assert any("robustness.csv: disagrees with" in p for p in check(copy)[1])


@portability
def test_results_regenerated_on_another_machine_pass_check_with_the_old_robustness_table(
    quick_results, tmp_path
):
    copy = tmp_path / "results"
    shutil.copytree(quick_results, copy)
    assert main(["robustness", str(quick_results), "--against", str(copy)]) == 0
    as_made_elsewhere(copy)  # another machine: compared as a rerun, and it agrees
    rows, problems = check(copy)
    assert not problems, problems


def test_robustness_of_identical_runs_shows_no_changed_verdict(quick_results):
    table = robustness(quick_results, quick_results)
    default = table[table["seed_set"] == "default"].drop(columns="seed_set")
    shifted = table[table["seed_set"] == "shifted"].drop(columns="seed_set")
    assert default.reset_index(drop=True).equals(shifted.reset_index(drop=True))
