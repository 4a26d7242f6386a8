"""Every registered claim: its quick profile runs, and `repro check` guards its outputs."""

import json

import pytest

from repro import claims
from repro.check import MANIFEST, check, write_manifest
from repro.cli import main
from repro.runner import run_claim

ALL = claims.claim_ids()
# Claims rerun to prove byte-identical CSVs: a NumPy claim and Keras training claims.
DETERMINISM = [
    c for c in ("exploding-product", "dropout-regularizes", "label-noise-order") if c in ALL
]


@pytest.mark.parametrize("claim_id", ALL)
def test_quick_profile_writes_every_declared_output(quick_results, claim_id):
    claim = claims.get(claim_id)
    out_dir = quick_results / claim_id
    for name in [*claim.TABLES, *claim.FIGURES, "verdict.json", "provenance.json"]:
        assert (out_dir / name).stat().st_size > 0, name
    provenance = json.loads((out_dir / "provenance.json").read_text())
    assert provenance["profile"] == "quick"
    assert provenance["seeds"] == list(claim.SEEDS["quick"])
    assert provenance["numerics"]["TF_NUM_INTRAOP_THREADS"] == "1"
    assert len(claim.SEEDS["full"]) >= 5, "the full profile needs at least 5 seeds"


def test_check_passes_on_the_quick_results(quick_results, capsys):
    assert main(["check", str(quick_results)]) == 0
    assert "all ok" in capsys.readouterr().out


@pytest.mark.parametrize("claim_id", DETERMINISM)
def test_same_command_gives_byte_identical_csvs(quick_results, tmp_path, claim_id):
    claim = claims.get(claim_id)
    run_claim(claim, "quick", tuple(claim.SEEDS["quick"]), tmp_path)
    for name in claim.TABLES:
        assert (tmp_path / claim_id / name).read_bytes() == (
            quick_results / claim_id / name
        ).read_bytes(), name


def _problems(root):
    return check(root)[1]


def test_check_fails_on_a_deleted_csv(results_copy):
    claim = claims.get(ALL[0])
    victim = results_copy / claim.CLAIM_ID / next(iter(claim.TABLES))
    victim.unlink()
    assert any(f"{claim.CLAIM_ID}/{victim.name}" in p for p in _problems(results_copy))
    assert main(["check", str(results_copy)]) == 1


def test_check_fails_on_a_truncated_csv(results_copy):
    claim = claims.get(ALL[0])
    victim = results_copy / claim.CLAIM_ID / next(iter(claim.TABLES))
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 3])
    assert _problems(results_copy)


def test_check_fails_on_an_edited_csv_even_with_a_fresh_manifest(results_copy):
    # Push every measured number far beyond its threshold: the recomputed verdict changes.
    path = results_copy / "exploding-product" / "trajectories.csv"
    text = path.read_text().splitlines()
    header = text[0].split(",")
    col = header.index("median_log10_norm")
    rows = [line.split(",") for line in text[1:]]
    for row in rows:
        row[col] = "1.0"
    path.write_text("\n".join([text[0], *[",".join(r) for r in rows]]) + "\n")
    write_manifest(results_copy)  # a forger who also rewrites the manifest is still caught
    assert any("differs from the verdict recomputed" in p for p in _problems(results_copy))


def test_check_fails_on_a_tampered_verdict(results_copy):
    path = results_copy / "exploding-product" / "verdict.json"
    verdict = json.loads(path.read_text())
    verdict["verdict"] = "NOT REPRODUCED" if verdict["verdict"] == "REPRODUCED" else "REPRODUCED"
    path.write_text(json.dumps(verdict))
    write_manifest(results_copy)
    assert any("verdict.json: differs" in p for p in _problems(results_copy))


def test_check_fails_on_a_file_outside_the_manifest_and_a_stray_file(results_copy):
    (results_copy / "exploding-product" / "notes.txt").write_text("hand-made")
    problems = _problems(results_copy)
    assert any("notes.txt: not produced by any claim" in p for p in problems)
    assert any(f"notes.txt: not listed in {MANIFEST}" in p for p in problems)


def test_check_fails_on_a_broken_figure(results_copy):
    claim = claims.get(ALL[0])
    figure = results_copy / claim.CLAIM_ID / claim.FIGURES[0]
    figure.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert any("not a valid PNG" in p for p in _problems(results_copy))


def test_committed_results_pass_the_graders_check(capsys):
    """results/ as committed: complete, listed in the manifest, verdicts recomputable."""
    from pathlib import Path

    committed = Path(__file__).resolve().parent.parent / "results"
    assert main(["check", str(committed)]) == 0, capsys.readouterr().out
