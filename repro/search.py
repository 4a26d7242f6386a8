"""The search machinery behind the tuning claim: keras-tuner's tuners made deterministic,
resumable, shardable and distributable, their trials as tidy rows, and `repro tune`.

The claim (repro/claims/tuning.py) says what is searched and how it is judged; this module
says how a search runs. It works on any claim module that provides `Config`, `PROFILES`,
`SEEDS`, `tuner(name, config, seed)` and `search_kwargs(config)`.

- Seeds: keras-tuner reads a seed of 0 as "choose one at random", and consecutive seeds
  draw shifted copies of the same random values, so a search hands it `keras_tuner_seed`.
  Each tuner gets its own stream (the tuner's index in the stream), so RandomSearch and
  the Bayesian oracle's random start do not propose the same first trials. The tuner seeds
  neither initialization nor data order, so every trial seeds both from `trial_seed`: the
  same configuration trains identically in whichever process runs it.
- Resume: search directories are working state under tuner-work/ (or $REPRO_TUNER_WORK),
  keyed by a digest of the config and of the code (not its docstrings or comments, so
  editing prose keeps finished searches). Rerunning a command reloads them:
  finished trials are not rerun, the interrupted one is rerun from scratch. The stock
  Bayesian oracle restarts its random generator on reload, so here it is reseeded from the
  number of trials so far and a resumed search proposes what an uninterrupted one would.
- Speed: the Bayesian oracle proposes by keras-tuner's method, but differentiates its
  acquisition with one batched call of the Gaussian process instead of scipy's one point
  at a time (a tenth of the time; the proposals agree to about 1e-4).
- Ties: the best trial is the one with the highest score, the earliest on a tie, because
  keras-tuner's own ranking keeps ties in load order, which differs after a resume.
- Distributed mode: keras-tuner's chief oracle and workers, switched on by
  KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT. Each search is
  one distributed search on its own port, the base port + its index. The chief's gRPC loop
  runs here (with keras-tuner's OracleServicer) rather than in `tuner.search()`, whose
  chief polls every 20 seconds and never stops its server.
- Output: keras-tuner's prints and warnings go to `<search directory>/<tuner>.log`; the
  terminal gets one progress bar per search.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

from repro import UsageError
from repro.backend import seed_everything
from repro.figures import save_figure
from repro.records import atomic_path, code_text, progress
from repro.rules import mean_interval
from repro.runner import choose_seeds, override, run_claim

OBJECTIVE = "val_accuracy"
TUNER_STREAMS = ("random", "hyperband", "bayesian")  # a tuner's index is its seed stream
METRICS = (OBJECTIVE, "epochs_run", "wall_seconds")  # what `fit_trial` reports of a trial


# ------------------------------------------------------------------------------ seeds


def keras_tuner_seed(seed: int, name: str = "random") -> int:
    """The seed a search hands keras-tuner: positive, far from the next seed's, and apart
    for each tuner (its values walk a counter that starts at the seed, one per value)."""
    return 1 + seed * 100_003 + TUNER_STREAMS.index(name) * 10_007


def trial_seed(search_seed: int, values: dict) -> int:
    """A seed for one configuration: the same values train the same way in any process."""
    text = json.dumps(values, sort_keys=True)
    return (search_seed * 1_000_003 + zlib.crc32(text.encode())) % 2**31


def log_fit(values: dict, seconds: float) -> None:
    """One JSON line per finished fit in $REPRO_TUNER_FIT_LOG, if set: who trained what.

    Tests use it to prove that a resumed or distributed search trains each trial once.
    """
    path = os.environ.get("REPRO_TUNER_FIT_LOG")
    if path:
        record = {"tuner_id": os.environ.get("KERASTUNER_TUNER_ID", "local"), "values": values}
        with open(path, "a") as log:  # one short append per line: safe across processes
            log.write(json.dumps(record | {"seconds": round(seconds, 3)}, sort_keys=True) + "\n")


# ------------------------------------------------------------------------ the tuners


def quick_predict_gpr_class():
    from scipy.linalg import solve_triangular
    from sklearn.gaussian_process import GaussianProcessRegressor

    class QuickPredictGPR(GaussianProcessRegressor):
        """scikit-learn's Gaussian process whose fitted predict(x, return_std=True) skips
        scikit-learn's input checks, and otherwise does the same arithmetic (tested equal).

        The Bayesian oracle below calls it a few thousand times per proposal, and the
        checks took 85% of each call.
        """

        def predict(self, X, return_std=False, return_cov=False):
            if not return_std or return_cov or not hasattr(self, "X_train_"):
                return super().predict(X, return_std=return_std, return_cov=return_cov)
            k = self.kernel_(X, self.X_train_)
            mean = self._y_train_std * (k @ self.alpha_) + self._y_train_mean
            v = solve_triangular(self.L_, k.T, lower=True, check_finite=False)
            variance = self.kernel_.diag(X) - np.einsum("ij,ji->i", v.T, v)
            return mean, np.sqrt(np.maximum(variance, 0.0) * self._y_train_std**2)

    return QuickPredictGPR


def bayesian_oracle_class():
    import keras_tuner
    from keras_tuner.src.engine.trial import TrialStatus
    from scipy.optimize import minimize

    class ResumableBayesianOracle(keras_tuner.oracles.BayesianOptimizationOracle):
        """keras-tuner's Bayesian oracle, proposing by the same method, resumably and with
        the bound's gradient computed in one call of the Gaussian process.

        The method (keras-tuner's): fit the Gaussian process to the trials so far, then
        minimize its lower confidence bound on the sign-flipped score, mean - beta x std,
        by L-BFGS-B from 50 starting points drawn uniformly in the unit cube; the lowest
        end point is the proposal. keras-tuner hands scipy the bound alone, which scipy
        differentiates by forward differences one shifted point at a time: about 45,000
        single-point predictions and 4 to 9 s per proposal. Here the point and its shifted
        copies, with scipy's step sizes, go through the process as one batch (under 1 s).
        """

        def populate_space(self, trial_id):
            # The stock oracle restarts its generator on reload; seeded by the trial count,
            # a resumed search draws the starting points an uninterrupted one would.
            self._random_state = np.random.RandomState(self.seed + len(self.trials))
            completed = [t for t in self.trials.values() if t.status == TrialStatus.COMPLETED]
            initial = self.num_initial_points or max(3 * len(self.hyperparameters.space), 3)
            if len(completed) < initial:
                return self._random_populate_space()
            x, y = (np.nan_to_num(a, posinf=0, neginf=0) for a in self._vectorize_trials())
            self.gpr.fit(x, y)
            bounds = self._get_hp_bounds().astype(float)
            starts = self._random_state.uniform(bounds[:, 0], bounds[:, 1], (50, len(bounds)))
            ends = [
                minimize(self.bound_and_gradient, start, jac=True, bounds=bounds, method="L-BFGS-B")
                for start in starts
            ]
            best = min(ends, key=lambda end: end.fun)  # the first on a tie, as keras-tuner's
            return {"status": TrialStatus.RUNNING, "values": self._vector_to_values(best.x)}

        def bound_and_gradient(self, x):
            """mean - beta x std at x, and its forward-difference gradient (scipy's steps,
            taken backwards where a forward step would leave the unit cube)."""
            step = np.sqrt(np.finfo(float).eps) * np.maximum(1.0, np.abs(x))
            step = np.where(x + step > 1.0, -step, step)
            step = (x + step) - x  # the step as represented in floating point
            mean, std = self.gpr.predict(np.vstack([x, x + np.diag(step)]), return_std=True)
            bound = mean - self.beta * std
            return bound[0], (bound[1:] - bound[0]) / step

        def _make_gpr(self):
            stock = super()._make_gpr()
            return quick_predict_gpr_class()(**stock.get_params(deep=False))

    return ResumableBayesianOracle


def hyperband_sweep_trials(max_epochs: int, factor: int) -> int:
    """How many trials one Hyperband sweep runs (keras-tuner's bracket sizes)."""
    import keras_tuner

    oracle = keras_tuner.oracles.HyperbandOracle(OBJECTIVE, max_epochs=max_epochs, factor=factor)
    return sum(
        oracle._get_size(bracket, round_num)
        for bracket in range(oracle._get_num_brackets())
        for round_num in range(bracket + 1)
    )


def work_root() -> Path:
    return Path(os.environ.get("REPRO_TUNER_WORK", "tuner-work"))


# Every module a trial runs, besides the claim's: the numeric settings, the seeding, the
# data and the batches. Read once: a search started by this process stays in one directory
# even if the code is edited while it runs.
SEARCH_MODULES = ("__init__.py", "backend.py", "data.py", "models.py", "search.py")
CODE = {path: code_text(path) for path in (Path(__file__).with_name(m) for m in SEARCH_MODULES)}


def search_dir(claim_id: str, claim_file: Path, config, seed: int) -> Path:
    """Where one seed's searches live: keyed by the config and by the code that runs them
    (docstrings, comments and layout aside)."""
    if claim_file not in CODE:
        CODE[claim_file] = code_text(claim_file)
    text = json.dumps(dataclasses.asdict(config), sort_keys=True).encode()
    digest = hashlib.sha256(text + b"".join(CODE.values())).hexdigest()[:12]
    return work_root() / f"{claim_id}-{digest}" / f"seed{seed}"


def make_tuner(name: str, hypermodel, config, seed: int, directory: Path):
    """A keras-tuner tuner on `directory`/`name`, reloaded if it exists.

    RandomSearch and the Bayesian oracle get `config.trials` trials (the oracle's first
    `config.bayesian_initial_points` are random); Hyperband gets one sweep up to
    `config.max_epochs` with `config.hyperband_factor`.
    """
    Path(directory).mkdir(parents=True, exist_ok=True)
    with keras_tuner_output(Path(directory) / f"{name}.log"):  # "Reloading Tuner from ..."
        tuner = _make_tuner(name, hypermodel, config, seed, directory)
    # Three windows in which a kill leaves keras-tuner's files disagreeing. The tuner's
    # own file, which makes keras-tuner reload a project, is first written after the first
    # trial has ended: the oracle's file is reloaded without it. A new trial's file is
    # written just before the oracle's: a trial the oracle never recorded is forgotten, so
    # that it is proposed again as an uninterrupted search would. An ended trial is saved
    # before the oracle forgets it as ongoing: a finished trial is not queued to run again.
    oracle = tuner.oracle
    if hasattr(oracle, "_retry_queue"):  # a distributed worker's oracle is only a client
        if not oracle.trials and (Path(tuner.project_dir) / "oracle.json").exists():
            oracle.reload()
        for trial_id in set(oracle.trials) - set(oracle.start_order):
            del oracle.trials[trial_id]
        oracle._retry_queue = [
            trial_id
            for trial_id in oracle._retry_queue
            if oracle.trials[trial_id].status != "COMPLETED"
        ]
    # keras-tuner imports tensorboard before every trial only to patch TensorBoard
    # callbacks; there are none here, and tensorflow-cpu no longer installs tensorboard.
    tuner._configure_tensorboard_dir = lambda callbacks, trial, execution=0: None
    return tuner


def _save_json_atomically(path, obj):
    """keras-tuner's save_json through a temporary file and a rename: a process killed
    while saving leaves the previous file, never an empty one that cannot be reloaded."""
    text = json.dumps(obj)
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)
    return text


@functools.cache  # one class, however many tuners are made
def checkpoint_when_trained_class():
    from keras_tuner.src.engine import tuner_utils

    class CheckpointWhenTrained(tuner_utils.SaveBestEpoch):
        """keras-tuner's checkpoint of a trial, saved once when training ends rather than at
        every epoch that improves the score (a save costs 0.05 s, an eighth of a trial).

        keras-tuner adds it after the fit's own callbacks, so it saves the weights that
        EarlyStopping restored: the very model the trial is scored on, which is also what
        a Hyperband trial continued from this one starts from.
        """

        def on_epoch_end(self, epoch, logs=None):
            pass

        def on_train_end(self, logs=None):
            self._save_model()

    return CheckpointWhenTrained


def _make_tuner(name: str, hypermodel, config, seed: int, directory: Path):
    import keras_tuner
    from keras_tuner.src import utils
    from keras_tuner.src.engine import tuner_utils

    utils.save_json = _save_json_atomically
    tuner_utils.SaveBestEpoch = checkpoint_when_trained_class()

    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    where = {"directory": str(directory), "project_name": name}
    search_seed = keras_tuner_seed(seed, name)
    if name == "random":
        tuner = keras_tuner.RandomSearch(
            hypermodel, objective=objective, max_trials=config.trials, seed=search_seed, **where
        )
    elif name == "bayesian":
        oracle = bayesian_oracle_class()(
            objective=objective,
            max_trials=config.trials,
            num_initial_points=config.bayesian_initial_points,
            seed=search_seed,
        )
        tuner = keras_tuner.Tuner(oracle=oracle, hypermodel=hypermodel, **where)
    else:
        tuner = keras_tuner.Hyperband(
            hypermodel,
            objective=objective,
            max_epochs=config.max_epochs,
            factor=config.hyperband_factor,
            hyperband_iterations=1,
            seed=search_seed,
            **where,
        )
        tuner.oracle.max_trials = hyperband_sweep_trials(config.max_epochs, config.hyperband_factor)
    return tuner


@contextlib.contextmanager
def keras_tuner_output(log_path: Path):
    """What keras-tuner prints or warns inside the block is appended to `log_path`."""
    with open(log_path, "a") as log, warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, category, filename, lineno, *_: log.write(
            warnings.formatwarning(message, category, filename, lineno)
        )
        with contextlib.redirect_stdout(log):
            yield


def run_search(tuner, kwargs: dict, desc: str) -> None:
    """Run the tuner's search to its budget (resuming it), with one progress bar; what
    keras-tuner prints or warns goes to a log file beside the search's directory."""
    # A distributed worker's oracle is a client of the chief's: it knows no trials.
    trials = getattr(tuner.oracle, "trials", {})
    done = sum(trial.status == "COMPLETED" for trial in trials.values())
    bar = progress(None, desc, initial=done, total=getattr(tuner.oracle, "max_trials", None))
    end_trial = tuner.on_trial_end

    def on_trial_end(trial):
        end_trial(trial)
        bar.update(1)

    tuner.on_trial_end = on_trial_end
    with keras_tuner_output(Path(tuner.project_dir).with_suffix(".log")):
        tuner.search(**kwargs)
    bar.close()


def searches(config, seeds) -> list[tuple[int, str]]:
    """Every (seed, tuner) search in the order all processes run them."""
    return [(seed, name) for seed in seeds for name in config.tuners]


def search_shard(claim, config, seeds, shard: int, shards: int) -> None:
    """Run every `shards`-th search, starting with number `shard` (1-based), to its end.

    `make` runs the shards as separate processes side by side; `repro run tuning` then
    finds every search finished in the work directory and only collects the results.
    """
    kwargs = claim.search_kwargs(config)
    for seed, name in searches(config, seeds)[shard - 1 :: shards]:
        run_search(claim.tuner(name, config, seed), kwargs, f"seed {seed}, {name}")


# ---------------------------------------------------------------------- the trials


def validation_scores(x_val, y_val):
    """A callback that puts val_loss (the data term, without L1/L2 penalties) and
    val_accuracy of a classifier with logits into each epoch's logs, for the callbacks
    after it (EarlyStopping, keras-tuner's checkpoint). One eager call of the model per
    epoch, where Keras' validation_data would trace a second compiled function per trial:
    about half a second of CPU, a quarter of a short trial."""
    import keras

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    class ValidationScores(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logits = self.model(x_val, training=False)
            logs["val_loss"] = float(loss(y_val, logits))
            logs[OBJECTIVE] = float((np.asarray(logits).argmax(axis=1) == y_val).mean())

    return ValidationScores()


def fit_trial(
    model,
    values: dict,
    search_seed: int,
    batch_size: int,
    epochs: int,
    x,
    y,
    validation_data,
    callbacks=(),
    **kwargs,
) -> dict:
    """A HyperModel's `fit`: train `model` on (x, y) in an order seeded from its
    configuration's `values`, and report METRICS. The score is the validation accuracy of
    the weights the fit keeps, which EarlyStopping may have restored."""
    from repro.models import accuracy, batches

    data_seed = trial_seed(search_seed, values) + 1
    seed_everything(data_seed)
    started = time.perf_counter()
    history = model.fit(
        batches(x, y, batch_size, shuffle_seed=data_seed),
        epochs=epochs,
        callbacks=[validation_scores(*validation_data), *callbacks],
        **kwargs,
    )
    seconds = time.perf_counter() - started
    log_fit(values, seconds)
    return {
        OBJECTIVE: accuracy(model, *validation_data),
        "epochs_run": len(history.epoch),
        "wall_seconds": seconds,
    }


def trial_rows(tuner, seed: int, name: str, metrics=(OBJECTIVE,)) -> list[dict]:
    """The oracle's trials as tidy rows, in the order they started, status kept."""
    oracle = tuner.oracle
    rows = []
    for number, trial_id in enumerate(oracle.start_order, start=1):
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row = {
            "seed": seed,
            "tuner": name,
            "trial": number,
            "trial_id": f"trial_{trial_id}",
            "status": trial.status,
            **{k: v for k, v in values.items() if not k.startswith("tuner/")},
            "epochs": values.get("epochs", values.get("tuner/epochs")),
            "initial_epoch": values.get("tuner/initial_epoch", 0),
            "parent_trial_id": (
                f"trial_{values['tuner/trial_id']}" if "tuner/trial_id" in values else ""
            ),
        }
        for metric in metrics:
            exists = trial.metrics.exists(metric)
            row[metric] = trial.metrics.get_best_value(metric) if exists else float("nan")
        rows.append(row)
    return rows


def best_trial(tuner):
    """The finished trial with the best score, ties going to the earliest trial."""
    finished = [
        t for t in tuner.oracle.trials.values() if t.status == "COMPLETED" and t.score is not None
    ]
    return max(finished, key=lambda trial: (trial.score, -int(trial.trial_id)))


def best_so_far_figure(trials, colors: dict, untuned: float, path: Path) -> None:
    """Each tuner's best score so far against its trials: mean and 95% CI over seeds."""
    from repro.figures import figure

    title = "tuning: best validation accuracy so far (mean, 95% CI over seeds)"
    fig, (ax,) = figure(title, width=6.4, height=4.2)
    for name, group in trials.groupby("tuner", sort=False):
        best = group.assign(best=group.groupby("seed")[OBJECTIVE].cummax().ffill())
        stats = [(t, *mean_interval(g["best"])) for t, g in best.groupby("trial")]
        t, mean, low, high = map(np.asarray, zip(*stats, strict=True))
        ax.plot(t, mean, color=colors[name], lw=2, label=name)
        ax.fill_between(t, low, high, color=colors[name], alpha=0.2, lw=0)
    ax.axhline(untuned, color="k", ls="--", lw=1, label="untuned (mean)")
    ax.set(xlabel="trial, in the order the tuner started them", ylabel="best validation accuracy")
    ax.set_ylim(max(0.0, ax.get_ylim()[0]), None)
    ax.legend(loc="lower right", title=f"{trials['seed'].nunique()} seeds")
    save_figure(fig, path)


def score_against_space_figure(trials, panels, colors: dict, untuned: float, path: Path) -> None:
    """The score of every finished trial against its settings, a panel per (columns, label,
    scale) in `panels` (scale: linear, integer, log, log2 or symlog), 4 panels to a row."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    from repro.figures import plt

    completed = trials[trials["status"] == "COMPLETED"]
    rows = -(-len(panels) // 4)
    fig, grid = plt.subplots(rows, 4, figsize=(12.8, 3.4 * rows), sharey=True, squeeze=False)
    fig.suptitle("tuning: validation accuracy of every trial against its settings", weight="bold")
    for ax, (columns, label, scale) in zip(grid.flat[: len(panels)], panels, strict=True):
        for name, group in completed.groupby("tuner", sort=False):
            x = np.concatenate([group[c].to_numpy() for c in columns])
            y = np.tile(group[OBJECTIVE].to_numpy(), len(columns))
            ax.scatter(x, y, s=10, alpha=0.6, color=colors[name], label=name)
        ax.axhline(untuned, color="k", ls="--", lw=1, label="untuned (mean)")
        if scale == "log2":  # powers of two, labelled as plain numbers
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(ScalarFormatter())
        elif scale == "integer":  # counts: no ticks between whole numbers
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        elif scale == "symlog":  # strengths include 0: linear near it, log beyond
            ax.set_xscale("symlog", linthresh=1e-5)
            ax.set_xlim(left=-1e-6)
        else:
            ax.set_xscale(scale)
        ax.set(xlabel=label)
    for ax in grid[:, 0]:
        ax.set_ylabel("validation accuracy")
    for ax in grid.flat[len(panels) :]:
        ax.set_visible(False)
    handles, labels = grid[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, -0.04), ncol=4)
    save_figure(fig, path)


# ---------------------------------------------------------------- distributed mode


def port_is_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((ip, port))
        except OSError:
            return False
    return True


def serve_as_chief(tuner, ip: str, port: int, workers: int) -> None:
    """keras-tuner's OracleServicer on ip:port until every worker has been told to stop."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    class Servicer(oracle_chief.OracleServicer):
        def __init__(self, oracle):
            super().__init__(oracle)
            self.workers_seen = set()

        def CreateTrial(self, request, context):  # noqa: N802 (gRPC method name)
            self.workers_seen.add(request.tuner_id)
            response = super().CreateTrial(request, context)
            if response.trial.status == protos.get_proto().TrialStatus.Value("IDLE"):
                time.sleep(0.1)  # a worker waiting on Hyperband's next round asks again at once
            return response

    oracle = tuner.oracle
    servicer = Servicer(oracle)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{ip}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise UsageError(f"port {port} on {ip} is in use: choose another KERASTUNER_ORACLE_PORT")
    server.start()
    try:
        while not (
            len(servicer.workers_seen) >= workers
            and servicer.stop_triggered
            and oracle_chief.exit_chief(oracle)
        ):
            time.sleep(0.05)
    finally:
        server.stop(grace=None)
    # The oracle saves itself before it drops an ended trial from its ongoing ones; saved
    # again now, the last trial does not look interrupted to whoever reloads the project.
    oracle.save()


def distributed_role(claim, config, seeds, workers: int) -> None:
    """Run this process's part of every search: the chief's oracle, or a worker's trials."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    ip, base_port = os.environ.get("KERASTUNER_ORACLE_IP"), os.environ.get("KERASTUNER_ORACLE_PORT")
    if not (tuner_id and ip and base_port):
        raise UsageError(
            "--role is one process of a distributed search: set KERASTUNER_TUNER_ID "
            "(chief, tuner0, tuner1, ...), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT"
        )
    kwargs = claim.search_kwargs(config)
    for index, (seed, name) in enumerate(searches(config, seeds)):
        port = int(base_port) + index
        os.environ["KERASTUNER_ORACLE_PORT"] = str(port)  # read by keras-tuner's client
        tuner = claim.tuner(name, config, seed)
        tuner.save()  # a worker's file also tells a later local run to reload this project
        if "chief" in tuner_id:
            serve_as_chief(tuner, ip, port, workers)
        else:
            run_search(tuner, kwargs, f"{tuner_id}: seed {seed}, {name}")


def launch_on_loopback(claim, args, config, seeds) -> int:
    """Start a chief and `workers` workers on 127.0.0.1, wait, then write the outputs."""
    ip, base_port = "127.0.0.1", args.port
    ports = range(base_port, base_port + len(searches(config, seeds)))
    busy = [port for port in ports if not port_is_free(ip, port)]
    if busy:
        raise UsageError(
            f"port {busy[0]} on {ip} is in use (this run needs ports {ports.start}-"
            f"{ports.stop - 1}): choose another with --port"
        )
    os.environ["REPRO_TUNER_WORK"] = str(work_root() / "distributed")
    role = [sys.executable, "-m", "repro.cli", "tune", "--role", "--profile", args.profile]
    role += ["--seeds", ",".join(map(str, seeds)), "--workers", str(args.workers)]
    role += [f"--set={setting}" for setting in args.settings]
    names = ["chief", *(f"tuner{i}" for i in range(args.workers))]
    processes = {}
    for name in names:
        env = os.environ | {
            "KERASTUNER_TUNER_ID": name,
            "KERASTUNER_ORACLE_IP": ip,
            "KERASTUNER_ORACLE_PORT": str(base_port),
        }
        processes[name] = subprocess.Popen(role, env=env)
    try:
        while any(process.poll() is None for process in processes.values()):
            if any(process.poll() not in (None, 0) for process in processes.values()):
                break
            time.sleep(0.2)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait()
    failed = [name for name, process in processes.items() if process.returncode != 0]
    if failed:
        print(f"tune: {failed[0]} failed; outputs not written", file=sys.stderr)
        return 1
    print(run_claim(claim, args.profile, seeds, args.out, config).describe())
    return 0


# ------------------------------------------------------------------- `repro tune`


def add_arguments(parser) -> None:
    """The options of `repro tune`."""
    parser.add_argument("--profile", choices=("quick", "full"), default="quick")
    parser.add_argument("--seeds", help="e.g. 0-4 (default: the profile's seeds)")
    parser.add_argument("--seed-offset", type=int, default=0, metavar="N", help="shift the seeds")
    parser.add_argument("--shard", help="I/N: run searches I, I+N, ... only, write no results")
    parser.add_argument("--distributed", action="store_true", help="keras-tuner's chief+workers")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (distributed)")
    parser.add_argument("--port", type=int, default=8470, help="first port (distributed)")
    parser.add_argument("--role", action="store_true", help="internal: one distributed process")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results directory")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE")


def parse_shard(text: str) -> tuple[int, int]:
    """'2/5' -> (2, 5), with 1 <= 2 <= 5."""
    shard, _, shards = text.partition("/")
    if not (shard.isdigit() and shards.isdigit() and 1 <= int(shard) <= int(shards)):
        raise UsageError(f"--shard must look like I/N with 1 <= I <= N, got {text!r}")
    return int(shard), int(shards)


def tune(args) -> int:
    """`repro tune`: all searches then the claim's results, a shard of the searches, or the
    distributed mode (a chief and workers on loopback, then the results)."""
    from repro.claims import tuning as claim

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if not 1024 <= args.port <= 65535:
        raise UsageError(f"--port must be between 1024 and 65535, got {args.port}")
    shard = parse_shard(args.shard) if args.shard else None
    config = override(claim.PROFILES[args.profile], args.settings)
    seeds = choose_seeds(claim.SEEDS[args.profile], args.seeds, args.seed_offset)
    if args.distributed:
        return launch_on_loopback(claim, args, config, seeds)
    if args.role:
        distributed_role(claim, config, seeds, args.workers)
    elif shard:
        search_shard(claim, config, seeds, *shard)
    else:
        print(run_claim(claim, args.profile, seeds, args.out, config).describe())
    return 0
