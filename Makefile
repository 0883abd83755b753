# Every target uses the virtual environment .venv and creates it when needed.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?=
export DATA_DIR
# BentoML's usage tracking is off; BENTOML_DO_NOT_TRACK=false make serve turns it back on
BENTOML_DO_NOT_TRACK ?= true
export BENTOML_DO_NOT_TRACK

# `make train` and `make serve` hide TensorFlow's start-up lines (oneDNN, CPU features, XLA, absl);
# VERBOSE=1 (or a TF_CPP_MIN_LOG_LEVEL of your own) shows them. docs/training.md says which and why.
VERBOSE ?=
export VERBOSE
TF_NOISE := All log messages before absl::InitializeLog|oneDNN custom operations are on|cpu_feature_guard|^To enable the following instructions
ifeq ($(filter-out 0,$(VERBOSE))$(TF_CPP_MIN_LOG_LEVEL),)
QUIET_TF := TF_CPP_MIN_LOG_LEVEL=2
HIDE_TF_NOISE := 2> >(grep --line-buffered -v -E '$(TF_NOISE)' >&2)
endif

.PHONY: setup train train-gpu train-missing serve test bench-train bench-uploads bench-photos bench-ood bench-hostile bento clean loadtest soak bench bench-gpu bench-transport peers-setup bench-peers

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# TRAIN_JOBS: how many models train at once, each in its own process (1: one after the other).
TRAIN_JOBS ?= 2

train: setup  ## train both models (side by side, TRAIN_JOBS=1: one after the other) into the BentoML model store
	$(PY) -m training all --jobs $(TRAIN_JOBS)

train-missing: setup  ## train only the models the store does not have yet
	$(PY) -m training all --skip-existing --jobs $(TRAIN_JOBS)

serve: train-missing  ## serve both models on port 3000 (prints the page's URL when ready)
	@echo "$(VENV)/bin/bentoml serve"
	@$(QUIET_TF) exec $(VENV)/bin/bentoml serve $(HIDE_TF_NOISE)

test: setup  ## the whole test suite (set DATA_DIR for the tests on real data)
	$(PY) -m pytest

bench-train: setup  ## train both models with the defaults and write reports/bench/train.md
	$(PY) -m bench.training

bench-uploads: train-missing  ## accuracy on raw test images vs the same images dressed as real uploads; pad-written and varied digits
	$(PY) -m bench.uploads

BASELINE ?=

bench-photos: train-missing  ## hard photos and blank pages: accuracy, share flagged, CPU per upload (BASELINE=checkout for "before")
	$(PY) -m bench.photos $(if $(BASELINE),--baseline $(BASELINE))

bench-ood: train-missing  ## non-digits / non-signs (pad drawings too) vs real test images: share answered unsure or found false; writes reports/bench/ood.md
	$(PY) -m bench.ood

BEFORE ?=
bench-hostile: train-missing  ## hostile clients vs the service (BEFORE=dir: also the old code); writes reports/bench/hostile.md
	$(PY) -m bench.hostile $(if $(BEFORE),--before $(BEFORE))

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

# The servers users would pick instead (loadtest/peers, bench/peers.py; docs/loadtest.md): each peer
# in a virtual environment of its own under PEERS_VENV_DIR (.venv-peers), never needed to serve.
PEERS ?= triton,litserve,ray,bentoml-quickstart
BENCH_PEERS_ARGS ?=

peers-setup: setup  ## the peers' environments (Triton's from the system's python3.11)
	$(PY) -m loadtest.peers setup --peers $(PEERS) --keep-going

bench-peers: train-missing  ## (makes the peers' environments first) the service vs Triton, LitServe, Ray Serve, a quickstart BentoML service; reports/bench/peers.md
	$(PY) -m bench.peers --peers $(PEERS) $(BENCH_PEERS_ARGS)

bench-transport: train-missing  ## in-worker passes vs a model executor on a socket vs one through BentoML; reports/bench/transport.md
	$(PY) -m bench.transport

# The service with the GPU vs the same machine's CPUs (bench/gpu.py, docs/loadtest.md). On a machine
# without network, set GPU_WHEELS to a folder of the serving wheels its python3 lacks (installed into
# a temporary folder, no virtual environment) and BENTOML_HOME to a store with the trained models.
GPU_WHEELS ?=
BENCH_GPU_ARGS ?=
GPU_SITE := $(or $(TMPDIR),/tmp)/bench-gpu-site
# the wheels into a temporary folder (no virtual environment), and the machine's python3 with them
GPU_INSTALL = python3 -m pip install -q --no-index --no-deps --no-compile --target $(GPU_SITE) $(GPU_WHEELS)/*.whl
GPU_PYTHON = PYTHONPATH=$(GPU_SITE)$${PYTHONPATH:+:$$PYTHONPATH} KERAS_BACKEND=jax PYTHONUNBUFFERED=1 python3
ifeq ($(GPU_WHEELS),)
bench-gpu: train-missing  ## the service with the GPU vs CPU-only, one machine, one run; writes reports/bench/gpu.md
	$(PY) -m bench.gpu $(BENCH_GPU_ARGS)
else
bench-gpu:
	$(GPU_INSTALL)
	$(GPU_PYTHON) -m bench.gpu $(BENCH_GPU_ARGS)
endif

# Training on a GPU: the same recipe on Keras' JAX backend (docs/training.md, "Training on a GPU").
# With GPU_WHEELS as above (the machine's python3 has a CUDA jax), else .venv needs a CUDA jax:
# .venv/bin/pip install "jax[cuda12]==0.10.2". TRAIN_ARGS: more options for python -m training all.
TRAIN_ARGS ?=
ifeq ($(GPU_WHEELS),)
train-gpu: setup  ## train both models on a GPU (Keras on JAX, the recipe of make train); .venv needs jax[cuda12]
	KERAS_BACKEND=jax $(PY) -m training all $(TRAIN_ARGS)
else
train-gpu:
	$(GPU_INSTALL)
	$(GPU_PYTHON) -m training all $(TRAIN_ARGS)
endif

# Container image and Kubernetes (deploy/, docs/deploy.md). The engine: Docker where its daemon
# answers, else podman/buildah (with deploy/container/containers.conf where the host needs it).
IMAGE ?= digits_and_signs:latest
PORT ?= 3000
ENGINE_PACKAGES := podman buildah runc debootstrap
CONTAINERS_CONF ?= $(shell deploy/container/engine-conf.sh)
ifneq ($(CONTAINERS_CONF),)
export CONTAINERS_CONF
endif

.PHONY: image-setup image image-run cluster cluster-down bench-cluster

image-setup:  ## the container engine: Docker, or podman + buildah + runc (+ debootstrap for the local base image)
	@missing=""; for tool in $(ENGINE_PACKAGES); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if docker info >/dev/null 2>&1; then echo "container engine: docker"; \
	elif [ -z "$$missing" ]; then echo "container engine: podman/buildah"; \
	elif [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
	     echo "installing:$$missing"; apt-get update -qq && \
	     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(ENGINE_PACKAGES) >/dev/null; \
	else echo "missing:$$missing. Install Docker, or (Debian/Ubuntu, as root)" \
	          "apt-get install -y $(ENGINE_PACKAGES)" >&2; exit 1; fi

image: train-missing image-setup  ## the CPU image digits_and_signs:latest (BENTOFILE=bentofile.gpu.yaml: the GPU one)
	IMAGE=$(IMAGE) BENTOML=$(VENV)/bin/bentoml deploy/container/build-image.sh

# The local cluster (tools/cluster.py, deploy/loadbalancer; docs/scaling.md): podman, run as root
REPLICAS ?= 2
CLUSTER_PORT ?= 8080

cluster: setup image-setup  ## REPLICAS (2) of IMAGE behind HAProxy; prints the front door's URL (port CLUSTER_PORT, 8080)
	@podman image exists $(IMAGE) || podman image exists localhost/$(IMAGE) || $(MAKE) image
	$(PY) -m tools.cluster up --replicas $(REPLICAS) --port $(CLUSTER_PORT) --image $(IMAGE)

cluster-down: setup  ## stop the local cluster
	$(PY) -m tools.cluster down

bench-cluster: setup image-setup  ## rollout, replica kill, slow clients, the front door's cost; reports/bench/cluster.md
	@podman image exists $(IMAGE) || podman image exists localhost/$(IMAGE) || $(MAKE) image
	$(PY) -m bench.cluster --image $(IMAGE) --port $(CLUSTER_PORT) $(BENCH_CLUSTER_ARGS)

image-run: image-setup  ## serve the image on PORT (3000); stop with Ctrl-C
	@if docker info >/dev/null 2>&1; then docker run --rm -p $(PORT):3000 $(IMAGE); \
	else podman run --rm -p $(PORT):3000 $(IMAGE); fi
