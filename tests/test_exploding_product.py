"""exploding-product: the quick run and its verdict, the Cohen-Newman rates, noisy negative
controls for the lecture rule (a scale where the product does not explode), and a failing
rule for every broken variant of the beyond rules."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread

from repro.claims import exploding_product as claim
from repro.records import read_csv, write_csv
from repro.rules import BEYOND, LECTURE

LECTURE_RULE = "median log10 norm after 100 products"
# Per-seed sd of the median over 2000 chains of log10 of the norm after 100 products, on
# development seeds 100-109 (docs/claims/exploding-product.md).
PILOT_SD = 0.038


@pytest.fixture(scope="module")
def quick(quick_run):
    return quick_run(claim.CLAIM_ID)


def doctored(quick, tmp_path, name, change):
    out = tmp_path / claim.CLAIM_ID
    shutil.copytree(quick, out)
    frame = read_csv(out / name)
    change(frame)
    write_csv(frame, out / name)
    return out


def rule(out, name_part):
    (found,) = [r for r in claim.verdict(out).rules if name_part in r.name]
    return found


def test_quick_run_writes_its_outputs_and_the_verdict_recomputes(quick):
    for name, columns in claim.TABLES.items():
        assert set(columns) <= set(read_csv(quick / name).columns), name
    for name in claim.FIGURES:
        assert (quick / name).stat().st_size > 0 and (quick / name).with_suffix(".svg").exists()
    recorded = json.loads((quick / "verdict.json").read_text())
    assert claim.verdict(quick).to_dict() == recorded
    assert recorded["verdict"] == "REPRODUCED"


def test_rule_kinds_follow_the_notes(quick):
    kinds = {r.name: (r.kind, r.slide) for r in claim.verdict(quick).rules}
    assert kinds.pop(LECTURE_RULE) == (LECTURE, "Exploding Gradients")
    assert {kind for kind, _ in kinds.values()} == {BEYOND}


def test_theory_rate_is_cohen_newman():
    assert claim.theory_rate(4, 1.0) == pytest.approx(0.5580, abs=1e-4)
    assert claim.theory_rate(2, 1.0) == pytest.approx((np.log(2) - np.euler_gamma) / 2)
    # variance-preserving for one product, yet below 0 for a long one (Jensen)
    assert claim.theory_rate(4, 0.5) == pytest.approx(-0.1352, abs=1e-4)


def test_sweep_chains_fall_with_size(quick):
    sweep = read_csv(quick / "size_sweep.csv")
    assert (
        sweep["chains"] * sweep["size"] == claim.PROFILES["quick"].sweep_chains_times_size
    ).all()


def test_config_rejects_invalid_values():
    with pytest.raises(ValueError, match="chains >= 2"):
        claim.Config(chains=1)
    with pytest.raises(ValueError, match="include 4"):
        claim.Config(sizes=(2, 8))
    with pytest.raises(ValueError, match="2 chains per size"):
        claim.Config(sweep_chains_times_size=10)


# ------------------------------------------------- noisy controls for the lecture rule


def write_sweep(out_dir, seeds):
    """A size sweep on theory (the beyond rules; the controls do not look at them)."""
    rows = [
        {
            "seed": seed,
            "size": n,
            "scale": s,
            "chains": 100,
            "rate": claim.theory_rate(n, s),
            "theory_rate": claim.theory_rate(n, s),
        }
        for seed in seeds
        for n in (2, 4, 8)
        for s in (1.0, 1 / np.sqrt(n))
    ]
    write_csv(pd.DataFrame(rows), out_dir / "size_sweep.csv")


def write_tables(out_dir, effect, rng):
    """The full profile's seeds. "null": the final median sits at the threshold, 1e20, with
    the measured per-seed spread; "reversed": the experiment itself at s = 0.5, where the
    product shrinks (rate 0.558 + ln 0.5 < 0), its noise its own."""
    config, seeds = claim.PROFILES["full"], claim.SEEDS["full"]
    sd = measured_spread(claim.CLAIM_ID, LECTURE_RULE, pilot=PILOT_SD)
    frames = []
    for seed in seeds:
        if effect == "reversed":
            ln_norm = claim.log_norms(rng, config.chains, config.size, config.steps, 0.5)
        else:
            final = (claim.MIN_MEDIAN_LOG10 + rng.normal(0, sd)) * np.log(10)
            start = rng.normal(0.0, 0.4, config.chains) + 1.4
            ln_norm = np.linspace(start, final + start - np.median(start), config.steps + 1)
        frames.append(claim.trajectory(seed, ln_norm))
    write_csv(pd.concat(frames, ignore_index=True), out_dir / "trajectories.csv")
    write_sweep(out_dir, seeds)


def test_lecture_rule_noisy_controls(tmp_path):
    assert_controls(claim, write_tables, LECTURE_RULE, tmp_path)


# -------------------------------------------------- broken variants, beyond rules too


def not_exploding(frame):  # the product ends near 1e10
    frame.loc[frame["step"] == frame["step"].max(), "median_log10_norm"] = 10.0


def ten_percent_faster(frame):
    frame["mean_ln_norm"] *= 1.1


def mean_growth_rate(frame):  # ln(n)/2: the rate of the mean, without Jensen's gap
    unit = frame["scale"] == 1.0
    frame.loc[unit, "rate"] = np.log(frame.loc[unit, "size"]) / 2


def preserving_scale_explodes(frame):
    frame.loc[(frame["size"] == 4) & (frame["scale"] < 1), "rate"] = 0.05


@pytest.mark.parametrize(
    ("table", "damage", "name"),
    [
        ("trajectories.csv", not_exploding, LECTURE_RULE),
        ("trajectories.csv", ten_percent_faster, "growth rate / theory"),
        ("size_sweep.csv", mean_growth_rate, "digamma"),
        ("size_sweep.csv", preserving_scale_explodes, "1/sqrt(n)"),
    ],
)
def test_rule_fails_on_a_broken_table(quick, tmp_path, table, damage, name):
    out = doctored(quick, tmp_path, table, damage)
    assert rule(out, name).outcome == "fail"


def test_an_exploded_seed_fails_loudly(quick, tmp_path):
    def overflow(frame):  # one seed's products overflowed to inf, its log-norms to NaN
        late = (frame["seed"] == 1) & (frame["step"] > 50)
        frame.loc[late, ["mean_ln_norm", "median_log10_norm"]] = np.nan

    out = doctored(quick, tmp_path, "trajectories.csv", overflow)
    for name in (LECTURE_RULE, "growth rate / theory"):
        found = rule(out, name)
        assert found.outcome == "fail" and found.reason == "no measurement"
    assert claim.verdict(out).label == "NOT REPRODUCED"
