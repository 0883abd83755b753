"""The peer benchmark's servers (loadtest/peers) and harness (bench/peers.py).

Each peer is started as the benchmark starts it, answers one upload of each model exactly as the
project's stem answers it in-process (same label, same confidence), and leaves no process behind
when stopped. A peer whose environment is missing is skipped, with the command that makes it;
``PEERS_REQUIRED=1`` (CI, after ``make peers-setup``) makes a missing one a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from bench.peers import cpu_split, main as bench_peers, role, stop_all, tree
from loadtest.peers import PEERS, Peer, setup
from tests.test_service import drawn_digit
from tools.hostile import good_digit
from tools.servers import Server


def test_role_names_what_each_process_of_a_tree_is():
    child = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        assert role(psutil.Process(child.pid)) == "python -m http.server"
        assert child.pid in [p.pid for p in tree(os.getpid())]
    finally:
        child.kill()
        child.wait()


def test_cpu_split_counts_what_each_role_spent_between_readings():
    before = {1: ("raylet", 10.0), 2: ("ray::ServeReplica", 5.0)}
    after = {1: ("raylet", 10.5), 2: ("ray::ServeReplica", 8.0), 3: ("ray::ServeReplica", 1.0)}
    split = cpu_split(before, after, seconds=2.0)
    assert split == {"ray::ServeReplica": pytest.approx(200.0), "raylet": pytest.approx(25.0)}
    assert list(split) == ["ray::ServeReplica", "raylet"]  # largest first


def test_a_peer_without_its_interpreter_says_which_one_it_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("PEERS_VENV_DIR", str(tmp_path))
    peer = Peer("triton", "NVIDIA Triton (pytriton)", "loadtest.peers.triton", PEERS["triton"].settings, (),
                python=str(tmp_path / "no-such-python3.11"))
    with pytest.raises(RuntimeError, match="no-such-python3.11"):
        setup(peer)


def _stem_answer(route: str, upload: bytes) -> dict:
    from loadtest.alternatives.common import NumpyMLP, stored_models

    entry = stored_models()[route]
    return entry.classifier(NumpyMLP(entry.path)).predict([upload], 3)[0]


def _ask(peer: Peer, url: str, route: str, upload: bytes) -> dict:
    if peer.protocol == "kserve":
        from loadtest.scenario import kserve_answers, kserve_element, kserve_path, kserve_request

        body, headers = kserve_request([kserve_element(upload)], top_k=3)
        reply = requests.post(url + kserve_path(route), data=body, headers=headers, timeout=60)
        assert reply.status_code == 200, reply.text
        return kserve_answers(reply.json(), 1)[0]
    reply = requests.post(f"{url}/{route}/predict", files={"image": ("x.png", upload)}, data={"top_k": "3"}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.parametrize("key", list(PEERS))
def test_each_peer_answers_as_the_stem_does_and_stops_clean(key, served_models, tmp_path):
    peer = PEERS[key]
    if peer.venv and not Path(peer.interpreter).exists():
        if os.environ.get("PEERS_REQUIRED"):
            pytest.fail(f"no environment for {peer.name} at {peer.venv}: `make peers-setup`")
        pytest.skip(f"no environment for {peer.name} at {peer.venv}: `make peers-setup PEERS={key}` makes it")
    setting = peer.settings[0]
    server = Server(peer.command(setting), env=peer.env(setting), ready_path=peer.ready_path,
                    log=tmp_path / f"{key}.log").wait_ready(240)
    try:
        for route, upload in (("mnist", drawn_digit()), ("asl", good_digit())):
            answer, expected = _ask(peer, server.url, route, upload), _stem_answer(route, upload)
            assert answer["label"] == expected["label"] and answer["model"] == expected["model"]
            assert answer["confidence"] == pytest.approx(expected["confidence"], abs=1e-5)
            assert [e["label"] for e in answer["top_k"]] == [e["label"] for e in expected["top_k"]]
        counters = peer.batch_counters(server.url)
        assert counters is not None and counters[0] >= 2 and counters[1] >= 1, counters
    finally:
        left = stop_all(server)
    assert not left, f"{peer.name}: outlived its stop by 5 s: {left}"


def test_the_benchmark_runs_the_service_and_a_peer_in_turns_and_reports_both(served_models, tmp_path):
    out = tmp_path / "bench"
    code = bench_peers(["--peers", "bentoml-quickstart", "--rounds", "1", "--seconds", "2", "--warmup", "1",
                        "--users", "4", "--small-users", "4", "--rate-users", "4", "--out", str(out)])
    assert code == 0
    report = (out / "peers.md").read_text()
    assert (out / "peers.png").stat().st_size > 10_000
    data = json.loads((out / "peers.json").read_text())
    results = data["results"]
    assert set(results) == {"service", "bentoml-quickstart@32/1000", "bentoml-quickstart@100/60000"}
    for key, result in results.items():
        assert not result["errors"], (key, result["errors"])
        assert result["failures"] == 0 and result["requests"] > 0, key
        assert result["best"]["rps"] > 0 and result["paced"]["rps"] > 0 and result["small"]["rps"] > 0, key
        assert result["left_behind"] == 0, key
    assert data["rate"] > 0
    assert "the service ≥ 1.0× BentoML, quickstart" in report and "p99 at half the service's max" in report
