"""The tuning claim and repro.search: verdict, bad input, resume after a kill, shards,
distributed mode."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import repro
from repro.claims import tuning
from repro.cli import main as repro_main
from repro.runner import run_claim

# A small search that still has trials left to resume: RandomSearch, 3 trials, seed 1.
SMALL = ["tuners=random", "trials=3", "max_hidden_layers=2", "max_epochs=2", "min_epochs=1"]
SEED = "1"


def small_config():
    from repro.runner import override

    return override(tuning.PROFILES["quick"], SMALL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fits(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def trial_values(out_dir: Path) -> list[dict]:
    """Each trial's hyperparameter values as the fit log writes them (no NaN columns)."""
    trials = tuning.read_csv(out_dir / "trials.csv")
    columns = [c for c in trials.columns if c.split("_")[0] in ("units", "dropout", "l1", "l2")]
    columns += ["hidden_layers", "input_noise", "learning_rate", "batch_size", "epochs"]
    return [
        {k: v for k, v in row.items() if pd.notna(v)} for row in trials[columns].to_dict("records")
    ]


def fitted_by(log_records, out_dir: Path) -> list[list[str]]:
    """For each trial in the table, the processes that fitted its configuration."""
    return [
        [
            record["tuner_id"]
            for record in log_records
            if all(record["values"].get(k) == pytest.approx(v) for k, v in values.items())
        ]
        for values in trial_values(out_dir)
    ]


# ------------------------------------------------------------------ fast checks


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"min_units": 64, "max_units": 32}, "units range"),
        ({"trials": 0}, "trial budget"),
        ({"batch_sizes": ()}, "batch_sizes"),
        ({"regularization_strengths": ()}, "regularization_strengths"),
        ({"min_learning_rate": 0.1, "max_learning_rate": 0.01}, "learning-rate range"),
        ({"min_epochs": 50, "max_epochs": 20}, "epochs range"),
        ({"tuners": ("grid",)}, "tuners"),
        ({"max_dropout_rate": 1.5}, "dropout"),
        ({"bayesian_initial_points": 7}, "bayesian_initial_points"),
    ],
)
def test_empty_or_contradictory_space_is_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        tuning.Config(**settings)


def test_cli_reports_a_zero_budget_in_one_line(capsys):
    assert repro_main(["run", "tuning", "--set", "trials=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "trial budget" in err


@pytest.mark.parametrize("shard", ["0/5", "6/5", "2", "a/b"])
def test_a_bad_shard_is_refused_in_one_line(capsys, shard):
    assert repro_main(["tune", "--shard", shard]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--shard" in err


def test_a_port_in_use_is_refused_in_one_line(capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = repro_main(["tune", "--distributed", "--port", str(port), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and f"port {port}" in err and "in use" in err
    assert not (tmp_path / "tuning").exists()


def test_full_profile_budget_is_fair_between_tuners():
    full = tuning.PROFILES["full"]
    # Hyperband's one sweep spends about the epochs the others may spend (within 10%).
    oracle = tuning.search.hyperband_sweep_trials(full.max_epochs, full.hyperband_factor)
    assert oracle > full.trials
    assert full.trials - full.bayesian_initial_points >= 2 * full.bayesian_initial_points
    assert full.baseline_max_epochs >= 5 * full.max_epochs  # the baseline may converge
    assert len(tuning.SEEDS["full"]) >= 5


def test_editing_prose_keeps_the_searches_and_editing_code_does_not(tmp_path):
    from repro import search

    source = Path(tuning.__file__).read_text()
    edited = tmp_path / "edited.py"

    def same_code(text: str) -> bool:
        edited.write_text(text)
        return search.code_text(edited) == search.code_text(Path(tuning.__file__))

    assert same_code(source.replace('"""Claim:', '"""Claim (reworded):', 1))
    assert same_code(source.replace("# Rounded:", "# A new comment.\n    # Rounded:", 1))
    assert not same_code(source.replace("MIN_GAIN = 0.01", "MIN_GAIN = 0.02", 1))


def test_a_search_reruns_when_the_code_its_trials_run_changes(monkeypatch):
    # The batches, the data and the seeding decide a trial's numbers as much as the claim
    # does: a finished search made by other code must not be reused.
    from repro import data, harness, models, search

    config, claim_file = tuning.PROFILES["quick"], Path(tuning.__file__)
    before = search.search_dir(tuning.CLAIM_ID, claim_file, config, 0)
    for module in (repro, harness, data, models, search):
        assert Path(module.__file__) in search.CODE, module.__name__
    monkeypatch.setitem(search.CODE, Path(models.__file__), b"other batches")
    assert search.search_dir(tuning.CLAIM_ID, claim_file, config, 0) != before


def test_each_tuner_and_each_configuration_has_its_own_seed():
    values = {"units_1": 64, "learning_rate": 0.001}
    seed = tuning.search.trial_seed
    assert seed(1, values) == seed(1, dict(reversed(values.items())))
    assert seed(1, values) != seed(2, values)
    assert seed(1, values) != seed(1, values | {"units_1": 32})
    kt_seed = tuning.search.keras_tuner_seed
    assert kt_seed(0) > 0  # keras-tuner would read 0 as "random"
    assert kt_seed(1) - kt_seed(0) > 10_000
    assert len({kt_seed(seed, name) for seed in range(5) for name in tuning.TUNERS}) == 15


def test_augmentation_is_active_in_training_only():
    import keras_tuner
    import numpy as np

    space = tuning.hypermodel(tuning.PROFILES["quick"], search_seed=1)
    hp = keras_tuner.HyperParameters()
    hp.Fixed("input_noise", 0.3)
    model = space.build(hp)
    assert model.layers[0].name.startswith("gaussian_noise")
    x = np.ones((4, 40), dtype="float32")
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=False))


def test_the_bayesian_oracle_predicts_exactly_as_scikit_learn_does():
    import keras_tuner
    import numpy as np
    from sklearn.gaussian_process import GaussianProcessRegressor

    oracle = tuning.search.bayesian_oracle_class()(
        objective=keras_tuner.Objective("score", "max"), max_trials=2, seed=3
    )
    stock = GaussianProcessRegressor(**oracle.gpr.get_params(deep=False))
    assert type(oracle.gpr) is not GaussianProcessRegressor
    rng = np.random.default_rng(0)
    x_train, y_train = rng.random((6, 5)), rng.random(6)
    # One point at a time as the oracle asks, a batch, and the training points themselves,
    # where the variance is about zero and may come out negative before clipping.
    queries = [rng.random((1, 5)) for _ in range(20)] + [rng.random((7, 5)), x_train]

    def assert_same_predictions(query):
        mean, std = oracle.gpr.predict(query, return_std=True)
        stock_mean, stock_std = stock.predict(query, return_std=True)
        np.testing.assert_array_equal(mean, stock_mean)
        np.testing.assert_array_equal(std, stock_std)
        np.testing.assert_array_equal(oracle.gpr.predict(query), stock.predict(query))

    for query in queries[:2]:  # before fitting: the prior, left to scikit-learn
        assert_same_predictions(query)
    oracle.gpr.fit(x_train, y_train)
    stock.fit(x_train, y_train)
    for query in queries:
        assert_same_predictions(query)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # few trials
def test_the_bayesian_oracle_proposes_what_keras_tuners_own_method_proposes(tmp_path):
    import keras_tuner
    import numpy as np
    from scipy.optimize._numdiff import approx_derivative  # what minimize uses without jac

    hp = keras_tuner.HyperParameters()
    for name in "abc":
        hp.Float(name, 0.0, 1.0)
    oracle = tuning.search.bayesian_oracle_class()(
        objective=keras_tuner.Objective("score", "max"),
        max_trials=10,
        num_initial_points=3,
        hyperparameters=hp,
        seed=3,
    )
    oracle._set_project_dir(tmp_path, "bayesian")
    for _ in range(5):  # 3 random trials, then 2 proposals
        trial = oracle.create_trial("tuner0")
        values = trial.hyperparameters.values
        score = -((values["a"] - 0.3) ** 2) - (values["b"] - 0.7) ** 2 + 0.1 * values["c"]
        oracle.update_trial(trial.trial_id, {"score": score})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)

    # The gradient is scipy's forward difference, the points sent in one batch.
    x = np.array([0.2, 0.5, 1.0])  # c at its upper bound: a backward step
    bound, gradient = oracle.bound_and_gradient(x)
    scipy_gradient = approx_derivative(
        lambda z: oracle.bound_and_gradient(z)[0], x, method="2-point", bounds=(0.0, 1.0)
    )
    np.testing.assert_allclose(gradient, scipy_gradient, rtol=1e-6, atol=1e-9)

    # The next proposal: as low a bound as keras-tuner's stock method finds, at about the
    # same point (the optimizers' paths differ in rounding only).
    ours = oracle.populate_space("next")["values"]
    oracle._random_state = np.random.RandomState(oracle.seed + len(oracle.trials))
    stock = keras_tuner.oracles.BayesianOptimizationOracle.populate_space(oracle, "next")
    ours, stock = (np.array([v[name] for name in "abc"]) for v in (ours, stock["values"]))
    ours_bound, stock_bound = (oracle.bound_and_gradient(v)[0] for v in (ours, stock))
    assert ours_bound <= stock_bound + 1e-6 * abs(stock_bound)
    np.testing.assert_allclose(ours, stock, atol=0.01)


def write_scores(out_dir: Path, rows) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=list(tuning.TABLES["test_accuracy.csv"]))
    tuning.write_csv(frame, out_dir / "test_accuracy.csv")
    return out_dir


def scores_for(seed, baseline, tuned_by_val):
    rows = [(seed, "baseline", "", 0.5, baseline)]
    rows += [(seed, name, "trial_0", val, test) for name, (val, test) in tuned_by_val.items()]
    return rows


GAIN = "held-out accuracy gain of the kept tuned model over the converged untuned one"
WOBBLE = [0.004, -0.003, 0.0, 0.002, -0.003]  # seed-to-seed noise of a test accuracy


def verdict_of_kept_model(tmp_path, validation: float, test: float):
    """The verdict when every seed's kept model scores `validation` and `test` (plus noise)
    against a baseline at 0.55."""
    rows = [
        row
        for seed, wobble in enumerate(WOBBLE)
        for row in scores_for(seed, 0.55, {"random": (validation, test + wobble)})
    ]
    return tuning.verdict(write_scores(tmp_path, rows))


def test_a_clean_gain_passes(tmp_path):
    verdict = verdict_of_kept_model(tmp_path, 0.66, 0.65)
    assert verdict.label == "REPRODUCED"
    assert verdict.rules[0].measured == pytest.approx(0.1)


def test_tuning_that_gains_nothing_fails_the_gain_rule(tmp_path):
    # Doctored: every seed's kept model tests as well as the baseline, give or take noise.
    verdict = verdict_of_kept_model(tmp_path, 0.6, 0.55)
    (rule,) = [rule for rule in verdict.rules if rule.name == GAIN]
    assert rule.outcome == "fail" and verdict.label == "NOT REPRODUCED"


def test_a_gain_too_noisy_to_call_is_inconclusive(tmp_path):
    rows = [
        row
        for seed, gain in enumerate([0.08, -0.05, 0.06, -0.04, 0.07])
        for row in scores_for(seed, 0.55, {"random": (0.6, 0.55 + gain)})
    ]
    assert tuning.verdict(write_scores(tmp_path, rows)).label == "INCONCLUSIVE"


def test_a_seed_without_a_measurement_fails(tmp_path):
    rows = [row for seed in range(5) for row in scores_for(seed, 0.55, {"random": (0.6, 0.7)})]
    rows[1] = (0, "random", "trial_0", 0.6, float("nan"))
    verdict = tuning.verdict(write_scores(tmp_path, rows))
    assert verdict.rules[0].outcome == "fail" and verdict.rules[0].reason == "no measurement"


def test_verdict_keeps_the_model_with_the_best_validation_not_test_accuracy(tmp_path):
    # Hyperband has the best test accuracy but the worse validation accuracy: the model one
    # would keep is Bayesian's, which loses to the baseline, so the rule must fail.
    rows = [
        row
        for seed, wobble in enumerate(WOBBLE)
        for row in scores_for(
            seed, 0.62, {"hyperband": (0.60, 0.75), "bayesian": (0.66, 0.60 + wobble)}
        )
    ]
    verdict = tuning.verdict(write_scores(tmp_path, rows))
    assert verdict.rules[0].outcome == "fail"
    assert verdict.rules[0].measured == pytest.approx(-0.02)


# ------------------------------------------------- resume and distributed (slow)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The small search run start to finish in a fresh search directory."""
    root = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_TUNER_WORK", str(root / "work"))
        run_claim(tuning, "quick", (int(SEED),), root / "out", small_config())
    return root / "out" / "tuning"


def completed_trials(work: Path) -> list[Path]:
    """trial.json files that say COMPLETED (one being written reads as empty: skipped)."""
    return [
        path for path in work.rglob("trial.json") if '"status": "COMPLETED"' in path.read_text()
    ]


def test_a_search_killed_mid_trial_resumes_without_redoing_finished_trials(
    uninterrupted, tmp_path, monkeypatch
):
    work, log = tmp_path / "work", tmp_path / "fits.jsonl"
    env = os.environ | {"REPRO_TUNER_WORK": str(work), "REPRO_TUNER_FIT_LOG": str(log)}
    command = [sys.executable, "-m", "repro.cli", "run", "tuning", "--seeds", SEED]
    command += [f"--set={s}" for s in SMALL] + ["--out", str(tmp_path / "out")]
    search = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not completed_trials(work) and time.time() < deadline and search.poll() is None:
        time.sleep(0.02)
    search.send_signal(signal.SIGKILL)
    search.wait()
    finished = {path: path.read_text() for path in completed_trials(work)}
    assert 1 <= len(finished) < 3, "the kill must land after the first trial, before the last"
    assert not (tmp_path / "out" / "tuning").exists()

    monkeypatch.setenv("REPRO_TUNER_WORK", str(work))
    monkeypatch.setenv("REPRO_TUNER_FIT_LOG", str(log))
    run_claim(tuning, "quick", (int(SEED),), tmp_path / "out", small_config())

    resumed = tmp_path / "out" / "tuning"
    for name in ("trials.csv", "test_accuracy.csv"):
        assert (resumed / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    for path, text in finished.items():  # finished trials were reloaded, not rewritten
        assert path.read_text() == text
    assert fitted_by(fits(log), resumed) == [["local"]] * 3


class Killed(BaseException):
    """Stands for a SIGKILL landing at one exact point of keras-tuner's bookkeeping."""


@pytest.mark.parametrize(
    "trial_id, status",
    [("1", "RUNNING"), ("0", "COMPLETED")],
    ids=["after-a-new-trial-file", "after-an-ended-trial-file"],
)
def test_a_search_killed_between_two_of_its_files_resumes_as_if_never_killed(
    uninterrupted, tmp_path, monkeypatch, trial_id, status
):
    # keras-tuner writes a trial's file, then the oracle's: a kill in between leaves them
    # disagreeing (a new trial the oracle never recorded, or an ended one still ongoing).
    from keras_tuner.src.engine import oracle

    save_trial = oracle.Oracle._save_trial

    def save_then_die(self, trial):
        save_trial(self, trial)
        if (trial.trial_id, trial.status) == (trial_id, status):
            raise Killed

    log = tmp_path / "fits.jsonl"
    monkeypatch.setenv("REPRO_TUNER_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("REPRO_TUNER_FIT_LOG", str(log))
    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(oracle.Oracle, "_save_trial", save_then_die)
        run_claim(tuning, "quick", (int(SEED),), tmp_path / "out", small_config())
    run_claim(tuning, "quick", (int(SEED),), tmp_path / "out", small_config())

    resumed = tmp_path / "out" / "tuning"
    for name in ("trials.csv", "test_accuracy.csv"):
        assert (resumed / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    assert fitted_by(fits(log), resumed) == [["local"]] * 3  # no trial trained twice


def test_searches_run_as_shards_are_collected_without_training_them_again(
    uninterrupted, tmp_path, monkeypatch
):
    work, log = tmp_path / "work", tmp_path / "fits.jsonl"
    env = os.environ | {"REPRO_TUNER_WORK": str(work), "REPRO_TUNER_FIT_LOG": str(log)}
    command = [sys.executable, "-m", "repro.cli", "tune", "--seeds", SEED]
    command += [f"--set={s}" for s in SMALL]
    shards = [  # one search (seed 1, RandomSearch): shard 2 of 2 has nothing to do
        subprocess.Popen(
            [*command, "--shard", f"{i}/2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    printed = [text for shard in shards for text in shard.communicate(timeout=600)]
    assert [shard.returncode for shard in shards] == [0, 0]
    assert len(completed_trials(work)) == 3
    # keras-tuner's own warnings went to the search's log file, not to the terminal.
    assert not any("DeprecationWarning" in text for text in printed), printed
    (search_log,) = work.rglob("random.log")
    assert "DeprecationWarning" in search_log.read_text()
    searched = fits(log)

    monkeypatch.setenv("REPRO_TUNER_WORK", str(work))
    monkeypatch.setenv("REPRO_TUNER_FIT_LOG", str(log))
    run_claim(tuning, "quick", (int(SEED),), tmp_path / "out", small_config())

    out = tmp_path / "out" / "tuning"
    assert fitted_by(searched, out) == [["local"]] * 3
    assert len(fits(log)) == len(searched) + 1  # collecting trains only the untuned baseline
    for name in ("trials.csv", "test_accuracy.csv"):
        assert (out / name).read_bytes() == (uninterrupted / name).read_bytes(), name


def test_distributed_search_runs_every_trial_exactly_once(uninterrupted, tmp_path):
    work, log = tmp_path / "work", tmp_path / "fits.jsonl"
    env = os.environ | {"REPRO_TUNER_WORK": str(work), "REPRO_TUNER_FIT_LOG": str(log)}
    command = [sys.executable, "-m", "repro.cli", "tune", "--distributed", "--workers", "2"]
    command += ["--port", str(free_port()), "--seeds", SEED, "--out", str(tmp_path / "out")]
    command += [f"--set={s}" for s in SMALL]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    out = tmp_path / "out" / "tuning"
    trials = tuning.read_csv(out / "trials.csv")
    assert len(trials) == 3 and (trials["status"] == "COMPLETED").all()
    runs = fitted_by(fits(log), out)
    assert all(len(run) == 1 and run[0] in ("tuner0", "tuner1") for run in runs), runs
    # RandomSearch draws the same configurations whichever worker asks, and every trial
    # seeds itself: the distributed table equals the single-process one.
    assert (out / "trials.csv").read_bytes() == (uninterrupted / "trials.csv").read_bytes()
