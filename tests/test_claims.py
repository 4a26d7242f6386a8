"""Every registered claim: its quick profile runs, its verdict rests on lecture rules, its
figures are slide-ready, and `repro check` guards its outputs."""

import json
import xml.etree.ElementTree as ElementTree

import pytest
from PIL import Image

from repro import backend, claims
from repro.check import MANIFEST, check, write_manifest
from repro.cli import main
from repro.figures import twins
from repro.records import CORE_MODULES
from repro.runner import run_claim

ALL = claims.claim_ids()
# Claims rerun to prove byte-identical CSVs: a NumPy claim and Keras training claims.
DETERMINISM = [
    c for c in ("exploding-product", "dropout-regularizes", "label-noise-order") if c in ALL
]


@pytest.mark.backends
@pytest.mark.parametrize("claim_id", ALL)
def test_quick_profile_writes_every_declared_output(quick_run, claim_id):
    """On either backend (`make test` reruns it on JAX), for every claim that runs there."""
    claim = claims.get(claim_id)
    if backend.name() not in getattr(claim, "BACKENDS", backend.BACKENDS):
        pytest.skip(f"{claim_id} is about TensorFlow itself")
    out_dir = quick_run(claim_id)
    for name in [*claim.TABLES, *twins(claim.FIGURES), "verdict.json", "provenance.json"]:
        assert (out_dir / name).stat().st_size > 0, name
    provenance = json.loads((out_dir / "provenance.json").read_text())
    assert provenance["profile"] == "quick"
    assert provenance["seeds"] == list(claim.SEEDS["quick"])
    assert provenance["numerics"]["KERAS_BACKEND"] == backend.name()
    assert len(claim.SEEDS["full"]) >= 5, "the full profile needs at least 5 seeds"


@pytest.mark.parametrize("claim_id", ALL)
def test_every_verdict_rests_on_lecture_rules_that_name_their_slide(quick_run, claim_id):
    verdict = json.loads((quick_run(claim_id) / "verdict.json").read_text())
    kinds = [rule["kind"] for rule in verdict["rules"]]
    assert "lecture" in kinds and set(kinds) <= {"lecture", "beyond", "check"}
    for rule in verdict["rules"]:
        assert rule["kind"] != "lecture" or rule["slide"], rule["name"]
        assert not rule["name"].startswith("["), "the kind is a field, not part of the name"


@pytest.mark.parametrize("claim_id", ALL)
def test_every_figure_is_a_titled_slide_sized_png_with_an_svg_twin(quick_run, claim_id):
    claim = claims.get(claim_id)
    for name in claim.FIGURES:
        with Image.open(quick_run(claim_id) / name) as image:
            width, height = image.size
            title = image.info.get("Title", "")
        assert 500 <= width <= 2400 and 300 <= height <= 1600, (name, image.size)
        assert title.startswith(claim_id), (name, title)
        svg = ElementTree.parse(quick_run(claim_id) / name.replace(".png", ".svg")).getroot()
        texts = " ".join(svg.itertext())
        assert title.split(":")[0] in texts  # the SVG carries the same figure, as text


def test_the_makefile_and_provenance_name_the_same_core_modules():
    from pathlib import Path

    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    deps = makefile.split("CLAIM_DEPS := $(addprefix repro/,")[1].split(")")[0]
    assert sorted(deps.replace("\\", " ").split()) == sorted(CORE_MODULES)


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
    for name in twins(claim.FIGURES[:1]):
        (results_copy / claim.CLAIM_ID / name).write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        assert any(f"{name}: missing or not a valid figure" in p for p in _problems(results_copy))


def test_committed_results_pass_the_graders_check(capsys):
    """results/ as committed: complete, listed in the manifest, verdicts recomputable."""
    from pathlib import Path

    committed = Path(__file__).resolve().parent.parent / "results"
    assert main(["check", str(committed)]) == 0, capsys.readouterr().out
