"""A server child process on a free localhost port: a real ``bentoml serve``, or any command.

Used by the end-to-end tests, the load tests and the benchmarks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def bentoml_serve(target: str | None = None) -> list[str]:
    """``bentoml serve [target]`` on localhost, port left as ``{port}``."""
    return [BENTOML, "serve", *([target] if target else []), "--host", "127.0.0.1", "--port", "{port}"]


def private_home(store: str | os.PathLike) -> str:
    """A BENTOML_HOME that shares ``store``'s models and Bentos but nothing else.

    Every ``bentoml serve`` empties ``$BENTOML_HOME/prometheus_multiproc_dir`` when it starts, so
    two servers on one home break each other's ``/metrics``; each server started here gets its own.
    """
    home = tempfile.mkdtemp(prefix="bentoml_serve_home_")
    for name in ("models", "bentos"):
        os.makedirs(os.path.join(store, name), exist_ok=True)
        os.symlink(os.path.join(store, name), os.path.join(home, name))
    return home


class Server:
    """A server child process in its own process group; ``url`` is its base address.

    ``command`` (default: ``bentoml serve`` of the repository) may hold ``{port}``. ``env`` is
    added to this process's environment, without the names in ``unset``.
    """

    def __init__(self, command: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None,
                 cwd: Path = REPO, log: Path | None = None, unset: Sequence[str] = (), ready_path: str = "/readyz"):
        command = list(command or bentoml_serve())
        self.ready_path = ready_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log or Path(tempfile.gettempdir()) / f"server-{self.port}.log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        environment = {key: value for key, value in os.environ.items() if key not in unset}
        # DRAIN_SECONDS=0: a stopped test server exits at once (the drain's own tests set it)
        environment.update({"PYTHONPATH": os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")])),
                            "BENTOML_DO_NOT_TRACK": "true", "TF_CPP_MIN_LOG_LEVEL": "2", "DRAIN_SECONDS": "0",
                            **(env or {})})
        self.home = None
        if Path(command[0]).name == "bentoml":
            store = environment.get("BENTOML_HOME") or str(Path.home() / "bentoml")
            self.home = environment["BENTOML_HOME"] = private_home(store)
        self.process = subprocess.Popen([part.replace("{port}", str(self.port)) for part in command],
                                        cwd=cwd, env=environment, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180.0) -> "Server":
        """Wait until the readiness path (``/readyz``) answers 200; fails with the log's tail if the server exits or stalls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            if http_get(f"{self.url}{self.ready_path}", 2)[0] == 200:
                return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"server not ready in {timeout:.0f} s:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout`` s."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        if not self._log.closed:
            self._log.close()
        if self.home is not None:
            for name in ("models", "bentos"):  # the links only, never the real store
                Path(self.home, name).unlink(missing_ok=True)
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
