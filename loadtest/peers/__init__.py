"""The serving systems users would pick instead of the service, set up as their own docs say
(``make bench-peers``, bench/peers.py).

Every peer serves the same two stored models (``$BENTOML_HOME``) with the same weights (a numpy
forward pass of ``model.keras``, :class:`loadtest.alternatives.common.NumpyMLP`), receives the same
encoded image bytes and prepares them with the project's stem (:class:`inference.Classifier`); only
the serving stack differs. Each has its dynamic batching on, with the settings given here:

* ``triton``: NVIDIA Triton through ``nvidia-pytriton`` (its server, C++ HTTP front end and dynamic
  batcher), the KServe v2 protocol with the image bytes as a ``BYTES`` tensor;
* ``litserve``: LitServe, ``max_batch_size`` / ``batch_timeout``, a multipart upload route;
* ``ray``: Ray Serve, ``@serve.batch`` behind a FastAPI ingress;
* ``bentoml-quickstart``: one ``@bentoml.service`` class, as a BentoML user writes it first, with
  BentoML's own adaptive batching.

The peers are optional: each (but the quickstart, which needs only BentoML) gets a virtual
environment of its own under ``$PEERS_VENV_DIR`` (default ``.venv-peers/``), made from the pinned
``requirements/<peer>.txt`` by ``python -m loadtest.peers setup`` (``make peers-setup``). Triton's
environment must come from the system's own ``python3.11`` (``TRITON_PYTHON``): its Python backend
stub links the system's ``libpython3.11``, and under another build of 3.11 the model fails to load
(``'_thread.RLock' object has no attribute '_recursion_count'``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools.servers import REPO, bentoml_serve, http_get

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements"


def venv_root() -> Path:
    return Path(os.environ.get("PEERS_VENV_DIR") or REPO / ".venv-peers")


@dataclass(frozen=True)
class BatchSetting:
    """One dynamic-batching setting of a peer: the largest batch and the longest wait for one."""

    max_batch_size: int
    max_wait_ms: float

    @property
    def label(self) -> str:
        return f"batch {self.max_batch_size}, wait {self.max_wait_ms:g} ms"


@dataclass(frozen=True)
class Peer:
    """A peer server: how to make its environment, start it, see it ready and count its batches."""

    key: str
    name: str
    module: str
    settings: tuple[BatchSetting, ...]
    docs: tuple[str, ...]
    python: str | None = None  # interpreter its venv is made from; None: no venv, the main one
    protocol: str = "multipart"  # what the locust scenario speaks to it (LOADTEST_PROTOCOL)
    ready_path: str = "/readyz"

    @property
    def requirements(self) -> Path | None:
        return REQUIREMENTS / f"{self.key}.txt" if self.python else None

    @property
    def venv(self) -> Path | None:
        return venv_root() / self.key if self.python else None

    @property
    def interpreter(self) -> str:
        return str(self.venv / "bin" / "python") if self.venv else sys.executable

    def command(self, setting: BatchSetting) -> list[str]:
        if self.key == "bentoml-quickstart":
            return bentoml_serve(f"{self.module}:DenseClassifiers")
        return [self.interpreter, "-m", self.module, "--port", "{port}",
                "--max-batch-size", str(setting.max_batch_size), "--max-wait-ms", f"{setting.max_wait_ms:g}"]

    def env(self, setting: BatchSetting) -> dict[str, str]:
        if self.key == "bentoml-quickstart":
            return {"QUICKSTART_MAX_BATCH_SIZE": str(setting.max_batch_size),
                    "QUICKSTART_MAX_LATENCY_MS": f"{setting.max_wait_ms:g}"}
        return {}

    def batch_counters(self, url: str) -> tuple[float, float] | None:
        """(rows, forward passes) so far, from the peer's own counters; None when unknown."""
        if self.protocol == "kserve":
            rows = passes = 0.0
            for model in ("mnist", "asl"):
                status, text = http_get(f"{url}/v2/models/{model}/stats")
                if status != 200:
                    return None
                for stats in json.loads(text).get("model_stats", []):
                    rows += float(stats.get("inference_count", 0))
                    passes += float(stats.get("execution_count", 0))
            return rows, passes
        status, text = http_get(f"{url}/stats")
        if status != 200:
            return None
        try:
            counts = json.loads(text)
            return float(counts["rows"]), float(counts["passes"])
        except (ValueError, KeyError, TypeError):
            return None


PEERS: dict[str, Peer] = {peer.key: peer for peer in (
    Peer("triton", "NVIDIA Triton (pytriton)", "loadtest.peers.triton",
         (BatchSetting(64, 0), BatchSetting(64, 2)),
         docs=("https://triton-inference-server.github.io/pytriton/latest/binding_models/",
               "https://github.com/triton-inference-server/server/blob/main/docs/user_guide/batcher.md"),
         python=os.environ.get("TRITON_PYTHON", "/usr/bin/python3.11"), protocol="kserve",
         ready_path="/v2/health/ready"),
    Peer("litserve", "LitServe", "loadtest.peers.litserve_app",
         (BatchSetting(4, 50), BatchSetting(8, 5)),
         docs=("https://lightning.ai/docs/litserve/features/batching",
               "https://lightning.ai/docs/litserve/features/multiple-apis-single-port"),
         python=sys.executable),
    Peer("ray", "Ray Serve", "loadtest.peers.ray_serve",
         (BatchSetting(10, 10), BatchSetting(64, 20)),
         docs=("https://docs.ray.io/en/latest/serve/advanced-guides/dyn-req-batch.html",
               "https://docs.ray.io/en/latest/serve/http-guide.html",
               "https://docs.ray.io/en/latest/serve/model_composition.html"),
         python=sys.executable),
    Peer("bentoml-quickstart", "BentoML, quickstart", "loadtest.peers.bentoml_quickstart",
         (BatchSetting(32, 1000), BatchSetting(100, 60000)),
         docs=("https://docs.bentoml.com/en/latest/get-started/adaptive-batching.html",)),
)}


def parse_keys(text: str) -> list[Peer]:
    keys = [k.strip() for k in text.replace(" ", ",").split(",") if k.strip()]
    unknown = [k for k in keys if k not in PEERS]
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; the peers are {', '.join(PEERS)}")
    return [PEERS[k] for k in keys]


def _stamp(peer: Peer) -> str:
    return hashlib.sha256(f"{peer.python}\n".encode() + peer.requirements.read_bytes()).hexdigest()


def setup(peer: Peer, quiet: bool = True) -> float:
    """Make (or refresh) ``peer``'s environment from its requirements; the seconds it took (0: up to date).
    Raises RuntimeError with the failing command's output."""
    if peer.venv is None:
        return 0.0
    stamp = peer.venv / ".requirements-sha256"
    if stamp.is_file() and stamp.read_text() == _stamp(peer) and Path(peer.interpreter).exists():
        return 0.0
    if not Path(peer.python).exists() and not shutil.which(peer.python):
        raise RuntimeError(f"{peer.name} needs the interpreter {peer.python} to make its environment")
    started = time.monotonic()
    shutil.rmtree(peer.venv, ignore_errors=True)
    for command in ([peer.python, "-m", "venv", str(peer.venv)],
                    [peer.interpreter, "-m", "pip", "install", *(["--quiet"] if quiet else []),
                     "--disable-pip-version-check", "-r", str(peer.requirements)]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    stamp.write_text(_stamp(peer))
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.peers", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("setup", help="make the peers' virtual environments")
    make.add_argument("--peers", default=",".join(PEERS))
    make.add_argument("--keep-going", action="store_true", help="a peer that fails is reported, the others made")
    args = parser.parse_args(argv)
    failed = 0
    for peer in parse_keys(args.peers):
        if peer.venv is None:
            print(f"{peer.key}: runs in the main environment", flush=True)
            continue
        print(f"{peer.key}: environment {peer.venv} ...", flush=True)
        try:
            seconds = setup(peer)
        except RuntimeError as exc:
            failed += 1
            print(f"{peer.key}: FAILED: {exc}", file=sys.stderr, flush=True)
            if not args.keep_going:
                return 1
            continue
        print(f"{peer.key}: " + (f"made in {seconds:.0f} s" if seconds else "up to date"), flush=True)
    return 1 if failed and not args.keep_going else 0
