"""ratt-bound: the quick run and its verdict, the bound's formula and its validity in a
simulated world, noisy negative controls for the lecture rule, and a broken experiment that
fails the check."""

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread
from scipy.optimize import brentq

from repro.claims import ratt_bound as claim
from repro.records import read_csv, write_csv
from repro.rules import CHECK, FAIL, LECTURE, NOT_REPRODUCED, PASS

LECTURE_RULE = "smallest bound over the epochs, below chance 0.5 (mean over seeds)"
CHECK_RULE = "test error minus bound, largest over every epoch of every seed"
# Per-seed sd of the smallest bound on development seeds 100-109 (docs/claims/ratt-bound.md).
PILOT_SD = 0.028
FULL = claim.PROFILES["full"]
N, M = 1258 - FULL.random_size, FULL.random_size


@pytest.fixture(scope="module")
def quick(quick_run):
    return quick_run(claim.CLAIM_ID)


def rule(verdict, name):
    (found,) = [r for r in verdict.rules if r.name == name]
    return found


def test_the_quick_run_holds_what_the_claim_measures(quick):
    table = read_csv(quick / "bound.csv")
    assert set(claim.TABLES["bound.csv"]) <= set(table.columns)
    config = claim.PROFILES["quick"]
    assert len(table) == len(claim.SEEDS["quick"]) * config.epochs
    assert (table["n_clean"] + table["m_random"] == 1258).all()
    for name in claim.FIGURES:
        assert (quick / name).stat().st_size > 0 and (quick / name).with_suffix(".svg").exists()
    assert claim.verdict(quick).to_dict() == json.loads((quick / "verdict.json").read_text())


def test_rule_kinds_follow_the_notes(quick):
    verdict = claim.verdict(quick)
    assert (rule(verdict, LECTURE_RULE).kind, rule(verdict, LECTURE_RULE).slide) == (
        LECTURE,
        "Generalization in Deep Learning",
    )
    assert rule(verdict, CHECK_RULE).kind == CHECK


def test_check_passes_on_the_quick_run(quick):
    assert rule(claim.verdict(quick), CHECK_RULE).outcome == PASS


def test_check_fails_when_the_random_labels_are_all_wrong(quick, tmp_path):
    """A realistic bug: the extra points get wrong labels (as data.randomize_labels gives)
    instead of fair coins. Unfit, the net then disagrees with nearly all of them, E_R is
    about 1 - test error, and the formula's bound falls below the test error."""
    out = tmp_path / claim.CLAIM_ID
    shutil.copytree(quick, out)
    table = read_csv(out / "bound.csv")
    table["random_error"] = 1 - table["test_error"]
    write_csv(table, out / "bound.csv")
    verdict = claim.verdict(out)
    assert rule(verdict, CHECK_RULE).outcome == FAIL
    assert verdict.label == NOT_REPRODUCED and "broken" in verdict.reason


@pytest.mark.parametrize(
    "change",
    [{"delta": 0.0}, {"delta": 1.0}, {"random_size": 5000}, {"epochs": 0}, {"hidden": ()}],
)
def test_config_rejects_invalid_values(change):
    with pytest.raises(ValueError):
        dataclasses.replace(FULL, **change)


# ----------------------------------------------------------------------------- the bound


def test_bound_reduces_to_the_leading_part_when_the_confidence_terms_vanish():
    # Huge m and n shrink every square-root term; the leading part E_S + 1 - 2 E_R remains.
    bound = claim.ratt_bound(0.05, 0.45, 10**12, 10**12, 0.1, 20)
    assert bound == pytest.approx(0.05 + 1 - 2 * 0.45, abs=1e-4)


def test_bound_by_hand_at_the_design_point():
    """Each step of the docstring's derivation, written out once more."""
    clean, random, delta, epochs = 0.04, 0.48, 0.1, 20
    u = np.sqrt(np.log(4 / delta) / (2 * M))
    low, high = M * (0.5 - u), M * (0.5 + u)
    per_epoch = np.log(4 * epochs / delta)
    c_hat = clean + (1 + low / N) * np.sqrt(per_epoch / (2 * low))  # larger end here
    worst = 1 - c_hat + (c_hat - random) / (0.5 + u)  # c_hat < E_R: alpha at its top
    expected = worst + np.sqrt(per_epoch / (2 * low))
    assert (1 + low / N) / np.sqrt(low) > (1 + high / N) / np.sqrt(high)
    assert claim.ratt_bound(clean, random, N, M, delta, epochs) == pytest.approx(expected)


def test_bound_is_vacuous_once_random_labels_are_memorized():
    assert claim.ratt_bound(0.0, 0.0, N, M, 0.1, 20) > 1


def test_more_epochs_in_the_union_bound_raise_the_bound():
    one, twenty = (claim.ratt_bound(0.04, 0.48, N, M, 0.1, e) for e in (1, 20))
    assert twenty > one


def test_bound_holds_in_a_simulated_world_where_its_assumptions_do():
    """A classifier that does not depend on the data (its errors are independent coin flips
    at its true error): every step of the derivation holds, and the bound must fail in at
    most a fraction delta of worlds; the leading part alone fails in about half."""
    rng = np.random.default_rng(0)
    worlds, true_error, delta = 20000, 0.08, 0.1
    clean = rng.binomial(N, true_error, worlds) / N
    mislabeled = rng.binomial(M, 0.5, worlds)
    correct = M - mislabeled
    random = (
        rng.binomial(correct, true_error) + mislabeled - rng.binomial(mislabeled, true_error)
    ) / M
    bound = claim.ratt_bound(clean, random, N, M, delta, 1)
    assert (bound < true_error).mean() <= delta
    assert 0.3 < (clean + 1 - 2 * random < true_error).mean() < 0.7


def test_verdict_recomputes_the_bound_instead_of_trusting_the_column(tmp_path):
    table = synthetic_table([0.7] * 10, np.random.default_rng(0))  # vacuous
    table["bound"] = 0.3  # a forged, non-vacuous bound column
    write_csv(table, tmp_path / "bound.csv")
    assert rule(claim.verdict(tmp_path), LECTURE_RULE).outcome == FAIL


def test_nan_fails_as_no_measurement(tmp_path):
    table = synthetic_table([0.41] * 10, np.random.default_rng(0))
    table.loc[(table["seed"] == 3) & (table["epoch"] == 2), "random_error"] = np.nan
    write_csv(table, tmp_path / "bound.csv")
    found = rule(claim.verdict(tmp_path), LECTURE_RULE)
    assert found.outcome == FAIL and found.reason == "no measurement"


# ------------------------------------------------------------ negative controls (lecture)

EPOCHS = np.arange(1, FULL.epochs + 1)


def synthetic_table(smallest_bounds, rng) -> pd.DataFrame:
    """bound.csv for one seed per entry of `smallest_bounds`, shaped like the pilot: the
    clean error falls from about 0.12 to 0.035, the error on the random labels falls
    steadily from its first value, which is set so that the seed's smallest bound over
    the epochs is its entry."""
    frames = []
    for seed, target in enumerate(smallest_bounds):
        clean = np.clip(0.035 + 0.085 * np.exp(-(EPOCHS - 1) / 2) + rng.normal(0, 0.01), 0, 1)
        fall = 0.013 * (EPOCHS - 1)

        def smallest(first, clean=clean, fall=fall):
            return claim.ratt_bound(clean, first - fall, N, M, FULL.delta, FULL.epochs).min()

        first = brentq(lambda e, t=target: smallest(e) - t, 0.0, 1.0)
        random = first - fall
        test = np.clip(clean + 0.03 + rng.normal(0, 0.01, len(EPOCHS)), 0, 1)
        frames.append(
            pd.DataFrame(
                {
                    "seed": seed,
                    "epoch": EPOCHS,
                    "n_clean": N,
                    "m_random": M,
                    "delta": FULL.delta,
                    "epochs": FULL.epochs,
                    "clean_error": clean,
                    "random_error": random,
                    "test_error": test,
                    "leading_term": clean + 1 - 2 * random,
                    "bound": claim.ratt_bound(clean, random, N, M, FULL.delta, FULL.epochs),
                    "catalogue_bound": claim.catalogue_bound(
                        clean, random, N, M, FULL.delta, FULL.epochs
                    ),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


SD = measured_spread(claim.CLAIM_ID, LECTURE_RULE, pilot=PILOT_SD)
SEEDS = len(claim.SEEDS["full"])
# The reversed world: a net that already fits part of the random labels when first
# evaluated, so its best bound sits near 0.6 (E_R about 0.44 there instead of 0.48).
CENTRE = {"null": claim.CHANCE, "reversed": 0.6, "pilot": 0.41}


def write_tables(out_dir, effect, rng):
    smallest = CENTRE[effect] + SD * rng.standard_normal(SEEDS)
    write_csv(synthetic_table(smallest, rng), out_dir / "bound.csv")


def test_synthetic_tables_hit_their_smallest_bounds():
    table = synthetic_table([0.45, 0.6], np.random.default_rng(1))
    assert claim.best_epochs(table)["bound"].to_numpy() == pytest.approx([0.45, 0.6])


def test_lecture_rule_controls(tmp_path):
    assert_controls(claim, write_tables, LECTURE_RULE, tmp_path)


def test_the_control_tables_pass_at_the_pilot_mean(tmp_path):
    """The same tables with the pilot's mean: the controls fail for the effect, not for the
    way the tables are made."""
    for draw in range(3):
        out = tmp_path / str(draw)
        out.mkdir()
        write_tables(out, "pilot", np.random.default_rng(draw))
        assert claim.verdict(out).reproduced
