# repro: every claim of the lecture as a Make target. `make help` lists the targets.
# Each claim's results are real files that depend on the claim's module and the shared core,
# so a second `make all` does nothing and independent claims run side by side.

PYTHON ?= python3
# Independent claims run side by side unless a -j is given (make -j1 all), one job more
# than there are cores: a claim process on one thread leaves its core idle part of the time
# (imports, writing files, Python between compiled epochs), and the extra job fills those
# gaps. nproc would count OMP_NUM_THREADS, which repro sets to 1 for its own processes.
CORES := $(shell env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1)
ifeq ($(filter -j% j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell expr $(CORES) + 1)
endif
VENV := .venv
BIN := $(VENV)/bin
REPRO := $(BIN)/repro
# BACKEND=jax runs the claims on Keras' JAX backend, into build/jax unless RESULTS is given.
BACKEND ?= tensorflow
RESULTS ?= $(if $(filter jax,$(BACKEND)),build/jax,results)
PROFILE ?= full
SEED_OFFSET ?= 0
export KERAS_BACKEND := $(BACKEND)

CLAIM_MODULES := $(filter-out _%,$(basename $(notdir $(wildcard repro/claims/*.py))))
# Claims about TensorFlow itself say so (BACKENDS = ("tensorflow",)) and skip the JAX run.
TF_ONLY := $(basename $(notdir $(shell grep -l '^BACKENDS = ("tensorflow",)' repro/claims/*.py)))
# The longest work comes first, so that `make -j` starts it first and packs the rest around
# it. The tuning claim comes after the claims that run beside its searches: make visits a
# target once and, if what it needs is still running, only again at the end.
LONGEST := initialization dropout-regularizes label-noise-order mc-dropout tuning \
  deep-sigmoid-vs-relu training-memory early-stopping
ALL_CLAIMS := $(subst _,-,$(if $(filter jax,$(BACKEND)),$(filter-out $(TF_ONLY),$(CLAIM_MODULES)),$(CLAIM_MODULES)))
CLAIMS := $(foreach c,$(LONGEST),$(filter $(c),$(ALL_CLAIMS))) \
          $(filter-out $(LONGEST),$(ALL_CLAIMS))
VERDICTS := $(CLAIMS:%=$(RESULTS)/%/verdict.json)
# What every claim's numbers depend on besides its own module (repro/records.py lists the
# same core modules for provenance); a new .venv (a fresh machine, a changed pyproject.toml
# or constraints.txt) reruns every claim.
CLAIM_DEPS := $(addprefix repro/,__init__.py backend.py data.py figures.py models.py records.py \
  rules.py)

.DEFAULT_GOAL := help
.PHONY: help venv all test lint check report verify fresh-seeds backends bench browser clean \
  $(CLAIMS)
# Only the committed results/ also refresh the claim table of the top-level README.
README_FLAG = $(if $(filter results,$(RESULTS)),--readme README.md)

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 24
	@echo "claims (make <claim>): $(CLAIMS)"

# The virtual environment is rebuilt whenever pyproject.toml or constraints.txt changes; the
# constraints pin every package to the versions the committed results were made with.
$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

venv: $(BIN)/.installed ## create or refresh .venv from pyproject.toml and constraints.txt

all: $(RESULTS)/MANIFEST.sha256 ## regenerate every result with the full profile, then the report

.SECONDEXPANSION:
$(RESULTS)/MANIFEST.sha256: $$(TUNING_STAMPS) $(VERDICTS) repro/report.py repro/check.py \
		| $(BIN)/.installed
	$(REPRO) report --out $(RESULTS) $(README_FLAG)

$(RESULTS)/%/verdict.json: repro/claims/$$(subst -,_,$$*).py $(CLAIM_DEPS) $(BIN)/.installed
	$(REPRO) run $* --profile $(PROFILE) --seed-offset $(SEED_OFFSET) --out $(RESULTS)

$(CLAIMS): %: $(RESULTS)/%/verdict.json

# A claim that imports another module of the package depends on it too.
$(RESULTS)/training-memory/verdict.json: repro/allocator.py

report: $(BIN)/.installed ## rewrite results/README.md, report.html and the manifest
	$(REPRO) report --out $(RESULTS) $(README_FLAG)

check: $(BIN)/.installed ## verify results/ from its files alone (what graders run)
	$(REPRO) check $(RESULTS)

lint: $(BIN)/.installed ## ruff format check and lint
	$(BIN)/ruff format --check repro tests
	$(BIN)/ruff check repro tests

# Three runs side by side, each printed whole when it ends: the whole suite on TensorFlow with
# its own kernels (oneDNN off, repro's default); the tests that guard results across machines
# again under the other kernel choice, oneDNN on, which is what TensorFlow picks by itself on
# CPUs with AVX-512; and the training path and every claim's quick run on Keras' JAX backend.
TEST_RUNS := test-tensorflow test-onednn test-jax
.PHONY: $(TEST_RUNS)
test: $(BIN)/.installed lint browser ## lint, then the tests (quick profiles), both kernels, JAX
	$(MAKE) --no-print-directory --output-sync=target $(TEST_RUNS)

test-tensorflow: $(BIN)/.installed
	$(BIN)/pytest
test-onednn: $(BIN)/.installed
	TF_ENABLE_ONEDNN_OPTS=1 $(BIN)/pytest -m portability
test-jax: $(BIN)/.installed
	KERAS_BACKEND=jax $(BIN)/pytest -m backends

# The report is checked in a real headless browser: Debian's Chromium, installed if missing.
# Where it cannot be installed (no apt-get, not root) the browser test is skipped and says
# so, except under CI=true, where the test fails without a browser.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Chromium (Debian package) for the report's browser test"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	  else \
	    echo "Chromium is missing and cannot be installed here (needs root and apt-get):" \
	      "the browser test will be skipped; install the chromium package to run it"; \
	  fi; }

verify: $(BIN)/.installed ## regenerate everything into build/verify and compare with results/
	rm -rf build/verify build/verify-tuner-work
	REPRO_TUNER_WORK=$(CURDIR)/build/verify-tuner-work $(MAKE) all RESULTS=build/verify
	$(REPRO) compare build/verify --against $(RESULTS)

# Seeds shifted by 1000 are run only once every design is frozen, and never change one. A
# changed verdict is reported (and makes the target fail) but the table is written either
# way: it is the evidence.
FRESH := build/fresh-seeds
fresh-seeds: $(BIN)/.installed ## rerun every claim on seeds shifted by 1000: results/robustness.csv
	$(MAKE) all RESULTS=$(FRESH) SEED_OFFSET=1000
	$(REPRO) robustness $(FRESH) --against $(RESULTS); status=$$?; \
	  $(REPRO) report --out $(RESULTS) $(README_FLAG) && exit $$status

# Every claim that is not about TensorFlow itself, rerun on Keras' JAX backend (other random
# streams, other kernels) into build/jax; results/backends.csv lists both verdicts.
backends: $(BIN)/.installed ## rerun the claims on JAX into build/jax: results/backends.csv
	REPRO_TUNER_WORK=$(CURDIR)/build/jax-tuner-work $(MAKE) all BACKEND=jax
	$(REPRO) backends build/jax --against results; status=$$?; \
	  $(REPRO) report --out results --readme README.md && exit $$status

bench: $(BIN)/.installed ## time make all from scratch, the training path against Keras fit
	$(BIN)/python -m repro.bench --out $(RESULTS)/bench.csv
	$(REPRO) report --out $(RESULTS) $(README_FLAG)

clean: ## remove the virtual environment and caches (results/ is kept: it is committed)
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# --- tuning ---
# Network tuning (claim `tuning`, docs/tuning.md): `repro tune` runs keras-tuner's
# searches, kept in tuner-work/ so that an interrupted `make tune` resumes where it stopped.
# The searches (3 tuners per seed) run as TUNING_SHARDS processes that `make -j` runs side by
# side, each taking whole seeds (seeds I, I+N, ...: a seed's data are generated once); the
# claim itself then reloads the finished searches. A stamp records each finished shard of a
# work directory and its wall seconds (for make bench). `make tune-distributed` runs one
# chief oracle and WORKERS worker processes on loopback, on ports TUNER_PORT and up.
# One shard per core: each shard process pays about 5 s for importing TensorFlow and
# keras-tuner, so shards beyond the cores only add that. Which process runs a search does
# not change its trials.
TUNING_SHARDS := $(CORES)
TUNER_WORK := $(or $(REPRO_TUNER_WORK),tuner-work)
TUNING_STAMPS := $(foreach i,$(shell seq $(TUNING_SHARDS)),\
  $(TUNER_WORK)/shards/$(PROFILE)-offset$(SEED_OFFSET)/$(i)-of-$(TUNING_SHARDS))
WORKERS ?= 2
TUNER_PORT ?= 8470
.PHONY: tune tune-distributed

$(RESULTS)/tuning/verdict.json: $(TUNING_STAMPS) repro/search.py

$(TUNER_WORK)/shards/$(PROFILE)-offset$(SEED_OFFSET)/%-of-$(TUNING_SHARDS): \
		repro/claims/tuning.py repro/search.py $(CLAIM_DEPS) $(BIN)/.installed
	@start=$$(date +%s); \
	  $(REPRO) tune --shard $*/$(TUNING_SHARDS) --profile $(PROFILE) --seed-offset $(SEED_OFFSET) \
	  && mkdir -p $(@D) && echo $$(( $$(date +%s) - start )) > $@

tune: $(RESULTS)/tuning/verdict.json ## tuning claim: random search, Hyperband, Bayesian (rerun resumes)

tune-distributed: $(BIN)/.installed ## the same searches in keras-tuner's distributed mode
	$(REPRO) tune --distributed --workers $(WORKERS) --port $(TUNER_PORT) \
		--profile $(PROFILE) --seed-offset $(SEED_OFFSET) --out $(RESULTS)
# --- end tuning ---
