"""Claim: tuning the lecture's list of hyperparameters beats an untuned network (results/tuning/).

Slide "Network tuning", the lecture's last: what gets tuned is the number of hidden layers
and the units of each layer; dropout, L1 and L2 strengths, each set per layer; and the
details of SGD, namely learning rate, batch size and number of epochs.

Experiment: scikit-learn's digits (1797 8x8 images). The first `validation_size` training
images are a fixed validation set that every search scores on; the held-out test split
(539 images) is seen only after the searches, to score each tuner's best model and an
untuned baseline. One keras-tuner `HyperModel` carries exactly the lecture's search space:
the architecture and regularization in `build`, batch size and epochs in `fit` (as
keras-tuner documents for training hyperparameters). RandomSearch, Hyperband and
BayesianOptimization search it on the same data with the same trial budget, with Keras'
EarlyStopping inside every trial. The untuned baseline is what one writes without tuning:
the space's defaults, i.e. one hidden layer of 64 ReLU units, no dropout, no L1/L2, Adam
at Keras' default learning rate 1e-3, Keras' default batch size 32, and the largest epoch
budget with the same early stopping.

Choices made here and why:
- Hyperband allocates epochs itself (successive halving is its way of tuning the number of
  epochs), so its trials take their epoch count from Hyperband, not from an `epochs`
  hyperparameter. Its budget, max_epochs=3 and factor=3, gives exactly 6 trials per
  sweep (3 one-epoch trials, the best continued to 3 epochs, and 2 three-epoch trials):
  the same trial budget as the other two tuners. With other settings Hyperband repeats
  its sweep and is cut at the trial budget. A trial costs 2 to 4 seconds whatever its
  epochs (most of it building the model and tracing its training step), so the budget
  is counted in trials, and 6 trials x 3 tuners x 5 seeds is what the time budget of
  `make all` allows. The epoch budget is small (at most 3 epochs of 896 images), so the
  baseline's default learning rate is a real handicap: this is a claim about tuning
  under a fixed small budget, and the SGD figure shows how much of the gain is the
  learning rate.
- keras-tuner pitfalls handled here: a seed of 0 means "pick one at random" to keras-tuner,
  and consecutive seeds draw shifted copies of the same random values, so a search hands
  it 1 + 100003 x seed; the tuner seeds neither initialization nor data order, so
  every trial seeds both from the search seed and its own hyperparameter values (the same
  configuration trains identically whichever process runs it); the stock Bayesian oracle
  restarts its random generator on reload, so here it is reseeded from the number of
  trials so far, and a resumed search proposes what an uninterrupted one would.
- Search directories are working state under tuner-work/ (or $REPRO_TUNER_WORK), keyed by
  a digest of the config and of this file, then by seed and tuner. Rerunning the same
  command reloads them (overwrite=False): finished trials are not rerun, the one that was
  interrupted is rerun from scratch, and the tables come out the same.
- Verdict: for every seed, the model a practitioner would keep (the tuner whose best trial
  has the highest validation accuracy) is compared with the baseline on the test split.
  Tuning must raise mean test accuracy, and win on at least 4 of 5 seeds.
- Wall seconds per trial are kept in trial_times.csv, apart from trials.csv, because
  they are the one output that is not the same from run to run.

Distributed mode (`python -m repro.claims.tuning distributed`, `make tune-distributed`):
keras-tuner's own chief oracle and workers, switched on by KERASTUNER_TUNER_ID,
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT. Each (seed, tuner) search is one
distributed search on its own port, KERASTUNER_ORACLE_PORT + its index, because the
chief serves them one after another. The chief's gRPC loop is run here (with keras-tuner's
own OracleServicer) rather than by `tuner.search()`, whose chief polls every 20 seconds
and never stops its server, so a port could not be reused and every search would idle.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from repro.figures import figure
from repro.harness import (
    Rule,
    UsageError,
    Verdict,
    choose_seeds,
    freeze_imported_objects,
    override,
    progress,
    read_csv,
    save_figure,
    seed_agreement,
    seed_everything,
    write_csv,
    write_json,
)

CLAIM_ID = "tuning"
SLIDE = "Network tuning"
STATEMENT = (
    "Searching the lecture's hyperparameters (hidden layers, units, dropout, L1 and L2 per "
    "layer, learning rate, batch size, epochs) with keras-tuner finds a network that beats "
    "an untuned one on held-out data."
)

TUNERS = ("random", "hyperband", "bayesian")
OBJECTIVE = "val_accuracy"
UNTUNED_UNITS = 64
UNTUNED_LEARNING_RATE = 1e-3  # Adam's default in Keras
UNTUNED_BATCH_SIZE = 32  # model.fit's default in Keras


@dataclass(frozen=True)
class Config:
    tuners: tuple[str, ...] = TUNERS
    trials: int = 6  # the trial budget of every tuner
    max_hidden_layers: int = 3
    min_units: int = 16
    max_units: int = 256
    max_dropout_rate: float = 0.5
    regularization_strengths: tuple[float, ...] = (0.0, 1e-5, 1e-4, 1e-3)  # L1 and L2 choices
    min_learning_rate: float = 1e-4
    max_learning_rate: float = 3e-2
    batch_sizes: tuple[int, ...] = (16, 32, 64, 128)
    min_epochs: int = 1
    max_epochs: int = 3  # also Hyperband's max_epochs
    hyperband_factor: int = 3
    bayesian_initial_points: int = 3  # random trials before the Gaussian process takes over
    patience: int = 2  # EarlyStopping on validation accuracy inside every trial
    # 1258 training images - 362 = 896 = 7 x 128: every batch size divides the training
    # set, so every batch of every trial is a full one.
    validation_size: int = 362

    def __post_init__(self):
        if not self.tuners or set(self.tuners) - set(TUNERS):
            raise ValueError(f"tuners must be a non-empty subset of {', '.join(TUNERS)}")
        if self.trials < 1:
            raise ValueError("the trial budget must be at least 1 trial")
        if self.max_hidden_layers < 1:
            raise ValueError("max_hidden_layers must be at least 1")
        if not 1 <= self.min_units <= self.max_units:
            raise ValueError(
                f"empty units range: need 1 <= min_units ({self.min_units}) "
                f"<= max_units ({self.max_units})"
            )
        if not 0 <= self.max_dropout_rate < 1:
            raise ValueError(f"max_dropout_rate must be in [0, 1), got {self.max_dropout_rate}")
        if not self.regularization_strengths or min(self.regularization_strengths) < 0:
            raise ValueError("regularization_strengths must be a non-empty list of values >= 0")
        if not 0 < self.min_learning_rate <= self.max_learning_rate:
            raise ValueError(
                f"empty learning-rate range: need 0 < min_learning_rate "
                f"({self.min_learning_rate}) <= max_learning_rate ({self.max_learning_rate})"
            )
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError("batch_sizes must be a non-empty list of positive sizes")
        if not 1 <= self.min_epochs <= self.max_epochs:
            raise ValueError(
                f"empty epochs range: need 1 <= min_epochs ({self.min_epochs}) "
                f"<= max_epochs ({self.max_epochs})"
            )
        if self.hyperband_factor < 2:
            raise ValueError("hyperband_factor must be at least 2")
        if self.bayesian_initial_points < 1 or self.patience < 1:
            raise ValueError("bayesian_initial_points and patience must be at least 1")
        if not 10 <= self.validation_size <= 1000:
            raise ValueError("validation_size must be between 10 and 1000 images")


PROFILES = {
    "quick": Config(trials=1, max_hidden_layers=2, max_epochs=2, bayesian_initial_points=1),
    "full": Config(),
}
SEEDS = {"quick": (0,), "full": tuple(range(5))}
LAYER_COLUMNS = ("units", "dropout", "l1", "l2")
TABLES = {
    "trials.csv": (
        "seed",
        "tuner",
        "trial",
        "trial_id",
        "status",
        "hidden_layers",
        *(f"{name}_1" for name in LAYER_COLUMNS),
        "learning_rate",
        "batch_size",
        "epochs",
        "val_accuracy",
        "epochs_run",
    ),
    "test_accuracy.csv": ("seed", "model", "trial_id", "val_accuracy", "test_accuracy"),
}
EXTRA_FILES = ("best_configs.json", "trial_times.csv")
FIGURES = (
    "best_so_far.png",
    "val_accuracy_vs_architecture.png",
    "val_accuracy_vs_sgd.png",
    "test_accuracy.png",
)

MIN_WINNING_FRACTION = 0.8  # tuned beats the baseline on at least 4 of 5 seeds


# ------------------------------------------------------------------------------ data


def split_data(config: Config):
    """Digits: (train, validation, test); the test split never reaches a tuner."""
    from repro.data import digits

    x_train, y_train, x_test, y_test = digits()
    n = config.validation_size
    return (x_train[n:], y_train[n:]), (x_train[:n], y_train[:n]), (x_test, y_test)


# ------------------------------------------------------------------------ the search


def keras_tuner_seed(seed: int) -> int:
    """The seed a search hands keras-tuner: positive, and far from the next seed's.

    keras-tuner reads 0 as "choose a random seed", and its random values walk a counter
    that starts at the seed and adds 1 per value drawn, so seeds 1 and 2 would draw
    nearly the same configurations, shifted by one value.
    """
    return 1 + seed * 100_003


def trial_seed(search_seed: int, values: dict) -> int:
    """A seed for one configuration: the same values train the same way in any process."""
    text = json.dumps(values, sort_keys=True)
    return (search_seed * 1_000_003 + zlib.crc32(text.encode())) % 2**31


def _clamp(value, low, high):
    return min(max(value, low), high)


def hypermodel_class():
    """The HyperModel, defined on first use so that importing this module stays light."""
    import keras
    import keras_tuner

    from repro.models import EPOCH_PER_CALL, batches

    class LectureHyperModel(keras_tuner.HyperModel):
        """The lecture's search space: architecture and regularization per layer, then SGD."""

        def __init__(self, config: Config, search_seed: int, tune_epochs: bool = True):
            super().__init__(name="lecture_mlp")
            self.config, self.search_seed, self.tune_epochs = config, search_seed, tune_epochs

        def declare_hyperparameters(self, hp):
            # Declared up front so that the first trial samples them too; `fit` reads them.
            c = self.config
            default_batch = UNTUNED_BATCH_SIZE if UNTUNED_BATCH_SIZE in c.batch_sizes else None
            hp.Choice("batch_size", list(c.batch_sizes), default=default_batch)
            if self.tune_epochs:
                hp.Int("epochs", c.min_epochs, c.max_epochs, default=c.max_epochs)

        def build(self, hp):
            c = self.config
            seed_everything(trial_seed(self.search_seed, hp.values))
            hidden_layers = hp.Choice(
                "hidden_layers", list(range(1, c.max_hidden_layers + 1)), default=1
            )
            strengths = sorted(c.regularization_strengths)
            model = keras.Sequential([keras.Input((64,))], name="lecture_mlp")
            for layer in range(1, c.max_hidden_layers + 1):
                # A layer's settings exist only in configurations that have that layer.
                with hp.conditional_scope(
                    "hidden_layers", list(range(layer, c.max_hidden_layers + 1))
                ):
                    units = hp.Int(
                        f"units_{layer}",
                        c.min_units,
                        c.max_units,
                        step=2,
                        sampling="log",
                        default=_clamp(UNTUNED_UNITS, c.min_units, c.max_units),
                    )
                    dropout_rate = hp.Float(f"dropout_{layer}", 0.0, c.max_dropout_rate)
                    l1 = hp.Choice(f"l1_{layer}", strengths)
                    l2 = hp.Choice(f"l2_{layer}", strengths)
                if layer > hidden_layers:
                    continue
                model.add(
                    keras.layers.Dense(
                        units,
                        activation="relu",
                        kernel_regularizer=keras.regularizers.L1L2(l1=l1, l2=l2),
                    )
                )
                if dropout_rate > 0:
                    model.add(keras.layers.Dropout(dropout_rate))
            model.add(keras.layers.Dense(10))
            learning_rate = hp.Float(
                "learning_rate",
                c.min_learning_rate,
                c.max_learning_rate,
                sampling="log",
                default=_clamp(UNTUNED_LEARNING_RATE, c.min_learning_rate, c.max_learning_rate),
            )
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
                steps_per_execution=EPOCH_PER_CALL,
            )
            return model

        def fit(self, hp, model, x, y, epochs=None, **kwargs):
            # Hyperband passes its own `epochs` (and `initial_epoch`): that is its resource.
            if self.tune_epochs:
                epochs = hp.get("epochs")
            data_seed = trial_seed(self.search_seed, hp.values) + 1
            seed_everything(data_seed)
            x_val, y_val = kwargs.pop("validation_data")
            started = time.perf_counter()
            history = model.fit(
                batches(x, y, hp.get("batch_size"), shuffle_seed=data_seed),
                validation_data=batches(x_val, y_val, len(y_val)),  # one batch: one trace
                epochs=epochs,
                **kwargs,
            )
            seconds = time.perf_counter() - started
            log_fit(hp.values, seconds)
            return {
                OBJECTIVE: float(max(history.history[OBJECTIVE])),
                "epochs_run": len(history.epoch),
                "wall_seconds": seconds,
            }

    return LectureHyperModel


def quick_predict_gpr_class():
    from scipy.linalg import solve_triangular
    from sklearn.gaussian_process import GaussianProcessRegressor

    class QuickPredictGPR(GaussianProcessRegressor):
        """scikit-learn's Gaussian process whose fitted predict(x, return_std=True) skips
        scikit-learn's input checks, and otherwise does the same arithmetic (tested equal).

        keras-tuner's Bayesian oracle calls it on one point at a time, about 24,000 times
        per proposal (50 L-BFGS restarts, each gradient taken by finite differences), and
        the checks took 85% of each call: a third of all the tuning claim's time.
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

    class ResumableBayesianOracle(keras_tuner.oracles.BayesianOptimizationOracle):
        """keras-tuner's Bayesian oracle with its restart points seeded by the trial count,
        and its Gaussian process predicting without input checks.

        The stock oracle draws the optimizer's restart points from one generator that a
        reload starts afresh, so a resumed search would propose other configurations.
        """

        def populate_space(self, trial_id):
            self._random_state = np.random.RandomState(self.seed + len(self.trials))
            return super().populate_space(trial_id)

        def _make_gpr(self):
            stock = super()._make_gpr()
            return quick_predict_gpr_class()(**stock.get_params(deep=False))

    return ResumableBayesianOracle


def hyperband_sweep_trials(max_epochs: int, factor: int) -> int:
    """How many trials one Hyperband sweep runs (keras-tuner's bracket sizes)."""
    import keras_tuner

    oracle = keras_tuner.oracles.HyperbandOracle(OBJECTIVE, max_epochs=max_epochs, factor=factor)
    brackets = oracle._get_num_brackets()
    return sum(
        oracle._get_size(bracket, round_num)
        for bracket in range(brackets)
        for round_num in range(bracket + 1)
    )


def work_root() -> Path:
    return Path(os.environ.get("REPRO_TUNER_WORK", "tuner-work"))


# Read once: a search started by this process stays in one directory even if the file
# is edited while it runs.
CODE = Path(__file__).read_bytes()


def search_dir(config: Config, seed: int) -> Path:
    """Where one seed's searches live: keyed by the config and by this file's code."""
    digest = hashlib.sha256(
        json.dumps(dataclasses.asdict(config), sort_keys=True).encode() + CODE
    ).hexdigest()[:12]
    return work_root() / f"tuning-{digest}" / f"seed{seed}"


def log_fit(values: dict, seconds: float) -> None:
    """One JSON line per finished fit in $REPRO_TUNER_FIT_LOG, if set: who trained what.

    Tests use it to prove that a resumed or distributed search trains each trial once.
    """
    path = os.environ.get("REPRO_TUNER_FIT_LOG")
    if path:
        record = {"tuner_id": os.environ.get("KERASTUNER_TUNER_ID", "local"), "values": values}
        with open(path, "a") as log:  # one short append per line: safe across processes
            log.write(json.dumps(record | {"seconds": round(seconds, 3)}, sort_keys=True) + "\n")


def make_tuner(name: str, config: Config, seed: int):
    """A keras-tuner tuner on the seed's project directory, reloaded if it exists."""
    tuner = _make_tuner(name, config, seed)
    # Under TensorFlow keras-tuner imports tensorboard before every trial, only to patch
    # TensorBoard callbacks; there are none here and tensorflow-cpu 2.21 no longer
    # installs tensorboard, so the patching step is skipped.
    tuner._configure_tensorboard_dir = lambda callbacks, trial, execution=0: None
    return tuner


def _make_tuner(name: str, config: Config, seed: int):
    import keras_tuner

    hypermodel = hypermodel_class()(config, seed, tune_epochs=name != "hyperband")
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    where = {"directory": str(search_dir(config, seed)), "project_name": name}
    search_seed = keras_tuner_seed(seed)
    if name == "random":
        return keras_tuner.RandomSearch(
            hypermodel, objective=objective, max_trials=config.trials, seed=search_seed, **where
        )
    if name == "bayesian":
        oracle = bayesian_oracle_class()(
            objective=objective,
            max_trials=config.trials,
            num_initial_points=config.bayesian_initial_points,
            seed=search_seed,
        )
        return keras_tuner.Tuner(oracle=oracle, hypermodel=hypermodel, **where)
    sweep = hyperband_sweep_trials(config.max_epochs, config.hyperband_factor)
    tuner = keras_tuner.Hyperband(
        hypermodel,
        objective=objective,
        max_epochs=config.max_epochs,
        factor=config.hyperband_factor,
        hyperband_iterations=-(-config.trials // sweep),
        seed=search_seed,
        **where,
    )
    tuner.oracle.max_trials = config.trials  # cut at the common budget (exact in PROFILES)
    return tuner


def search_kwargs(config: Config) -> dict:
    import keras

    (x, y), validation, _ = split_data(config)
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=OBJECTIVE, mode="max", patience=config.patience, restore_best_weights=True
    )
    return {
        "x": x,
        "y": y,
        "validation_data": validation,
        "callbacks": [early_stopping],
        "verbose": 0,
    }


def searches(config: Config, seeds) -> list[tuple[int, str]]:
    """Every (seed, tuner) search in the order all processes run them."""
    return [(seed, name) for seed in seeds for name in config.tuners]


def search(tuner, kwargs: dict) -> None:
    """Run the tuner's search to its trial budget, resuming it if it was started before."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # The Bayesian oracle's Gaussian process warns when a length scale hits its bound,
        # as it does on a handful of trials; the proposals stand.
        warnings.simplefilter("ignore", ConvergenceWarning)
        tuner.search(**kwargs)


def search_shard(config: Config, seeds, shard: int, shards: int) -> None:
    """Run every `shards`-th search, starting with number `shard` (1-based), to its end.

    `make` runs the shards as separate processes side by side; `repro run tuning` then
    finds every search finished in the work directory and only collects the results.
    """
    kwargs = search_kwargs(config)
    mine = searches(config, seeds)[shard - 1 :: shards]
    for seed, name in progress(mine, f"{CLAIM_ID} searches, shard {shard}/{shards}"):
        search(make_tuner(name, config, seed), kwargs)


# ---------------------------------------------------------------------- the claim


def trial_rows(tuner, seed: int, name: str) -> list[dict]:
    """The oracle's trials as tidy rows, in the order they started, status kept."""
    oracle = tuner.oracle
    rows = []
    for number, trial_id in enumerate(oracle.start_order, start=1):
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        metrics = trial.metrics
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
        for metric in (OBJECTIVE, "epochs_run", "wall_seconds"):
            row[metric] = metrics.get_best_value(metric) if metrics.exists(metric) else float("nan")
        rows.append(row)
    return rows


def trial_columns(config: Config) -> list[str]:
    per_layer = [
        f"{name}_{layer}"
        for layer in range(1, config.max_hidden_layers + 1)
        for name in LAYER_COLUMNS
    ]
    return [
        *TABLES["trials.csv"][:6],
        *per_layer,
        "learning_rate",
        "batch_size",
        "epochs",
        "initial_epoch",
        "parent_trial_id",
        OBJECTIVE,
        "epochs_run",
        "wall_seconds",
    ]


def best_trial(tuner):
    """The finished trial with the best validation score, ties going to the earliest trial.

    keras-tuner's own ranking leaves ties in the order the trials were loaded, which differs
    between an uninterrupted and a resumed search.
    """
    finished = [
        t for t in tuner.oracle.trials.values() if t.status == "COMPLETED" and t.score is not None
    ]
    return max(finished, key=lambda trial: (trial.score, -int(trial.trial_id)))


def best_model(tuner, trial):
    """The trial's model at its best epoch, as keras-tuner checkpointed it."""
    with warnings.catch_warnings():
        # The checkpoint also holds the optimizer's state, which evaluation does not need.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        return tuner.load_model(trial)


def train_baseline(config: Config, seed: int, kwargs: dict):
    """The untuned network: the search space's defaults, trained like any trial."""
    import keras_tuner

    hypermodel = hypermodel_class()(config, seed)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    model = hypermodel.build(hp)
    scores = hypermodel.fit(hp, model, **kwargs)
    return model, scores[OBJECTIVE]


def run(config: Config, seeds, out_dir):
    from repro.models import accuracy

    if "KERASTUNER_ORACLE_IP" in os.environ:
        raise UsageError(
            "KERASTUNER_ORACLE_IP is set: unset the KERASTUNER_* variables to collect results "
            "(distributed roles run with `python -m repro.claims.tuning search`)"
        )
    kwargs = search_kwargs(config)
    _, _, (x_test, y_test) = split_data(config)
    trials, scores, best_configs = [], [], {name: {} for name in config.tuners}
    for seed in progress(seeds, CLAIM_ID):
        model, val_accuracy = train_baseline(config, seed, kwargs)
        scores.append(
            {
                "seed": seed,
                "model": "baseline",
                "trial_id": "",
                "val_accuracy": val_accuracy,
                "test_accuracy": accuracy(model, x_test, y_test),
            }
        )
        for name in config.tuners:
            tuner = make_tuner(name, config, seed)
            search(tuner, kwargs)  # resumes a search left unfinished, if any
            trials += trial_rows(tuner, seed, name)
            best = best_trial(tuner)
            scores.append(
                {
                    "seed": seed,
                    "model": name,
                    "trial_id": f"trial_{best.trial_id}",
                    "val_accuracy": best.score,
                    "test_accuracy": accuracy(best_model(tuner, best), x_test, y_test),
                }
            )
            best_configs[name][str(seed)] = {
                "trial_id": f"trial_{best.trial_id}",
                "val_accuracy": best.score,
                "test_accuracy": scores[-1]["test_accuracy"],
                "hyperparameters": best.hyperparameters.values,
            }
    table = pd.DataFrame(trials).reindex(columns=trial_columns(config))
    write_csv(table.drop(columns="wall_seconds"), out_dir / "trials.csv")
    write_csv(
        table[["seed", "tuner", "trial", "trial_id", "wall_seconds"]],
        out_dir / "trial_times.csv",
    )
    write_csv(pd.DataFrame(scores), out_dir / "test_accuracy.csv")
    write_json(out_dir / "best_configs.json", best_configs)


def kept_models(scores: pd.DataFrame) -> pd.DataFrame:
    """Per seed, the tuned model one would keep (highest validation accuracy) and the gain."""
    tuned = scores[scores["model"] != "baseline"]
    kept = tuned.loc[tuned.groupby("seed")["val_accuracy"].idxmax()].set_index("seed")
    baseline = scores[scores["model"] == "baseline"].set_index("seed")["test_accuracy"]
    kept["baseline_test_accuracy"] = baseline
    kept["gain"] = kept["test_accuracy"] - baseline
    return kept


def verdict(out_dir) -> Verdict:
    kept = kept_models(read_csv(out_dir / "test_accuracy.csv"))
    wins = kept["gain"] > 0
    spread = (
        f"gain {kept['gain'].min():+.4f} to {kept['gain'].max():+.4f}; "
        f"tuned {kept['test_accuracy'].mean():.4f} vs baseline "
        f"{kept['baseline_test_accuracy'].mean():.4f}"
    )
    return Verdict(
        CLAIM_ID,
        (
            Rule(
                "mean held-out accuracy gain of the tuned model over the untuned baseline",
                kept["gain"].mean(),
                ">",
                0.0,
                f"{seed_agreement(wins)}; {spread}",
            ),
            Rule(
                "fraction of seeds where the tuned model beats the baseline on held-out data",
                wins.mean(),
                ">=",
                MIN_WINNING_FRACTION,
                f"{seed_agreement(wins)}; {spread}",
            ),
        ),
    )


# --------------------------------------------------------------------------- figures

TUNER_COLORS = {"random": "tab:blue", "hyperband": "tab:orange", "bayesian": "tab:green"}


def plot(out_dir):
    trials = read_csv(out_dir / "trials.csv")
    scores = read_csv(out_dir / "test_accuracy.csv")
    completed = trials[trials["status"] == "COMPLETED"]
    seeds = sorted(trials["seed"].unique())

    fig, (ax,) = figure("tuning: best validation accuracy so far, per tuner", width=6.4, height=4.2)
    for name, group in trials.groupby("tuner", sort=False):
        color = TUNER_COLORS.get(name)
        curves = group.assign(best=group.groupby("seed")[OBJECTIVE].cummax())
        for _, curve in curves.groupby("seed"):
            ax.plot(curve["trial"], curve["best"], color=color, lw=0.7, alpha=0.35)
        mean = curves.groupby("trial")["best"].mean()
        ax.plot(mean.index, mean.values, color=color, lw=2, label=f"{name} (mean)")
    baseline = scores[scores["model"] == "baseline"]["val_accuracy"].mean()
    ax.axhline(baseline, color="k", ls="--", lw=1, label="untuned baseline (mean)")
    ax.set(
        xlabel="trial (in the order the tuner started them)",
        ylabel="best validation accuracy so far",
    )
    ax.legend(loc="lower right", title=f"thin lines: {len(seeds)} seeds")
    save_figure(fig, out_dir / "best_so_far.png")

    layer_columns = {
        name: sorted(c for c in trials.columns if c.startswith(f"{name}_"))
        for name in LAYER_COLUMNS
    }
    panels = [("hidden_layers", "number of hidden layers", False)] + [
        (columns, label, log)
        for columns, label, log in (
            (layer_columns["units"], "units", True),
            (layer_columns["dropout"], "dropout rate", False),
            (layer_columns["l1"], "L1 strength", True),
            (layer_columns["l2"], "L2 strength", True),
        )
    ]
    hyperparameter_figure(
        completed,
        panels,
        "tuning: validation accuracy against architecture and regularization "
        "(per-layer settings: o layer 1, ^ layer 2, s layer 3)",
        out_dir / "val_accuracy_vs_architecture.png",
    )
    hyperparameter_figure(
        completed,
        [
            ("learning_rate", "learning rate", True),
            ("batch_size", "batch size", True),
            ("epochs", "epoch budget of the trial", False),
        ],
        "tuning: validation accuracy against the SGD settings",
        out_dir / "val_accuracy_vs_sgd.png",
    )

    fig, (ax,) = figure(
        "tuning: held-out test accuracy, tuned against untuned", width=6.4, height=4.2
    )
    models = ["baseline", *[m for m in TUNER_COLORS if m in set(scores["model"])]]
    kept = kept_models(scores)
    for i, model in enumerate(models):
        values = scores[scores["model"] == model].set_index("seed")["test_accuracy"]
        jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(i + np.asarray(jitter), values, color=TUNER_COLORS.get(model, "k"), s=18)
        ax.hlines(values.mean(), i - 0.3, i + 0.3, color=TUNER_COLORS.get(model, "k"), lw=2)
    ax.set_xticks(range(len(models)), [m if m != "baseline" else "untuned" for m in models])
    ax.set(ylabel="test accuracy (dots: seeds, bar: mean)")
    ax.set_title(
        f"model kept per seed (best validation) beats untuned on {int((kept['gain'] > 0).sum())}"
        f"/{len(kept)} seeds, mean gain {kept['gain'].mean():+.4f}",
        fontsize=9,
    )
    save_figure(fig, out_dir / "test_accuracy.png")


def hyperparameter_figure(trials, panels, title, path):
    """One panel per hyperparameter: every completed trial's validation accuracy."""
    fig, axes = figure(title, ncols=len(panels), width=3.2, height=3.4)
    for ax, (columns, label, log) in zip(axes, panels, strict=True):
        columns = [columns] if isinstance(columns, str) else columns
        for layer, column in enumerate(columns, start=1):
            for name, group in trials.groupby("tuner", sort=False):
                ax.scatter(
                    group[column],
                    group[OBJECTIVE],
                    s=12,
                    alpha=0.6,
                    color=TUNER_COLORS.get(name),
                    marker="o^s"[(layer - 1) % 3],
                    label=name if layer == 1 else None,
                )
        if label.endswith("strength"):  # the choices include 0: linear near it, log beyond
            ax.set_xscale("symlog", linthresh=1e-5)
        elif log:
            ax.set_xscale("log", base=2 if label in ("units", "batch size") else 10)
        ax.set(xlabel=label)
    axes[0].set_ylabel("validation accuracy of the trial")
    axes[0].legend(loc="lower right")
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


def distributed_role(config: Config, seeds, workers: int) -> None:
    """Run this process's part of every search: the chief's oracle, or a worker's trials."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    ip, base_port = os.environ.get("KERASTUNER_ORACLE_IP"), os.environ.get("KERASTUNER_ORACLE_PORT")
    if not (tuner_id and ip and base_port):
        raise UsageError(
            "`search` is one role of a distributed search: set KERASTUNER_TUNER_ID "
            "(chief, tuner0, tuner1, ...), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT"
        )
    kwargs = search_kwargs(config)
    for index, (seed, name) in enumerate(searches(config, seeds)):
        port = int(base_port) + index
        os.environ["KERASTUNER_ORACLE_PORT"] = str(port)  # read by keras-tuner's client
        tuner = make_tuner(name, config, seed)
        if "chief" in tuner_id:
            tuner.save()
            serve_as_chief(tuner, ip, port, workers)
        else:
            tuner.save()  # its file tells a later local run to reload this project
            search(tuner, kwargs)
        print(f"{tuner_id}: search {index + 1} (seed {seed}, {name}) done", flush=True)


def launch_on_loopback(args, config: Config, seeds) -> int:
    """Start a chief and `workers` workers on 127.0.0.1, wait, then write the outputs."""
    from repro import claims
    from repro.harness import run_claim

    ip, base_port = "127.0.0.1", args.port
    ports = range(base_port, base_port + len(searches(config, seeds)))
    busy = [port for port in ports if not port_is_free(ip, port)]
    if busy:
        raise UsageError(
            f"port {busy[0]} on {ip} is in use (this run needs ports {ports.start}-"
            f"{ports.stop - 1}): choose another with --port"
        )
    os.environ["REPRO_TUNER_WORK"] = str(work_root() / "distributed")
    role = [sys.executable, "-m", "repro.claims.tuning", "search", "--profile", args.profile]
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
            failed = [name for name, p in processes.items() if p.poll() not in (None, 0)]
            if failed:
                print(f"tuning: {failed[0]} failed; outputs not written", file=sys.stderr)
                return 1
            time.sleep(0.2)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait()
    failed = [name for name, process in processes.items() if process.returncode != 0]
    if failed:
        print(f"tuning: {failed[0]} failed; outputs not written", file=sys.stderr)
        return 1
    verdict_ = run_claim(claims.get(CLAIM_ID), args.profile, seeds, args.out, config)
    print(verdict_.describe())
    return 0


def parse_shard(text: str) -> tuple[int, int]:
    """'2/5' -> (2, 5), with 1 <= 2 <= 5."""
    shard, _, shards = text.partition("/")
    if not (shard.isdigit() and shards.isdigit() and 1 <= int(shard) <= int(shards)):
        raise UsageError(f"--shard must look like I/N with 1 <= I <= N, got {text!r}")
    return int(shard), int(shards)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m repro.claims.tuning",
        description=(
            "The tuning claim's searches outside `repro run`: `distributed` runs them in "
            "keras-tuner's distributed mode (`search` is one role of it), `shard` runs a "
            "share of them in this process (`make` runs the shards side by side)."
        ),
    )
    parser.add_argument("command", choices=("distributed", "search", "shard"))
    parser.add_argument("--profile", choices=tuple(PROFILES), default="quick")
    parser.add_argument("--seeds", help="e.g. 0-4 (default: the profile's seeds)")
    parser.add_argument("--seed-offset", type=int, default=0, help="added to the default seeds")
    parser.add_argument("--shard", default="1/1", help="I/N: searches I, I+N, I+2N, ... (shard)")
    parser.add_argument("--workers", type=int, default=2, help="number of worker processes")
    parser.add_argument("--port", type=int, default=8470, help="first port (distributed)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--set", dest="settings", action="append", default=[])
    try:
        args = parser.parse_args(argv)
        if args.workers < 1:
            raise UsageError("--workers must be at least 1")
        if not 1024 <= args.port <= 65535:
            raise UsageError(f"--port must be between 1024 and 65535, got {args.port}")
        config = override(PROFILES[args.profile], args.settings)
        seeds = choose_seeds(SEEDS[args.profile], args.seeds, args.seed_offset)
        if args.command != "distributed":  # this process runs searches, as `repro run` does
            freeze_imported_objects()
        if args.command == "shard":
            search_shard(config, seeds, *parse_shard(args.shard))
            return 0
        if args.command == "search":
            distributed_role(config, seeds, args.workers)
            return 0
        return launch_on_loopback(args, config, seeds)
    except UsageError as err:
        print(f"tuning: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tuning: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
