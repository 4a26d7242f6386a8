"""The tuning claim and its search machinery (repro/search.py, repro/distributed.py): the
quick run, the rules and their controls, bad input, the Bayesian oracle, resume after a
kill, shards, distributed mode, and no private names of other libraries."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from controls import assert_controls, measured_spread

from repro.claims import tuning
from repro.cli import main as repro_main
from repro.records import read_csv, write_csv
from repro.runner import override, run_claim

ROOT = Path(__file__).resolve().parent.parent
# A small search that still has trials left to resume: random search, 3 trials, seed 1.
SMALL = ["tuners=random", "trials=3", "max_hidden_layers=2", "max_epochs=2", "min_epochs=1"]
SEED = 1
PILOT_SPREAD = 0.023  # per-seed sd of the kept model's gain, development seeds 100-111


@pytest.fixture(autouse=True)
def tuner_work(tmp_path_factory, monkeypatch):
    """Every search of these tests lives in a temporary work directory."""
    monkeypatch.setenv("REPRO_TUNER_WORK", str(tmp_path_factory.getbasetemp() / "tuner-work"))


def small_config():
    return override(tuning.PROFILES["quick"], SMALL)


def fits(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def trained_by(log: Path, out_dir: Path) -> list[list[str]]:
    """For each trial in the table, the processes that trained its configuration."""
    trials = read_csv(out_dir / "trials.csv")
    names = [c for c in trials if c.split("_")[0] in ("units", "dropout", "l1", "l2")]
    names += ["hidden_layers", "input_noise", "learning_rate", "batch_size", "epochs"]
    return [
        [
            record["tuner_id"]
            for record in fits(log)
            if all(record["values"].get(k) == pytest.approx(v) for k, v in values.items())
        ]
        for values in (
            {k: v for k, v in row.items() if pd.notna(v)}
            for row in trials[names].to_dict("records")
        )
    ]


def same_tables(a: Path, b: Path) -> None:
    for name in ("trials.csv", "test_accuracy.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


# ------------------------------------------------------------------ the quick run


def test_quick_run_writes_its_outputs_and_the_verdict_recomputes(quick_run):
    out = quick_run("tuning")
    for name, columns in tuning.TABLES.items():
        assert set(columns) <= set(read_csv(out / name).columns), name
    for name in (*tuning.FIGURES, *tuning.EXTRA_FILES):
        assert (out / name).stat().st_size > 0, name
    recorded = json.loads((out / "verdict.json").read_text())
    assert recorded == json.loads(json.dumps(tuning.verdict(out).to_dict()))
    kinds = [rule["kind"] for rule in recorded["rules"]]
    assert kinds == ["lecture", "beyond", "beyond", "beyond"]
    trials = read_csv(out / "trials.csv")
    assert (trials["status"] == "COMPLETED").all() and set(trials["tuner"]) == set(tuning.TUNERS)


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
        ({"train_size": 55}, "train_size"),
        ({"baseline_max_epochs": 5}, "baseline_max_epochs"),
    ],
)
def test_an_empty_or_contradictory_space_is_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        tuning.Config(**settings)


def hyperband_sweep(max_epochs: int, factor: int) -> list[int]:
    """The epochs each trial of one Hyperband sweep trains: keras-tuner's own oracle run
    on a one-value space."""
    import keras_tuner

    from repro import search

    hp = keras_tuner.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = search.HyperbandOracle(
        objective=keras_tuner.Objective("score", "max"),
        max_epochs=max_epochs,
        factor=factor,
        hyperband_iterations=1,
        hyperparameters=hp,
        seed=1,
        project=search.work_root() / "hb",
    )
    keras_tuner.Tuner(
        oracle=oracle,
        hypermodel=lambda hp: None,
        directory=str(search.work_root()),
        project_name="hb",
    )
    epochs = []
    while (trial := oracle.create_trial("tuner0")).status == "RUNNING":
        values = trial.hyperparameters.values
        epochs.append(values["tuner/epochs"] - values["tuner/initial_epoch"])
        oracle.update_trial(trial.trial_id, {"score": values["x"]})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return epochs


def test_the_full_profile_gives_every_tuner_a_comparable_budget():
    full = tuning.PROFILES["full"]
    sweep = hyperband_sweep(full.max_epochs, full.hyperband_factor)
    # Hyperband's one sweep trains about the epochs the others may (within a factor 1.5).
    assert 1 / 1.5 <= sum(sweep) / (full.trials * full.max_epochs) <= 1.5
    assert full.trials - full.bayesian_initial_points >= full.bayesian_initial_points
    assert full.baseline_max_epochs >= 5 * full.max_epochs  # the baseline may converge


# ------------------------------------------------------------------ bad input


def one_line_error(capsys, argv, message) -> None:
    assert repro_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "tuning", "--set", "trials=0"], "trial budget"),
        (["tune", "--shard", "0/5"], "--shard"),
        (["tune", "--shard", "6/5"], "--shard"),
        (["tune", "--shard", "a/b"], "--shard"),
        (["tune", "--workers", "0"], "--workers"),
        (["tune", "--port", "80"], "--port"),
        (["tune", "--role"], "KERASTUNER_TUNER_ID"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    one_line_error(capsys, argv, message)


def test_a_port_in_use_is_refused_in_one_line(capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = ["tune", "--distributed", "--port", str(port), "--out", str(tmp_path)]
        one_line_error(capsys, argv, f"port {port} on 127.0.0.1 is in use")
    assert not (tmp_path / "tuning").exists()


# ------------------------------------------------------------------ the rules


def write_scores(out_dir: Path, gains: dict, rng, baseline: float = 0.55) -> None:
    """test_accuracy.csv for the full profile's seeds: per tuner, a validation accuracy
    (random search's is best, so its model is kept) and its gain over the baseline."""
    rows = []
    for seed in tuning.SEEDS["full"]:
        base = baseline + rng.normal(0, 0.02)
        rows.append((seed, "baseline", "", 40, 0.55, base))
        for i, (name, gain) in enumerate(gains.items()):
            rows.append((seed, name, f"trial_{i}", 10, 0.6 - 0.01 * i, base + gain(rng)))
    write_csv(
        pd.DataFrame(rows, columns=tuning.TABLES["test_accuracy.csv"]),
        out_dir / "test_accuracy.csv",
    )


def test_the_kept_models_gain_rule_has_noisy_negative_controls(tmp_path):
    spread = measured_spread(tuning.CLAIM_ID, tuning.GAIN, pilot=PILOT_SPREAD)
    # Reversed: three per-seed spreads below the threshold (about six points lost).
    effects = {"null": tuning.MIN_GAIN, "reversed": tuning.MIN_GAIN - 3 * spread}

    def write_tables(out_dir, effect, rng):
        kept = effects[effect]
        gains = {"random": lambda r: kept + r.normal(0, spread)}
        gains |= {name: lambda r: 0.05 + r.normal(0, spread) for name in ("hyperband", "bayesian")}
        write_scores(out_dir, gains, rng)

    assert_controls(tuning, write_tables, tuning.GAIN, tmp_path)


def test_a_clear_gain_of_the_kept_model_passes_and_is_its_gain(tmp_path):
    gains = {"random": lambda r: 0.05 + r.normal(0, 0.01), "bayesian": lambda r: -0.1}
    write_scores(tmp_path, gains, np.random.default_rng(0))
    verdict = tuning.verdict(tmp_path)
    assert verdict.label == "REPRODUCED"
    assert verdict.rules[0].measured == pytest.approx(verdict.rules[1].measured)
    assert [rule.outcome for rule in verdict.of_kind("beyond")] == ["pass", "fail"]


def test_the_kept_model_is_chosen_by_validation_not_by_test_accuracy(tmp_path):
    # Hyperband tests best but validates worse: the kept model is random search's, which
    # loses to the baseline, so the lecture rule fails whatever Hyperband scored.
    gains = {"random": lambda r: -0.05 + r.normal(0, 0.005), "hyperband": lambda r: 0.2}
    write_scores(tmp_path, gains, np.random.default_rng(0))
    verdict = tuning.verdict(tmp_path)
    assert verdict.rules[0].outcome == "fail" and verdict.label == "NOT REPRODUCED"


def test_a_seed_without_a_measurement_fails(tmp_path):
    write_scores(tmp_path, {"random": lambda r: 0.1}, np.random.default_rng(0))
    scores = read_csv(tmp_path / "test_accuracy.csv")
    scores.loc[1, "test_accuracy"] = float("nan")
    write_csv(scores, tmp_path / "test_accuracy.csv")
    rule = tuning.verdict(tmp_path).rules[0]
    assert rule.outcome == "fail" and rule.reason == "no measurement"


# ------------------------------------------------------------ the search machinery


def test_each_tuner_and_each_configuration_has_its_own_seed():
    from repro import search

    values = {"units_1": 64, "learning_rate": 0.001}
    assert search.trial_seed(1, values) == search.trial_seed(1, dict(reversed(values.items())))
    assert search.trial_seed(1, values) != search.trial_seed(2, values)
    assert search.trial_seed(1, values) != search.trial_seed(1, values | {"units_1": 32})
    assert search.keras_tuner_seed(0) > 0  # keras-tuner would read 0 as "random"
    streams = {search.keras_tuner_seed(seed, name) for seed in range(5) for name in tuning.TUNERS}
    assert len(streams) == 15


def test_a_search_moves_when_its_code_or_versions_change(monkeypatch):
    from repro import data, models, search

    config, claim_file = tuning.PROFILES["quick"], Path(tuning.__file__)
    before = search.search_dir(tuning.CLAIM_ID, claim_file, config, 0)
    for module in (data, models, search):
        assert Path(module.__file__) in search.CODE, module.__name__
    with monkeypatch.context() as patch:
        patch.setitem(search.CODE, Path(models.__file__), b"other batches")
        assert search.search_dir(tuning.CLAIM_ID, claim_file, config, 0) != before
    with monkeypatch.context() as patch:
        patch.setattr(search, "versions", lambda: {"keras-tuner": "9.9"})
        assert search.search_dir(tuning.CLAIM_ID, claim_file, config, 0) != before
    assert search.search_dir(tuning.CLAIM_ID, claim_file, config, 0) == before


def test_augmentation_is_active_in_training_only():
    import keras_tuner

    space = tuning.hypermodel(tuning.PROFILES["quick"], search_seed=1)
    hp = keras_tuner.HyperParameters()
    hp.Fixed("input_noise", 0.3)
    model = space.build(hp)
    assert model.layers[0].name.startswith("gaussian_noise")
    x = np.ones((4, 40), dtype="float32")
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=False))


def bayesian_search(directory: Path, trials: int, stop_after: int | None = None) -> list[dict]:
    """A Bayesian search of a toy score on a conditional space (no training): the values
    it proposed, in order. With `stop_after`, the search ends early, as a killed one."""
    import keras_tuner

    from repro import search

    def space(hp):
        hp.Float("a", 0.0, 1.0)
        layers = hp.Choice("layers", [1, 2])
        with hp.conditional_scope("layers", [2]):
            hp.Int("units", 16, 256, step=2, sampling="log")
        return layers

    oracle = search.GaussianProcessOracle(
        objective=keras_tuner.Objective("score", "max"),
        max_trials=trials,
        num_initial_points=3,
        seed=7,
        project=directory / "bayesian",
    )
    tuner = keras_tuner.Tuner(
        oracle=oracle, hypermodel=space, directory=str(directory), project_name="bayesian"
    )
    tuner.save()
    search.commit(directory / "bayesian")
    proposed = [tuner.oracle.get_trial(t).hyperparameters.values for t in tuner.oracle.start_order]
    while len(proposed) < (stop_after or trials):
        trial = tuner.oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        values = trial.hyperparameters.values
        proposed.append(values)
        score = -((values["a"] - 0.3) ** 2) + 0.1 * values["layers"]
        tuner.oracle.update_trial(trial.trial_id, {"score": score})
        trial.status = "COMPLETED"
        tuner.oracle.end_trial(trial)
    return proposed


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 3-7 points
def test_the_bayesian_oracle_proposes_the_same_after_a_resume(tmp_path, capsys):
    from repro import search

    whole = bayesian_search(tmp_path / "whole", trials=8)
    bayesian_search(tmp_path / "resumed", trials=8, stop_after=5)
    search.restore(tmp_path / "resumed" / "bayesian")
    assert bayesian_search(tmp_path / "resumed", trials=8) == whole
    # Only active values: a second layer's units exist only with two layers.
    assert all(("units" in values) == (values["layers"] == 2) for values in whole)
    assert len({json.dumps(values, sort_keys=True) for values in whole}) == 8


# ------------------------------------------------ resume, shards, distributed (slow)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The small search run start to finish in a fresh work directory."""
    root = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_TUNER_WORK", str(root / "work"))
        run_claim(tuning, "quick", (SEED,), root / "out", small_config())
    return root / "out" / "tuning"


def committed_trials(work: Path) -> int:
    """Completed trials in the committed state of the search (0 before the first commit)."""
    states = list(work.rglob("random.state.json"))
    text = states[0].read_text() if states else "{}"
    files = json.loads(text) if text else {}
    return sum('"status": "COMPLETED"' in body for name, body in files.items() if "trial_" in name)


def repro_command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "repro.cli", *argv, "--seeds", str(SEED)] + [
        f"--set={setting}" for setting in SMALL
    ]


def test_a_search_killed_mid_trial_resumes_with_the_same_tables_and_no_retraining(
    uninterrupted, tmp_path, monkeypatch
):
    work, log, out = tmp_path / "work", tmp_path / "fits.jsonl", tmp_path / "out"
    env = os.environ | {"REPRO_TUNER_WORK": str(work), "REPRO_TUNER_FIT_LOG": str(log)}
    search = subprocess.Popen(
        repro_command("run", "tuning", "--out", str(out)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while committed_trials(work) < 1 and time.time() < deadline and search.poll() is None:
        time.sleep(0.02)
    search.send_signal(signal.SIGKILL)
    search.wait()
    finished = committed_trials(work)
    assert 1 <= finished < 3, "the kill must land after the first trial ended"
    assert not (out / "tuning").exists()
    # The worst a kill during keras-tuner's own writes can leave: emptied files.
    (project,) = work.rglob("random/oracle.json")
    project.write_text("")
    for path in project.parent.glob("trial_*/trial.json"):
        path.write_text(path.read_text()[:10])

    monkeypatch.setenv("REPRO_TUNER_WORK", str(work))
    monkeypatch.setenv("REPRO_TUNER_FIT_LOG", str(log))
    run_claim(tuning, "quick", (SEED,), out, small_config())
    same_tables(out / "tuning", uninterrupted)
    # Finished trials trained once; the one the kill interrupted perhaps twice.
    trained = [len(names) for names in trained_by(log, out / "tuning")]
    assert trained[:finished] == [1] * finished and all(1 <= n <= 2 for n in trained)


def test_shards_are_collected_without_training_again(uninterrupted, tmp_path, monkeypatch):
    work, log = tmp_path / "work", tmp_path / "fits.jsonl"
    env = os.environ | {"REPRO_TUNER_WORK": str(work), "REPRO_TUNER_FIT_LOG": str(log)}
    shards = [  # one seed: shard 2 of 2 has nothing to do
        subprocess.Popen(
            repro_command("tune", "--shard", f"{i}/2"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    printed = [text for shard in shards for text in shard.communicate(timeout=300)]
    assert [shard.returncode for shard in shards] == [0, 0], printed
    assert not any("Warning" in text for text in printed), printed  # keras-tuner's: to a log
    searched = len(fits(log))

    monkeypatch.setenv("REPRO_TUNER_WORK", str(work))
    monkeypatch.setenv("REPRO_TUNER_FIT_LOG", str(log))
    run_claim(tuning, "quick", (SEED,), tmp_path / "out", small_config())
    assert searched == 3 and len(fits(log)) == 3  # collecting trained no trial
    same_tables(tmp_path / "out" / "tuning", uninterrupted)


def test_a_distributed_search_runs_every_trial_exactly_once(uninterrupted, tmp_path):
    work, log = tmp_path / "work", tmp_path / "fits.jsonl"
    env = os.environ | {"REPRO_TUNER_WORK": str(work), "REPRO_TUNER_FIT_LOG": str(log)}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["tune", "--distributed", "--workers", "2", "--port", str(port)]
    done = subprocess.run(
        repro_command(*argv, "--out", str(tmp_path / "out")),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "out" / "tuning"
    trials = read_csv(out / "trials.csv")
    assert len(trials) == 3 and (trials["status"] == "COMPLETED").all()
    runs = trained_by(log, out)
    assert all(len(run) == 1 and run[0] in ("tuner0", "tuner1") for run in runs), runs
    # Random search draws the same configurations whichever worker asks, and each trial
    # seeds itself: the distributed table is the one of a single process.
    assert (out / "trials.csv").read_bytes() == (uninterrupted / "trials.csv").read_bytes()


# ------------------------------------------------------------------ no patches


def test_no_private_name_of_another_library_is_used():
    modules = ["repro/search.py", "repro/distributed.py", "repro/claims/tuning.py"]
    pattern = r"keras_tuner\.src|mock\.patch|gc\.(freeze|disable)|\._[a-z]"
    found = subprocess.run(
        ["grep", "-nE", pattern, *modules], cwd=ROOT, capture_output=True, text=True
    )
    assert found.stdout == "", found.stdout
