"""The service's settings: one frozen object, read once from the environment and passed in.

Every field names its environment variable and says what it does; README "Configuration" lists
the same table (``tests/test_settings.py`` keeps the two in step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Mapping


def _env(name: str, default, help: str):
    return field(default=default, metadata={"env": name, "help": help})


_ON, _OFF = ("on", "1", "true", "yes"), ("off", "0", "false", "no")


@dataclass(frozen=True)
class Settings:
    """Limits, batching, workers and switches of the service (defaults in the field list)."""

    max_body_bytes: int = _env("MAX_BODY_BYTES", 10 * 1024 * 1024, "largest request body, in bytes")
    max_image_pixels: int = _env("MAX_IMAGE_PIXELS", 40_000_000,
                                 "largest image, width × height, checked from its header")
    max_batch_size: int = _env("MAX_BATCH_SIZE", 128, "most rows (images) in one forward pass")
    max_latency_ms: int = _env("MAX_LATENCY_MS", 1000,
                               "a request that waited longer for its forward pass is shed with 503")
    batching: bool = _env("BATCHING", True, "`off`: every request gets its own forward pass (for comparison)")
    xla: bool = _env("XLA", True,
                     "TensorFlow backend: the forward pass compiled with XLA; `off`: Keras' predict_on_batch")
    inline_decode_bytes: int = _env("INLINE_DECODE_BYTES", 256 * 1024,
                                    "uploads up to this size are decoded on the event loop, larger ones in a thread")
    access_log: bool = _env("ACCESS_LOG", False, "`on`: BentoML's access log line per request")
    tracing: bool = _env("TRACING", False, "`on`: BentoML's OpenTelemetry spans")
    workers: int | str = _env("WORKERS", "cpu_count",
                              "worker processes, each with both models and its own batch queue; "
                              "`cpu_count`: one per core BentoML sees (container CPU limits included)")
    unsure_below: float = _env("UNSURE_BELOW", 0.6,
                               "answers whose calibrated confidence is below this are marked `unsure` "
                               "(0 to 1; 0: never)")
    tf_intra_op_threads: int = _env("TF_NUM_INTRAOP_THREADS", 1, "TensorFlow threads per operation, per worker")
    tf_inter_op_threads: int = _env("TF_NUM_INTEROP_THREADS", 1, "TensorFlow operations run at once, per worker")

    max_batch_files: int = 64  #: images in one predict_batch request
    default_top_k: int = 3  #: classes listed when the request does not say

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        """The settings from ``environ``; a malformed value raises ValueError naming its variable."""
        values = {}
        for f in fields(cls):
            name = f.metadata.get("env")
            raw = (environ.get(name) or "").strip() if name else ""
            if raw:
                values[f.name] = _parse(raw, f.default, name)
        return cls(**values)

    @property
    def buckets(self) -> tuple[int, ...]:
        """Batch sizes the forward pass is compiled for: powers of two up to ``max_batch_size``."""
        powers = tuple(2**i for i in range(16) if 2**i < self.max_batch_size)
        return powers + (self.max_batch_size,)

    def bentoml_config(self) -> dict:
        """The ``@bentoml.service`` options these settings decide (access log, tracing)."""
        config: dict = {}
        if not self.access_log:
            config["logging"] = {"access": {"enabled": False}}
        if not self.tracing:
            config["tracing"] = {"excluded_urls": [".*"]}
        return config


def _parse(raw: str, default, name: str):
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
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a whole number") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r}: expected a number of at least 1")
    return value
