"""The service's settings: one frozen object, read once from the environment and passed in.

Every field names its environment variable and says what it does; README "Configuration" lists
the same table (``tests/test_settings.py`` keeps the two in step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Mapping

from preprocessing import VECTOR_LENGTH


def _env(name: str, default, help: str, minimum: int = 1):
    return field(default=default, metadata={"env": name, "help": help, "minimum": minimum})


_ON, _OFF = ("on", "1", "true", "yes"), ("off", "0", "false", "no")
_CHOICES = {"PLACEMENT": ("auto", "worker", "executor")}


@dataclass(frozen=True)
class Settings:
    """Limits, batching, workers and switches of the service (defaults in the field list)."""

    max_body_bytes: int = _env("MAX_BODY_BYTES", 10 * 1024 * 1024, "largest request body, in bytes")
    max_header_bytes: int = _env("MAX_HEADER_BYTES", 16 * 1024,
                                 "largest request head: its headers together, in bytes (431 beyond)")
    max_target_bytes: int = _env("MAX_TARGET_BYTES", 8 * 1024,
                                 "longest request path with its query, in bytes (414 beyond)")
    max_image_pixels: int = _env("MAX_IMAGE_PIXELS", 40_000_000,
                                 "largest decode, in pixels of 8-bit grey (colour counts 3 bytes a pixel, "
                                 "with alpha 4), priced from the header before decoding")
    max_jpeg_pixels: int = _env("MAX_JPEG_PIXELS", 120_000_000,
                                "largest JPEG, width × height (JPEGs are decoded reduced, so phone photos "
                                "of 48-108 megapixels cost a few megapixels)")
    max_batch_files: int = _env("MAX_BATCH_FILES", 64, "most images in one predict_batch request")
    batch_decode_factor: int = _env("BATCH_DECODE_FACTOR", 4,
                                    "a request's images together may take this many times MAX_IMAGE_PIXELS "
                                    "of decode work (predict_batch)")
    max_batch_size: int = _env("MAX_BATCH_SIZE", 128, "most rows (images) in one forward pass")
    max_latency_ms: int = _env("MAX_LATENCY_MS", 1000,
                               "a request that waited longer for its forward pass is shed with 503")
    batching: bool = _env("BATCHING", True, "`off`: every request gets its own forward pass (for comparison)")
    rebalance: bool = _env("REBALANCE", True,
                           "a busy worker hands keep-alive connections to an idle one (now and then "
                           "`Connection: close`; service/balance.py); `off`: connections stay where they landed")
    xla: bool = _env("XLA", True,
                     "the forward pass compiled once per batch size (XLA on TensorFlow, jax.jit on JAX); "
                     "`off`: Keras' predict_on_batch")
    placement: str = _env("PLACEMENT", "auto",
                          "where the forward passes run: `worker` (in every worker, each batching its own "
                          "requests), `executor` (one model executor process per GPU, pooling every worker's "
                          "requests), `auto` (executor when a GPU and a CUDA-enabled backend are there, else worker)")
    max_infer_rows: int = _env("MAX_INFER_ROWS", 4096,
                               "most rows (images) in one Open Inference Protocol request (/v2/models/.../infer)")
    max_infer_header_bytes: int = _env("MAX_INFER_HEADER_BYTES", 64 * 1024,
                                       "largest JSON header of an Open Inference Protocol request with binary "
                                       "tensors (names, shapes, datatypes: a few hundred bytes are usual)")
    executor_batch_size: int = _env("EXECUTOR_BATCH_SIZE", 16384,
                                    "most rows in one forward pass of a model executor (it pools every worker's "
                                    "requests)")
    executor_passes: int = _env("EXECUTOR_PASSES", 2,
                                "forward passes a model executor runs at once (on a GPU: one is copied in "
                                "while another computes)")
    executor_cpu_rows: int = _env("EXECUTOR_CPU_ROWS", 32,
                                  "a model executor's passes of at most this many rows run on the host's CPU, "
                                  "at once on its event loop (a GPU's fixed cost per pass is larger), longer "
                                  "ones on its GPU; 0: every pass on the GPU", minimum=0)
    executor_timeout_ms: int = _env("EXECUTOR_TIMEOUT_MS", 5000,
                                    "a request the model executor has not answered within MAX_LATENCY_MS + this "
                                    "gets 503")
    executor_connect_wait_ms: int = _env("EXECUTOR_CONNECT_WAIT_MS", 2000,
                                         "a request that finds its worker not (yet, or no longer) connected to the "
                                         "model executor waits this long for the connection before it gets 503",
                                         minimum=0)
    inline_decode_bytes: int = _env("INLINE_DECODE_BYTES", 64 * 1024,
                                    "an upload's header is read from its first this many bytes on the event loop; "
                                    "uploads up to this size whose decode work is at most INLINE_DECODE_PIXELS are "
                                    "decoded there, every other upload in a decoder process")
    inline_decode_pixels: int = _env("INLINE_DECODE_PIXELS", 250_000,
                                     "decode work (grey pixels) up to which a small upload is decoded on the event loop")
    decode_processes: int = _env("DECODE_PROCESSES", 2, "decoder processes per worker (costly uploads)")
    decode_threads: int = _env("DECODE_THREADS", 2,
                               "threads per worker decoding light PNG and JPEG uploads too large for the event "
                               "loop (0: those go to the decoder processes too)")
    light_decode_pixels: int = _env("LIGHT_DECODE_PIXELS", 4_000_000,
                                    "decode work (grey pixels) up to which a decode is light: a PNG or JPEG "
                                    "goes to a decoder thread; heavier decodes may take all decoder processes "
                                    "but one")
    thread_decode_bytes: int = _env("THREAD_DECODE_BYTES", 512 * 1024,
                                    "largest light PNG or JPEG upload decoded in a decoder thread, in bytes "
                                    "(bounds the chunk reading a file adds, in Python)")
    decode_queue: int = _env("DECODE_QUEUE", 64,
                             "costly uploads that may wait for a decoder process, per worker; beyond: 503")
    decode_timeout_ms: int = _env("DECODE_TIMEOUT_MS", 2000,
                                  "longest wait for a decoder process (else 503) and longest decode (else 413)")
    body_timeout_ms: int = _env("BODY_TIMEOUT_MS", 1000,
                                "a request body with a gap longer than this, or slower than MIN_BODY_BYTES_PER_S "
                                "after it, is answered 408")
    min_body_bytes_per_s: int = _env("MIN_BODY_BYTES_PER_S", 16 * 1024,
                                     "slowest request body accepted after its first BODY_TIMEOUT_MS, "
                                     "in bytes per second (408 below)")
    drain_seconds: int = _env("DRAIN_SECONDS", 5,
                              "on SIGTERM, /readyz answers 503 and requests are still served for this long, "
                              "then in-flight requests finish and the worker exits", minimum=0)
    access_log: bool = _env("ACCESS_LOG", False, "`on`: BentoML's access log line per request")
    tracing: bool = _env("TRACING", False, "`on`: BentoML's OpenTelemetry spans")
    workers: int | str = _env("WORKERS", "cpu_count",
                              "worker processes, each with both models and its own batch queue; "
                              "`cpu_count`: one per core BentoML sees (container CPU limits included)")
    unsure_below: float = _env("UNSURE_BELOW", 0.7,
                               "answers whose calibrated confidence is below this are marked `unsure` "
                               "(0 to 1; 0: never)")
    tf_intra_op_threads: int = _env("TF_NUM_INTRAOP_THREADS", 1, "TensorFlow threads per operation, per worker")
    tf_inter_op_threads: int = _env("TF_NUM_INTEROP_THREADS", 1, "TensorFlow operations run at once, per worker")

    default_top_k: int = 3  #: classes listed when the request does not say

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        """The settings from ``environ``; a malformed value raises ValueError naming its variable."""
        values = {}
        for f in fields(cls):
            name = f.metadata.get("env")
            raw = (environ.get(name) or "").strip() if name else ""
            if raw:
                values[f.name] = _parse(raw, f.default, name, f.metadata.get("minimum", 1))
        return cls(**values)

    @property
    def buckets(self) -> tuple[int, ...]:
        """Batch sizes an in-worker forward pass is compiled for: powers of two up to the largest
        request, an Open Inference Protocol request of ``max_infer_rows`` (requests coalesce up to
        ``max_batch_size`` rows)."""
        return _powers_of_two_to(max(self.max_batch_size, self.max_infer_rows))

    @property
    def executor_buckets(self) -> tuple[int, ...]:
        """Batch sizes a model executor's forward pass is compiled for."""
        return _powers_of_two_to(max(self.executor_batch_size, self.max_infer_rows))

    @property
    def executor_cpu_buckets(self) -> tuple[int, ...]:
        """Batch sizes of a model executor's small passes on the host's CPU (``executor_cpu_rows``)."""
        return _powers_of_two_to(self.executor_cpu_rows) if self.executor_cpu_rows else ()

    @property
    def max_json_bytes(self) -> int:
        """Largest JSON body of the vector routes: ``max_batch_size`` rows at 32 characters a number
        at most (parsing JSON holds the event loop; bulk rows travel as binary tensors)."""
        return self.max_batch_size * VECTOR_LENGTH * 32

    @property
    def max_infer_bytes(self) -> int:
        """Largest Open Inference Protocol request with binary tensors: the largest useful one,
        ``max_infer_rows`` rows of FP32 (4 bytes a pixel), after its JSON header."""
        return self.max_infer_header_bytes + self.max_infer_rows * VECTOR_LENGTH * 4

    def bentoml_config(self) -> dict:
        """The ``@bentoml.service`` options these settings decide (access log, tracing), and BentoML's
        request metrics off: they label requests by raw path (``/metrics`` grew without bound under
        random paths); service/guards.py counts them by route instead."""
        config: dict = {"metrics": {"enabled": False}}
        if not self.access_log:
            config["logging"] = {"access": {"enabled": False}}
        if not self.tracing:
            config["tracing"] = {"excluded_urls": [".*"]}
        return config


def _powers_of_two_to(largest: int) -> tuple[int, ...]:
    return tuple(2**i for i in range(32) if 2**i < largest) + (largest,)


def _parse(raw: str, default, name: str, minimum: int = 1):
    if isinstance(default, bool):
        if raw.lower() in _ON:
            return True
        if raw.lower() in _OFF:
            return False
        raise ValueError(f"{name}={raw!r}: expected on or off")
    if isinstance(default, float):
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r}: expected a number from 0 to 1") from None
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"{name}={raw!r}: expected a number from 0 to 1")
        return number
    if name == "WORKERS" and raw == "cpu_count":
        return raw
    if name in _CHOICES:
        if raw not in _CHOICES[name]:
            raise ValueError(f"{name}={raw!r}: expected one of {', '.join(_CHOICES[name])}")
        return raw
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r}: expected a number of at least {minimum}")
    return value
