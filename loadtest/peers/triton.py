"""Peer: NVIDIA Triton Inference Server through PyTriton (``nvidia-pytriton``), on the CPU.

One Triton model per family, named by its route (``mnist``, ``asl``), bound with PyTriton as its
docs show: ``Triton(config=TritonConfig(...))``, ``triton.bind(model_name, infer_func, inputs,
outputs, config=ModelConfig(max_batch_size=N, batcher=DynamicBatcher(max_queue_delay_microseconds=W*1000)))``
and the ``@batch`` decorator, then ``triton.serve()``. PyTriton's wheel ships ``tritonserver``: its C++
HTTP front end takes the requests, its dynamic batcher joins the rows of concurrent requests, and a
Python-backend stub hands each batch to the inference callable in this process. Per-request work
(decoding and preprocessing each upload with the project's stem) runs in that callable, the one place
PyTriton gives user code; the found rows of the whole batch then go through one ``NumpyMLP`` pass.

Protocol: KServe v2 (Triton's HTTP front end), not the multipart contract. ``POST
/v2/models/{mnist,asl}/infer`` with inputs ``image`` BYTES [n, 1] (one encoded upload per row) and
``top_k`` INT32 [n, 1]; output ``answer`` BYTES [n, 1], each the service's answer dict as UTF-8 JSON
(``Classifier.answer``). A bad row (undecodable image, top_k out of range) does not fail the rows it was
batched with: its answer is ``{"error": ..., "status": <the HTTP status the service would give>}``, and
such rows are counted (printed at exit). Readiness: ``GET /v2/health/ready``.

Knobs: ``--port`` (HTTP), ``--max-batch-size`` (ModelConfig.max_batch_size: the most rows in one pass,
and in one request, so at least the client's largest request), ``--max-wait-ms``
(DynamicBatcher.max_queue_delay_microseconds / 1000; Triton's default is 0, batch only what is already
queued), ``--instances`` (model instances per family, PyTriton's list of inference callables; default 1).
gRPC and metrics listen on free ports (printed at start). Mean batch formed: ``GET
/v2/models/<name>/stats`` -> ``inference_count / execution_count`` (see :func:`mean_batch`, or run
``python -m loadtest.peers.triton --stats-of P``). SIGTERM or SIGINT stops Triton, its stubs and this process.

Docs followed:
https://triton-inference-server.github.io/pytriton/latest/high_level_design
https://triton-inference-server.github.io/pytriton/latest/binding_models
https://triton-inference-server.github.io/pytriton/latest/inference_callables/
https://triton-inference-server.github.io/pytriton/latest/inference_callables/decorators
https://triton-inference-server.github.io/pytriton/latest/reference/model_config
https://triton-inference-server.github.io/pytriton/latest/reference/triton/
https://triton-inference-server.github.io/pytriton/0.1.4/deploying_models
https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/batcher.html
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
import urllib.request

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import (
    DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonLifecyclePolicy, TritonSecurityConfig,
)

from loadtest.alternatives.common import NumpyMLP, StoredModel, stored_models, top_k_of
from preprocessing import ImageError


EXIT_TIMEOUT_S = 3  # Triton's wait for in-flight requests on stop (default 30): the whole stop stays under ~10 s


class FamilyModel:
    """The inference callable of one family: a batch of rows (image bytes, top_k) -> JSON answers."""

    def __init__(self, entry: StoredModel, counts: "Counts"):
        self.entry = entry
        self.classifier = entry.classifier(NumpyMLP(entry.path))
        self.counts = counts

    @batch
    def infer(self, image: np.ndarray, top_k: np.ndarray) -> dict[str, np.ndarray]:
        """Rows of all the requests Triton batched (``@batch`` joins them and splits the answers)."""
        answers: list[dict | None] = [None] * len(image)
        prepared, found = [], []
        for row, (data, k) in enumerate(zip(image[:, 0], top_k[:, 0])):
            k = top_k_of(int(k), self.entry)
            if k is None:
                answers[row] = {"error": "top_k out of range", "status": 400}
                continue
            try:
                one = self.classifier.prepare(bytes(data))
            except ImageError as exc:
                answers[row] = {"error": str(exc), "status": exc.status_code}
                continue
            prepared.append((row, one, k))
            if one.found:
                found.append(one.vector)
        probabilities = iter(self.classifier.probabilities(np.stack(found)) if found else ())
        for row, one, k in prepared:
            answers[row] = self.classifier.answer(one, next(probabilities) if one.found else None, k)
        self.counts.add(len(image), len(found), len(image) - len(prepared))
        encoded = np.empty((len(image), 1), dtype=object)
        encoded[:, 0] = [json.dumps(a).encode() for a in answers]
        return {"answer": encoded}


class Counts:
    """Rows seen, rows through the network and rows answered with an error, over all batches."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = self.found = self.errors = 0

    def add(self, rows: int, found: int, errors: int) -> None:
        with self.lock:
            self.rows += rows
            self.found += found
            self.errors += errors


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mean_batch(port: int, models=("mnist", "asl")) -> dict:
    """Triton's own statistics: per model, requests (``inference_count``: rows), passes
    (``execution_count``) and the mean batch formed, from ``GET /v2/models/<name>/stats``."""
    result = {}
    for name in models:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{name}/stats", timeout=5) as response:
            stats = json.load(response)["model_stats"][0]
        rows, passes = int(stats["inference_count"]), int(stats["execution_count"])
        result[name] = {"rows": rows, "passes": passes, "mean_batch": rows / passes if passes else None}
    return result


def serve(port: int, max_batch_size: int, max_wait_ms: float, instances: int) -> None:
    grpc_port, metrics_port = free_port(), free_port()
    config = TritonConfig(http_address="127.0.0.1", http_port=port, grpc_address="127.0.0.1", grpc_port=grpc_port,
                          metrics_address="127.0.0.1", metrics_port=metrics_port,
                          exit_timeout_secs=EXIT_TIMEOUT_S)
    counts = Counts()
    # The models are written to the model store before tritonserver starts, which then loads them before
    # it listens: /v2/health/ready is 200 only once both are loaded. (With the default policy Triton
    # starts with no model and answers ready until PyTriton loads the first one.)
    # PyTriton guards the statistics API with a generated token by default; the benchmark reads the mean
    # batch from it, so it alone is opened (127.0.0.1 only).
    security = TritonSecurityConfig(restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])
    triton = Triton(config=config, security_config=security,
                    triton_lifecycle_policy=TritonLifecyclePolicy(launch_triton_on_startup=True, local_model_store=True))
    for route, entry in stored_models().items():
        callables = [FamilyModel(entry, counts).infer for _ in range(instances)]
        triton.bind(
            model_name=route,
            infer_func=callables if instances > 1 else callables[0],
            inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,)), Tensor(name="top_k", dtype=np.int32, shape=(1,))],
            outputs=[Tensor(name="answer", dtype=np.bytes_, shape=(1,))],
            config=ModelConfig(max_batch_size=max_batch_size,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=int(max_wait_ms * 1000))),
        )
    print(f"triton: http 127.0.0.1:{port} (ready: GET /v2/health/ready), grpc {grpc_port}, metrics {metrics_port}; "
          f"mean batch: python -m loadtest.peers.triton --stats-of {port}", flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt  # serve() stops Triton, its stubs and the proxies on KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    triton.serve()
    print(f"triton: stopped; rows {counts.rows}, through the network {counts.found}, answered with an error "
          f"{counts.errors}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--stats-of", type=int, metavar="PORT", help="print the mean batch of a running server")
    args = parser.parse_args(argv)
    if args.stats_of:
        json.dump(mean_batch(args.stats_of), sys.stdout)
        print()
        return
    logging.basicConfig(level=logging.WARNING)
    serve(args.port, args.max_batch_size, args.max_wait_ms, args.instances)


if __name__ == "__main__":
    main()
