"""no-free-lunch: the quick run and its verdict, the theorem's enumeration and a leak that
breaks it, and noisy negative controls for both rank-swap rules."""

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread
from sklearn.neighbors import KNeighborsClassifier

from repro.claims import no_free_lunch as claim
from repro.records import read_csv, write_csv
from repro.rules import CHECK, FAIL, LECTURE, NOT_REPRODUCED, PASS

LINE_RULE = "noisy line: logistic regression minus 1-nearest neighbour accuracy (mean over seeds)"
BOARD_RULE = (
    "checkerboard: 1-nearest neighbour minus logistic regression accuracy (mean over seeds)"
)
THEOREM_RULE = (
    "theorem: |mean off-training-set accuracy over all labellings - 1/2|, largest over "
    "learners and training labellings"
)
# Per-seed mean and sd of each margin on development seeds 100-109
# (docs/claims/no-free-lunch.md).
PILOT = {LINE_RULE: (0.090, 0.025), BOARD_RULE: (0.44, 0.073)}


@pytest.fixture(scope="module")
def quick(quick_run):
    return quick_run(claim.CLAIM_ID)


def rule(verdict, name):
    (found,) = [r for r in verdict.rules if r.name == name]
    return found


def test_the_quick_run_holds_what_the_claim_measures(quick):
    accuracy = read_csv(quick / "accuracy.csv")
    assert set(claim.TABLES["accuracy.csv"]) <= set(accuracy.columns)
    assert len(accuracy) == len(claim.SEEDS["quick"]) * 2 * 2  # distributions x learners
    assert accuracy["test_accuracy"].between(0, 1).all()
    for name in claim.FIGURES:
        assert (quick / name).stat().st_size > 0 and (quick / name).with_suffix(".svg").exists()
    assert claim.verdict(quick).to_dict() == json.loads((quick / "verdict.json").read_text())


def test_rule_kinds_follow_the_notes(quick):
    verdict = claim.verdict(quick)
    assert rule(verdict, THEOREM_RULE).kind == CHECK and rule(verdict, THEOREM_RULE).exact
    for name in (LINE_RULE, BOARD_RULE):
        found = rule(verdict, name)
        assert (found.kind, found.slide, found.threshold) == (
            LECTURE,
            "Generalization in Deep Learning",
            0.05,
        )


@pytest.mark.parametrize("change", [{"train_size": 3}, {"test_size": 5}, {"label_flip_rate": 0.5}])
def test_config_rejects_invalid_values(change):
    with pytest.raises(ValueError):
        dataclasses.replace(claim.PROFILES["full"], **change)


# ------------------------------------------------------------------ the theorem (check)


def test_theorem_holds_exactly_for_both_learners():
    theorem = claim.theorem_table()
    deviation, means = claim.theorem_deviation(theorem)
    assert deviation == 0 and len(means) == 4 and (means == 0.5).all()
    # every labelling of the 10 off-training points is counted once per learner and target
    assert (theorem.groupby(["target", "learner"])["labellings"].sum() == 2**10).all()


def test_check_passes_on_the_quick_run(quick):
    assert rule(claim.verdict(quick), THEOREM_RULE).outcome == PASS


def leaky_theorem_table(leaked: int) -> pd.DataFrame:
    """theorem.csv for a broken 1-nearest-neighbour rule: one off-training point, with the
    label that the labelling being scored gives it, leaked into its training set. Its
    predictions then depend on that one label, so they are computed for both values."""
    train = np.array(claim.TRAINING_POINTS)
    off = np.setdiff1d(np.arange(len(claim.GRID)), train)
    labellings = (np.arange(2 ** len(off))[:, None] >> np.arange(len(off))) & 1
    seen = np.append(train, off[leaked])
    frames = [claim.theorem_table().query("learner != @claim.NEIGHBOUR")]
    for target in (claim.NOISY_LINE, claim.CHECKERBOARD):
        labels = claim.grid_target(target)
        predictions = {
            value: KNeighborsClassifier(n_neighbors=1)
            .fit(claim.GRID[seen], np.append(labels[train], value))
            .predict(claim.GRID[off])
            for value in (0, 1)
        }
        chosen = np.where(labellings[:, [leaked]] == 1, predictions[1], predictions[0])
        counts = np.bincount((chosen == labellings).sum(axis=1), minlength=len(off) + 1)
        own = predictions[labels[off[leaked]]]
        frames.append(
            pd.DataFrame(
                {
                    "target": target,
                    "learner": claim.NEIGHBOUR,
                    "off_training_points": len(off),
                    "correct": np.arange(len(off) + 1),
                    "labellings": counts,
                    "target_correct": int((own == labels[off]).sum()),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_check_fails_when_one_off_training_label_leaks_into_training(quick, tmp_path):
    out = tmp_path / claim.CLAIM_ID
    shutil.copytree(quick, out)
    write_csv(leaky_theorem_table(leaked=0), out / "theorem.csv")
    verdict = claim.verdict(out)
    found = rule(verdict, THEOREM_RULE)
    # the leaked point alone is always right: at least 1/2 + 1/20 on average
    assert found.outcome == FAIL and found.measured >= 0.05
    assert verdict.label == NOT_REPRODUCED and "broken" in verdict.reason


# ---------------------------------------------------- negative controls (lecture rules)

SEEDS = len(claim.SEEDS["full"])
SD = {name: measured_spread(claim.CLAIM_ID, name, pilot=sd) for name, (_, sd) in PILOT.items()}
# "reversed": the learner the rule expects to win loses by 0.1 on average.
CENTRE = {"null": claim.MIN_MARGIN, "reversed": -0.1}


def accuracy_table(line_margins, board_margins, rng) -> pd.DataFrame:
    """accuracy.csv with the given per-seed margins; the losers' accuracies vary by seed
    as in the pilot (1-NN near 0.68 on the noisy line, logistic regression near 0.5 on the
    checkerboard)."""
    rows = []
    for seed, (line, board) in enumerate(zip(line_margins, board_margins, strict=True)):
        neighbour_line = 0.68 + rng.normal(0, 0.02)
        linear_board = 0.5 + rng.normal(0, 0.06)
        for distribution, linear, neighbour in (
            (claim.NOISY_LINE, neighbour_line + line, neighbour_line),
            (claim.CHECKERBOARD, linear_board, linear_board + board),
        ):
            for learner, accuracy in ((claim.LINEAR, linear), (claim.NEIGHBOUR, neighbour)):
                rows.append(
                    {
                        "seed": seed,
                        "distribution": distribution,
                        "learner": learner,
                        "test_accuracy": accuracy,
                    }
                )
    return pd.DataFrame(rows)


def margins_for(name, effect, rng):
    """Per-seed margins of every rule: the named one at the effect, the other at its pilot."""
    drawn = {}
    for other, (mean, _) in PILOT.items():
        centre = CENTRE[effect] if other == name else mean
        drawn[other] = centre + SD[other] * rng.standard_normal(SEEDS)
    return drawn


def writer(name):
    def write_tables(out_dir, effect, rng):
        drawn = margins_for(name, effect, rng)
        table = accuracy_table(drawn[LINE_RULE], drawn[BOARD_RULE], rng)
        write_csv(table, out_dir / "accuracy.csv")
        write_csv(claim.theorem_table(), out_dir / "theorem.csv")

    return write_tables


@pytest.mark.parametrize("name", [LINE_RULE, BOARD_RULE])
def test_lecture_rule_controls(tmp_path, name):
    assert_controls(claim, writer(name), name, tmp_path)


def test_the_control_tables_pass_at_the_pilot_means(tmp_path):
    """The same tables with both margins at the pilot's means are REPRODUCED: the controls
    fail for the effect, not for the way the tables are made."""
    for draw in range(3):
        rng = np.random.default_rng(draw)
        drawn = {
            name: mean + SD[name] * rng.standard_normal(SEEDS) for name, (mean, _) in PILOT.items()
        }
        write_csv(
            accuracy_table(drawn[LINE_RULE], drawn[BOARD_RULE], rng), tmp_path / "accuracy.csv"
        )
        write_csv(claim.theorem_table(), tmp_path / "theorem.csv")
        assert claim.verdict(tmp_path).reproduced
