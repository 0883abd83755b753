"""The Kubernetes Deployment of deploy/kubernetes/base, played with `podman kube play` on the image
of `make image` (built once per session, shared with tests/test_image.py): the pod starts as the
manifest says (non-root, read-only root filesystem, WORKERS from the CPU limit, emptyDirs) and
answers a prediction.

Test-only adjustments for podman (4.3), which is no cluster: one replica; a host port on
127.0.0.1 (it ignores Service objects); no probes (it ignores readiness probes, and runs HTTP
liveness probes with curl inside the image, which the serving image does not ship: the kubelet
needs no curl); the test image's tag."""

from __future__ import annotations

import copy

import pytest
import requests
import yaml

from tools.container import TEST_IMAGE, build_image, podman, require_engine, wait_ready
from tools.kustomize import render
from tools.servers import REPO, free_port
from test_service import GOOD


def play_manifest(deployment: dict, port: int) -> dict:
    deployment = copy.deepcopy(deployment)
    deployment["spec"]["replicas"] = 1
    (service,) = deployment["spec"]["template"]["spec"]["containers"]
    service["image"] = TEST_IMAGE
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        service.pop(probe)
    service["ports"][0].update(hostPort=port, hostIP="127.0.0.1")
    return deployment


@pytest.fixture
def played(request, tmp_path):
    require_engine()  # before the session's models are trained: a skip costs nothing
    request.getfixturevalue("served_models")
    build_image()
    objects = render(REPO / "deploy" / "kubernetes" / "base")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    port = free_port()
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(play_manifest(deployment, port)))
    podman("kube", "play", str(manifest), timeout=300)
    pod = f"{deployment['metadata']['name']}-pod-0"
    name = f"{pod}-{deployment['spec']['template']['spec']['containers'][0]['name']}"

    def alive() -> bool:
        return podman("inspect", name, "--format", "{{.State.Running}}", check=False).stdout.strip() == "true"

    try:
        wait_ready(f"http://127.0.0.1:{port}", alive)
        yield name, f"http://127.0.0.1:{port}", deployment
    finally:
        logs = podman("logs", name, check=False)
        (tmp_path / "pod.log").write_text(logs.stdout + logs.stderr)
        podman("kube", "down", str(manifest), check=False, timeout=120)


def test_the_deployment_plays_and_predicts(played, served_models):
    name, url, deployment = played
    response = requests.post(f"{url}/mnist/predict", files={"image": ("d.png", GOOD, "image/png")}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == served_models["mnist"]
    assert requests.get(f"{url}/livez", timeout=5).status_code == 200
    # as the manifest says: its user, a read-only root, writable emptyDirs, one worker per CPU of the limit
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    inside = podman("exec", name, "sh", "-c",
                    'id -u; echo "$WORKERS"; touch /probe 2>/dev/null && echo rw || echo ro; '
                    'touch "$BENTOML_HOME/probe" /tmp/probe && echo writable').stdout.split()
    assert inside == [str(deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]),
                      str(int(limits["cpu"])), "ro", "writable"]
