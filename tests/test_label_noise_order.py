"""label-noise-order: outputs, config, the premise deciding each data set's kind, and noisy
negative controls for every lecture rule."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread

from repro.claims import label_noise_order as claim
from repro.data import randomize_labels
from repro.records import read_csv, write_csv
from repro.rules import (
    BEYOND,
    FAIL,
    LECTURE,
    NOT_REPRODUCED,
    PASS,
    REPRODUCED,
    UNDECIDED,
)

PREMISE = "premise: test accuracy of the net trained on the clean subset alone"
AT_CLEAN_FIT = "wrong-label agreement when the clean subset first reaches 80%"
MEMORIZED = "wrong-label agreement at the last epoch (memorized)"
ORDER = "epochs from peak test accuracy to wrong labels 80% fit"
DROP = "peak minus last-epoch test accuracy"
STATISTICS = {  # the key of each rule's per-seed statistic in `synthetic_run`
    PREMISE: "premise",
    AT_CLEAN_FIT: "at_clean_fit",
    MEMORIZED: "memorized",
    ORDER: "order",
    DROP: "drop",
}
# Mean and per-seed standard deviation of each statistic on development seeds 100-107
# (full profile, docs/claims/label-noise-order.md).
PILOT = {
    "digits": {
        "premise": (0.944, 0.0071),
        "at_clean_fit": (0.027, 0.0080),
        "memorized": (0.953, 0.019),
        "order": (38.0, 2.0),
        "drop": (0.209, 0.043),
    },
    "mnist1d": {
        "premise": (0.320, 0.016),
        "at_clean_fit": (0.655, 0.049),
        "memorized": (1.0, 0.0),
        "order": (-4.0, 7.2),
        "drop": (0.015, 0.011),
    },
}
SEEDS = claim.SEEDS["full"]
PEAK_EPOCH, EPOCHS = 15, 80


def synthetic_run(premise, at_clean_fit, memorized, order, drop):
    """One seed's curves whose run_summary statistics are the given numbers: the clean
    subset is fit at epoch 2, test accuracy peaks at PEAK_EPOCH, and the wrong labels
    reach 80% `order` epochs later (if `memorized` reaches 80% at all)."""
    epochs = np.arange(1, EPOCHS + 1)
    peak, drop = 0.9, max(drop, 0.0)  # the peak is the largest value: the drop is >= 0
    test = np.interp(epochs, [1, PEAK_EPOCH, EPOCHS], [0.5, peak, peak - drop])
    memorized = min(memorized, 1.0)
    if memorized >= claim.FIT_LEVEL:
        fit_epoch = int(np.clip(PEAK_EPOCH + round(order), 3, EPOCHS))
        noisy = np.interp(epochs, [1, 2, fit_epoch, EPOCHS], [at_clean_fit] * 2 + [0.8, memorized])
    else:
        noisy = np.interp(epochs, [1, 2, EPOCHS], [at_clean_fit, at_clean_fit, memorized])
    curve = pd.DataFrame(
        {
            "epoch": epochs,
            "clean_accuracy": np.where(epochs >= 2, 0.95, 0.5),
            "noisy_agreement": noisy,
            "noisy_original_accuracy": 1 - noisy,
            "test_accuracy": test,
        }
    )
    reference = pd.DataFrame({"epoch": [1, 2], "test_accuracy": [0.3, premise]})
    return curve, reference


def write_synthetic(out_dir, rng, **centers):
    """curves.csv and premise.csv for the full profile's seeds: each statistic drawn per
    seed around the pilot's mean (or `centers[dataset][statistic]`) with the pilot's
    spread (for digits, the committed results' spread once they hold the rule). The draws
    are centred, so that the seeds' mean is the centre itself: a null control then sits
    exactly at its threshold, instead of passing on the 2.5% of draws that land above it."""
    curves, premise = [], []
    for dataset, pilot in PILOT.items():
        names = {statistic: name for name, statistic in STATISTICS.items()}
        draws = {}
        for statistic, (mean, sd) in pilot.items():
            sd = measured_spread(claim.CLAIM_ID, f"{dataset}: {names[statistic]}", sd)
            noise = rng.normal(0, sd, size=len(SEEDS))
            draws[statistic] = centers.get(dataset, {}).get(statistic, mean) + noise - noise.mean()
        for i, seed in enumerate(SEEDS):
            curve, reference = synthetic_run(**{k: v[i] for k, v in draws.items()})
            curves.append(curve.assign(dataset=dataset, seed=seed))
            premise.append(reference.assign(dataset=dataset, seed=seed))
    write_csv(pd.concat(curves)[list(claim.TABLES["curves.csv"])], out_dir / "curves.csv")
    write_csv(pd.concat(premise), out_dir / "premise.csv")


def rules_of(verdict) -> dict:
    return {rule.name: rule for rule in verdict.rules}


# ------------------------------------------------------------------ the quick run


def test_the_quick_run_holds_what_the_claim_measures(quick_run):
    out_dir = quick_run(claim.CLAIM_ID)
    for name, columns in claim.TABLES.items():
        table = read_csv(out_dir / name)
        assert set(columns) <= set(table.columns), name
        assert set(table["dataset"]) == set(claim.DATASETS), name  # no data set left out
    names = {rule.name for rule in claim.verdict(out_dir).rules}
    assert {f"{d}: {n}" for d in claim.DATASETS for n in STATISTICS} == names


def test_noisy_labels_file_matches_the_data_and_the_rate(quick_run):
    out_dir = quick_run(claim.CLAIM_ID)
    table = read_csv(out_dir / "noisy_labels.csv")
    config = claim.PROFILES["quick"]
    for (dataset, _seed), group in table.groupby(["dataset", "seed"]):
        assert len(group) == round(config.noise_rate * config.train_size)
        assert (group["original_label"] != group["noisy_label"]).all()
        _, y, _, _ = claim.DATASETS[dataset]()
        assert np.array_equal(y[group["example_index"]], group["original_label"])


def test_randomize_labels_makes_exactly_the_chosen_share_wrong():
    labels = np.random.default_rng(0).integers(0, 10, size=500)
    noisy, index = randomize_labels(labels, 0.3, np.random.default_rng(1))
    assert len(index) == 150 and np.all(np.diff(index) > 0)
    assert np.all(noisy[index] != labels[index])  # every relabeled example is wrong
    untouched = np.setdiff1d(np.arange(500), index)
    assert np.array_equal(noisy[untouched], labels[untouched])


@pytest.mark.parametrize(
    "change",
    [
        {"noise_rate": 0.0},
        {"noise_rate": 1.5},
        {"epochs": 1},
        {"premise_epochs": 0},
        {"train_size": 5000},
        {"hidden": ()},
        {"learning_rate": 0.0},
        {"batch_size": 0},
    ],
)
def test_invalid_config_raises(change):
    with pytest.raises(ValueError):
        dataclasses.replace(claim.PROFILES["full"], **change)


# ------------------------------------------------ summary statistics of a curve


def test_synthetic_runs_give_the_statistics_they_were_built_with():
    curve, reference = synthetic_run(0.9, 0.05, 0.95, 30, 0.2)
    curves = curve.assign(dataset="digits", seed=0)
    (row,) = claim.run_summary(curves, reference.assign(dataset="digits", seed=0)).itertuples()
    assert row.clean_fit_epoch == 2 and row.peak_test_epoch == PEAK_EPOCH
    assert row.noisy_at_clean_fit == pytest.approx(0.05)
    assert row.final_noisy_agreement == pytest.approx(0.95)
    assert row.memorized_after_peak == 30 and row.test_drop == pytest.approx(0.2)
    assert row.premise_test_accuracy == 0.9


def test_peak_epoch_ignores_last_bit_differences():
    curve, reference = synthetic_run(0.9, 0.05, 0.95, 30, 0.2)
    tied = curve["epoch"] == PEAK_EPOCH + 3
    peak = curve.loc[curve["epoch"] == PEAK_EPOCH, "test_accuracy"].to_numpy()
    curve.loc[tied, "test_accuracy"] = np.nextafter(peak, 2.0)
    summary = claim.run_summary(
        curve.assign(dataset="digits", seed=0), reference.assign(dataset="digits", seed=0)
    )
    assert (summary["peak_test_epoch"] == PEAK_EPOCH).all()


def test_a_clean_subset_never_fit_is_no_measurement(tmp_path):
    write_synthetic(tmp_path, np.random.default_rng(0))
    curves = read_csv(tmp_path / "curves.csv")
    curves.loc[(curves["dataset"] == "digits") & (curves["seed"] == 3), "clean_accuracy"] = 0.5
    write_csv(curves, tmp_path / "curves.csv")
    verdict = claim.verdict(tmp_path)
    rule = rules_of(verdict)[f"digits: {AT_CLEAN_FIT}"]
    assert (rule.outcome, rule.reason, verdict.label) == (FAIL, "no measurement", NOT_REPRODUCED)


# --------------------------------------------- the premise decides each data set's kind


def test_pilot_like_tables_judge_digits_and_report_mnist1d(tmp_path):
    write_synthetic(tmp_path, np.random.default_rng(0))
    verdict = claim.verdict(tmp_path)
    assert verdict.label == REPRODUCED
    for name, rule in rules_of(verdict).items():
        dataset = name.split(":")[0]
        assert rule.kind == {"digits": LECTURE, "mnist1d": BEYOND}[dataset], name
        assert bool(rule.slide) == (rule.kind == LECTURE), name


def test_a_data_set_that_meets_the_premise_is_judged_even_if_its_order_blurs(tmp_path):
    # MNIST-1D learned well, yet its wrong labels fit alongside the clean ones: its rules
    # become lecture rules and the claim is NOT REPRODUCED; it is not left out.
    write_synthetic(tmp_path, np.random.default_rng(0), mnist1d={"premise": 0.9})
    verdict = claim.verdict(tmp_path)
    rules = rules_of(verdict)
    assert rules[f"mnist1d: {PREMISE}"].kind == LECTURE
    assert rules[f"mnist1d: {AT_CLEAN_FIT}"].kind == LECTURE
    assert rules[f"mnist1d: {AT_CLEAN_FIT}"].outcome == FAIL
    assert verdict.label == NOT_REPRODUCED


@pytest.mark.parametrize("effect", ["null", "reversed"])
def test_premise_controls(tmp_path, effect):
    """The premise's negative controls. Where no data set meets the premise the order is
    tested nowhere, so the claim is INCONCLUSIVE by design, not NOT REPRODUCED: a null
    premise must not pass and must not leave the claim REPRODUCED; a clearly absent one
    (a network that learns digits no better than MNIST-1D) must fail, with the claim
    INCONCLUSIVE and no order rule judged."""
    center = {"null": claim.PREMISE_LEVEL, "reversed": 0.4}[effect]
    for draw in range(5):
        out_dir = tmp_path / str(draw)
        out_dir.mkdir()
        write_synthetic(out_dir, np.random.default_rng(draw), digits={"premise": center})
        verdict = claim.verdict(out_dir)
        rules = rules_of(verdict)
        premise = rules[f"digits: {PREMISE}"]
        assert premise.outcome != PASS and verdict.label != REPRODUCED
        assert [r.kind for r in verdict.rules if r.kind == LECTURE and PREMISE not in r.name] == []
        if effect == "reversed":
            assert (premise.outcome, premise.kind, verdict.label) == (FAIL, LECTURE, UNDECIDED)
            assert "premise" in verdict.reason


# ----------------------------------- noisy negative controls for the order rules


@pytest.mark.parametrize(
    "name, null, reversed_",
    [
        # wrong labels fit alongside the clean ones, as on MNIST-1D
        (AT_CLEAN_FIT, claim.MAX_NOISY_WHEN_CLEAN_FIT, 0.6),
        # the wrong labels never memorized (training stopped too early)
        (MEMORIZED, claim.FIT_LEVEL, 0.4),
        # memorization completes before test accuracy peaks
        (ORDER, 0.0, -6.0),
        # test accuracy still rising at the last epoch: the final value is the peak
        (DROP, claim.MIN_TEST_DROP, -0.05),
    ],
)
def test_order_rule_controls(tmp_path, name, null, reversed_):
    statistic = STATISTICS[name]

    def write_tables(out_dir, effect, rng):
        center = {"null": null, "reversed": reversed_}[effect]
        write_synthetic(out_dir, rng, digits={statistic: center})

    assert_controls(claim, write_tables, f"digits: {name}", tmp_path)
