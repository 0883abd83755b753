"""The local cluster (tools/cluster.py, `make cluster`) at CI's scale: two replicas of the session's
image behind the HAProxy front door (deploy/loadbalancer), with real load (locust) through it.

Each scenario of `make bench-cluster` (bench/cluster.py) runs here small: a model rolled out and back
under load, a replica killed with and without retries, slow and idle clients, the per-client cap,
a draining replica taken out by its readiness, and the Kubernetes Deployment played twice with
`podman kube play` behind the same front door. The tests run in file order and share one cluster."""

from __future__ import annotations

import threading
import time

import psutil
import pytest
import requests
import yaml

from bench.cluster import SMALL, front_door_cost, replica_kill, rollout, slow_clients
from loadtest.slow_clients import run as attack
from test_deploy_play import play_manifest
from test_service import GOOD, drawn_digit
from tools.cluster import Cluster, Replica, build_next_version_image, lb_settings, podman
from tools.container import TEST_IMAGE, build_image, require_engine
from tools.kustomize import render
from tools.servers import REPO, free_port

V2_IMAGE = "localhost/digits_and_signs:test-v2"


@pytest.fixture(scope="module")
def images(request):
    """(v1, v2, v2's model tags): the session's image, and one that serves copies of its models
    under new versions, built as `make bench-cluster` builds it."""
    require_engine()
    request.getfixturevalue("served_models")
    v1 = build_image().name
    tags = build_next_version_image(V2_IMAGE, "tests/test_cluster.py: second version")
    yield v1, V2_IMAGE, tags
    podman("rmi", "-f", V2_IMAGE, check=False)


@pytest.fixture(scope="module")
def cluster(images):
    v1, _, _ = images
    handle = Cluster(name="digits-and-signs-test", image=v1, port=free_port(), bind="127.0.0.1")
    try:
        handle.up(2)
        yield handle
    finally:
        handle.down()


def predict(url: str, route: str = "mnist") -> requests.Response:
    upload = GOOD if route == "mnist" else drawn_digit()
    return requests.post(f"{url}/{route}/predict", files={"image": ("d.png", upload, "image/png")}, timeout=30)


def test_the_front_door_is_the_only_public_listener_and_reaches_every_replica(cluster, served_models):
    published = {}
    for line in podman("ps", "--filter", "label=io.digits-and-signs.cluster=digits-and-signs-test",
                       "--format", "{{.Names}} {{.Ports}}").stdout.splitlines():
        name, _, ports = line.partition(" ")
        published[name] = ports.strip()
    assert published.pop(cluster.lb) == ""  # on the host's network: nothing forwarded
    assert len(published) == 2 and not any(published.values()), published  # the replicas: nothing
    listeners = {psutil.Process(c.pid).name() for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == cluster.port and c.pid}
    assert listeners == {"haproxy"}
    before = {slot: int(s["stot"]) for slot, s in cluster.slot_stats().items()}
    for i in range(20):
        route = ("mnist", "asl")[i % 2]
        response = predict(cluster.url, route)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == served_models[route]
    served = {slot: int(s["stot"]) - before[slot] for slot, s in cluster.slot_stats().items()}
    assert sorted(served[r.slot] > 0 for r in cluster.replicas()) == [True, True], served
    assert requests.get(f"{cluster.url}/lb/livez", timeout=5).status_code == 200


def test_a_model_rolled_out_and_back_under_load_drops_nothing(cluster, images, tmp_path):
    v1, v2, tags = images
    result = rollout(cluster, v1, v2, SMALL, tmp_path)
    assert result["failures"] == 0 and result["bad_answers"] == 0, result["status"]
    assert result["requests"] > 500
    assert set(tags.values()) <= {m for m, v in result["versions"].items() if v == "v2"}
    assert result["first_seconds_v1_only"] and result["v2_seen"]
    assert result["v2_only_after_switch"], "after the switch, every answer comes from v2"
    assert result["v1_only_at_end"], "after the rollback, every answer comes from v1 again"
    assert {r.image for r in cluster.replicas()} == {v1}


def test_a_killed_replica_is_out_within_2_s_and_retries_hide_it(cluster, tmp_path):
    result = replica_kill(cluster, SMALL, tmp_path, retries=True)
    assert result["out_after_s"] is not None and result["out_after_s"] < 2
    assert result["failures"] == 0, result["status"]
    assert result["restarts"] >= 1 and result["back_after_s"] is not None, "restarted and back in rotation"


def test_without_retries_only_the_requests_it_had_fail(cluster, tmp_path):
    """Killed by `podman kill` this time, which podman's restart policy ignores: the cluster's
    watcher starts it again."""
    result = replica_kill(cluster, SMALL, tmp_path, retries=False, how="podman")
    try:
        assert result["out_after_s"] is not None and result["out_after_s"] < 2
        assert result["failures"] <= result["in_flight_at_kill"] + result["sent_after_kill"], result
        assert result["back_after_s"] is not None
    finally:
        cluster.set_retries(True)


def test_slow_and_idle_clients_are_held_at_the_front_door(cluster, tmp_path):
    result = slow_clients(cluster, SMALL, tmp_path, good_rate=40)
    good, totals = result["good"], result["attack"]["totals"]
    assert good["failures"] == 0 and good["requests"] > 200
    assert good["p99_ms"] < 1000
    head_timeout = lb_settings()["request_received_s"]
    assert totals["established"] == SMALL.slow + SMALL.idle
    assert totals["closed_by_server"] == totals["established"], "every slow and idle connection is closed"
    assert head_timeout - 0.5 <= totals["close_seconds"]["median"] <= head_timeout + 2
    assert set(totals["responses"]) == {"HTTP/1.1 408 Request Time-out"}


def test_one_client_address_gets_at_most_its_share_of_connections(cluster):
    """One address (127.0.0.2) holding connections up to the cap: the ones past it are closed at
    once, and another address (127.0.0.1) is still served meanwhile."""
    cluster.configure_lb(MAX_CONNECTIONS_PER_CLIENT="40")
    try:
        outcome = {}
        greedy = threading.Thread(target=lambda: outcome.update(attack(
            cluster.url, slow=0, idle=60, seconds=4, sources=["127.0.0.2"], progress_every=None)))
        greedy.start()
        time.sleep(2)  # all 60 tried (500 a second)
        answered = predict(cluster.url).status_code
        greedy.join()
        totals = outcome["totals"]
        # the 40 within the cap wait for the head timeout; the 20 past it are closed at once (reset
        # while connecting, or just after)
        assert totals["open_at_end"] == 40, totals
        assert totals["close_seconds"]["n"] == 0 or totals["close_seconds"]["max"] < 1, totals
        assert answered == 200
    finally:
        cluster.configure_lb(MAX_CONNECTIONS_PER_CLIENT=str(lb_settings()["per_client"]))


def test_two_replicas_played_from_the_kubernetes_deployment_take_traffic(cluster, tmp_path):
    """deploy/kubernetes/base's Deployment, played twice by `podman kube play` on the cluster's
    network (podman plays one replica per Deployment), in the front door's rotation."""
    (deployment,) = [o for o in render(REPO / "deploy" / "kubernetes" / "base") if o["kind"] == "Deployment"]
    manifests, played = [], []
    try:
        for i, slot in enumerate((14, 15)):
            copy_ = play_manifest(deployment, 0)
            copy_["metadata"]["name"] = f"{deployment['metadata']['name']}-play{i}"
            (container,) = copy_["spec"]["template"]["spec"]["containers"]
            del container["ports"]  # kube play would publish them on the host; the front door reaches the pod
            path = tmp_path / f"play{i}.yaml"
            path.write_text(yaml.safe_dump(copy_))
            podman("kube", "play", "--network", cluster.network, str(path), timeout=300)
            manifests.append(path)
            name = f"{copy_['metadata']['name']}-pod-0-{container['name']}"
            infra = podman("pod", "inspect", f"{copy_['metadata']['name']}-pod-0", "--format",
                           "{{.InfraContainerID}}").stdout.strip()
            address = podman("inspect", infra, "--format",
                             "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}").stdout.strip()
            played.append(Replica(slot, name, TEST_IMAGE, True, address, 0))
        for replica in cluster.replicas():  # only the played pods in rotation
            cluster.admin(f"set server replicas/replica{replica.slot} state maint")
        for replica in played:
            cluster.add_to_rotation(replica)
        before = {r.slot: int(cluster.slot_stats()[r.slot]["stot"]) for r in played}
        for i in range(20):
            assert predict(cluster.url, ("mnist", "asl")[i % 2]).status_code == 200
        stats = cluster.slot_stats()
        assert all(int(stats[r.slot]["stot"]) > before[r.slot] for r in played), "both played pods answered"
    finally:
        for replica in played:
            cluster.admin(f"set server replicas/replica{replica.slot} state maint")
        for replica in cluster.replicas():
            cluster.add_to_rotation(replica)
        for path in manifests:
            podman("kube", "down", str(path), check=False, timeout=120)


def test_the_front_doors_cost_is_measured_beside_direct_requests(cluster, tmp_path):
    """`make bench-cluster`'s cost comparison, short: the same paced load to one replica directly
    and through the proxy. The ratio is a benchmark's number; here, that both ran clean and that
    the proxy's CPU is the proxied traffic's (direct traffic leaves it with its health checks)."""
    result = front_door_cost(cluster, SMALL, tmp_path)
    (direct,), (proxied,) = result["rounds"]["direct"], result["rounds"]["through the proxy"]
    assert direct["failures"] == 0 and proxied["failures"] == 0
    assert proxied["rps"] == pytest.approx(direct["rps"], rel=0.2)
    assert proxied["proxy_ms"] > 5 * direct["proxy_ms"] and proxied["proxy_ms"] > 0.01
    deadline = time.monotonic() + 10
    while len(cluster.in_rotation()) < 2:  # the other replica back, after its checks pass again
        assert time.monotonic() < deadline, cluster.slot_stats()
        time.sleep(0.2)


def test_a_draining_replica_is_taken_out_by_its_readiness_alone(cluster):
    """SIGTERM only (no word to the load balancer): its /readyz turns 503 while it still serves,
    and the front door's check takes it out well before the drain ends."""
    victim = cluster.replicas()[0]
    drain = 5  # DRAIN_SECONDS of the image
    podman("kill", "--signal", "TERM", victim.name)
    sent = time.monotonic()
    while cluster.slot_stats()[victim.slot]["status"] == "UP":
        assert time.monotonic() - sent < drain, "still in rotation at the end of the drain"
        time.sleep(0.05)
    out = time.monotonic() - sent
    assert out < 2, f"out after {out:.1f} s"
    assert cluster._running(victim.name), "out of rotation while it still drains"
    for _ in range(10):
        assert predict(cluster.url).status_code == 200  # the other replica serves
