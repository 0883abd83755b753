"""Start a real ``bentoml serve`` on a free localhost port for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_home(store: str) -> str:
    """A BENTOML_HOME that shares ``store``'s models and Bentos but nothing else.

    Every ``bentoml serve`` empties ``$BENTOML_HOME/prometheus_multiproc_dir`` when it starts, so
    two servers on one home break each other's ``/metrics``; each test server gets its own.
    """
    home = tempfile.mkdtemp(prefix="bentoml_serve_home_")
    for name in ("models", "bentos"):
        os.makedirs(os.path.join(store, name), exist_ok=True)
        os.symlink(os.path.join(store, name), os.path.join(home, name))
    return home


class Server:
    """A ``bentoml serve`` child process; ``url`` is its base address."""

    def __init__(self, target: str | None = None, *, env: dict | None = None, cwd: Path = REPO,
                 log: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [BENTOML, "serve", *([target] if target else []), "--host", "127.0.0.1",
                   "--port", str(self.port)]
        self.log_path = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"bentoml-serve-{self.port}.log"
        self._log = open(self.log_path, "wb")
        env = {**os.environ, **(env or {})}
        env["BENTOML_HOME"] = private_home(env["BENTOML_HOME"])
        self.process = subprocess.Popen(command, cwd=cwd, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self._log.close()
