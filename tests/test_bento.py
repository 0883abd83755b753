"""The Bento: `bentoml build` packages the service and both models; the built Bento serves."""

from __future__ import annotations

import os
import subprocess

import bentoml
import pytest
import requests
import yaml

from tools.servers import BENTOML, REPO, Server, bentoml_serve
from test_service import GOOD


def build(bentofile: str = "bentofile.yaml") -> bentoml.Bento:
    done = subprocess.run([BENTOML, "build", "-f", bentofile, "--output", "tag"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return bentoml.get(tag)


@pytest.fixture(scope="module")
def cpu_bento(served_models):
    return build()


def test_bento_holds_service_models_and_pinned_packages(cpu_bento, served_models):
    root = cpu_bento.path
    info = yaml.safe_load(open(os.path.join(root, "bento.yaml")))
    # the models the service declares, one per catalog family (no list in the bentofile)
    assert {m["tag"] for m in info["services"][0]["models"]} == set(served_models.values())
    src = os.listdir(os.path.join(root, "src"))
    # what serving needs and nothing else: no training, tools, benchmarks, load tests or tests
    assert set(src) - {"bentofile.yaml"} == {"catalog", "execution", "inference", "preprocessing", "service"}, src
    requirements = open(os.path.join(root, "env", "python", "requirements.txt")).read()
    # serving needs no training stack: Keras on JAX, no TensorFlow
    for pin in ("jax==0.10.2", "jaxlib==0.10.2", "keras==3.15.1", "bentoml==1.4.40", "pillow==13.0.0",
                "opencv-python-headless==5.0.0.93"):
        assert pin in requirements.splitlines()
    assert "tensorflow" not in requirements
    dockerfile = open(os.path.join(root, "env", "docker", "Dockerfile")).read()
    assert "FROM python:3.11-slim AS python-env" in dockerfile and "EXPOSE 3000" in dockerfile
    assert "ENV KERAS_BACKEND=$KERAS_BACKEND" in dockerfile and "ARG KERAS_BACKEND=jax" in dockerfile
    # a worker that dies is respawned in the container too (BentoML's own Dockerfile turns that off)
    assert "ENV BENTOML_CONTAINERIZED" not in dockerfile
    assert "requirements.txt" in dockerfile and "entrypoint.sh" in dockerfile
    assert "ENV BENTOML_DO_NOT_TRACK=$BENTOML_DO_NOT_TRACK" in dockerfile  # usage tracking off, from the bentofile


def test_built_bento_serves_the_same_answers(cpu_bento, server, tmp_path):
    """Serve the built Bento (not the source tree: another working directory) and compare."""
    built = Server(bentoml_serve(str(cpu_bento.tag)), cwd=tmp_path, log=tmp_path / "serve.log").wait_ready()
    try:
        for route in ("mnist", "asl"):
            files = {"image": ("d.png", GOOD, "image/png")}
            from_bento = requests.post(f"{built.url}/{route}/predict", files=files, timeout=30).json()
            from_source = requests.post(f"{server.url}/{route}/predict", files=files, timeout=30).json()
            assert from_bento["model"] == from_source["model"]
            assert from_bento["label"] == from_source["label"]
            assert from_bento["confidence"] == pytest.approx(from_source["confidence"], abs=1e-5)
        bad = requests.post(f"{built.url}/mnist/predict", files={"image": ("x", b"nope")}, timeout=30)
        assert bad.status_code == 400 and "error" in bad.json()
    finally:
        built.stop()


def test_gpu_variant_is_the_cpu_image_with_a_cuda_jax(cpu_bento, served_models):
    """bentofile.gpu.yaml: the same Bento and image as bentofile.yaml, with JAX's CUDA wheels instead
    of the CPU jaxlib. Only the Bento is built here: the image (~6 GB) is too large for CI's budget."""
    bento = build("bentofile.gpu.yaml")
    python = os.path.join(bento.path, "env", "python")
    requirements = open(os.path.join(python, "requirements.txt")).read().splitlines()
    cpu_requirements = open(os.path.join(cpu_bento.path, "env", "python", "requirements.txt")).read().splitlines()
    # the CPU Bento's pins (bentoml: the version that builds it), with jax[cuda12] for the CPU jax
    assert "jax[cuda12]==0.10.2" in requirements and "jaxlib==0.10.2" in requirements
    assert set(requirements) - {"jax[cuda12]==0.10.2"} == set(cpu_requirements) - {"jax==0.10.2"}
    # locked: JAX's CUDA plugin of the same version and the CUDA libraries as wheels (no CUDA base image)
    lock = open(os.path.join(python, "requirements.lock.txt")).read().splitlines()
    for pin in ("jax==0.10.2", "jaxlib==0.10.2", "jax-cuda12-plugin==0.10.2", "jax-cuda12-pjrt==0.10.2",
                "keras==3.15.1", "bentoml==1.4.40"):
        assert pin in lock
    for wheel in ("nvidia-cuda-runtime-cu12", "nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-nvcc-cu12"):
        assert any(line.startswith(f"{wheel}==") for line in lock), wheel
    assert not any("tensorflow" in line for line in requirements + lock)
    # the CPU image's Dockerfile (base python:3.11-slim, user bentoml, port 3000, entrypoint,
    # KERAS_BACKEND=jax) plus one variable: JAX's CUDA check off, so that a start without a GPU is quiet
    dockerfile = open(os.path.join(bento.path, "env", "docker", "Dockerfile")).read()
    cpu_dockerfile = open(os.path.join(cpu_bento.path, "env", "docker", "Dockerfile")).read()
    skip_check = "ARG JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1\nENV JAX_SKIP_CUDA_CONSTRAINTS_CHECK=$JAX_SKIP_CUDA_CONSTRAINTS_CHECK\n"
    assert skip_check in dockerfile
    assert dockerfile.replace(skip_check, "") == cpu_dockerfile
    assert "nvidia/cuda" not in dockerfile and "FROM python:3.11-slim AS base-container" in dockerfile
    assert "ARG KERAS_BACKEND=jax" in dockerfile and "EXPOSE 3000" in dockerfile
    assert dockerfile.rsplit("\nUSER ", 1)[1].startswith("bentoml")  # the last USER directive
    assert "entrypoint.sh" in dockerfile.split("ENTRYPOINT", 1)[1]
    info = yaml.safe_load(open(os.path.join(bento.path, "bento.yaml")))
    assert {m["tag"] for m in info["services"][0]["models"]} == set(served_models.values())
    assert sorted(os.listdir(os.path.join(bento.path, "src"))) == sorted(os.listdir(os.path.join(cpu_bento.path, "src")))
