"""TensorFlow's start-up noise, hidden unless asked for (``VERBOSE=1`` or ``TF_CPP_MIN_LOG_LEVEL`` set).

TensorFlow's C++ side logs a few lines while it is imported (oneDNN, CPU features, XLA), and the
first of them go out before absl's logging is set up, so no log level hides them ("All log
messages before absl::InitializeLog() is called are written to STDERR"). This module sets
``TF_CPP_MIN_LOG_LEVEL=2`` for the rest and imports TensorFlow with the process' standard error
pointed at /dev/null, then puts it back: Python's own errors and warnings are untouched.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def verbose() -> bool:
    """``VERBOSE`` set to something other than empty / 0, or a TF_CPP_MIN_LOG_LEVEL chosen by the user."""
    return os.environ.get("VERBOSE", "") not in ("", "0") or "TF_CPP_MIN_LOG_LEVEL" in os.environ


def quiet_tensorflow() -> None:
    """Import TensorFlow (when installed and not yet imported) without its start-up lines on
    stderr, unless :func:`verbose`."""
    if verbose():
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
