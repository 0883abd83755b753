# Every target uses the virtual environment .venv and creates it when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?=
export DATA_DIR

.PHONY: setup train train-missing serve test bench-train bench-uploads bento clean

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
	$(PY) -m training.bench

bench-uploads: train-missing  ## accuracy on raw test images vs the same images dressed as real uploads
	$(PY) -m preprocessing.benchmark

bento: train-missing  ## build the Bento
	$(VENV)/bin/bentoml build

clean:
	rm -rf build dist *.egg-info reports .pytest_cache
