"""Start servers, run one locust load level against them, and count what every process spent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from loadtest.images import load_images
from loadtest.summary import Step, batch_counters, mean_batch_sizes, read_locust_stats
from tools.servers import REPO, Server, bentoml_serve, http_get

BIN = Path(sys.executable).parent
LOCUSTFILE = REPO / "loadtest" / "locustfile.py"


@dataclass
class ServerSpec:
    """How to start one server: a name for the reports, its command and extra environment."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    cwd: Path | None = None  # default: the repository
    unset: tuple[str, ...] = ()  # variables of this environment not to pass on
    ready_path: str = "/readyz"  # answers 200 once the server is ready

    @classmethod
    def bentoml(cls, name: str, env: dict[str, str] | None = None, description: str = "",
                cwd: Path | None = None, unset: tuple[str, ...] = ()) -> "ServerSpec":
        return cls(name, bentoml_serve(), env or {}, description, cwd, unset)

    @classmethod
    def uvicorn(cls, name: str, module: str, workers: int = 1, description: str = "") -> "ServerSpec":
        return cls(name, [sys.executable, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1",
                          "--port", "{port}", "--workers", str(workers), "--no-access-log",
                          "--log-level", "warning"], {}, description)


def start_server(spec: ServerSpec, log_dir: Path) -> Server:
    """``spec`` started on a free localhost port, its output in ``log_dir/server-<name>.log``."""
    return Server(spec.command, env=spec.env, cwd=spec.cwd or REPO, unset=spec.unset, ready_path=spec.ready_path,
                  log=log_dir / f"server-{spec.name.split()[0]}.log")


class ProcessTree:
    """CPU seconds and resident memory of a process and all its descendants (psutil)."""

    def __init__(self, pid: int | None):
        self.pid = pid

    def processes(self) -> list[psutil.Process]:
        if self.pid is None:
            return []
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes():
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss_mib(self) -> float:
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes()]


def busy_cpu_seconds() -> float:
    """CPU seconds all processes of the machine spent (from /proc/stat)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)


def run_step(host: str, users: int, seconds: float, out_prefix: Path, *, label: str | None = None,
             rate: float | None = None, server_pid: int | None = None, pin_cpus: set[int] | None = None,
             extra_env: dict[str, str] | None = None, quiet: bool = True,
             until: threading.Event | None = None) -> Step:
    """One headless locust run of ``users`` users for ``seconds``; CSV + HTML under ``out_prefix``.

    ``rate``: total requests/s the users are paced to (each user at rate/users); None: closed loop.
    ``until``: stop earlier, once this event is set (locust ends on SIGTERM and writes its reports);
    ``seconds`` is then the longest the run may take.
    CPU use of the server tree, of locust and of everything else on the machine is measured over
    the run and given in percent of one core.
    """
    # The image set is built (and cached on disk) here, before the step, from the environment locust
    # gets: locust then only reads it, and no step's time includes a cold build (2-3 s with the real
    # data sets, which left a short first step without a single answer).
    load_images()
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    sidecar = out_prefix.with_name(out_prefix.name + "_sidecar.json")
    env = {**os.environ, "LOADTEST_SIDECAR": str(sidecar), **(extra_env or {})}
    env.pop("LOADTEST_USER_RATE", None)
    if rate:
        env["LOADTEST_USER_RATE"] = repr(rate / users)
    command = [str(BIN / "locust"), "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r", str(10 * users),
               "-t", f"{max(1, round(seconds))}s", "--host", host, "--csv", str(out_prefix),
               "--html", str(out_prefix.with_name(out_prefix.name + ".html")), "--reset-stats",
               "--only-summary", "--stop-timeout", "10", "--exit-code-on-error", "0",
               "--loglevel", "WARNING"]
    metrics_url = f"{host.rstrip('/')}/metrics"
    before = batch_counters(http_get(metrics_url)[1])
    server = ProcessTree(server_pid)
    server_cpu0, busy0, wall0 = server.cpu_seconds(), busy_cpu_seconds(), time.monotonic()
    me0 = sum(psutil.Process().cpu_times()[:2])
    log = open(out_prefix.with_name(out_prefix.name + "_locust.log"), "wb")
    preexec = (lambda: os.sched_setaffinity(0, pin_cpus)) if pin_cpus else None
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec)
    locust = psutil.Process(proc.pid)
    locust_cpu = 0.0
    stopped = False
    try:
        while proc.poll() is None:
            if until is not None and until.is_set() and not stopped:
                proc.send_signal(signal.SIGTERM)
                stopped = True
            try:
                t = locust.cpu_times()
                locust_cpu = t.user + t.system  # last reading before it exits
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)
        proc.wait(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    wall = time.monotonic() - wall0
    server_cpu = server.cpu_seconds() - server_cpu0
    busy = busy_cpu_seconds() - busy0
    me = sum(psutil.Process().cpu_times()[:2]) - me0
    after = batch_counters(http_get(metrics_url)[1])
    if proc.returncode not in (0, None):
        raise RuntimeError(f"locust exited with {proc.returncode}: see {log.name}")
    stats = read_locust_stats(out_prefix)
    if rate:  # locust divides by the time up to the last request: for paced users, use the whole run
        stats["rps"] = stats["requests"] / (wall if stopped else max(1, round(seconds)))
    side = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    ok = side.get("status", {}).get("200", 0)
    step = Step(label=label or (f"{users} user" + ("s" if users != 1 else "")), users=users, offered_rps=rate,
                status=side.get("status", {}), bad_answers=sum(side.get("bad_answers", {}).values()),
                images_per_request=(side["images"] / ok) if ok and side.get("images") else None,
                accuracy={k: v["share"] for k, v in side.get("accuracy", {}).items()},
                batch_size=mean_batch_sizes(before, after) if after else {},
                seconds=wall, **stats)
    cpu = {"locust": 100 * locust_cpu / wall, "other": 100 * max(0.0, busy - locust_cpu - me - server_cpu) / wall}
    if server_pid is not None:
        cpu["server"] = 100 * server_cpu / wall
    step.cpu = cpu
    if not quiet:
        print(f"  {step.label:>14}: {step.rps:7.1f} req/s  p50 {step.p50_ms:5.0f}  p95 {step.p95_ms:5.0f}  "
              f"p99 {step.p99_ms:5.0f} ms  errors {step.failures}  5xx {step.server_errors}  "
              f"batch {step.mean_batch if step.mean_batch is not None else '-'}  "
              f"cpu {', '.join(f'{k} {v:.0f}%' for k, v in cpu.items())}", flush=True)
    return step
