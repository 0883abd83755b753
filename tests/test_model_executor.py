"""The executor placement end to end (``PLACEMENT=executor``: 2 HTTP workers, 1 model executor on
JAX's CPU backend, as on a GPU machine): the same answers as the in-worker placement, every worker's
requests pooled into shared passes, workers that never load a numeric backend, and an executor that
dies under load: 503s with a JSON body, never a hang, /readyz 503 until it is back, then answers.

The kill test ends with a new executor; it runs last in this module.
"""

from __future__ import annotations

import concurrent.futures as futures
import os
import re
import signal
import threading
import time

import psutil
import pytest
import requests

from tests.test_service import drawn_digit
from tools.hostile import good_digit

EXECUTOR_ARG = "digits_and_signs_executor"


def processes(server) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(HTTP workers, executors) of a running server."""
    workers, executors = [], []
    for child in psutil.Process(server.process.pid).children():
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "_bentoml_impl.worker" not in command or child.status() == psutil.STATUS_ZOMBIE:
            continue
        (executors if EXECUTOR_ARG in command else workers).append(child)
    return workers, executors


def loaded_backends(process: psutil.Process) -> set[str]:
    names = set()
    for region in process.memory_maps():
        for backend in ("jaxlib", "tensorflow", "libcuda"):
            if backend in region.path:
                names.add(backend)
    return names


def requests_per_pass(server) -> tuple[float, float]:
    """(sum, count) of the ``model_batch_size`` histogram: requests served and forward passes."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    total = sum(float(v) for v in re.findall(r'^model_batch_size_sum\{[^}]*\} (\S+)', text, re.M))
    count = sum(float(v) for v in re.findall(r'^model_batch_size_count\{[^}]*\} (\S+)', text, re.M))
    return total, count


def test_both_placements_answer_alike(server, executor_server):
    for route, upload in (("mnist", drawn_digit()), ("asl", good_digit())):
        replies = [requests.post(f"{s.url}/{route}/predict", files={"image": ("x.png", upload)},
                                 data={"top_k": "3"}, timeout=30) for s in (server, executor_server)]
        assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
        answers = [r.json() for r in replies]
        assert answers[0]["label"] == answers[1]["label"] and answers[0]["model"] == answers[1]["model"]
        assert answers[0]["confidence"] == pytest.approx(answers[1]["confidence"], abs=1e-6)


def test_the_workers_run_no_model_and_the_executor_pools_their_requests(executor_server):
    workers, executors = processes(executor_server)
    assert len(workers) == 2 and len(executors) == 1
    assert all(not loaded_backends(worker) for worker in workers)  # no JAX, no TensorFlow, no CUDA
    assert "jaxlib" in loaded_backends(executors[0])
    before = requests_per_pass(executor_server)
    image = drawn_digit()

    def client(_):
        with requests.Session() as session:  # a connection of its own: the kernel spreads them over both workers
            return [session.post(f"{executor_server.url}/mnist/predict", files={"image": ("d.png", image)},
                                 timeout=30).status_code for _ in range(15)]

    with futures.ThreadPoolExecutor(24) as pool:
        statuses = [s for batch in pool.map(client, range(24)) for s in batch]
    assert statuses == [200] * len(statuses)
    served, passes = (a - b for a, b in zip(requests_per_pass(executor_server), before))
    assert served == len(statuses)
    assert served / passes > 1.5, f"{served} requests in {passes} passes"


def test_a_dead_executor_answers_503_never_hangs_and_comes_back(executor_server):
    url = executor_server.url
    _, executors = processes(executor_server)
    old = executors[0].pid
    results: list[tuple[float, int, dict]] = []
    readiness: list[int | str] = []
    probe_seconds: list[float] = []
    stop = threading.Event()
    image = good_digit()

    def load():
        session = requests.Session()
        while not stop.is_set():
            start = time.monotonic()
            try:
                response = session.post(f"{url}/mnist/predict", files={"image": ("d.png", image)}, timeout=30)
                results.append((time.monotonic() - start, response.status_code, response.json()))
            except requests.ConnectionError:
                session = requests.Session()

    def probe():
        while not stop.is_set():
            started = time.monotonic()
            try:
                readiness.append(requests.get(f"{url}/readyz", timeout=10).status_code)
            except requests.RequestException as exc:
                readiness.append(type(exc).__name__)
            probe_seconds.append(time.monotonic() - started)
            time.sleep(0.05)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)] + [threading.Thread(target=probe, daemon=True)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 150
    back = False
    while time.monotonic() < deadline:
        _, executors = processes(executor_server)
        if executors and executors[0].pid != old and requests.get(f"{url}/readyz", timeout=5).status_code == 200:
            back = True
            break
        time.sleep(0.5)
    time.sleep(1.5)  # answers again, under the same load
    stop.set()
    for thread in threads:
        thread.join(60)
    assert back, "the executor did not come back"
    statuses = [status for _, status, _ in results]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    unavailable = [body for _, status, body in results if status == 503]
    assert unavailable and all("executor" in body["error"] for body in unavailable)
    assert 503 in readiness and readiness[-1] == 200 and set(readiness) <= {200, 503}, readiness
    assert max(probe_seconds) < 2  # a readiness probe answers at once, also while the executor starts
    assert max(seconds for seconds, _, _ in results) < 10  # a 503 at once, not after a timeout
    after_restart = [status for _, status, _ in results[-20:]]
    assert after_restart.count(200) >= 10
