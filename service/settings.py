"""Service settings, read once from the environment (documented in the README)."""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _switch(name: str, default: bool) -> bool:
    """on/off from the environment: off, 0, false, no are off; on, 1, true, yes are on."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("off", "0", "false", "no"):
        return False
    if value in ("on", "1", "true", "yes"):
        return True
    return default


# Uploads: the whole request body, and the decoded image's width x height.
MAX_BODY_BYTES = _int("MAX_BODY_BYTES", 10 * 1024 * 1024)
MAX_IMAGE_PIXELS = _int("MAX_IMAGE_PIXELS", 40_000_000)
MAX_BATCH_FILES = 64
DEFAULT_TOP_K = 3

# Adaptive batching (see README, "Batching"); BATCHING=off gives every request its own forward
# pass (for comparison). MAX_LATENCY_MS: a request that waited longer for its batch gets 503.
BATCHING = _switch("BATCHING", True)
MAX_BATCH_SIZE = _int("MAX_BATCH_SIZE", 128)
MAX_LATENCY_MS = _int("MAX_LATENCY_MS", 1000)

# TensorFlow backend: each model's forward pass compiled with XLA (XLA=off: Keras'
# predict_on_batch, which costs twice the CPU per batch-1 pass here).
XLA = _switch("XLA", True)

# Uploads up to this size are decoded on the event loop (cheaper than a thread hop); larger
# ones in a thread, so that one big image cannot stall the other requests' I/O.
INLINE_DECODE_BYTES = _int("INLINE_DECODE_BYTES", 256 * 1024)

# One access-log line per request costs ~4 % of a worker's CPU; ACCESS_LOG=on brings it back.
ACCESS_LOG = _switch("ACCESS_LOG", False)

# BentoML's OpenTelemetry spans are never exported here but cost ~20 % of the CPU per request
# (docs/loadtest.md); TRACING=on brings them back (e.g. with an exporter configured).
TRACING = _switch("TRACING", False)

# Worker processes of the service, each with both models and its own batch queue: a number, or
# cpu_count (the default: one per core BentoML sees, container CPU limits included).
WORKERS: int | str = os.environ.get("WORKERS") or "cpu_count"
if WORKERS != "cpu_count":
    WORKERS = int(WORKERS)
