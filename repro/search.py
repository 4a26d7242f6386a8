"""keras-tuner searches for any claim: deterministic, resumable, split into shards, their
trials as tidy rows. The distributed launch is repro/distributed.py; what is searched and
how it is judged is the claim's (repro/claims/tuning.py), which the CLI hands in.

keras-tuner is used only through its documented extension points: a `HyperModel` (the
claim's), a `Tuner` subclass overriding `run_trial`, `save_model`, `load_model` and the
`on_trial_end` hook, `Oracle` subclasses overriding `populate_space`, `create_trial` and
`end_trial` (the overrides its `synchronized` decorator documents), and public attributes
read, never written.

- Seeds: keras-tuner reads a seed of 0 as "choose one at random", and consecutive seeds
  draw shifted copies of the same random values, so a search hands it `keras_tuner_seed`,
  apart for each tuner. The tuner seeds neither initialization nor data order, so a trial
  seeds both from `trial_seed`: a configuration trains the same way in any process.
- Trials: the claim's HyperModel builds and fits (through repro.models.fit); the trial's
  kept weights are saved once, when it ends, by `save_model`. A Hyperband round continues
  the trial named by the oracle's `tuner/trial_id` from those weights.
- Resume: keras-tuner writes its JSON files in place, one after another. After every
  trial (and when a search is opened) they are copied, together, into one state file
  written atomically beside the project; before keras-tuner reads a project, its files are
  rewritten from that state. A kill at any point therefore resumes from the last ended
  trial, as if the kill had come just after it. See docs/tuning.md.
- The Bayesian tuner is `GaussianProcessOracle`: keras-tuner's method (a Gaussian process
  on the trials so far, the lowest lower confidence bound proposed) with a batched search
  of the bound, its random draws seeded by the seed and the trial count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

from repro import NUMERICS_ENVIRONMENT
from repro.backend import load
from repro.records import code_text, progress, versions, write_text

keras_tuner = load("keras_tuner")  # imports Keras quietly: import this module lazily

OBJECTIVE = "val_accuracy"
TUNER_STREAMS = ("random", "hyperband", "bayesian")  # a tuner's index is its seed stream
COMPLETED, RUNNING, IDLE, STOPPED = "COMPLETED", "RUNNING", "IDLE", "STOPPED"


# ------------------------------------------------------------------------------ seeds


def keras_tuner_seed(seed: int, name: str = "random") -> int:
    """The seed a search hands keras-tuner: positive, far from the next seed's, and apart
    for each tuner (keras-tuner's values walk a counter that starts at the seed)."""
    return 1 + seed * 100_003 + TUNER_STREAMS.index(name) * 10_007


def trial_seed(search_seed: int, values: dict) -> int:
    """A seed for one configuration: the same values train the same way in any process."""
    text = json.dumps(values, sort_keys=True)
    return (search_seed * 1_000_003 + zlib.crc32(text.encode())) % 2**31


def log_fit(values: dict, seconds: float) -> None:
    """One JSON line per trained trial in $REPRO_TUNER_FIT_LOG, if set: who trained what.
    Tests use it to show that a resumed or distributed search trains each trial once."""
    path = os.environ.get("REPRO_TUNER_FIT_LOG")
    if path:
        record = {"tuner_id": os.environ.get("KERASTUNER_TUNER_ID", "local"), "values": values}
        with open(path, "a") as log:  # one short append per line: safe across processes
            log.write(json.dumps(record | {"seconds": round(seconds, 3)}, sort_keys=True) + "\n")


# ------------------------------------------------------------- where searches live


def work_root() -> Path:
    return Path(os.environ.get("REPRO_TUNER_WORK", "tuner-work"))


# What a trial's numbers depend on besides the claim: the modules it runs, the versions of
# the packages that compute it, the numerics settings. Read once, so that a search started
# by this process stays in one directory even if the code is edited while it runs.
SEARCH_MODULES = ("__init__.py", "backend.py", "data.py", "models.py", "search.py")
CODE = {path: code_text(path) for path in (Path(__file__).with_name(m) for m in SEARCH_MODULES)}
KEY_PACKAGES = ("python", "tensorflow", "tensorflow-cpu", "keras", "keras-tuner", "numpy")
KEY_PACKAGES += ("scipy", "scikit-learn", "mnist1d", "jax", "jaxlib")


def search_key() -> dict:
    packages = versions()
    if os.environ.get("KERAS_BACKEND") != "jax":  # JAX computes nothing on TensorFlow
        packages.pop("jax", None), packages.pop("jaxlib", None)
    numerics = {name: os.environ.get(name) for name in NUMERICS_ENVIRONMENT}
    return {"versions": {k: v for k, v in packages.items() if k in KEY_PACKAGES}} | numerics


def search_dir(claim_id: str, claim_file: Path, config, seed: int) -> Path:
    """Where one seed's searches live, keyed by the config, the code that runs them
    (docstrings, comments and layout aside) and the versions and settings in `search_key`."""
    if claim_file not in CODE:
        CODE[claim_file] = code_text(claim_file)
    key = {"config": dataclasses.asdict(config)} | search_key()
    text = json.dumps(key, sort_keys=True).encode()
    digest = hashlib.sha256(text + b"".join(CODE.values())).hexdigest()[:12]
    return work_root() / f"{claim_id}-{digest}" / f"seed{seed}"


# ------------------------------------------------------------ committed state


def state_file(project: Path) -> Path:
    return Path(project).with_suffix(".state.json")  # beside the project, not in it


def commit(project: Path) -> None:
    """Copy every JSON file keras-tuner keeps in `project` into its state file, atomically
    (a file being written just then, such as a distributed worker's own, is left out)."""
    project, files = Path(project), {}
    for path in sorted(Path(project).rglob("*.json")):
        text = path.read_text()
        if parses(text):
            files[str(path.relative_to(project))] = text
    write_text(state_file(project), json.dumps(files, sort_keys=True))


def restore(project: Path) -> None:
    """Rewrite keras-tuner's files in `project` from its last committed state: a trial's
    file not committed is removed (the trial is proposed again), and so is any other file
    that a kill left unreadable."""
    project, state = Path(project), state_file(project)
    committed = json.loads(state.read_text()) if state.exists() else {}
    for path in project.rglob("*.json") if project.is_dir() else ():
        name = str(path.relative_to(project))
        if name not in committed and (path.parent != project or not parses(path.read_text())):
            path.unlink()
    for name, text in committed.items():
        path = project / name
        if not (path.exists() and path.read_text() == text):
            write_text(path, text)


def parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------- the tuner


class SearchTuner(keras_tuner.Tuner):
    """keras-tuner's Tuner whose trial is: build the claim's model, continue a Hyperband
    round from its parent's weights, fit it with the claim's `fit`, save the weights kept.

    `fit` returns the trial's metrics (a dict with the objective). The kept weights are
    saved once, when the trial ends, to a temporary file renamed into place.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bar = None  # a progress bar that counts ended trials, if set
        self.poll_seconds = 0.05 if is_worker() else 0.0  # how often a worker asks the chief

    def run_trial(self, trial, *args, **kwargs):
        kwargs.pop("verbose", None)  # for keras-tuner's display (kept off), not for `fit`
        hp = trial.hyperparameters
        started = time.perf_counter(), time.process_time()
        model = self.hypermodel.build(hp)
        if "tuner/epochs" in hp.values:  # Hyperband: its budget for this round
            kwargs["epochs"] = hp.values["tuner/epochs"] - hp.values["tuner/initial_epoch"]
        if "tuner/trial_id" in hp.values:  # a later round: continue the parent's training
            model.load_weights(self.checkpoint(hp.values["tuner/trial_id"]))
        metrics = self.hypermodel.fit(hp, model, *args, **kwargs)
        self.save_model(trial.trial_id, model)
        seconds = time.perf_counter() - started[0]
        log_fit(hp.values, seconds)
        return metrics | {"wall_seconds": seconds, "cpu_seconds": time.process_time() - started[1]}

    def checkpoint(self, trial_id: str) -> Path:
        return Path(self.get_trial_dir(trial_id)) / "kept.weights.h5"

    def save_model(self, trial_id, model, step=0):
        path = self.checkpoint(trial_id)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".weights.h5")
        os.close(handle)
        try:
            model.save_weights(tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def load_model(self, trial):
        model = self.hypermodel.build(trial.hyperparameters)
        model.load_weights(self.checkpoint(trial.trial_id))
        return model

    def pre_create_trial(self):
        time.sleep(self.poll_seconds)  # a worker told IDLE asks again, not at once

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.bar is not None:
            self.bar.update(1)


def is_chief() -> bool:
    """keras-tuner's rule: a process whose KERASTUNER_TUNER_ID contains "chief"."""
    return "chief" in os.environ.get("KERASTUNER_TUNER_ID", "")


def is_worker() -> bool:
    """A distributed worker: its oracle is the chief's, asked over gRPC."""
    return "KERASTUNER_ORACLE_IP" in os.environ and not is_chief()


# ------------------------------------------------------------------ the oracles


class Committing:
    """Mixed into an oracle: commits the search's state in `project` after every ended
    trial, and, in a distributed search, tells no worker to stop before `workers` workers
    have asked for a trial (a worker still busy with the previous search would otherwise
    find this search's chief gone)."""

    def __init__(self, *args, project: Path, workers: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.project, self.workers, self.seen = Path(project), workers, set()

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        self.seen.add(tuner_id)
        trial = super().create_trial(tuner_id)
        if trial.status == STOPPED and len(self.seen) < self.workers:
            trial.status = IDLE  # the search is done; wait for the workers not seen yet
        return trial

    @keras_tuner.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)  # saves the oracle, then forgets the trial as ongoing...
        self.save()  # ...so it is saved again: the trial must not look interrupted
        commit(self.project)


class RandomOracle(Committing, keras_tuner.oracles.RandomSearchOracle):
    pass


class HyperbandOracle(Committing, keras_tuner.oracles.HyperbandOracle):
    pass


class GaussianProcessOracle(Committing, keras_tuner.Oracle):
    """Bayesian optimization as keras-tuner's BayesianOptimizationOracle does it, through
    public parts only: its first `num_initial_points` trials are random; then a Gaussian
    process (keras-tuner's: Matern 5/2, normalized scores, noise `alpha`, 20 restarts) is
    fitted to the trials' points in the unit cube, and the point with the lowest lower
    confidence bound on the sign-flipped score, mean - beta x std, is proposed.

    The bound is searched in batches rather than by 50 L-BFGS runs: `candidates` random
    points in one call of the process, then `rounds` of local refinement around the best
    few, each round one call. Ongoing trials (distributed search) count with a pessimistic
    score, mean + std, as in keras-tuner. Every draw comes from a generator seeded by the
    seed and the number of trials so far, so a resumed search proposes what an
    uninterrupted one would.
    """

    def __init__(
        self, num_initial_points: int, alpha=1e-4, beta=2.6, candidates=2000, rounds=4, **kwargs
    ):
        super().__init__(**kwargs)
        self.num_initial_points, self.alpha, self.beta = num_initial_points, alpha, beta
        self.candidates, self.rounds = candidates, rounds

    def populate_space(self, trial_id):
        rng = np.random.default_rng([self.seed, len(self.trials)])
        space = self.hyperparameters.space
        completed = [t for t in self.trials.values() if t.status == COMPLETED]
        if len(completed) < self.num_initial_points:
            return {"status": RUNNING, "values": self.values(rng.random(len(space)))}
        sign = -1.0 if self.objective.direction == "max" else 1.0  # minimize
        x = np.array([self.vector(t.hyperparameters) for t in completed])
        y = sign * np.array([t.score for t in completed], dtype=float)
        gpr = self.gaussian_process().fit(x, np.nan_to_num(y, posinf=0, neginf=0))
        ongoing = [self.vector(t.hyperparameters) for t in self.ongoing_trials.values()]
        if ongoing:
            mean, std = gpr.predict(np.array(ongoing), return_std=True)
            x, y = np.vstack([x, ongoing]), np.concatenate([y, mean + std])
            gpr = self.gaussian_process().fit(x, y)
        return {"status": RUNNING, "values": self.values(self.lowest_bound(gpr, rng, x.shape[1]))}

    def gaussian_process(self):
        from sklearn.gaussian_process import GaussianProcessRegressor, kernels

        return GaussianProcessRegressor(
            kernels.Matern(nu=2.5),
            alpha=self.alpha,
            normalize_y=True,
            n_restarts_optimizer=20,
            random_state=self.seed,
        )

    def lowest_bound(self, gpr, rng, dimensions: int) -> np.ndarray:
        """The point of the unit cube with the lowest bound found: random candidates, then
        Gaussian steps around the 5 best, a quarter as long each round."""

        def bound(points):
            mean, std = gpr.predict(points, return_std=True)
            return mean - self.beta * std

        points = rng.random((self.candidates, dimensions))
        scores = bound(points)
        scale = 0.1
        for _ in range(self.rounds):
            best = points[np.argsort(scores, kind="stable")[:5]]
            steps = rng.normal(0.0, scale, (5, self.candidates // 5, dimensions))
            tried = np.clip(best[:, None, :] + steps, 0.0, 1.0).reshape(-1, dimensions)
            points, scores = np.vstack([best, tried]), np.concatenate([bound(best), bound(tried)])
            scale /= 4
        return points[np.argmin(scores)]

    def vector(self, hyperparameters) -> list[float]:
        """A trial's values as a point of the unit cube; an inactive one at its default."""
        values = hyperparameters.values
        return [
            hp.value_to_prob(values.get(hp.name, hp.default)) for hp in self.hyperparameters.space
        ]

    def values(self, vector) -> dict:
        """The values at a point of the unit cube, the inactive ones left out."""
        hps = keras_tuner.HyperParameters()
        for hp, prob in zip(self.hyperparameters.space, vector, strict=True):
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = hp.prob_to_value(prob)
        return hps.values


# ------------------------------------------------------------------- a search


ORACLES = {"random": RandomOracle, "hyperband": HyperbandOracle, "bayesian": GaussianProcessOracle}


def make_tuner(name: str, hypermodel, directory: Path, seed: int, workers: int = 1, **budget):
    """One search on `directory`/`name`, resumed from its committed state if it has one.

    `budget` goes to the tuner's oracle: `max_trials` for random search and the Bayesian
    oracle (and its `num_initial_points`); `max_epochs`, `factor` and
    `hyperband_iterations` for Hyperband.
    """
    project = Path(directory) / name
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    oracle = ORACLES[name](
        objective=objective,
        seed=keras_tuner_seed(seed, name),
        project=project,
        workers=workers,
        **budget,
    )
    worker = is_worker()
    if not worker:  # the chief, or a search of one process, owns the files
        restore(project)
    with keras_tuner_output(project.with_suffix(".log")):  # "Reloading Tuner from ..."
        tuner = SearchTuner(
            oracle=oracle, hypermodel=hypermodel, directory=str(directory), project_name=name
        )
        if not worker and not tuner.oracle.trials and state_file(project).exists():
            tuner.oracle.reload()  # keras-tuner reloads only where it finds this tuner's file
    tuner.save()
    if not worker:
        commit(project)
    return tuner


@contextlib.contextmanager
def keras_tuner_output(log_path: Path):
    """What keras-tuner prints or warns inside the block is appended to `log_path`."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log, warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, category, filename, lineno, *_: log.write(
            warnings.formatwarning(message, category, filename, lineno)
        )
        with contextlib.redirect_stdout(log):
            yield


def run_search(tuner, kwargs: dict, desc: str, total: int | None = None) -> None:
    """Run the tuner's search to its budget (resuming it), with one progress bar."""
    done = sum(t.status == COMPLETED for t in tuner_trials(tuner).values())
    with progress(None, desc, initial=done, total=total) as tuner.bar:
        with keras_tuner_output(Path(tuner.project_dir).with_suffix(".log")):
            tuner.search(**kwargs, verbose=0)
    tuner.bar = None


def tuner_trials(tuner) -> dict:
    """The oracle's trials; none for a distributed worker, whose oracle is the chief's."""
    return tuner.oracle.trials if isinstance(tuner.oracle, keras_tuner.Oracle) else {}


def searches(config, seeds) -> list[tuple[int, str]]:
    """Every (seed, tuner) search, in the order every process runs them."""
    return [(seed, name) for seed in seeds for name in config.tuners]


def search_shard(claim, config, seeds, shard: int, shards: int) -> None:
    """Run every search of the seeds `shard`, `shard` + `shards`, ... (1-based) to its end.

    A shard takes whole seeds, so that each seed's data are made in one shard process.
    `make` runs the shards side by side; the claim's run then finds every search finished.
    """
    for seed in seeds[shard - 1 :: shards]:
        for name in config.tuners:
            claim.finish_search(name, config, seed)


# -------------------------------------------------------------------- the trials


def trial_rows(tuner, seed: int, name: str, metrics=(OBJECTIVE,)) -> list[dict]:
    """The oracle's trials as tidy rows, in the order they started, status kept."""
    oracle = tuner.oracle
    rows = []
    for number, trial_id in enumerate(oracle.start_order, start=1):
        trial = oracle.get_trial(trial_id)
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
    """The finished trial with the best score, ties going to the earliest trial (keras-
    tuner's own ranking keeps ties in load order, which differs after a resume)."""
    finished = [
        t for t in tuner.oracle.trials.values() if t.status == COMPLETED and t.score is not None
    ]
    return max(finished, key=lambda trial: (trial.score, -int(trial.trial_id)))
