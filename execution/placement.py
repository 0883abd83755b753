"""Where the forward passes run: in every HTTP worker, or in one model executor per accelerator.

* ``worker``: each HTTP worker holds the models and batches its own requests (``execution.batching``).
  Measured fastest on CPUs: a compiled batch-1 pass costs less than any hop to another process.
* ``executor``: one process per GPU holds the models on its device and pools the rows of every
  worker into shared passes (``execution.executor``); the HTTP workers decode, preprocess and answer,
  and never open a CUDA context.

``PLACEMENT=auto`` (the default) lets the hardware choose: ``executor`` when GPUs are visible and
the installed backend can use them (a CUDA plugin of jaxlib, or TensorFlow built with CUDA), else
``worker``. Nothing here imports a numeric library: the decision is made in BentoML's arbiter
before any worker starts, and must not open a CUDA context there.
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
import re
from typing import Mapping

WORKER, EXECUTOR, AUTO = "worker", "executor", "auto"
PLACEMENTS = (AUTO, WORKER, EXECUTOR)


def visible_gpus(environ: Mapping[str, str] = os.environ) -> int:
    """NVIDIA GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set (empty or -1: none),
    else the device nodes ``/dev/nvidia<N>`` (a container sees only the GPUs given to it), else the
    driver's list of GPUs (sandboxes that show the driver but no device nodes)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        ids = [i.strip() for i in environ["CUDA_VISIBLE_DEVICES"].split(",") if i.strip()]
        return 0 if not ids or ids[0] == "-1" else len(ids)
    nodes = [p for p in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia\d+", p)]
    return len(nodes) or len(glob.glob("/proc/driver/nvidia/gpus/*"))


def cuda_backend(environ: Mapping[str, str] = os.environ) -> str | None:
    """The installed Keras backend package that can run on an NVIDIA GPU, if any (from package
    metadata only: importing it here would start CUDA in the arbiter)."""
    names = {d.metadata["Name"].lower().replace("_", "-") for d in importlib.metadata.distributions()
             if d.metadata["Name"]}
    wanted = environ.get("KERAS_BACKEND", "jax" if "jax" in names else "tensorflow")
    if wanted == "jax" and (any(re.fullmatch(r"jax-cuda\d+-(plugin|pjrt)", n) for n in names)
                            or "+cuda" in _version("jaxlib")):
        return "jax"
    if wanted == "tensorflow" and "tensorflow" in names and any(n.startswith("nvidia-cudnn") for n in names):
        return "tensorflow"
    return None


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def resolve(setting: str, environ: Mapping[str, str] = os.environ) -> str:
    """``worker`` or ``executor``: the setting itself, or for ``auto`` what the hardware asks for."""
    if setting in (WORKER, EXECUTOR):
        return setting
    if setting != AUTO:
        raise ValueError(f"PLACEMENT={setting!r}: expected one of {', '.join(PLACEMENTS)}")
    return EXECUTOR if visible_gpus(environ) and cuda_backend(environ) else WORKER


def executors(environ: Mapping[str, str] = os.environ) -> int:
    """Model executors to start: one per visible GPU, one (on the CPU) without a GPU."""
    return max(1, visible_gpus(environ))
