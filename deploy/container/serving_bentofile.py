"""Write the serving image's bentofile, derived from the project's bentofile.yaml:

    python deploy/container/serving_bentofile.py [bentofile.yaml] > build/bentofile.serving.yaml

Same service, models, sources and pins (bentoml: the version that builds the Bento, as BentoML
pins it itself for this kind of Bento), with three changes (measured in docs/deploy.md):
* Keras on JAX's CPU backend instead of TensorFlow (`KERAS_BACKEND=jax`): the TensorFlow wheel alone
  is 1.3 GB installed, jax + jaxlib + scipy ~0.5 GB; a served model needs no training stack;
* jax and jaxlib pinned to the versions of the dev extras in pyproject.toml (the tested pair);
* deploy/container/Dockerfile.serving.j2 as the Dockerfile template: a multi-stage build that
  ships the Python environment without the compiler, apt lists or package caches.
Derived rather than copied, so that the image follows bentofile.yaml's sources and pins.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = "deploy/container/Dockerfile.serving.j2"  # relative to the build context (the repo)
TRAINING_ONLY = re.compile(r"^(tensorflow|tensorflow-cpu|tensorflow\[[^\]]*\])\s*(==|>=|~=|$)")


def jax_pins(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """jax==V and jaxlib==V, V from the dev extras (where the JAX backend is tested)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    for requirement in project.get("optional-dependencies", {}).get("dev", []):
        match = re.fullmatch(r"jax==([\w.]+)", requirement.strip())
        if match:
            return [f"jax=={match[1]}", f"jaxlib=={match[1]}"]
    raise SystemExit("serving_bentofile.py: pyproject.toml's dev extras pin no jax==VERSION")


def serving(config: dict, pins: list[str]) -> dict:
    config = dict(config)
    python = dict(config.get("python") or {})
    packages = [p for p in python.get("packages", []) if not TRAINING_ONLY.match(p.strip())]
    # a Bento built from a Dockerfile template (BentoML's v1 format) pins the BentoML that builds
    # it by itself; a second, different bentoml pin would make the requirements unsatisfiable
    packages = [p for p in packages if not re.match(r"^bentoml\s*(==|>=|~=|$)", p.strip())]
    if len(packages) == len(python.get("packages", [])):
        raise SystemExit("serving_bentofile.py: bentofile has no tensorflow package to replace")
    python["packages"] = packages + pins
    config["python"] = python
    envs = [e for e in config.get("envs", []) if e.get("name") != "KERAS_BACKEND"]
    config["envs"] = envs + [{"name": "KERAS_BACKEND", "value": "jax"}]
    docker = dict(config.get("docker") or {})
    docker["dockerfile_template"] = TEMPLATE
    config["docker"] = docker
    config.setdefault("labels", {})["image"] = "serving-jax-cpu"
    return config


def main(argv: list[str]) -> None:
    source = Path(argv[1]) if len(argv) > 1 else REPO / "bentofile.yaml"
    config = serving(yaml.safe_load(source.read_text()), jax_pins())
    sys.stdout.write(f"# GENERATED from {source.name} by deploy/container/serving_bentofile.py; do not edit\n")
    sys.stdout.write(yaml.safe_dump(config, sort_keys=False))


if __name__ == "__main__":
    main(sys.argv)
