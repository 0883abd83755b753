"""A first run that says where the user is: quiet TensorFlow start-up, and the service's ready line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conftest import REPO
from service import ready

IMPORT = "from training.quiet import quiet_tensorflow; quiet_tensorflow(); import tensorflow; print('imported')"


def python(code: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "VERBOSE")}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True,
                          text=True, timeout=300)


def test_tensorflow_start_up_lines_are_hidden_unless_verbose():
    pytest.importorskip("tensorflow")
    quiet = python(IMPORT)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "imported"
    assert "absl::InitializeLog" not in quiet.stderr and "oneDNN" not in quiet.stderr, quiet.stderr
    loud = python(IMPORT, VERBOSE="1")
    assert loud.returncode == 0 and "oneDNN custom operations" in loud.stderr  # what VERBOSE=1 brings back


def test_ready_line_names_the_page_and_the_api_reference(monkeypatch):
    monkeypatch.setattr(ready, "listening_address", lambda: ("0.0.0.0", 3000))
    assert ready.ready_line() == "ready: the page http://localhost:3000/ , the API reference http://localhost:3000/docs"
    monkeypatch.setattr(ready, "listening_address", lambda: ("::1", 8080))
    assert "http://[::1]:8080/docs" in ready.ready_line()


def test_the_service_prints_where_it_listens_once(server):
    base = f"http://127.0.0.1:{server.port}"
    line = f"ready: the page {base}/ , the API reference {base}/docs"
    deadline = time.monotonic() + 120  # the first worker prints it when its models are loaded, which
    while line not in server.log() and time.monotonic() < deadline:  # may come after another
        time.sleep(0.5)  # worker made /readyz answer
    assert server.log().count(line) == 1, server.log()[-3000:]
