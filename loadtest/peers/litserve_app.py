"""Peer: LitServe, set up as its documentation shows, serving both classifiers on one port.

One ``ls.LitAPI`` per route (``/mnist/predict``, ``/mnist/predict_batch``, ``/asl/predict``,
``/asl/predict_batch``), each with its own ``api_path`` and LitServe's dynamic batching
(``max_batch_size``, ``batch_timeout``), all given to one ``ls.LitServer(accelerator="cpu")``:

* ``setup`` loads the stored weights (:class:`~loadtest.alternatives.common.NumpyMLP`) in each
  inference worker; ``decode_request`` gets the multipart form (LitServe parses it when the
  ``request`` parameter is annotated ``Request``, as its form test does) and decodes and
  preprocesses the upload(s) there, per request, in the inference worker;
* ``predict`` gets the batch LitServe formed (a list of decoded requests) and runs the found rows of
  all of them in one forward pass; ``encode_response`` gives the service's answer dict.
* ``predict_batch``: LitServe batches *requests*, so one request of n images is one item of the
  batch; ``predict`` stacks the rows of every image of every request in the batch (so
  ``max_batch_size`` counts requests, and one forward pass may take more rows than that).
* A bad upload answers ``{"error": ...}`` with its 4xx from ``encode_response`` (a JSONResponse)
  instead of raising: LitServe's batched loop fails the *whole batch* with an exception raised by
  any one request's ``decode_request``.
* A body that is not a form gets a 400 ``{"error": ...}`` (an exception handler on ``server.app``:
  LitServe answers 500 for its parser's own 400).
* ``/readyz``: LitServe's own health route (``healthcheck_path``); each LitAPI's ``health()`` says
  whether its worker finished ``setup`` (LitServe's own worker status is keyed by the last path
  segment, so ``/mnist/predict`` and ``/asl/predict`` share one key). ``/stats`` (forward passes and
  rows, summed over the workers through shared memory) is a route added to ``server.app``.
* Quiet: ``log_level="warning"``, ``access_log=False``; no generated ``client.py``. SIGTERM is
  turned into LitServe's Ctrl+C shutdown (it installs no SIGTERM handler itself), which terminates
  its HTTP processes, inference workers and queue manager.

Knobs: ``--max-batch-size N`` (LitAPI ``max_batch_size``; LitServe's default 1 = no batching),
``--max-wait-ms W`` (``batch_timeout`` = W / 1000 s; default 0), ``--workers-per-device``
(inference processes per API; default 1, what the docs show for CPU), ``--num-api-servers``
(uvicorn processes; LitServe's default: as many as inference workers), ``--fast-queue`` (ZeroMQ
instead of the multiprocessing manager's queues).

Docs followed:
https://lightning.ai/docs/litserve/api-reference/litapi
https://lightning.ai/docs/litserve/features/batching
https://lightning.ai/docs/litserve/features/multiple-apis-single-port
https://lightning.ai/docs/litserve/features/request-response-format
https://lightning.ai/docs/litserve/features/autoscaling
https://github.com/Lightning-AI/LitServe (README; tests/unit/test_form.py: multipart forms)
"""

# No ``from __future__ import annotations``: LitServe reads decode_request's annotation object.
import argparse
import multiprocessing as mp
import os
import signal
from dataclasses import dataclass

import litserve as ls
import numpy as np
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from loadtest.alternatives.common import MAX_BATCH_FILES, NumpyMLP, stored_models, top_k_of
from preprocessing import ImageError, Prepared

SHARED = mp.get_context("spawn")  # LitServe spawns its inference workers
ROUTES = ("mnist", "asl")


@dataclass
class Decoded:
    """One request after decode_request: its prepared uploads and top_k, or its error answer."""

    prepared: list[Prepared] | None = None
    top_k: int = 0
    error: tuple[int, str] | None = None


class ImageClassifierAPI(ls.LitAPI):
    """``/<route>/predict`` (one ``image``) or ``/<route>/predict_batch`` (``images``)."""

    def __init__(self, route: str, many: bool, counters, **batching):
        super().__init__(api_path=f"/{route}/{'predict_batch' if many else 'predict'}", **batching)
        self.route = route
        self.many = many
        self.counters = counters  # shared [forward passes, rows]
        self.ready = SHARED.Value("b", 0)

    def setup(self, device):
        entry = stored_models()[self.route]
        self.entry = entry
        mlp = NumpyMLP(entry.path)

        def forward(rows: np.ndarray) -> np.ndarray:
            with self.counters.get_lock():
                self.counters[0] += 1
                self.counters[1] += len(rows)
            return mlp(rows)

        self.classifier = entry.classifier(forward)
        self.ready.value = 1

    def health(self) -> bool:
        return bool(self.ready.value)

    def decode_request(self, request: Request) -> Decoded:
        uploads = request.getlist("images" if self.many else "image")
        top_k = top_k_of(request.get("top_k"), self.entry)
        if (top_k is None or not 1 <= len(uploads) <= (MAX_BATCH_FILES if self.many else 1)
                or isinstance(uploads[0], str)):
            return Decoded(error=(400, "bad field, top_k or number of images"))
        try:
            return Decoded([self.classifier.prepare(upload.file.read()) for upload in uploads], top_k)
        except ImageError as exc:
            return Decoded(error=(exc.status_code, str(exc)))

    def predict(self, batch):
        if self.max_batch_size == 1:  # LitServe's unbatched loop passes one input, not a list
            return self._answer_all([batch])[0]
        return self._answer_all(batch)

    def _answer_all(self, batch: list[Decoded]) -> list:
        """The answers of every request in the batch, the found rows of all in one forward pass."""
        requests = [d for d in batch if d.error is None]
        found = [p.vector for d in requests for p in d.prepared if p.found]
        probabilities = iter(self.classifier.probabilities(np.stack(found)) if found else ())
        answers = []
        for decoded in batch:
            if decoded.error is not None:
                answers.append(decoded.error)
                continue
            answers.append([self.classifier.answer(p, next(probabilities) if p.found else None, decoded.top_k)
                            for p in decoded.prepared])
        return answers

    def encode_response(self, output):
        if isinstance(output, tuple):
            status, message = output
            return JSONResponse({"error": message}, status_code=status)
        if self.many:
            return {"model": self.entry.tag, "predictions": output}
        return output[0]


def build_server(max_batch_size: int, max_wait_ms: float, workers_per_device: int = 1,
                 fast_queue: bool = False) -> ls.LitServer:
    counters = SHARED.Array("q", 2)
    batching = {"max_batch_size": max_batch_size, "batch_timeout": max_wait_ms / 1000}
    apis = [ImageClassifierAPI(route, many, counters, **batching) for route in ROUTES for many in (False, True)]
    server = ls.LitServer(apis, accelerator="cpu", workers_per_device=workers_per_device,
                          healthcheck_path="/readyz", fast_queue=fast_queue)
    # uvicorn's default 30 s would let a request stuck at shutdown hold SIGTERM past ~10 s
    server.uvicorn_graceful_timeout = 2

    async def stats() -> dict:
        return {"passes": counters[0], "rows": counters[1]}

    server.app.add_api_route("/stats", stats, methods=["GET"])
    server.app.add_exception_handler(HTTPException, _error_answer)
    return server


async def _error_answer(request, exc: HTTPException) -> JSONResponse:
    """LitServe's errors as ``{"error": ...}``; a body that is not a form (or JSON) is the client's
    fault (400), though LitServe re-raises the parser's error as a 500."""
    status = exc.status_code
    if status == 500 and isinstance(exc.__cause__, (StarletteHTTPException, ValueError)):
        status = getattr(exc.__cause__, "status_code", 400)
        return JSONResponse({"error": "the request body is not valid multipart/form-data"}, status_code=status)
    return JSONResponse({"error": exc.detail}, status_code=status)


def _stop_on_sigterm() -> None:
    """SIGTERM -> KeyboardInterrupt in this process, which LitServe shuts down on; in a forked
    child that inherited this handler (the queue manager), the default action."""
    main_pid = os.getpid()

    def stop(signum, frame):
        if os.getpid() == main_pid:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument("--workers-per-device", type=int, default=1)
    parser.add_argument("--num-api-servers", type=int, default=None)
    parser.add_argument("--fast-queue", action="store_true")
    args = parser.parse_args()
    server = build_server(args.max_batch_size, args.max_wait_ms, args.workers_per_device, args.fast_queue)
    _stop_on_sigterm()
    try:
        server.run(host="127.0.0.1", port=args.port, num_api_servers=args.num_api_servers, log_level="warning",
                   generate_client_file=False, access_log=False)
    except KeyboardInterrupt:  # before LitServe's own shutdown handling was in place
        pass
    finally:
        for child in mp.active_children():  # left over only when stopped during start-up
            child.terminate()
            child.join(timeout=3)
            if child.is_alive():
                child.kill()


if __name__ == "__main__":
    main()
