"""Where the server's CPU time goes: py-spy samples of every server process, sorted into buckets.

``record(pid, seconds, out)`` runs ``py-spy record --subprocesses --format raw`` on a server
tree (the bench does it under load); :func:`breakdown` reads the collapsed stacks and assigns
every sample to the innermost frame that matches a bucket in :data:`BUCKETS` (so time in numpy
called from the preprocessing counts as preprocessing). Samples whose leaf is a wait (epoll,
a lock, an idle thread pool) are "idle" and left out of the shares.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

# (bucket, pattern on "function (file:line)" frames), tried from the innermost frame outwards;
# the first frame that matches any pattern decides. Order within a frame: first match wins.
BUCKETS: list[tuple[str, str]] = [
    ("image decode (Pillow)", r"\(preprocessing/decode\.py|\(PIL/"),
    ("preprocessing (OpenCV, numpy)", r"\(preprocessing/(digits|signs|vector|__init__)\.py|\(cv2/"),
    ("model forward (Keras/TF/JAX)", r"\((keras|tensorflow|jax|jaxlib)/|\(execution/forward\.py"),
    ("model forward (numpy)", r"^NumpyMLP\.__call__"),
    ("multipart parsing", r"\((python_multipart|multipart|starlette/formparsers\.py|starlette/datastructures\.py)"),
    ("multipart parsing", r"^(Request\.form|Request\._get_form|request_body_to_args|_extract_form_body) "),
    ("access log (logging)", r"\((logging/|bentoml/_internal/server/http/access\.py)"),
    ("tracing (OpenTelemetry)", r"opentelemetry|\((trace|sdk/trace|context|propagate|util/http)/|\(asgi/__init__\.py"),
    ("metrics (Prometheus)", r"\((prometheus_client/|bentoml/_internal/server/http/instruments\.py|"
                             r"bentoml/_internal/server/metrics)"),
    ("batching (dispatcher, batch assembly)", r"\((execution/batching\.py|bentoml/_internal/marshal/|"
                                              r"bentoml/_internal/runner/container\.py|_bentoml_sdk/method\.py)"),
    ("service-to-service call (client, serialisation)", r"\((_bentoml_impl/client|_bentoml_impl/serde|httpx|httpcore|"
                                                        r"aiohttp|_bentoml_sdk/io_models|pickle)"),
    ("response (answer, JSON, validation)", r"^(_answer|answer) |\((json/|fastapi/encoders|fastapi/_compat|pydantic/|"
                                            r"pydantic_core/|starlette/responses\.py)"),
    ("other BentoML (context, config, timeouts)", r"\((bentoml/|_bentoml_impl/|_bentoml_sdk/|simple_di/)"),
    ("web framework (routing, FastAPI/Starlette)", r"\((fastapi|starlette|anyio)/"),
    ("HTTP server (uvicorn, h11, sockets)", r"\((uvicorn|h11|httptools|asyncio/selector_events|asyncio/sslproto|socket)"),
    ("asyncio event loop", r"\(asyncio/"),
]
IDLE_LEAVES = re.compile(
    r"^(?:\w+\.)?(select|poll|epoll|wait|_wait_for_tstate_lock|acquire|get|sleep|_worker|accept|recv|read) "
    r"\((selectors|threading|queue|concurrent/futures/thread|time|multiprocessing/connection|socket)\.py"
)
_COMPILED = [(name, re.compile(pattern)) for name, pattern in BUCKETS]


def process_name(frame: str) -> str:
    """A short name for a ``process PID:"cmdline"`` frame of py-spy's --subprocesses output."""
    cmd = frame.split(":", 1)[1].strip('"') if ":" in frame else frame
    m = re.search(r"--service-name (\S+)", cmd)
    if m:
        return f"bentoml worker {m.group(1)}"
    m = re.search(r"uvicorn (\S+)", cmd)
    if m:
        return f"uvicorn {m.group(1)}"
    if "bentoml serve" in cmd:
        return "bentoml arbiter"
    return cmd[:60]


def classify(frames: list[str]) -> str:
    """The bucket of one sample (frames root first, as py-spy writes them)."""
    if frames and IDLE_LEAVES.search(frames[-1]):
        return "idle (waiting)"
    for frame in reversed(frames):
        for name, pattern in _COMPILED:
            if pattern.search(frame):
                return name
    return "other Python"


def breakdown(raw: str) -> dict[str, Counter]:
    """``{process: Counter(bucket -> samples)}`` from py-spy's raw (collapsed) output."""
    result: dict[str, Counter] = defaultdict(Counter)
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        processes = [f for f in frames if f.startswith("process ")]
        process = process_name(processes[-1]) if processes else "server"
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        result[process][classify(frames)] += int(count)
    return dict(result)


def markdown(result: dict[str, Counter], seconds: float | None = None, rate: int | None = None) -> str:
    """One table per process: bucket, share of the busy samples, and CPU ms per second."""
    lines = []
    for process, counts in sorted(result.items(), key=lambda kv: -sum(kv[1].values())):
        busy = sum(n for bucket, n in counts.items() if bucket != "idle (waiting)")
        if busy < 20:  # the arbiter and other bystanders: nothing to say
            continue
        head = f"**{process}**: {busy} busy samples"
        if seconds and rate:
            head += f" (≈ {100 * busy / (seconds * rate):.0f} % of a core)"
        lines += [head, "", "| where | share of busy time |", "|---|---:|"]
        for bucket, n in counts.most_common():
            if bucket != "idle (waiting)":
                lines.append(f"| {bucket} | {100 * n / busy:.1f} % |")
        lines.append("")
    return "\n".join(lines)


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 100) -> Path | None:
    """Sample the process tree of ``pid`` for ``seconds``; None when py-spy is missing or fails."""
    tool = py_spy()
    if tool is None:
        print("  (py-spy not installed: no profile; pip install py-spy)", flush=True)
        return None
    command = [tool, "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds)),
               "--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not out.is_file():
        print(f"  (py-spy failed: {done.stderr.strip()[-300:]})", flush=True)
        return None
    return out
