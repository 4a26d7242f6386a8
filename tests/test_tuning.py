"""The tuning claim: verdict, bad input, resume after a kill, shards, distributed mode."""

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

from repro.claims import tuning
from repro.cli import main as repro_main
from repro.harness import run_claim

# A small search that still has trials left to resume: RandomSearch, 3 trials, seed 1.
SMALL = ["tuners=random", "trials=3", "max_hidden_layers=2", "max_epochs=2", "min_epochs=1"]
SEED = "1"


def small_config():
    from repro.harness import override

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
    columns += ["hidden_layers", "learning_rate", "batch_size", "epochs"]
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
        ({"min_epochs": 5, "max_epochs": 2}, "epochs range"),
        ({"tuners": ("grid",)}, "tuners"),
        ({"max_dropout_rate": 1.5}, "dropout"),
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
    assert tuning.main(["shard", "--shard", shard]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--shard" in err


def test_a_port_in_use_is_refused_in_one_line(capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = tuning.main(["distributed", "--port", str(port), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and f"port {port}" in err and "in use" in err
    assert not (tmp_path / "tuning").exists()


def test_full_profile_gives_hyperband_exactly_the_common_budget():
    full = tuning.PROFILES["full"]
    assert tuning.hyperband_sweep_trials(full.max_epochs, full.hyperband_factor) == full.trials
    assert len(tuning.SEEDS["full"]) >= 5


def test_trial_seed_depends_on_the_values_and_the_search_seed_only():
    values = {"units_1": 64, "learning_rate": 0.001}
    assert tuning.trial_seed(1, values) == tuning.trial_seed(1, dict(reversed(values.items())))
    assert tuning.trial_seed(1, values) != tuning.trial_seed(2, values)
    assert tuning.trial_seed(1, values) != tuning.trial_seed(1, values | {"units_1": 32})
    assert tuning.keras_tuner_seed(0) > 0  # keras-tuner would read 0 as "random"
    assert tuning.keras_tuner_seed(1) - tuning.keras_tuner_seed(0) > 10_000


def test_the_bayesian_oracle_predicts_exactly_as_scikit_learn_does():
    import keras_tuner
    import numpy as np
    from sklearn.gaussian_process import GaussianProcessRegressor

    oracle = tuning.bayesian_oracle_class()(
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


def write_scores(out_dir: Path, rows) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        rows, columns=["seed", "model", "trial_id", "val_accuracy", "test_accuracy"]
    )
    tuning.write_csv(frame, out_dir / "test_accuracy.csv")
    return out_dir


def scores_for(seed, baseline, tuned_by_val):
    rows = [(seed, "baseline", "", 0.9, baseline)]
    rows += [(seed, name, "trial_0", val, test) for name, (val, test) in tuned_by_val.items()]
    return rows


def test_verdict_flips_when_the_baseline_wins_on_held_out_data(tmp_path):
    winning = [row for seed in range(5) for row in scores_for(seed, 0.90, {"random": (0.95, 0.93)})]
    assert tuning.verdict(write_scores(tmp_path / "win", winning)).reproduced
    losing = [row for seed in range(5) for row in scores_for(seed, 0.95, {"random": (0.97, 0.93)})]
    verdict = tuning.verdict(write_scores(tmp_path / "lose", losing))
    assert not verdict.reproduced
    assert verdict.rules[0].measured == pytest.approx(-0.02)


def test_verdict_keeps_the_model_with_the_best_validation_not_test_accuracy(tmp_path):
    # Hyperband has the best test accuracy but the worse validation accuracy: the model one
    # would keep is Bayesian's, which loses to the baseline, so the claim must fail.
    rows = [
        row
        for seed in range(5)
        for row in scores_for(seed, 0.92, {"hyperband": (0.90, 0.99), "bayesian": (0.96, 0.91)})
    ]
    verdict = tuning.verdict(write_scores(tmp_path, rows))
    assert not verdict.reproduced
    assert verdict.rules[1].measured == 0.0


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
    deadline = time.time() + 120
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
    for name in ("trials.csv", "test_accuracy.csv", "best_configs.json"):
        assert (resumed / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    for path, text in finished.items():  # finished trials were reloaded, not rewritten
        assert path.read_text() == text
    assert fitted_by(fits(log), resumed) == [["local"]] * 3


def test_searches_run_as_shards_are_collected_without_training_them_again(
    uninterrupted, tmp_path, monkeypatch
):
    work, log = tmp_path / "work", tmp_path / "fits.jsonl"
    env = os.environ | {"REPRO_TUNER_WORK": str(work), "REPRO_TUNER_FIT_LOG": str(log)}
    command = [sys.executable, "-m", "repro.claims.tuning", "shard", "--seeds", SEED]
    command += [f"--set={s}" for s in SMALL]
    shards = [  # one search (seed 1, RandomSearch): shard 2 of 2 has nothing to do
        subprocess.Popen([*command, "--shard", f"{i}/2"], env=env, stdout=subprocess.DEVNULL)
        for i in (1, 2)
    ]
    assert [shard.wait(timeout=300) for shard in shards] == [0, 0]
    assert len(completed_trials(work)) == 3
    searched = fits(log)

    monkeypatch.setenv("REPRO_TUNER_WORK", str(work))
    monkeypatch.setenv("REPRO_TUNER_FIT_LOG", str(log))
    run_claim(tuning, "quick", (int(SEED),), tmp_path / "out", small_config())

    out = tmp_path / "out" / "tuning"
    assert fitted_by(searched, out) == [["local"]] * 3
    assert len(fits(log)) == len(searched) + 1  # collecting trains only the untuned baseline
    for name in ("trials.csv", "test_accuracy.csv", "best_configs.json"):
        assert (out / name).read_bytes() == (uninterrupted / name).read_bytes(), name


def test_distributed_search_runs_every_trial_exactly_once(uninterrupted, tmp_path):
    work, log = tmp_path / "work", tmp_path / "fits.jsonl"
    env = os.environ | {"REPRO_TUNER_WORK": str(work), "REPRO_TUNER_FIT_LOG": str(log)}
    command = [sys.executable, "-m", "repro.claims.tuning", "distributed", "--workers", "2"]
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
