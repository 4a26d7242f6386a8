"""mc-dropout: outputs, config, the disagreement measures, noisy controls for the lecture
rule, the dropout-off control, and the check."""

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread
from scipy import stats

from repro.backend import keras, seed_everything
from repro.claims import mc_dropout as claim
from repro.records import read_csv, write_csv
from repro.rules import FAIL, NOT_REPRODUCED, PASS

LECTURE = "AUROC of mask disagreement (mutual information) for wrong vs right"
LECTURE_RULE = f"{LECTURE} test predictions"  # the whole name
CHECK = "dropout off, the same detector"
# Per-seed standard deviation of the lecture rule's AUROC, development seeds 100-107.
PILOT_SPREAD = 0.018


def rule(verdict, name_start):
    (found,) = [r for r in verdict.rules if r.name.startswith(name_start)]
    return found


def test_the_quick_run_holds_what_the_claim_measures(quick_run):
    out_dir = quick_run(claim.CLAIM_ID)
    table = read_csv(out_dir / "predictions.csv")
    assert set(claim.TABLES["predictions.csv"]) <= set(table.columns)
    assert sorted(table["seed"].unique()) == list(claim.SEEDS["quick"])
    assert set(table["inputs"]) == set(claim.INPUTS)


@pytest.mark.parametrize(
    "bad",
    [
        {"dropout_rate": 0.0},
        {"dropout_rate": 1.0},
        {"test_fraction": 1.0},
        {"masks": 1},
        {"hidden": ()},
        {"learning_rate": 0.0},
    ],
)
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValueError):
        claim.Config(**bad)


# --------------------------------------------------------------- the measures themselves


def test_equal_passes_disagree_exactly_nowhere():
    rng = np.random.default_rng(0)
    one = claim.softmax(rng.normal(size=(50, 8)) * 3)
    scores = claim.disagreement(np.repeat(one[None], 7, axis=0))
    assert np.all(scores["mutual_information"] == 0)
    assert np.all(scores["variation_ratio"] == 0)
    np.testing.assert_array_equal(scores["predicted"], one.argmax(axis=1))


def test_mutual_information_is_entropy_of_the_mean_minus_mean_entropy():
    passes = claim.softmax(np.random.default_rng(1).normal(size=(20, 30, 8)) * 2)
    mean = passes.mean(axis=0)
    expected = claim.entropy(mean) - claim.entropy(passes).mean(axis=0)
    scores = claim.disagreement(passes)
    np.testing.assert_allclose(scores["mutual_information"], expected, atol=1e-12)
    assert scores["mutual_information"].min() > 0


def test_variation_ratio_counts_votes_against_the_most_common_class():
    votes = np.array([0, 0, 1, 0, 2])  # one input, five passes: 2 of 5 against class 0
    passes = np.eye(3)[votes][:, None, :] * 0.9 + 0.1 / 3
    assert claim.disagreement(passes)["variation_ratio"][0] == pytest.approx(2 / 5)


def test_dropout_masks_differ_and_passes_with_dropout_off_do_not():
    seed_everything(0)
    model = claim.dropout_mlp(claim.Config(hidden=(32,), dropout_rate=0.5), 5)
    x = np.random.default_rng(0).normal(size=(20, 5)).astype("float32")
    on = claim.disagreement(claim.mask_passes(model, x, 50))
    off = claim.disagreement(claim.dropout_off_passes(model, x, 5))
    assert on["mutual_information"].min() > 0 and on["variation_ratio"].max() > 0
    assert np.all(off["mutual_information"] == 0)


def test_dropout_off_passes_are_the_networks_prediction():
    seed_everything(0)
    model = claim.dropout_mlp(claim.Config(hidden=(32,), dropout_rate=0.5), 5)
    x = np.random.default_rng(0).normal(size=(20, 5)).astype("float32")
    passes = claim.dropout_off_passes(model, x, 3)
    np.testing.assert_allclose(
        passes[0], claim.softmax(model(x, training=False)), rtol=1e-5, atol=1e-7
    )
    assert isinstance(model.layers[0], keras.layers.Dropout)


# ----------------------------------------- noisy negative controls for the lecture rule


def synthetic_predictions(effect, rng, spread=None):
    """predictions.csv for the full profile's seeds: each seed's mask-disagreement AUROC
    for wrong vs right is drawn around 0.5 (null) or 0.35 (reversed: the masks agree more
    on errors) with the claim's per-seed spread, and built exactly from tied scores."""
    spread = spread or measured_spread(claim.CLAIM_ID, LECTURE_RULE, pilot=PILOT_SPREAD)
    center = {"null": 0.5, "reversed": 0.35}[effect]
    right, wrong = 100, 500
    frames = []
    for seed in claim.SEEDS["full"]:
        target = float(np.clip(center + rng.normal(0, spread), 0.01, 0.99))
        # AUROC = 0.5 + (share of errors scored above every right one) / 2, or below.
        moved = round(abs(2 * target - 1) * wrong)
        error_scores = np.r_[np.full(moved, np.sign(target - 0.5)), np.zeros(wrong - moved)]
        scores = 1 + np.r_[np.zeros(right), error_scores]
        correct = np.r_[np.ones(right, bool), np.zeros(wrong, bool)]
        test = pd.DataFrame(
            {
                "seed": seed,
                "inputs": "test",
                "label": 0,
                "mc_predicted": np.where(correct, 0, 1),
                "mc_correct": correct,
                "deterministic_predicted": np.where(correct, 0, 1),
                "deterministic_correct": correct,
                "mutual_information": scores,
                "variation_ratio": scores / 10,
                "deterministic_entropy": scores,
                "dropout_off_mutual_information": 0.0,
            }
        )
        unfamiliar = [test.assign(inputs=name, mutual_information=3.0) for name in claim.INPUTS[1:]]
        frames += [test, *unfamiliar]
    return pd.concat(frames, ignore_index=True)


def test_synthetic_aurocs_are_the_drawn_ones(tmp_path):
    rng = np.random.default_rng(0)
    table = synthetic_predictions("null", rng, spread=0.05)
    scores = claim.per_seed_scores(table)["errors_mutual_information"]
    rng = np.random.default_rng(0)
    drawn = [0.5 + rng.normal(0, 0.05) for _ in claim.SEEDS["full"]]
    np.testing.assert_allclose(scores, drawn, atol=1e-3)
    # the per-seed spread is the one asked for, within sampling error of a 10-seed sd
    assert stats.tstd(scores) == pytest.approx(0.05, rel=0.6)


def test_lecture_rule_controls(tmp_path):
    def write_tables(out_dir, effect, rng):
        write_csv(synthetic_predictions(effect, rng), out_dir / "predictions.csv")

    assert_controls(claim, write_tables, LECTURE_RULE, tmp_path)


def test_the_same_network_with_dropout_off_fails_the_lecture_rule(quick_run, tmp_path):
    """The lecture's control, from a real run: dropout off, every pass agrees, and the
    detector (scored on that network's own errors) is at chance."""
    table = read_csv(quick_run(claim.CLAIM_ID) / "predictions.csv")
    test = table["inputs"] == "test"
    table = table[test].assign(
        mutual_information=table.loc[test, "dropout_off_mutual_information"],
        mc_correct=table.loc[test, "deterministic_correct"],
    )
    write_csv(table, tmp_path / "predictions.csv")
    verdict = claim.verdict(tmp_path)
    assert rule(verdict, LECTURE).outcome == FAIL
    assert verdict.label == NOT_REPRODUCED


# ---------------------------------------------------------------------------- the check


def test_check_holds_on_the_quick_run_and_fails_on_a_broken_table(quick_run, tmp_path):
    out_dir = quick_run(claim.CLAIM_ID)
    assert rule(claim.verdict(out_dir), CHECK).outcome == PASS
    table = read_csv(out_dir / "predictions.csv")
    # Passes that were not the same network: the "dropout off" scores are the masks'.
    table["dropout_off_mutual_information"] = table["mutual_information"]
    write_csv(table, tmp_path / "predictions.csv")
    verdict = claim.verdict(tmp_path)
    assert rule(verdict, CHECK).outcome == FAIL
    assert verdict.label == NOT_REPRODUCED


def test_a_seed_without_errors_is_no_measurement(quick_run, tmp_path):
    table = read_csv(quick_run(claim.CLAIM_ID) / "predictions.csv")
    first = table["seed"] == table["seed"].min()
    table.loc[first & (table["inputs"] == "test"), "mc_correct"] = True
    write_csv(table, tmp_path / "predictions.csv")
    broken = rule(claim.verdict(tmp_path), LECTURE)
    assert broken.outcome == FAIL and broken.reason == "no measurement"
