"""The container image of `make image`, built once per test session with podman/buildah, and what
the image tests share (tests/test_image.py, tests/test_deploy_play.py)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import requests

from tools.servers import BENTOML, REPO

ENGINE_CONF = REPO / "deploy" / "container" / "engine-conf.sh"
BUILD_SCRIPT = REPO / "deploy" / "container" / "build-image.sh"
# a tag of its own: the tests' small models never replace the user's digits_and_signs:latest
TEST_IMAGE = "localhost/digits_and_signs:test"
REPORTS = REPO / "reports" / "image"


@functools.cache
def engine_conf() -> str:
    """deploy/container/containers.conf where this host needs it (engine-conf.sh), else ''."""
    done = subprocess.run([str(ENGINE_CONF)], capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def engine_env() -> dict[str, str]:
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env and engine_conf():
        env["CONTAINERS_CONF"] = engine_conf()
    return env


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], env=engine_env(), capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def require_engine() -> None:
    """Skip (with the command that fixes it) where podman, buildah or runc is missing, or cannot
    run a container here. CI installs them (.ci/run), so there these tests run."""
    missing = [tool for tool in ("podman", "buildah", "runc") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: the image tests need podman, buildah and runc "
                    "(make image-setup; CI installs them)")
    if os.geteuid() != 0 and not shutil.which("debootstrap"):
        pytest.skip("not root and no debootstrap: cannot build the local base image stand-in")


@dataclass
class BuiltImage:
    name: str
    build_seconds: float
    size_bytes: int
    log: str


@functools.cache
def build_image() -> BuiltImage:
    """`make image`'s script, run once per session on the session's model store ($BENTOML_HOME)."""
    env = {**engine_env(), "IMAGE": TEST_IMAGE, "BENTOML": BENTOML, "PYTHON": sys.executable,
           "CONTAINER_ENGINE": "buildah"}
    started = time.monotonic()
    done = subprocess.run([str(BUILD_SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    seconds = time.monotonic() - started
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"build-image.sh failed:\n{log[-5000:]}"
    size = int(podman("image", "inspect", TEST_IMAGE, "--format", "{{.Size}}").stdout.strip())
    return BuiltImage(TEST_IMAGE, seconds, size, log)


def wait_ready(url: str, alive, timeout: float = 180) -> float:
    """Seconds until GET {url}/readyz answers 200; fails early when ``alive()`` turns False."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        assert alive(), "the container exited before it was ready"
        time.sleep(0.1)
    raise TimeoutError(f"{url}/readyz not 200 after {timeout} s")


def report(name: str, lines: list[str], numbers: dict) -> None:
    """Print the lines and write them with the numbers to reports/image/<name>.md and .json
    (call it inside ``capsys.disabled()`` for the lines to reach the terminal past pytest's capture)."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    (REPORTS / f"{name}.json").write_text(json.dumps(numbers, indent=2) + "\n")
    print("\n" + "\n".join(lines))
