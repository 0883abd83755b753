# Every target uses the virtual environment .venv and creates it when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?=
export DATA_DIR

.PHONY: setup train train-missing serve test bench-train bench-uploads bench-photos bento clean loadtest soak bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: setup  ## train both models (MNIST, then ASL) into the BentoML model store
	$(PY) -m training all

train-missing: setup  ## train only the models the store does not have yet
	$(PY) -m training all --skip-existing

serve: train-missing  ## serve both models on port 3000
	$(VENV)/bin/bentoml serve

test: setup  ## the whole test suite (set DATA_DIR for the tests on real data)
	$(PY) -m pytest

bench-train: setup  ## train both models with the defaults and write reports/bench/train.md
	$(PY) -m bench.training

bench-uploads: train-missing  ## accuracy on raw test images vs the same images dressed as real uploads
	$(PY) -m bench.uploads

BASELINE ?=

bench-photos: train-missing  ## hard photos and blank pages: accuracy, share flagged, CPU per upload (BASELINE=checkout for "before")
	$(PY) -m bench.photos $(if $(BASELINE),--baseline $(BASELINE))

bento: train-missing  ## build the Bento
	$(VENV)/bin/bentoml build

clean:
	rm -rf build dist *.egg-info reports .pytest_cache

# Load tests and the serving benchmark (loadtest/, docs/loadtest.md). The service needs both models in
# the store ($BENTOML_HOME); with DATA_DIR the uploads are real test-split images, else synthetic ones.
HOST ?=
LOADTEST_ARGS ?=

loadtest: setup  ## locust sweep (1, 8, 32, 64 users, 20 s each) on a service it starts, or HOST=...; exit 1 on a missed SLO
	$(PY) -m loadtest sweep $(if $(HOST),--host $(HOST)) $(LOADTEST_ARGS)

soak: setup  ## 10 minutes at 70 % of the max throughput (from the last `make loadtest`); RSS must stay flat
	$(PY) -m loadtest soak $(if $(HOST),--host $(HOST)) $(LOADTEST_ARGS)

bench: setup  ## the service vs hand-written servers, same scenario; writes reports/bench/serving.md
	$(PY) -m loadtest bench $(LOADTEST_ARGS)
