"""The real container image (`make image`), built from the session's models and run with podman:
it serves both models, is ready, and stops cleanly on SIGTERM. Reports its size and start-up time
(reports/image/image.md). Skipped where podman/buildah/runc are missing; CI installs them."""

from __future__ import annotations

import time
import uuid

import bentoml
import numpy as np
import pytest
import requests

from tools.container import TEST_IMAGE, build_image, podman, report, require_engine, wait_ready
from preprocessing import image_to_vector
from tools.kustomize import render
from tools.servers import REPO, free_port
from test_service import GOOD, drawn_digit, served_probabilities

# terminationGracePeriodSeconds of deploy/kubernetes/base/deployment.yaml
GRACE_SECONDS = next(o for o in render(REPO / "deploy" / "kubernetes" / "base")
                     if o["kind"] == "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


@pytest.fixture(scope="module")
def image(request):
    require_engine()  # before the session's models are trained: a skip costs nothing
    request.getfixturevalue("served_models")
    return build_image()


@pytest.fixture(scope="module")
def container(image):
    """One run of the image on a free localhost port: (name, url, seconds from `podman run` to ready)."""
    name = f"digits-and-signs-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    started = time.monotonic()
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:3000", image.name)
    url = f"http://127.0.0.1:{port}"

    def alive() -> bool:
        return podman("inspect", name, "--format", "{{.State.Running}}", check=False).stdout.strip() == "true"

    try:
        wait_ready(url, alive)
    except BaseException:
        logs = podman("logs", name, check=False)
        podman("rm", "-f", name, check=False)
        pytest.fail(f"the container did not get ready:\n{(logs.stdout + logs.stderr)[-4000:]}")
    ready = time.monotonic() - started
    yield name, url, ready
    podman("rm", "-f", name, check=False)


def expected(tag: str, upload: bytes) -> np.ndarray:
    """The service's answer for the upload (the model's calibrated output), computed in this process."""
    preprocessing = bentoml.models.get(tag).info.metadata["preprocessing"]
    return served_probabilities(tag, image_to_vector(upload, preprocessing)[None])[0]


@pytest.mark.parametrize("route, upload", [("mnist", GOOD), ("asl", drawn_digit())])
def test_the_image_serves_both_models(container, served_models, route, upload):
    _, url, _ = container
    response = requests.post(f"{url}/{route}/predict", files={"image": ("upload.png", upload, "image/png")},
                             timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == served_models[route]
    want = expected(served_models[route], upload)
    assert body["index"] == int(want.argmax())
    assert body["confidence"] == pytest.approx(float(want.max()), abs=1e-4)
    bad = requests.post(f"{url}/{route}/predict", files={"image": ("x.png", b"not an image")}, timeout=30)
    assert bad.status_code == 400 and "error" in bad.json()


def test_ready_then_stops_cleanly_on_sigterm(container, image, capsys):
    name, url, ready_seconds = container
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
    assert requests.get(f"{url}/livez", timeout=5).status_code == 200
    logs = podman("logs", name)
    assert "keras backend: jax" in logs.stdout + logs.stderr  # the serving image runs without TensorFlow
    podman("kill", "--signal", "TERM", name)
    started = time.monotonic()
    waited = podman("wait", name, timeout=GRACE_SECONDS + 30)
    stop_seconds = time.monotonic() - started
    exit_code = int(waited.stdout.strip().splitlines()[-1])
    logs = podman("logs", name)
    output = logs.stdout + logs.stderr
    assert exit_code == 0, output[-3000:]
    assert stop_seconds < GRACE_SECONDS, f"took {stop_seconds:.1f} s to stop"
    assert "Traceback" not in output and "[ERROR]" not in output, output[-3000:]

    gb = image.size_bytes / 1e9
    with capsys.disabled():
        report("image", [
            f"image {TEST_IMAGE}: {image.size_bytes} bytes ({gb:.2f} GB), built in {image.build_seconds:.0f} s "
            "(Bento + base image when missing + containerize)",
            f"start to ready (podman run -> /readyz 200): {ready_seconds:.1f} s",
            f"SIGTERM to exit: {stop_seconds:.1f} s, exit code {exit_code}",
        ], {"image": TEST_IMAGE, "size_bytes": image.size_bytes, "build_seconds": round(image.build_seconds, 1),
            "ready_seconds": round(ready_seconds, 2), "stop_seconds": round(stop_seconds, 2),
            "exit_code": exit_code})
