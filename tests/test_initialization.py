"""initialization: the quick run and its verdict, noisy negative controls for every lecture
rule, a NaN that fails loudly, and the building blocks (best rate, growth fit, fresh
initializers, a restarted net that trains like a new one) on either Keras backend."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread

from repro import backend
from repro.backend import keras
from repro.claims import initialization as claim
from repro.data import digits
from repro.models import fit, mlp, restart
from repro.records import read_csv, write_csv
from repro.rules import BEYOND, LECTURE

BUDGET = claim.PROFILES["full"].epochs
EXPLODES = "ReLU, N(0,1): log10(last hidden layer's std / input std)"
VANISHES = "ReLU, N(0,0.01^2): log10(last hidden layer's std / input std)"
HE_STAYS = "ReLU, He: largest |log10(layer std / input std)| over the layers"
TANH_STAYS = "tanh, Glorot: largest |log10(layer std / input std)| over the layers"
POOR_NEVER = (
    f"N(0,1) and N(0,0.01^2): highest test accuracy over every rate and epoch (budget {BUDGET})"
)
SOUND_REACH = (
    "He, Glorot (ReLU) and tanh Glorot: lowest of their highest test accuracy at their best "
    f"rates (budget {BUDGET})"
)
HE_FASTER = "ReLU: area under the test-accuracy curve, He minus Glorot, at their best rates"

# Per lecture rule: (pilot mean, pilot per-seed sd) from the full profile on development
# seeds 100-104 (docs/claims/initialization.md); then (null: at the threshold, reversed:
# clearly reversed or absent).
PILOT = {
    EXPLODES: (7.46, 0.098),
    VANISHES: (-12.54, 0.098),
    HE_STAYS: (0.15, 0.064),
    TANH_STAYS: (0.26, 0.073),
    POOR_NEVER: (0.104, 0.0052),
    SOUND_REACH: (0.945, 0.0265),
    HE_FASTER: (0.21, 0.095),
}
EFFECTS = {
    EXPLODES: (claim.EXPLODE_MIN_ORDERS, 0.0),  # the N(0,1) net keeps its scale
    VANISHES: (claim.VANISH_MAX_ORDERS, 0.0),
    HE_STAYS: (claim.BAND_ORDERS, 2.5),  # He's signal grows 300-fold
    TANH_STAYS: (claim.BAND_ORDERS, 2.5),
    POOR_NEVER: (claim.Config().target_accuracy, 0.95),  # a poor scheme trains
    SOUND_REACH: (claim.Config().target_accuracy, 0.3),  # a sound scheme does not
    HE_FASTER: (0.0, -0.2),  # Glorot faster than He
}


@pytest.fixture(scope="module")
def quick(quick_run):
    return quick_run(claim.CLAIM_ID)


def test_quick_run_writes_its_outputs_and_the_verdict_recomputes(quick):
    for name, columns in claim.TABLES.items():
        assert list(read_csv(quick / name).columns) == list(columns), name
    for name in claim.FIGURES:
        assert (quick / name).stat().st_size > 0 and (quick / name).with_suffix(".svg").exists()
    curves = read_csv(quick / "training.csv")
    config = claim.PROFILES["quick"]
    assert (
        len(curves)
        == len(claim.SEEDS["quick"])
        * len(claim.SCHEMES)
        * len(config.learning_rates)
        * config.epochs
    )
    assert claim.verdict(quick).to_dict() == json.loads((quick / "verdict.json").read_text())


def test_rule_kinds_follow_the_notes(quick):
    rules = claim.verdict(quick).rules
    quick_budget = f"(budget {claim.PROFILES['quick'].epochs})"
    lecture = [
        r.name.replace(quick_budget, f"(budget {BUDGET})") for r in rules if r.kind == LECTURE
    ]
    assert lecture == [EXPLODES, VANISHES, HE_STAYS, TANH_STAYS, POOR_NEVER, SOUND_REACH, HE_FASTER]
    beyond = [r.name for r in rules if r.kind == BEYOND]
    assert [name.split(":")[0] for name in beyond] == ["ReLU, Glorot (mismatch)", "ReLU arms"]
    assert all(r.slide for r in rules if r.kind == LECTURE)


@pytest.mark.parametrize(
    "change",
    [
        {"target_accuracy": 0.05},
        {"learning_rates": (0.0,)},
        {"learning_rates": ()},
        {"depth": 2},
        {"momentum": 1.0},
        {"probe_batch": 1},
    ],
)
def test_invalid_config_raises(change):
    with pytest.raises(ValueError):
        dataclasses.replace(claim.Config(), **change)


# ------------------------------------------------------------- noisy negative controls


def write_initialization(out_dir, values, sds, rng, nan_seed=None):
    """The full profile's seeds and epochs, with every lecture statistic drawn per seed
    around `values` with `sds`.

    Activation stds change geometrically from the input to the last hidden layer by the
    drawn log10 ratio (so the largest |log10| is its absolute value); the predicted growth
    matches the profile (ReLU). Test-accuracy curves at two rates, the other rate (0.1)
    always worse: the poor arms flat (N(0,0.01^2) at the drawn level, N(0,1) at 0.1);
    He and tanh reach 0.96; Glorot (ReLU) ends at the drawn "sound reach" level; He's and
    Glorot's areas (mean over epochs) differ by the drawn He-minus-Glorot gap."""
    epochs = np.arange(1, BUDGET + 1)
    half = epochs > BUDGET // 2
    scales, curves = [], []
    for seed in claim.SEEDS["full"]:
        draw = {name: values[name] + rng.normal(0, sds[name]) for name in values}
        orders = {
            "ReLU, N(0,1)": draw[EXPLODES],
            "ReLU, N(0,0.01^2)": draw[VANISHES],
            "ReLU, Glorot": -1.6,
            "ReLU, He": draw[HE_STAYS],
            "tanh, Glorot": -draw[TANH_STAYS],
        }
        glorot_end = np.clip(draw[SOUND_REACH], 0, 1)
        glorot_area = 0.70 if glorot_end > 0.7 else glorot_end
        he_area = glorot_area + draw[HE_FASTER]

        def two_levels(area, end):  # first half L, second half `end`: mean `area`
            return np.where(half, end, np.clip(2 * area - end, 0, end))

        accuracy = {
            "ReLU, N(0,1)": np.full(BUDGET, 0.1),
            "ReLU, N(0,0.01^2)": np.full(BUDGET, draw[POOR_NEVER]),
            "ReLU, Glorot": two_levels(glorot_area, glorot_end),
            "ReLU, He": two_levels(he_area, 0.96),
            "tanh, Glorot": np.full(BUDGET, 0.96),
        }
        for scheme, order in orders.items():
            stds = 0.4 * 10 ** (order * np.arange(11) / 10)
            if seed == nan_seed:
                stds[-1] = np.nan
            growth = 10 ** (order / 10) if scheme.startswith("ReLU") else np.nan
            scales += [
                {
                    "seed": seed,
                    "scheme": scheme,
                    "layer": layer,
                    "activation_std": std,
                    "predicted_growth": growth,
                }
                for layer, std in enumerate(stds)
            ]
            poor = scheme in claim.POOR
            for rate in (0.01, 0.1):
                test = accuracy[scheme] if rate == 0.01 or poor else np.full(BUDGET, 0.1)
                curves += [
                    {
                        "seed": seed,
                        "scheme": scheme,
                        "learning_rate": rate,
                        "target_accuracy": 0.8,
                        "epoch": epoch,
                        "train_loss": 0.5,
                        "test_accuracy": a,
                    }
                    for epoch, a in zip(epochs, test, strict=True)
                ]
    write_csv(pd.DataFrame(scales), out_dir / "activation_scale.csv")
    write_csv(pd.DataFrame(curves), out_dir / "training.csv")


PILOT_VALUES = {name: mean for name, (mean, _) in PILOT.items()}
PILOT_SDS = {name: sd for name, (_, sd) in PILOT.items()}


def test_the_pilot_numbers_reproduce(tmp_path):
    write_initialization(tmp_path, PILOT_VALUES, PILOT_SDS, np.random.default_rng(0))
    verdict = claim.verdict(tmp_path)
    assert {r.name: r.outcome for r in verdict.rules if r.outcome != "pass"} == {}


@pytest.mark.parametrize("rule_name", list(PILOT))
def test_lecture_rule_noisy_controls(tmp_path, rule_name):
    null, reversed_ = EFFECTS[rule_name]
    sds = PILOT_SDS | {rule_name: measured_spread(claim.CLAIM_ID, rule_name, PILOT[rule_name][1])}

    def write_tables(out_dir, effect, rng):
        values = PILOT_VALUES | {rule_name: null if effect == "null" else reversed_}
        write_initialization(out_dir, values, sds, rng)

    assert_controls(claim, write_tables, rule_name, tmp_path)


def test_a_nan_layer_fails_as_no_measurement(tmp_path):
    write_initialization(tmp_path, PILOT_VALUES, PILOT_SDS, np.random.default_rng(0), nan_seed=1)
    failed = [rule for rule in claim.verdict(tmp_path).rules if rule.outcome == "fail"]
    assert len(failed) == 6  # every rule on activation scales
    assert all(rule.reason == "no measurement" for rule in failed)


# ---------------------------------------------------------------- the building blocks


def test_best_rate_is_the_largest_area_under_the_curve_ties_to_the_smaller_rate():
    curves = pd.DataFrame(
        {
            "scheme": "a",
            "seed": 0,
            "learning_rate": [0.1, 0.1, 0.01, 0.01, 1.0, 1.0],
            "epoch": [1, 2] * 3,
            "test_accuracy": [0.2, 0.9, 0.5, 0.6, 0.6, 0.5],
        }
    )
    assert claim.best_rate(curves, "a") == 0.01


def test_growth_factor_recovers_a_geometric_profile():
    scales = pd.DataFrame({"layer": range(11), "activation_std": 0.3 * 0.707 ** np.arange(11)})
    assert claim.growth_factor(scales) == pytest.approx(0.707, rel=1e-9)


@pytest.mark.backends
def test_predicted_growth_is_sqrt_of_fan_in_times_variance_over_two():
    backend.seed_everything(0)
    model = mlp(8, 10, hidden=(16, 16, 16), kernel_initializer=keras.initializers.Constant(0.25))
    assert claim.predicted_growth(model) == pytest.approx(np.sqrt(16 * 0.25**2 / 2))


@pytest.mark.backends
def test_every_layer_gets_its_own_kernel_whatever_form_the_initializer_takes():
    # A Keras 3 initializer object fixes its seed when made: shared as it is, it would make
    # every same-shaped layer alike. mlp gives each layer a fresh one.
    backend.seed_everything(0)
    shared = mlp(8, 10, hidden=(16, 16, 16), kernel_initializer=keras.initializers.HeNormal())
    named = mlp(8, 10, hidden=(16, 16, 16), kernel_initializer=claim.SCHEMES["ReLU, He"][1])
    for model in (shared, named):
        first, second = (keras.ops.convert_to_numpy(model.layers[i].kernel) for i in (1, 2))
        assert not np.allclose(first, second)


@pytest.mark.backends
def test_a_net_restarted_for_another_scheme_and_rate_trains_like_a_new_one():
    # run() restarts one compiled net per activation for every scheme, rate and seed.
    config = claim.Config(depth=3, width=16)
    x, y, _, _ = digits()
    x, y = x[:256], y[:256]

    def losses(model):
        return [row["loss"] for row in fit(model, x, y, epochs=2, batch_size=64, seed=7)]

    backend.seed_everything(7)
    expected = losses(claim.net(config, x.shape[1], "ReLU, He", 0.03))
    backend.seed_everything(1)
    shared = claim.net(config, x.shape[1], "ReLU, Glorot", 0.01)
    losses(shared)  # leaves momentum, iterations and weights behind
    for _ in range(2):
        model = restart(shared, lambda: claim.net(config, x.shape[1], "ReLU, He", 0.03), 7)
        assert losses(model) == expected
