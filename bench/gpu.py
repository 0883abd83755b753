"""``make bench-gpu``: the service on a GPU against the same machine's CPUs, in one run.

On a machine with an NVIDIA GPU (no network needed: see README, "Benchmarks"):

1. the model alone, its jitted call per batch size with numpy in and out, on the GPU and the CPU;
2. the service twice, taking turns: with the GPU (``PLACEMENT=auto``: one model executor on the
   GPU, the HTTP workers around it) and with the GPU hidden (``JAX_PLATFORMS=cpu``,
   ``CUDA_VISIBLE_DEVICES=``: the passes in the workers). Each: seconds to ready, then
   single uploads alternating ``/mnist`` and ``/asl`` at 1, 16, 64 and 256 connections,
   ``predict_batch`` (16 images a request) and the bulk route (``/v2/models/.../infer``, 4096 rows a
   request, UINT8 and FP32 binary tensors). Per step: req/s, images/s, p50 / p99, errors, requests
   per forward pass (``/metrics``), the server's CPU per request, GPU memory and utilisation.

Without a GPU it runs the CPU half. It writes ``reports/bench/gpu.md`` (+ ``.json``, ``.png``)
after every step, so a step that fails leaves the others in the report, with its error. Defaults
fit in about four minutes on a 16-core GPU machine (``--seconds`` per step).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "reports" / "bench" / "gpu.md"
CONCURRENCY = (1, 16, 64, 256)
BATCH_FILES = 16
BULK_ROWS = 4096
RAW_BATCHES = (1, 64, 1024, 4096, 16384)
#: Connections of the bulk steps: two per core, so that every worker has one request in hand and
#: one on the way (32 on a 16-core machine), not a queue past the latency budget.
BULK_CONNECTIONS = 2 * (os.cpu_count() or 1)


# ---- the model alone

def raw_model(seconds: float) -> dict:
    """Images/s of the jitted forward pass per batch size on this process's default device (run in
    a child per device). The first catalog family's model from the store, else the course's
    architecture with random weights (the speed is the same)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import keras
    from execution.forward import load_model  # registers the project's own layers

    from catalog import FAMILIES, MODEL_FILE

    try:
        import bentoml

        model = load_model(bentoml.models.get(FAMILIES[0].model_tag).path_of(MODEL_FILE))
        source = "stored"
    except Exception:  # no store here: the same architecture
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(512, activation="relu"),
                                  keras.layers.Dense(512, activation="relu"), keras.layers.Dense(10, activation="softmax")])
        source = "random weights"
    weights = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    call = jax.jit(lambda w, x: model.stateless_call(w[0], w[1], x.astype("float32") / 255.0
                                                     if x.dtype == "uint8" else x, training=False)[0])
    rows = np.random.default_rng(0).integers(0, 256, size=(max(RAW_BATCHES), 784), dtype=np.uint8)
    result = {"device": str(jax.devices()[0]), "source": source, "float32": {}, "uint8": {}}
    for kind in ("float32", "uint8"):
        for batch in RAW_BATCHES:
            x = rows[:batch] if kind == "uint8" else rows[:batch].astype(np.float32) / 255
            for _ in range(3):
                np.asarray(call(weights, x))
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                np.asarray(call(weights, x))
                n += 1
            result[kind][batch] = n * batch / (time.perf_counter() - start)
    return result


def measure_raw(device: str, seconds: float) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if device == "cpu":
        env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-m", "bench.gpu", "--raw", str(seconds)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the GPU, as nvidia-smi sees it

def gpu_names() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                          capture_output=True, text=True)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


class GpuSampler:
    """nvidia-smi's utilisation and memory every 250 ms while it runs."""

    def __init__(self):
        self.samples: list[tuple[float, float, float]] = []
        self._process = None
        self._thread = None

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", "250"], stdout=subprocess.PIPE, text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self):
        for line in self._process.stdout:
            try:
                util, memory = (float(v) for v in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((time.monotonic(), util, memory))

    def __exit__(self, *exc):
        if self._process:
            self._process.terminate()
            self._process.wait(5)

    def between(self, start: float, end: float) -> tuple[float | None, float | None]:
        """(mean utilisation %, most memory MiB) of the samples in [start, end]."""
        inside = [(u, m) for t, u, m in self.samples if start <= t <= end]
        if not inside:
            return None, None
        return float(np.mean([u for u, _ in inside])), float(max(m for _, m in inside))

    def memory_now(self) -> float | None:
        return self.samples[-1][2] if self.samples else None


# ---- the service

@dataclass
class Step:
    name: str
    path_kind: str
    images: int  # per request
    concurrency: int
    requests: list


def upload_requests(host: str, batch: int = 0) -> list[bytes]:
    """Ready-made upload requests alternating the families: single ``/predict`` uploads, or
    ``/predict_batch`` requests of ``batch`` images (the load tests' images: ``loadtest.images``)."""
    from bench.loadgen import multipart, post
    from catalog import FAMILIES
    from loadtest.images import load_images

    uploads = load_images().uploads
    requests = []
    for i in range(20 if batch else 200):
        for family in FAMILIES:
            items = uploads[family.route]
            if batch:
                picked = [items[(i * batch + k) % len(items)] for k in range(batch)]
                body, kind = multipart([("images", item.filename, item.data) for item in picked])
                requests.append(post(f"/{family.route}/predict_batch", body, kind, host))
            else:
                item = items[i % len(items)]
                body, kind = multipart([("image", item.filename, item.data)])
                requests.append(post(f"/{family.route}/predict", body, kind, host))
    return requests


def bulk_requests(host: str, datatype: str, rows: int = BULK_ROWS) -> list[bytes]:
    """Open Inference Protocol requests of ``rows`` random rows, binary in and out, one per family."""
    from bench.loadgen import post
    from catalog import FAMILIES

    pixels = np.random.default_rng(1).integers(0, 256, size=(rows, 784), dtype=np.uint8)
    array = pixels if datatype == "UINT8" else pixels.astype(np.float32) / 255
    requests = []
    for family in FAMILIES:
        head = json.dumps({"inputs": [{"name": "pixels", "shape": [rows, 784], "datatype": datatype,
                                       "parameters": {"binary_data_size": array.nbytes}}],
                           "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
        requests.append(post(f"/v2/models/{family.route}/infer", head + array.tobytes(), "application/octet-stream",
                             host, {"Inference-Header-Content-Length": len(head)}))
    return requests


def steps(host: str) -> list[Step]:
    """The measured steps and their ready-made requests."""
    singles = upload_requests(host)
    chosen = [Step(f"single uploads, {c} connections", "single", 1, c, singles) for c in CONCURRENCY]
    chosen.append(Step(f"predict_batch ({BATCH_FILES} images), 64 connections", "batch", BATCH_FILES, 64,
                       upload_requests(host, BATCH_FILES)))
    for datatype in ("UINT8", "FP32"):
        chosen.append(Step(f"bulk {datatype} ({BULK_ROWS} rows), {BULK_CONNECTIONS} connections", f"bulk {datatype}",
                           BULK_ROWS, BULK_CONNECTIONS, bulk_requests(host, datatype)))
    return chosen


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def passes(url: str) -> tuple[float, float]:
    """(requests, forward passes) so far, from the ``model_batch_size`` histogram."""
    import re

    text = http_text(f"{url}/metrics")
    total = sum(float(v) for v in re.findall(r"^model_batch_size_sum\{[^}]*\} (\S+)", text, re.M))
    count = sum(float(v) for v in re.findall(r"^model_batch_size_count\{[^}]*\} (\S+)", text, re.M))
    return total, count


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children so far."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def serve(label: str, env: dict, args, sampler: GpuSampler, report: dict, save) -> None:
    """Start the service with ``env``, measure every step, stop it."""
    from bench import loadgen
    from tools.servers import Server

    half = report["services"].setdefault(label, {"env": env, "steps": []})
    baseline = sampler.memory_now()
    command = [sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    log = REPO / "reports" / "bench" / f"gpu-{label.split()[0].lower()}.log"
    started = time.monotonic()
    server = Server(command, env=env, log=log)
    try:
        server.wait_ready(timeout=args.ready_timeout)
        half["ready_s"] = time.monotonic() - started
        text = server.log()
        half["placement"] = "executor" if "forward passes in the model executor" in text else "worker"
        print(f"  {label}: ready after {half['ready_s']:.1f} s ({half['placement']} placement)", flush=True)
        save()
        for step in steps("127.0.0.1"):
            if args.steps and not any(s in step.name for s in args.steps):
                continue
            row = {"step": step.name, "kind": step.path_kind, "concurrency": step.concurrency}
            try:
                before, cpu_before = passes(server.url), tree_cpu(server.process.pid)
                start = time.monotonic() + args.warmup
                result = loadgen.run(server.url, step.requests, step.concurrency, args.seconds, args.warmup)
                end = start + args.seconds
                after, cpu_after = passes(server.url), tree_cpu(server.process.pid)
                util, memory = sampler.between(start, end)
                served, count = after[0] - before[0], after[1] - before[1]
                row.update(
                    req_s=result.per_second, images_s=result.per_second * step.images,
                    p50_ms=result.percentile(50), p99_ms=result.percentile(99), errors=result.errors,
                    statuses={str(k): v for k, v in result.statuses.items()},
                    requests_per_pass=served / count if count else None,
                    server_cpu_ms=1000 * (cpu_after - cpu_before) / max(1, result.answers + result.failures),
                    gpu_util=util, gpu_memory_mib=(memory - baseline) if memory is not None and baseline is not None
                    else None)
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            half["steps"].append(row)
            print(f"  {label} | {_line(row)}", flush=True)
            save()
    except Exception as exc:
        half["error"] = f"{type(exc).__name__}: {str(exc)[-1500:]}"
        print(f"  {label}: {half['error']}", flush=True)
    finally:
        server.stop()
        save()


def _fmt(value, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def _line(row: dict) -> str:
    if "error" in row:
        return f"{row['step']}: FAILED {row['error']}"
    return (f"{row['step']}: {_fmt(row['req_s'], 1)} req/s, {_fmt(row['images_s'])} images/s, "
            f"p50 {_fmt(row['p50_ms'], 1)} ms, p99 {_fmt(row['p99_ms'], 1)} ms, errors {row['errors']}, "
            f"{_fmt(row['requests_per_pass'], 2)} requests/pass")


# ---- the report

def markdown(report: dict) -> str:
    lines = ["# The service on a GPU and on the same machine's CPUs", "",
             f"`make bench-gpu` (`python -m bench.gpu`), {report['started']}, on {report['machine']}. "
             f"GPU: {', '.join(report['gpus']) or 'none (the CPU half only)'}; {report.get('minutes', 0):.1f} minutes "
             f"so far. {report['seconds']:g} s per step "
             f"after {report['warmup']:g} s of warm-up; closed loop (`bench/loadgen.py`), uploads: "
             f"{report.get('uploads', '?')}.", ""]
    if report.get("note"):
        lines += [f"**Note:** {report['note']}.", ""]
    raw = report.get("raw", {})
    if raw:
        lines += ["## The model alone (its jitted call, numpy in and out), images/s", "",
                  "| batch | " + " | ".join(f"{d} {k}" for d in raw for k in ("float32", "uint8")) + " |",
                  "|---:|" + "---:|" * (2 * len(raw))]
        for batch in RAW_BATCHES:
            cells = []
            for measured in raw.values():
                for kind in ("float32", "uint8"):
                    value = measured.get(kind, {}).get(str(batch), measured.get(kind, {}).get(batch)) \
                        if isinstance(measured, dict) else None
                    cells.append(_fmt(value))
            lines.append(f"| {batch} | " + " | ".join(cells) + " |")
        for device, measured in raw.items():
            if isinstance(measured, dict) and "error" in measured:
                lines.append(f"\n{device}: FAILED {measured['error']}")
        lines.append("")
    services = report["services"]
    for label, half in services.items():
        lines += [f"## {label}", "", f"Environment: `{' '.join(f'{k}={v}' for k, v in half['env'].items()) or '(defaults)'}`; "
                  f"ready after {_fmt(half.get('ready_s'), 1, ' s')}; forward passes: {half.get('placement', '?')}.", ""]
        if "error" in half:
            lines += [f"**Failed:** {half['error']}", ""]
        lines += ["| step | req/s | images/s | p50 ms | p99 ms | errors | requests / pass | server CPU ms / req | "
                  "GPU util % | GPU memory MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in half["steps"]:
            if "error" in row:
                lines.append(f"| {row['step']} | FAILED: {row['error'][:200]} |||||||||")
                continue
            lines.append(f"| {row['step']} | {_fmt(row['req_s'], 1)} | {_fmt(row['images_s'])} | "
                         f"{_fmt(row['p50_ms'], 1)} | {_fmt(row['p99_ms'], 1)} | {row['errors']} | "
                         f"{_fmt(row['requests_per_pass'], 2)} | {_fmt(row['server_cpu_ms'], 2)} | "
                         f"{_fmt(row['gpu_util'])} | {_fmt(row['gpu_memory_mib'])} |")
        lines.append("")
    if len(services) == 2:
        (gpu_label, gpu), (cpu_label, cpu) = services.items()
        cpu_rows = {row["step"]: row for row in cpu["steps"] if "error" not in row}
        lines += ["## GPU ÷ CPU-only, same machine, same run", "", "| step | GPU req/s | CPU-only req/s | GPU ÷ CPU |",
                  "|---|---:|---:|---:|"]
        for row in gpu["steps"]:
            other = cpu_rows.get(row["step"])
            if "error" in row or not other:
                continue
            ratio = row["req_s"] / other["req_s"] if other["req_s"] else None
            lines.append(f"| {row['step']} | {_fmt(row['req_s'], 1)} | {_fmt(other['req_s'], 1)} | {_fmt(ratio, 2, '×')} |")
        lines.append("")
    checks = goals(report)
    if checks:
        lines += ["## Against the goals", ""] + [f"* {c}" for c in checks] + [""]
    return "\n".join(lines)


def goals(report: dict) -> list[str]:
    out = []
    services = list(report["services"].values())
    raw_cpu = (report.get("raw", {}).get("cpu") or {}).get("uint8", {})
    for half in services:
        bulk = next((r for r in half["steps"] if r.get("kind") == "bulk UINT8" and "error" not in r), None)
        own = raw_cpu.get("4096", raw_cpu.get(4096))
        if bulk and own and half.get("placement") == "worker":
            out.append(f"bulk UINT8 on the CPU placement: {bulk['images_s']:,.0f} images/s = "
                       f"{bulk['images_s'] / own:.2f}× the model's own jitted call at batch 4096 on the CPU "
                       f"({own:,.0f}; target ≥ 0.7×)")
    if len(services) == 2 and services[0].get("placement") == "executor":
        gpu, cpu = services
        gpu_bulk = next((r for r in gpu["steps"] if r.get("kind") == "bulk UINT8" and "error" not in r), None)
        cpu_bulk = next((r for r in cpu["steps"] if r.get("kind") == "bulk UINT8" and "error" not in r), None)
        if gpu_bulk:
            ratio = f", {gpu_bulk['images_s'] / cpu_bulk['images_s']:.1f}× CPU-only" if cpu_bulk else ""
            out.append(f"bulk UINT8 on the GPU: {gpu_bulk['images_s']:,.0f} images/s{ratio} "
                       "(targets ≥ 4,000,000 and ≥ 4×)")
        memory = [r.get("gpu_memory_mib") for r in gpu["steps"] if r.get("gpu_memory_mib") is not None]
        if memory:
            out.append(f"GPU memory of the service: at most {max(memory):,.0f} MiB (target ≤ 2 GB)")
        if gpu.get("ready_s"):
            out.append(f"ready after {gpu['ready_s']:.1f} s (target ≤ 30 s)")
    return out


def plot(report: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    services = report["services"]
    names = [row["step"] for half in services.values() for row in half["steps"]]
    names = list(dict.fromkeys(names))
    if not names:
        return False
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / max(1, len(services))
    for k, (label, half) in enumerate(services.items()):
        values = {row["step"]: row.get("images_s") or 0 for row in half["steps"]}
        ax.bar([i + k * width for i in range(len(names))], [values.get(n, 0) for n in names], width, label=label)
    ax.set_yscale("log")
    ax.set_ylabel("images / s (log)")
    ax.set_xticks([i + width * (len(services) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels([n.replace(", ", "\n") for n in names], fontsize=7)
    ax.legend()
    ax.set_title("make bench-gpu: images/s per step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--raw-seconds", type=float, default=1.0, help="seconds per batch size, the model alone")
    parser.add_argument("--ready-timeout", type=float, default=240.0)
    parser.add_argument("--steps", nargs="*", default=None, help="only the steps whose names contain these words")
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU half")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--raw", type=float, default=None, help=argparse.SUPPRESS)  # the child of measure_raw
    args = parser.parse_args(argv)
    if args.raw is not None:
        print(json.dumps(raw_model(args.raw)))
        return 0

    from execution import placement

    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    gpus = [] if args.cpu_only else gpu_names()
    began = time.monotonic()
    report = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": f"{platform.node()}, "
              f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
              "gpus": gpus, "seconds": args.seconds, "warmup": args.warmup, "raw": {}, "services": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        report["minutes"] = (time.monotonic() - began) / 60
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
        text = markdown(report)
        if plot(report, args.out.with_suffix(".png")):
            text += f"\n![images/s per step]({args.out.with_suffix('.png').name})\n"
        args.out.write_text(text)

    from loadtest.images import load_images

    report["uploads"] = load_images().describe()
    print(f"bench-gpu: {report['machine']}; GPU: {', '.join(gpus) or 'none: the CPU half only'}", flush=True)
    for device in (["gpu"] if gpus else []) + ["cpu"]:
        print(f"  the model alone on the {device} ...", flush=True)
        try:
            report["raw"][device] = measure_raw(device, args.raw_seconds)
        except Exception as exc:
            report["raw"][device] = {"error": f"{type(exc).__name__}: {str(exc)[-800:]}"}
        save()
    base = {"KERAS_BACKEND": "jax"}
    with GpuSampler() as sampler:
        if gpus:
            env = dict(base)
            if placement.resolve("auto") != placement.EXECUTOR:  # say so, and measure the executor anyway
                report["note"] = "PLACEMENT=auto did not find the GPU here: the GPU half sets PLACEMENT=executor"
                env["PLACEMENT"] = "executor"
            serve("with the GPU", env, args, sampler, report, save)
        serve("CPU only (GPU hidden)" if gpus else "CPU", {**base, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""},
              args, sampler, report, save)
    save()
    print(f"\n{markdown(report)}\nwritten: {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
