"""exploding-product: the Cohen-Newman rates, and a failing rule for every broken variant."""

import shutil

import numpy as np
import pytest

from repro.claims import exploding_product
from repro.records import read_csv, write_csv

SMALL = exploding_product.Config(chains=400, sizes=(2, 4, 8), sweep_chains_times_size=1600)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / exploding_product.CLAIM_ID
    exploding_product.run(SMALL, (0, 1, 2), out)
    return out


def _doctored(small_run, tmp_path, name, change):
    out = tmp_path / exploding_product.CLAIM_ID
    shutil.copytree(small_run, out)
    frame = read_csv(out / name)
    change(frame)
    write_csv(frame, out / name)
    return out


def _rule(out, name_part):
    (rule,) = [r for r in exploding_product.verdict(out).rules if name_part in r.name]
    return rule


def test_theory_rate_is_cohen_newman():
    assert exploding_product.theory_rate(4, 1.0) == pytest.approx(0.5580, abs=1e-4)
    assert exploding_product.theory_rate(2, 1.0) == pytest.approx((np.log(2) - np.euler_gamma) / 2)
    # variance-preserving for one product, yet below 0 for a long one (Jensen)
    assert exploding_product.theory_rate(4, 0.5) == pytest.approx(-0.1352, abs=1e-4)


def test_small_run_reproduces(small_run):
    verdict = exploding_product.verdict(small_run)
    assert verdict.reproduced, verdict.describe()


def test_sweep_chains_fall_with_size(small_run):
    sweep = read_csv(small_run / "size_sweep.csv")
    assert (sweep["chains"] * sweep["size"] == SMALL.sweep_chains_times_size).all()


def _not_exploding(frame):  # the product ends near 1e10
    frame.loc[frame["step"] == frame["step"].max(), "median_log10_norm"] = 10.0


def _ten_percent_faster(frame):
    frame["mean_ln_norm"] *= 1.1


def _mean_growth_rate(frame):  # ln(n)/2: the rate of the mean, without Jensen's gap
    unit = frame["scale"] == 1.0
    frame.loc[unit, "rate"] = np.log(frame.loc[unit, "size"]) / 2


def _preserving_scale_explodes(frame):
    frame.loc[(frame["size"] == 4) & (frame["scale"] < 1), "rate"] = 0.05


@pytest.mark.parametrize(
    ("table", "damage", "rule"),
    [
        ("trajectories.csv", _not_exploding, "median log10 norm"),
        ("trajectories.csv", _ten_percent_faster, "growth rate / theory"),
        ("size_sweep.csv", _mean_growth_rate, "digamma"),
        ("size_sweep.csv", _preserving_scale_explodes, "1/sqrt(n)"),
    ],
)
def test_rule_fails_on_a_broken_table(small_run, tmp_path, table, damage, rule):
    out = _doctored(small_run, tmp_path, table, damage)
    assert _rule(out, rule).outcome == "fail"


def test_an_exploded_seed_fails_loudly(small_run, tmp_path):
    def overflow(frame):  # one seed's products overflowed to inf, its log-norms to NaN
        frame.loc[(frame["seed"] == 1) & (frame["step"] > 50), "mean_ln_norm"] = np.nan
        frame.loc[(frame["seed"] == 1) & (frame["step"] > 50), "median_log10_norm"] = np.nan

    out = _doctored(small_run, tmp_path, "trajectories.csv", overflow)
    for name in ("median log10 norm", "growth rate / theory"):
        rule = _rule(out, name)
        assert rule.outcome == "fail" and rule.reason == "no measurement"


def test_config_rejects_invalid_values():
    with pytest.raises(ValueError, match="chains >= 2"):
        exploding_product.Config(chains=1)
    with pytest.raises(ValueError):
        exploding_product.Config(sizes=(2, 8))
