"""deploy/kubernetes: every Kubernetes object of the CPU, GPU and front-door kustomizations
validates, offline, against the Kubernetes JSON schemas (kubernetes-validate ships them; strict:
unknown fields fail); the front door's Gateway API and Envoy Gateway objects, custom resources
kubernetes-validate has no schemas for, are checked field by field against the local front door's
settings (FRONT_DOOR); and the settings that the service's behaviour and a rolling update that drops
nothing depend on hold together."""

from __future__ import annotations

import copy
import re

import pytest

from service.settings import Settings
from tools.cluster import lb_settings
from tools.kustomize import render
from tools.servers import REPO

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed (pip install -e '.[dev]')")

KUBERNETES = REPO / "deploy" / "kubernetes"
VERSION = "1.33.0"  # the oldest Kubernetes these manifests are written for (autoscaling/v2, policy/v1)
CORE_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
GATEWAY_API = "gateway.networking.k8s.io/v1"
ENVOY_GATEWAY = "gateway.envoyproxy.io/v1alpha1"
FRONT_DOOR_KINDS = {"GatewayClass": GATEWAY_API, "Gateway": GATEWAY_API, "HTTPRoute": GATEWAY_API,
                    "ClientTrafficPolicy": ENVOY_GATEWAY, "BackendTrafficPolicy": ENVOY_GATEWAY}

# The local front door's settings, read from deploy/loadbalancer/haproxy.cfg (the one place for the
# numbers), which deploy/kubernetes/frontdoor mirrors (docs/deploy.md "The front door"), plus the
# names Envoy Gateway gives to what HAProxy's `retry-on` and `balance leastconn` do.
FRONT_DOOR = {
    **{k: v for k, v in lb_settings().items() if k != "retry_on"},
    "retry_triggers": {"connect-failure", "reset", "retriable-status-codes"},
    "retry_statuses": [503],           # ... and on the service's 503 (busy, executor down)
    "load_balancer": "LeastRequest",   # per request
}


def test_the_local_front_door_retries_what_the_kubernetes_one_does():
    """HAProxy's retry-on: refused or reset connections, closed without an answer, and 503."""
    assert set(lb_settings()["retry_on"]) == {"conn-failure", "empty-response", "junk-response", "503"}


# The Envoy Gateway fields these manifests set, each checked against Envoy Gateway v1.9's API
# reference (https://gateway.envoyproxy.io/v1.9/api/extension_types/): a misspelt or unknown field
# fails here, as strict validation does for the Kubernetes objects. Add a field only after checking it.
KNOWN_FIELDS = {
    "ClientTrafficPolicy": {
        "targetRefs[].group", "targetRefs[].kind", "targetRefs[].name",
        "timeout.http.requestReceivedTimeout", "timeout.http.idleTimeout",
        "connection.connectionLimit.value", "connection.bufferLimit",
    },
    "BackendTrafficPolicy": {
        "targetRefs[].group", "targetRefs[].kind", "targetRefs[].name",
        "loadBalancer.type",
        "healthCheck.active.type", "healthCheck.active.interval", "healthCheck.active.timeout",
        "healthCheck.active.unhealthyThreshold", "healthCheck.active.healthyThreshold",
        "healthCheck.active.http.path", "healthCheck.active.http.method",
        "healthCheck.active.http.expectedStatuses[]",
        "healthCheck.passive.splitExternalLocalOriginErrors", "healthCheck.passive.consecutiveLocalOriginFailures",
        "healthCheck.passive.consecutive5XxErrors", "healthCheck.passive.maxEjectionPercent",
        "retry.numRetries", "retry.retryOn.triggers[]", "retry.retryOn.httpStatusCodes[]",
        "timeout.tcp.connectTimeout", "timeout.http.requestTimeout", "timeout.http.connectionIdleTimeout",
        "rateLimit.local.rules[].clientSelectors[].sourceCIDR.type",
        "rateLimit.local.rules[].clientSelectors[].sourceCIDR.value",
        "rateLimit.local.rules[].limit.requests", "rateLimit.local.rules[].limit.unit",
    },
}

EXIT_MARGIN_S = 5  # after the last request: shutdown hooks and the exit (a few seconds in docs/hostile.md)


def by_kind(objects: list[dict]) -> dict[str, dict]:
    kinds = {o["kind"]: o for o in objects}
    assert len(kinds) == len(objects), "one object per kind expected"
    return kinds


@pytest.fixture(scope="module", params=["base", "gpu", "frontdoor"])
def rendered(request):
    return request.param, by_kind(render(KUBERNETES / request.param))


@pytest.fixture(scope="module")
def frontdoor():
    return by_kind(render(KUBERNETES / "frontdoor"))


def container(deployment: dict) -> dict:
    (service,) = deployment["spec"]["template"]["spec"]["containers"]
    return service


def env(deployment: dict) -> dict:
    return {e["name"]: e for e in container(deployment)["env"]}


def settings(deployment: dict) -> Settings:
    """The service's settings in the Deployment's pods: its literal env values over the defaults."""
    return Settings.from_env({e["name"]: e["value"] for e in container(deployment)["env"] if "value" in e})


def seconds(duration: str) -> float:
    """A Gateway API Duration ("500ms", "1m30s") in seconds."""
    assert re.fullmatch(r"([0-9]{1,5}(h|m|s|ms)){1,4}", duration), f"not a Gateway API Duration: {duration!r}"
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(int(n) * unit[u] for n, u in re.findall(r"([0-9]+)(ms|h|m|s)", duration))


def traffic_timeout_s() -> int:
    """The service's own bound on a request (BentoML's traffic timeout, a 504 beyond)."""
    found = re.search(r'traffic=\{"timeout":\s*(\d+)\}', (REPO / "service" / "service.py").read_text())
    assert found, "service/service.py: no traffic={\"timeout\": N} in @bentoml.service"
    return int(found.group(1))


def uvicorn_keep_alive_s() -> int:
    """How long the replicas' uvicorn keeps an idle connection (BentoML's worker default)."""
    from _bentoml_impl.worker.service import main

    (option,) = [p for p in main.params if p.name == "timeout_keep_alive"]
    return option.default


def field_paths(value, prefix: str = "") -> set[str]:
    """The dotted paths of the fields set in ``value`` ("a.b[].c"), down to the values."""
    if isinstance(value, dict):
        return set().union(*(field_paths(v, f"{prefix}.{k}" if prefix else k) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(field_paths(v, f"{prefix}[]") for v in value)) if value else {f"{prefix}[]"}
    return {prefix}


def front_door_settings(objects: dict[str, dict]) -> dict:
    """The FRONT_DOOR settings as the rendered policies have them (KeyError if a field is missing)."""
    client = objects["ClientTrafficPolicy"]["spec"]
    backend = objects["BackendTrafficPolicy"]["spec"]
    active, passive = backend["healthCheck"]["active"], backend["healthCheck"]["passive"]
    assert active["type"] == "HTTP" and active["http"].get("method", "GET") == "GET"
    assert active["http"].get("expectedStatuses", [200]) == [200]
    # passive: local-origin errors (connect failures, resets, timeouts) counted apart from 5xx answers
    assert passive["splitExternalLocalOriginErrors"] is True
    assert passive["maxEjectionPercent"] >= 50, "Envoy's 10 % ejects nothing in a cluster of under 10 replicas"
    # per client: one bucket per address, over every IPv4 and IPv6 address, per second
    rules = backend["rateLimit"]["local"]["rules"]
    selectors = [s["sourceCIDR"] for rule in rules for s in rule["clientSelectors"]]
    assert all(len(rule["clientSelectors"]) == 1 for rule in rules)
    assert {s["value"] for s in selectors} == {"0.0.0.0/0", "::/0"} and {s["type"] for s in selectors} == {"Distinct"}
    (per_client,) = {(rule["limit"]["requests"], rule["limit"]["unit"]) for rule in rules}
    assert per_client[1] == "Second"
    return {
        "health_path": active["http"]["path"],
        "health_interval_s": seconds(active["interval"]),
        "health_timeout_s": seconds(active["timeout"]),
        "unhealthy_threshold": active["unhealthyThreshold"],
        "healthy_threshold": active["healthyThreshold"],
        "passive_local_failures": passive["consecutiveLocalOriginFailures"],
        "request_received_s": seconds(client["timeout"]["http"]["requestReceivedTimeout"]),
        "idle_s": seconds(client["timeout"]["http"]["idleTimeout"]),
        "request_timeout_s": seconds(backend["timeout"]["http"]["requestTimeout"]),
        "connect_timeout_s": seconds(backend["timeout"]["tcp"]["connectTimeout"]),
        "connections": client["connection"]["connectionLimit"]["value"],
        "per_client": per_client[0],
        "retries": backend["retry"]["numRetries"],
        "retry_triggers": set(backend["retry"]["retryOn"]["triggers"]),
        "retry_statuses": backend["retry"]["retryOn"]["httpStatusCodes"],
        "load_balancer": backend["loadBalancer"]["type"],
    }


def test_every_object_validates_against_the_schemas(rendered):
    overlay, objects = rendered
    expected = CORE_KINDS | (set(FRONT_DOOR_KINDS) if overlay == "frontdoor" else set())
    assert set(objects) == expected
    for kind in CORE_KINDS:
        kubernetes_validate.validate(objects[kind], VERSION, strict=True)


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
    # rolling updates with no replica down (the timing that makes them drop nothing: test_shutdown_timing)
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    # workers follow the CPU limit
    variables = env(deployment)
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


def test_shutdown_timing(rendered):
    """A deleted pod is still served for DRAIN_SECONDS while load balancers learn it is going, and
    the grace period covers that, the longest request that may start meanwhile and the exit."""
    overlay, objects = rendered
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    service = container(deployment)
    drain = settings(deployment).drain_seconds
    assert drain >= 3, "the endpoint change takes seconds to reach the load balancers"
    # the kubelet's readiness probe sees the drain's 503 before the drain ends
    readiness = service["readinessProbe"]
    assert readiness["periodSeconds"] * readiness.get("failureThreshold", 3) < drain
    # the drain does the waiting a preStop sleep would do; one would only add to it
    pre_stop = service.get("lifecycle", {}).get("preStop", {})
    assert set(pre_stop) <= {"sleep"}, "a preStop hook of unknown length: the grace period cannot be checked"
    pre_stop_s = pre_stop.get("sleep", {}).get("seconds", 0)
    # the longest request: the service's own bound (traffic timeout), over its forward-pass budget,
    # and over the gateway's request timeout where there is one
    variables = settings(deployment)
    forward_pass_ms = variables.executor_connect_wait_ms + variables.max_latency_ms + variables.executor_timeout_ms
    request_s = max(traffic_timeout_s(), forward_pass_ms / 1000)
    if overlay == "frontdoor":
        request_s = max(request_s, seconds(objects["BackendTrafficPolicy"]["spec"]["timeout"]["http"]["requestTimeout"]))
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + drain + request_s + EXIT_MARGIN_S


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


# --- the front door (deploy/kubernetes/frontdoor) ---


def test_frontdoor_is_base_with_a_gateway(frontdoor):
    """kubectl apply -k deploy/kubernetes/frontdoor applies base unchanged, and the front door."""
    base = by_kind(render(KUBERNETES / "base"))
    assert {kind: frontdoor[kind] for kind in CORE_KINDS} == base
    for kind, api_version in FRONT_DOOR_KINDS.items():
        assert frontdoor[kind]["apiVersion"] == api_version, kind
        assert frontdoor[kind]["metadata"]["name"]


def test_frontdoor_mirrors_the_local_front_door(frontdoor):
    assert front_door_settings(frontdoor) == FRONT_DOOR
    for kind, known in KNOWN_FIELDS.items():
        assert field_paths(frontdoor[kind]["spec"]) <= known, f"{kind}: fields not checked against the docs"


def test_the_front_door_check_catches_mistakes(frontdoor):
    """A changed number, a misspelt field and a missing one fail: the check above is not vacuous."""
    def changed(edit):
        broken = copy.deepcopy(frontdoor)
        edit(broken)
        return broken

    backend = lambda o: o["BackendTrafficPolicy"]["spec"]  # noqa: E731
    client = lambda o: o["ClientTrafficPolicy"]["spec"]  # noqa: E731
    for broken in (
        changed(lambda o: client(o)["timeout"]["http"].update(idleTimeout="1h")),
        changed(lambda o: backend(o)["healthCheck"]["active"].update(interval="5s")),
        changed(lambda o: backend(o)["retry"].update(numRetries=3)),
        changed(lambda o: backend(o)["healthCheck"]["active"]["http"].update(path="/livez")),
    ):
        assert front_door_settings(broken) != FRONT_DOOR
    misspelt = changed(lambda o: backend(o)["healthCheck"]["active"].update(
        unhealthyTreshold=backend(o)["healthCheck"]["active"].pop("unhealthyThreshold")))
    with pytest.raises(KeyError):
        front_door_settings(misspelt)
    assert not field_paths(misspelt["BackendTrafficPolicy"]["spec"]) <= KNOWN_FIELDS["BackendTrafficPolicy"]
    missing = changed(lambda o: client(o)["timeout"]["http"].pop("requestReceivedTimeout"))
    with pytest.raises(KeyError):
        front_door_settings(missing)
    with pytest.raises(AssertionError):
        seconds("10")  # a Duration has a unit


def test_frontdoor_objects_point_at_each_other(frontdoor):
    gateway_class, gateway, route = frontdoor["GatewayClass"], frontdoor["Gateway"], frontdoor["HTTPRoute"]
    assert gateway_class["metadata"]["name"] == gateway["spec"]["gatewayClassName"] == "eg"
    assert gateway_class["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    assert [(listener["protocol"], listener["port"]) for listener in listeners.values()] == [("HTTP", 80)]
    (parent,) = route["spec"]["parentRefs"]
    assert parent["kind"] == "Gateway" and parent["name"] == gateway["metadata"]["name"]
    assert parent.get("sectionName", next(iter(listeners))) in listeners
    # every path of the route goes to the Service's port, which leads to the pods' port
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    (backend_ref,) = rule["backendRefs"]
    service = frontdoor["Service"]
    assert backend_ref.get("kind", "Service") == "Service" and backend_ref.get("group", "") == ""
    assert backend_ref["name"] == service["metadata"]["name"]
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == backend_ref["port"]]
    pod_ports = {p["name"]: p["containerPort"] for p in container(frontdoor["Deployment"])["ports"]}
    assert port["targetPort"] in set(pod_ports) | set(pod_ports.values())
    # the client policy is the Gateway's, the backend policy the route's
    targets = {kind: frontdoor[kind]["spec"]["targetRefs"] for kind in ("ClientTrafficPolicy", "BackendTrafficPolicy")}
    assert targets["ClientTrafficPolicy"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway["metadata"]["name"]}]
    assert targets["BackendTrafficPolicy"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route["metadata"]["name"]}]


def test_frontdoor_timing_agrees_with_the_pods(frontdoor):
    """The gateway checks the pods' readiness path, sees a drain before it ends, waits for the
    service's own answer, and closes idle connections to a replica before the replica does."""
    deployment = frontdoor["Deployment"]
    readiness = container(deployment)["readinessProbe"]["httpGet"]
    backend = frontdoor["BackendTrafficPolicy"]["spec"]
    active = backend["healthCheck"]["active"]
    assert active["http"]["path"] == readiness["path"]
    # a draining replica's 503 takes it out of the gateway while it still serves
    out_after_s = seconds(active["interval"]) * active["unhealthyThreshold"] + seconds(active["timeout"])
    assert out_after_s < settings(deployment).drain_seconds
    # the service's own 504 (a JSON answer) comes before the gateway gives up
    assert seconds(backend["timeout"]["http"]["requestTimeout"]) >= traffic_timeout_s()
    # no request is sent on a connection the replica's uvicorn is closing for idleness
    assert seconds(backend["timeout"]["http"]["connectionIdleTimeout"]) < uvicorn_keep_alive_s()
