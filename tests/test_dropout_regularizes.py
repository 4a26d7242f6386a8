# TRIM (helper for dropout_regularizes): this is a copy of test_dropout_mc.py; keep only what tests dropout_regularizes, then delete this line.
"""dropout-regularizes and mc-dropout: configs, scores, and rules that fail on broken variants."""

import keras
import numpy as np
import pandas as pd
import pytest

from repro import claims
from repro.models import batches
from repro.records import read_csv, write_csv
from repro.rules import FAIL, PASS
from repro.runner import run_claim

DROPOUT = claims.get("dropout-regularizes")
MC = claims.get("mc-dropout")


def outcomes(verdict) -> dict[str, str]:
    return {rule.name: rule.outcome for rule in verdict.rules}


def outcome_of(verdict, words: str) -> str:
    (outcome,) = [o for name, o in outcomes(verdict).items() if words in name]
    return outcome


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("dropout_mc")
    for claim in (DROPOUT, MC):
        run_claim(claim, "quick", tuple(claim.SEEDS["quick"]), root)
    return root


@pytest.mark.parametrize("claim", [DROPOUT, MC], ids=lambda c: c.CLAIM_ID)
def test_quick_run_writes_its_tables_and_figures(quick_results, claim):
    for name, columns in claim.TABLES.items():
        assert set(columns) <= set(read_csv(quick_results / claim.CLAIM_ID / name).columns)
    for name in claim.FIGURES:
        assert (quick_results / claim.CLAIM_ID / name).stat().st_size > 10_000


@pytest.mark.parametrize(
    ("claim", "bad"),
    [
        (DROPOUT, {"dropout_rates": (0.0, 1.0)}),
        (DROPOUT, {"dropout_rates": (0.2, 0.5)}),  # no p = 0 baseline
        (DROPOUT, {"dropout_rates": (0.0, 0.5, 0.2)}),
        (DROPOUT, {"train_examples": 7000}),  # more than the pool holds with validation
        (DROPOUT, {"test_examples": 20005}),  # the generator makes whole classes
        (DROPOUT, {"hidden": ()}),
        (DROPOUT, {"epochs": 0}),
        (MC, {"dropout_rate": 0.0}),
        (MC, {"test_fraction": 1.0}),
        (MC, {"masks": 1}),
        (MC, {"learning_rate": 0.0}),
    ],
)
def test_invalid_config_raises(claim, bad):
    with pytest.raises(ValueError):
        claim.Config(**bad)


# ------------------------------------------------------------------ dropout-regularizes


def dropout_table(gain=0.02, gap_change=-0.05, seeds=8, noise=0.004) -> pd.DataFrame:
    """A synthetic accuracy.csv: p = 0.3 wins validation and moves test accuracy and gap."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        base_test, base_train = 0.6 + rng.normal(0, 0.01), 0.9
        for rate in (0.0, 0.1, 0.3, 0.5):
            chosen = rate == 0.3
            test = base_test + (gain + rng.normal(0, noise) if chosen else -0.01 * (rate > 0))
            gap = base_train - base_test + (gap_change + rng.normal(0, noise) if chosen else 0)
            rows.append(
                {
                    "seed": seed,
                    "dropout_rate": rate,
                    "best_epoch": 10,
                    "validation_loss": 1.0,
                    "validation_correct": 1300 if chosen else 1200,
                    "train_accuracy": test + gap,
                    "validation_accuracy": 0.65 if chosen else 0.6,
                    "test_accuracy": test,
                    "gap": gap,
                }
            )
    return pd.DataFrame(rows)


def dropout_verdict(table, tmp_path):
    write_csv(table, tmp_path / "accuracy.csv")
    return DROPOUT.verdict(tmp_path)


def test_dropout_clean_synthetic_table_is_reproduced(tmp_path):
    verdict = dropout_verdict(dropout_table(), tmp_path)
    assert set(outcomes(verdict).values()) == {PASS}
    assert verdict.reproduced


def test_dropout_gain_rule_fails_when_the_chosen_rate_gains_nothing(tmp_path):
    verdict = dropout_verdict(dropout_table(gain=0.0, noise=0.0), tmp_path)
    assert outcome_of(verdict, "test gain") == FAIL
    assert outcome_of(verdict, "gap change") == PASS


def test_dropout_gain_rule_fails_when_dropout_hurts(tmp_path):
    verdict = dropout_verdict(dropout_table(gain=-0.02), tmp_path)
    assert outcome_of(verdict, "test gain") == FAIL


def test_dropout_gap_rule_fails_when_the_gap_does_not_shrink(tmp_path):
    verdict = dropout_verdict(dropout_table(gap_change=0.0, noise=0.0), tmp_path)
    assert outcome_of(verdict, "gap change") == FAIL
    assert outcome_of(verdict, "test gain") == PASS


def test_dropout_nan_seed_is_no_measurement(tmp_path):
    table = dropout_table()
    table.loc[(table["seed"] == 3) & (table["dropout_rate"] == 0.3), "test_accuracy"] = np.nan
    rule = dropout_verdict(table, tmp_path).rules[0]
    assert rule.outcome == FAIL and rule.reason == "no measurement"


def test_dropout_rate_is_chosen_by_validation_count_ties_to_the_smaller_rate():
    table = dropout_table(seeds=2)
    table.loc[(table["seed"] == 1) & (table["dropout_rate"] == 0.1), "validation_correct"] = 1300
    assert DROPOUT.paired(table)["chosen_rate"].tolist() == [0.3, 0.1]


def test_each_arm_is_restored_to_its_lowest_validation_loss():
    # Random labels: validation loss rises once the arms memorize, so the best epoch is early.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 40)).astype("float32"), rng.integers(0, 10, 300)
    keras.utils.set_random_seed(0)
    model = DROPOUT.compiled_arms(DROPOUT.PROFILES["quick"], 40)
    best = DROPOUT.BestValidationLoss(x[:100], y[:100])
    model.fit(batches(x[100:], [y[100:]] * 2, 32, 0), epochs=8, verbose=0, callbacks=[best])
    best.restore()
    assert min(best.best_epoch) < 8
    for i, logits in enumerate(model.predict_on_batch(x[:100])):
        loss = DROPOUT.cross_entropy(np.asarray(logits), y[:100])
        assert loss == pytest.approx(best.best_loss[i], rel=1e-5)


# ------------------------------------------------------------------------ mc-dropout


def mc_table(seeds=6, errors_signal=1.5, control_signal=0.7, unfamiliar_shift=1.0):
    """A synthetic predictions.csv: disagreement rises on errors (unfamiliar inputs are all
    wrong) and by `unfamiliar_shift` more on unfamiliar inputs."""
    rng = np.random.default_rng(1)
    frames = []
    for seed in range(seeds):
        for name, n, shift in (
            ("test", 300, 0.0),
            ("held-out classes", 100, unfamiliar_shift),
            ("permuted pixels", 300, unfamiliar_shift),
        ):
            wrong = rng.random(n) < 0.1 if name == "test" else np.ones(n, bool)
            disagreement = rng.normal(0, 1, n) + errors_signal * wrong + shift
            frames.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "inputs": name,
                        "label": 0,
                        "mc_predicted": np.where(wrong, 1, 0),
                        "mc_correct": ~wrong,
                        "deterministic_predicted": np.where(wrong, 1, 0),
                        "deterministic_correct": ~wrong,
                        "votes_against_mode": np.clip(np.round(10 * disagreement), 0, 50),
                        "mutual_information": np.exp(disagreement),
                        "predictive_entropy": np.exp(disagreement),
                        "deterministic_entropy": np.exp(
                            rng.normal(0, 1, n) + control_signal * wrong + shift
                        ),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def mc_verdict(table, tmp_path):
    write_csv(table, tmp_path / "predictions.csv")
    return MC.verdict(tmp_path)


def test_mc_clean_synthetic_table_is_reproduced(tmp_path):
    verdict = mc_verdict(mc_table(), tmp_path)
    assert set(outcomes(verdict).values()) == {PASS}


def test_mc_error_rule_fails_when_masks_never_disagree(tmp_path):
    table = mc_table()
    table["mutual_information"] = 0.0  # masks that change nothing: AUROC exactly 0.5
    verdict = mc_verdict(table, tmp_path)
    assert outcome_of(verdict, "[lecture] AUROC") == FAIL
    for name in ("held-out classes", "permuted pixels"):
        assert outcome_of(verdict, f"for {name} vs test") == FAIL


def test_mc_control_rule_fails_when_disagreement_is_the_deterministic_entropy(tmp_path):
    table = mc_table()
    table["mutual_information"] = table["deterministic_entropy"]
    verdict = mc_verdict(table, tmp_path)
    assert outcome_of(verdict, "[lecture] AUROC") == PASS
    assert outcome_of(verdict, "[lecture, control]") == FAIL


def test_mc_unfamiliar_rules_fail_when_unfamiliar_inputs_disagree_less(tmp_path):
    verdict = mc_verdict(mc_table(unfamiliar_shift=-3.0), tmp_path)
    assert outcome_of(verdict, "for permuted pixels vs test") == FAIL
    assert outcome_of(verdict, "for held-out classes vs test") == FAIL
    assert outcome_of(verdict, "[lecture] AUROC") == PASS


def test_mc_seed_without_errors_is_no_measurement(tmp_path):
    table = mc_table()
    table.loc[(table["seed"] == 2) & (table["inputs"] == "test"), "mc_correct"] = True
    rule = mc_verdict(table, tmp_path).rules[0]
    assert rule.outcome == FAIL and rule.reason == "no measurement"


def test_mask_scores_see_no_disagreement_when_masks_change_nothing():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])  # no dropout at all
    x = np.random.default_rng(0).normal(size=(20, 5)).astype("float32")
    scores = MC.mask_scores(model, x, masks=7)
    assert np.all(scores["votes_against_mode"] == 0)
    np.testing.assert_allclose(scores["mutual_information"], 0, atol=1e-6)
    np.testing.assert_allclose(scores["predictive_entropy"], scores["deterministic_entropy"])
    np.testing.assert_array_equal(scores["mc_predicted"], scores["deterministic_predicted"])


def test_mask_scores_disagree_with_dropout_on():
    keras.utils.set_random_seed(0)
    model = MC.dropout_mlp(MC.Config(hidden=(32,), dropout_rate=0.5), 5)
    x = np.random.default_rng(0).normal(size=(20, 5)).astype("float32")
    scores = MC.mask_scores(model, x, masks=50)
    assert scores["mutual_information"].min() > 0
    assert scores["votes_against_mode"].max() > 0
