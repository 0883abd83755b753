"""The locust scenario: users who upload real digits and hand signs and check every answer.

Mix per user (task weights): 90 % ``POST /<route>/predict`` and 10 % ``/<route>/predict_batch``
with 2..10 images, spread evenly over the catalog's families (45 % / 5 % each for mnist and asl). Half of the single
predictions ask for ``top_k`` = all classes, so that the probabilities must add up to 1.

Client: locust's ``FastHttpUser`` (geventhttpclient), with the multipart body built from
pre-encoded parts (loadtest/scenario.py); it costs a third less CPU per request than
``HttpUser`` (requests): 1.3-1.65 against 2.35-2.45 ms, measured by ``make bench``. On a 2-core box every
cycle the load generator spends is taken from the server. ``LOADTEST_CLIENT=http`` switches.

Environment (set by ``python -m loadtest``; all optional):

* ``LOADTEST_IMAGES`` and friends: where the images come from (see :mod:`loadtest.images`);
* ``LOADTEST_USER_RATE``: requests per second per user, each user at a fixed pace; unset: no wait
  (closed loop, every user sends its next request as soon as the answer is in);
* ``LOADTEST_SIDECAR``: a JSON file written at exit with status counts, failed checks and the
  share of right answers per route (what locust's CSV cannot tell);
* ``LOADTEST_TIMELINE``: a JSON file written at exit with, per second of the clock, the answers
  that passed and failed and the ``model`` versions that answered (a rollout's switch over time);
* ``LOADTEST_SCENARIO=small``: instead of the mix, only ``POST /mnist/predict`` of the plain 28x28
  PNG digits (the smallest uploads: what the HTTP stack costs per request);
* ``LOADTEST_PROTOCOL=kserve``: the same users, tasks, images and checks, but each request is a KServe v2
  ``POST /v2/models/<route>/infer`` of 1 (predict) or 2..10 (predict_batch) rows, for a Triton server
  (see :mod:`loadtest.scenario`); the report rows keep the names ``/<route>/predict`` etc.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # locust imports this file by path

import gevent  # noqa: E402
from locust import FastHttpUser, HttpUser, constant, events  # noqa: E402

from catalog import FAMILIES  # noqa: E402
from loadtest.images import CLASSES, ImageSet, load_images  # noqa: E402
from loadtest.scenario import (  # noqa: E402
    BATCH_SIZES, CONTENT_TYPE, FULL_TOP_K_SHARE, TIMEOUT_S, BadAnswer, check_prediction, kserve_answers,
    kserve_element, kserve_path, kserve_request, multipart, part_bytes,
)
from service.settings import Settings  # noqa: E402

KSERVE = os.environ.get("LOADTEST_PROTOCOL", "multipart") == "kserve"


class Scenario:
    """The image set with pre-built parts (multipart parts, or KServe BYTES elements), shared by all
    users of this process."""

    def __init__(self, images: ImageSet):
        self.images = images
        uploads = images.uploads.items()
        if KSERVE:
            self.single = {route: [(u, kserve_element(u.data)) for u in items] for route, items in uploads}
            self.batch = self.single
        else:
            self.single = {route: [(u, part_bytes("image", u)) for u in items] for route, items in uploads}
            self.batch = {route: [(u, part_bytes("images", u)) for u in items] for route, items in uploads}
        self.small = [(u, part) for u, part in self.single.get("mnist", []) if u.kind == "png"]


_scenario: Scenario | None = None
_scenario_lock = threading.Lock()


def scenario() -> Scenario:
    global _scenario
    with _scenario_lock:
        if _scenario is None:
            _scenario = Scenario(load_images())
        return _scenario


class Tally:
    """Counts shared by the users of this process, written to ``LOADTEST_SIDECAR`` at exit."""

    def __init__(self):
        self.status: dict[str, int] = {}
        self.bad_answers: dict[str, int] = {}
        self.right: dict[str, list[int]] = {route: [0, 0] for route in CLASSES}
        self.images = 0

    def answer(self, route: str, truth: str | None, label: str) -> None:
        self.images += 1
        if truth is not None:
            self.right[route][1] += 1
            self.right[route][0] += label == truth

    def as_dict(self) -> dict:
        return {"status": self.status, "bad_answers": self.bad_answers, "images": self.images,
                "accuracy": {route: {"right": r, "of": n, "share": (r / n if n else None)}
                             for route, (r, n) in self.right.items()},
                "image_source": scenario().images.describe() if _scenario else None}


tally = Tally()


class Timeline:
    """Per second (of the epoch): answers passed, failed, and by which model version."""

    def __init__(self):
        self.seconds: dict[int, dict] = {}

    def add(self, ok: bool, model: str | None = None) -> None:
        bucket = self.seconds.setdefault(int(time.time()), {"ok": 0, "failed": 0, "models": {}})
        bucket["ok" if ok else "failed"] += 1
        if model:
            bucket["models"][model] = bucket["models"].get(model, 0) + 1


timeline = Timeline()


@events.request.add_listener
def _count_status(response=None, exception=None, **_):
    code = getattr(response, "status_code", None) if response is not None else None
    key = str(code or 0)  # 0: no HTTP answer at all (connection refused, timeout)
    tally.status[key] = tally.status.get(key, 0) + 1


@events.test_start.add_listener
def _load_images(environment, **_):
    scenario()  # build (or read from the cache) before the first user starts


@events.quitting.add_listener
def _write_sidecar(environment, **_):
    path = os.environ.get("LOADTEST_SIDECAR")
    if path:
        Path(path).write_text(json.dumps(tally.as_dict(), indent=1))
    path = os.environ.get("LOADTEST_TIMELINE")
    if path:
        Path(path).write_text(json.dumps(timeline.seconds))


# ---- the users -------------------------------------------------------------------------------

def _wait_time():
    """No wait (closed loop), or with LOADTEST_USER_RATE a fixed pace per user: requests start at
    phase + k / rate, the phase random per user. (Locust's constant_throughput measures from the
    user's creation, so all users fire in step whatever their start: bursts of one request per
    user, which queue at the server and inflate latency at any load.)"""
    rate = os.environ.get("LOADTEST_USER_RATE")
    if not rate:
        return constant(0)
    interval = 1 / float(rate)

    def paced(user) -> float:
        now = time.perf_counter()
        user.next_start = max(getattr(user, "next_start", now) + interval, now)  # late: no catching up
        return user.next_start - now

    return paced


class Uploads:
    """The tasks, shared by the FastHttpUser and HttpUser flavours."""

    def on_start(self):
        rate = os.environ.get("LOADTEST_USER_RATE")
        if rate:  # paced users start at random points of their first interval, not all at once
            gevent.sleep(random.uniform(0, 1 / float(rate)))
            self.next_start = time.perf_counter()

    def _send(self, route: str, name: str, parts: list[bytes], top_k: int | None, batch: bool, expect) -> None:
        """POST ``parts`` as one request of the protocol in use; ``expect`` gets the list of answers."""
        if KSERVE:
            body, headers = kserve_request(parts, top_k or Settings.default_top_k)
            self._post(kserve_path(route), name, body, headers, lambda answer: expect(kserve_answers(answer, len(parts))))
            return

        def unwrap(answer):
            if not batch:
                return expect([answer])
            predictions = answer.get("predictions") if isinstance(answer, dict) else None
            if not isinstance(predictions, list) or len(predictions) != len(parts):
                raise BadAnswer(f"expected {len(parts)} predictions")
            expect(predictions)

        path = f"/{route}/predict_batch" if batch else f"/{route}/predict"
        self._post(path, name, multipart(parts, top_k), {"Content-Type": CONTENT_TYPE}, unwrap)

    def _post(self, path: str, name: str, body: bytes, headers: dict, expect) -> None:
        with self.client.post(path, data=body, headers=headers, name=name,
                              catch_response=True, timeout=TIMEOUT_S) as response:
            if response.status_code != 200:
                text = (response.text or "")[:200] if response.status_code else str(response.error)
                response.failure(f"HTTP {response.status_code}: {text}")
                timeline.add(False)
                return
            try:
                body = response.json()
                model = expect(body)
            except BadAnswer as exc:
                tally.bad_answers[name] = tally.bad_answers.get(name, 0) + 1
                response.failure(f"bad answer: {exc}")
                timeline.add(False)
            except ValueError as exc:  # not JSON
                tally.bad_answers[name] = tally.bad_answers.get(name, 0) + 1
                response.failure(f"bad answer: not JSON ({exc})")
                timeline.add(False)
            else:
                timeline.add(True, model)

    def _predict(self, route: str) -> None:
        chosen = [random.choice(scenario().single[route])]
        top_k = len(CLASSES[route]) if random.random() < FULL_TOP_K_SHARE else None
        self._send(route, f"/{route}/predict", [part for _, part in chosen], top_k, False,
                   _checker(route, chosen, top_k or Settings.default_top_k))

    def _predict_batch(self, route: str) -> None:
        chosen = random.sample(scenario().batch[route], random.randint(*BATCH_SIZES))
        top_k = len(CLASSES[route])
        self._send(route, f"/{route}/predict_batch", [part for _, part in chosen], top_k, True,
                   _checker(route, chosen, top_k))

    def small_png(self):
        chosen = [random.choice(scenario().small)]
        self._send("mnist", "/mnist/predict (28x28 PNG)", [part for _, part in chosen], None, False,
                   _checker("mnist", chosen, Settings.default_top_k))


def _checker(route: str, chosen: list, top_k: int):
    """Checks the answers to ``chosen`` (upload, part) pairs, tallies them and returns the model
    that gave the first (for the timeline)."""
    def expect(answers: list):
        for (upload, _), answer in zip(chosen, answers):
            tally.answer(route, upload.label, check_prediction(answer, route, top_k))
        return answers[0].get("model") if isinstance(answers[0], dict) else None

    return expect



def _tasks() -> dict:
    """task -> weight: 90 % single predictions and 10 % predict_batch, spread evenly over the
    catalog's families (locust does not collect @task methods from a mixin, so they are listed)."""
    if os.environ.get("LOADTEST_SCENARIO") == "small":
        return {Uploads.small_png: 1}
    share = 1 / len(FAMILIES)
    tasks = {}
    for f in FAMILIES:
        tasks[_named(Uploads._predict, f.route, f.route)] = round(90 * share)
        tasks[_named(Uploads._predict_batch, f.route, f"{f.route}_batch")] = round(10 * share)
    return tasks


def _named(method, route: str, name: str):
    """``method`` for one route, as a named task (locust's reports use the task's ``__name__``)."""
    def run(user):
        method(user, route)

    run.__name__ = run.__qualname__ = name
    return run


TASKS = _tasks()


if os.environ.get("LOADTEST_CLIENT", "fast") == "http":
    class Uploader(Uploads, HttpUser):
        wait_time = _wait_time()
        tasks = TASKS
else:
    class Uploader(Uploads, FastHttpUser):
        wait_time = _wait_time()
        tasks = TASKS
        connection_timeout = TIMEOUT_S
        network_timeout = TIMEOUT_S
