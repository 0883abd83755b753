"""deploy/kubernetes: every object of the CPU and GPU kustomizations validates, offline, against
the Kubernetes JSON schemas (kubernetes-validate ships them; strict: unknown fields fail), and
the settings that the service's behaviour depends on hold together."""

from __future__ import annotations

import copy

import pytest

from tools.kustomize import render
from tools.servers import REPO

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed (pip install -e '.[dev]')")

KUBERNETES = REPO / "deploy" / "kubernetes"
VERSION = "1.33.0"  # the oldest Kubernetes these manifests are written for (autoscaling/v2, policy/v1)
DRAIN_SECONDS_DEFAULT = 5


def by_kind(objects: list[dict]) -> dict[str, dict]:
    kinds = {o["kind"]: o for o in objects}
    assert len(kinds) == len(objects), "one object per kind expected"
    return kinds


@pytest.fixture(scope="module", params=["base", "gpu"])
def rendered(request):
    return request.param, by_kind(render(KUBERNETES / request.param))


def container(deployment: dict) -> dict:
    (service,) = deployment["spec"]["template"]["spec"]["containers"]
    return service


def env(deployment: dict) -> dict:
    return {e["name"]: e for e in container(deployment)["env"]}


def test_every_object_validates_against_the_schemas(rendered):
    overlay, objects = rendered
    assert set(objects) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for obj in objects.values():
        kubernetes_validate.validate(obj, VERSION, strict=True)


def test_the_validator_catches_mistakes(rendered):
    """A misspelt field and a wrongly typed value fail: the check above is not vacuous."""
    _, objects = rendered
    typo = copy.deepcopy(objects["Deployment"])
    container(typo)["readinessProbes"] = container(typo).pop("readinessProbe")
    wrong_type = copy.deepcopy(objects["Deployment"])
    container(wrong_type)["ports"][0]["containerPort"] = "3000"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, VERSION, strict=True)


def test_deployment_probes_resources_and_security(rendered):
    overlay, objects = rendered
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    service = container(deployment)
    assert [p["containerPort"] for p in service["ports"]] == [3000]
    assert service["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert service["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert service["startupProbe"]["httpGet"]["path"] in ("/readyz", "/livez")
    # the drain: readiness is probed often enough to see the 503 before the process exits, and the
    # grace period covers the drain and the requests in flight
    variables = env(deployment)
    drain = int(variables.get("DRAIN_SECONDS", {}).get("value", DRAIN_SECONDS_DEFAULT))
    readiness = service["readinessProbe"]
    assert readiness["periodSeconds"] * readiness.get("failureThreshold", 3) <= drain
    assert pod["terminationGracePeriodSeconds"] >= drain + 10
    # workers follow the CPU limit
    assert variables["WORKERS"]["valueFrom"]["resourceFieldRef"] == {
        "containerName": service["name"], "resource": "limits.cpu", "divisor": "1"}
    resources = service["resources"]
    for kind in ("cpu", "memory"):
        assert kind in resources["requests"] and kind in resources["limits"]
    # non-root, read-only root filesystem; BentoML's and Python's writable places are emptyDirs
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert service["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in service["volumeMounts"]}
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    assert variables["BENTOML_HOME"]["value"] in mounts and "/tmp" in mounts
    assert set(mounts.values()) <= empty_dirs
    if overlay == "gpu":
        assert resources["limits"]["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        assert service["image"].startswith("digits_and_signs_gpu:")
    else:
        assert "nvidia.com/gpu" not in resources["limits"]
        assert service["image"].startswith("digits_and_signs:")


def test_service_hpa_and_pdb_point_at_the_deployment(rendered):
    _, objects = rendered
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = objects["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in ("http", 3000)
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    pdb = objects["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
