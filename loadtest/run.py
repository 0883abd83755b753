"""Start servers, run one locust load level against them, and count what every process spent."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from loadtest.summary import Step, batch_counters, mean_batch_sizes, read_locust_stats

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCUSTFILE = REPO / "loadtest" / "locustfile.py"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


@dataclass
class ServerSpec:
    """How to start one server: a name for the reports, its command and extra environment."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    cwd: Path | None = None  # default: the repository
    unset: tuple[str, ...] = ()  # variables of this environment not to pass on

    @classmethod
    def bentoml(cls, name: str, env: dict[str, str] | None = None, description: str = "",
                cwd: Path | None = None, unset: tuple[str, ...] = ()) -> "ServerSpec":
        return cls(name, [str(BIN / "bentoml"), "serve", "--host", "127.0.0.1", "--port", "{port}"],
                   env or {}, description, cwd, unset)

    @classmethod
    def uvicorn(cls, name: str, module: str, workers: int = 1, description: str = "") -> "ServerSpec":
        return cls(name, [sys.executable, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1",
                          "--port", "{port}", "--workers", str(workers), "--no-access-log",
                          "--log-level", "warning"], {}, description)


class Server:
    """A server child process in its own process group, on a free localhost port."""

    def __init__(self, spec: ServerSpec, log_dir: Path):
        self.spec = spec
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"server-{spec.name}.log"
        self._log = open(self.log_path, "wb")
        cwd = spec.cwd or REPO
        env = {key: value for key, value in os.environ.items() if key not in spec.unset}
        self.home = None
        if Path(spec.command[0]).name == "bentoml":
            # `bentoml serve` empties $BENTOML_HOME/prometheus_multiproc_dir when it starts, which
            # silently breaks /metrics of any other server on the same home: each server started
            # here gets a private home whose model store is a link to the real one.
            real = Path(env.get("BENTOML_HOME") or Path.home() / "bentoml").resolve()
            self.home = Path(tempfile.mkdtemp(prefix=f"loadtest-bentoml-home-{self.port}-"))
            (self.home / "models").symlink_to(real / "models", target_is_directory=True)
            env["BENTOML_HOME"] = str(self.home)
        env.update({"PYTHONPATH": os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")])),
                    "BENTOML_DO_NOT_TRACK": "true", "TF_CPP_MIN_LOG_LEVEL": "2", **spec.env})
        command = [part.replace("{port}", str(self.port)) for part in spec.command]
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self, timeout: float = 180.0) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.spec.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if http_get(f"{self.url}/readyz", 2)[0] == 200:
                return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"{self.spec.name} not ready in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        self._log.close()
        if self.home is not None and self.home.exists():
            (self.home / "models").unlink(missing_ok=True)  # the link only, never the real store
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


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
             extra_env: dict[str, str] | None = None, quiet: bool = True) -> Step:
    """One headless locust run of ``users`` users for ``seconds``; CSV + HTML under ``out_prefix``.

    ``rate``: total requests/s the users are paced to (each user at rate/users); None: closed loop.
    CPU use of the server tree, of locust and of everything else on the machine is measured over
    the run and given in percent of one core.
    """
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
    try:
        while proc.poll() is None:
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
        stats["rps"] = stats["requests"] / max(1, round(seconds))
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
