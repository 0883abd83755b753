"""The load-test kit (loadtest/): scenario pieces, summary and SLO code, and short real runs.

The runs use the session's real service (``server``): a few seconds of headless locust each.
Without DATA_DIR the uploads come from synthetic arrays (the image source is pluggable).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from loadtest import profile  # noqa: E402
from loadtest.__main__ import main  # noqa: E402
from catalog import family  # noqa: E402
from loadtest.images import ImageSet, Upload, load_images  # noqa: E402
from loadtest.scenario import CONTENT_TYPE, BadAnswer, check_prediction, multipart, part_bytes  # noqa: E402
from loadtest.summary import SLO, Step, batch_counters, markdown_table, mean_batch_sizes, read_locust_stats  # noqa: E402


@pytest.fixture(autouse=True)
def _few_images(monkeypatch, tmp_path_factory):
    """Small image sets, cached per test session, for the tests and the locust runs they start."""
    monkeypatch.setenv("LOADTEST_IMAGES_PER_MODEL", "30")
    monkeypatch.setenv("LOADTEST_CACHE", str(tmp_path_factory.getbasetemp() / "loadtest-images"))


def custom_images() -> ImageSet:
    """An image source given as LOADTEST_IMAGES=test_loadtest:custom_images."""
    pixels = np.zeros((28, 28), np.uint8)
    pixels[8:20, 12:16] = 255
    from tools.uploads import encode_plain

    one = Upload("mnist", "one.png", "image/png", encode_plain(pixels), "1", "png")
    return ImageSet({"mnist": [one], "asl": [Upload("asl", "a.png", "image/png", encode_plain(pixels), None, "png")]},
                    "custom")


# ---- images ----------------------------------------------------------------------------------

def test_synthetic_images_mix_plain_and_dressed_uploads(monkeypatch):
    monkeypatch.delenv("DATA_DIR", raising=False)
    images = load_images()  # auto without DATA_DIR: synthetic
    assert images.source == "synthetic"
    for route, classes in (("mnist", family('mnist').class_names), ("asl", family('asl').class_names)):
        items = images.uploads[route]
        assert len(items) == 30 and len({u.data for u in items}) == 30
        assert {u.kind for u in items} >= {"png", "jpeg"} and any(u.kind.startswith("dressed") for u in items)
        assert all(u.label in classes for u in items)
        assert all(u.data[:4] == b"\x89PNG" or u.data[:2] == b"\xff\xd8" for u in items)
    assert "mnist: 30 images" in images.describe()


def test_image_source_is_pluggable(monkeypatch):
    monkeypatch.setenv("LOADTEST_IMAGES", "test_loadtest:custom_images")
    assert load_images().source == "custom"
    monkeypatch.setenv("LOADTEST_IMAGES", "nowhere")
    with pytest.raises(SystemExit, match="unknown image source"):
        load_images()


def test_real_test_split_images(real_data_dir):
    images = load_images("data", per_model=20, dressed=0.25)
    mnist, asl = images.uploads["mnist"], images.uploads["asl"]
    assert [u.label for u in mnist[:5]] == ["7", "2", "1", "0", "4"]  # the first MNIST test labels
    assert all(u.label in family("asl").class_names for u in asl)
    assert sum(u.kind.startswith("dressed") for u in mnist) == 5


# ---- the scenario's requests and checks --------------------------------------------------------

def test_multipart_body_parses_like_a_browser_upload():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def echo(request: Request):
        form = await request.form()
        files = [(f.filename, f.content_type, len(await f.read())) for f in form.getlist("images")]
        return JSONResponse({"files": files, "top_k": form.get("top_k")})

    uploads = [Upload("mnist", f"{i}.png", "image/png", bytes([i]) * (100 + i), "1", "png") for i in range(3)]
    body = multipart([part_bytes("images", u) for u in uploads], 10)
    with TestClient(Starlette(routes=[Route("/", echo, methods=["POST"])])) as client:
        answer = client.post("/", content=body, headers={"Content-Type": CONTENT_TYPE}).json()
    assert answer == {"files": [[f"{i}.png", "image/png", 100 + i] for i in range(3)], "top_k": "10"}
    without = multipart([part_bytes("image", uploads[0])], None)
    assert b"top_k" not in without and without.endswith(b"--\r\n")


def _answer(probabilities, classes=family("mnist").class_names, top_k=3):
    order = np.argsort(probabilities)[::-1][:top_k]
    return {"label": classes[order[0]], "index": int(order[0]), "confidence": float(probabilities[order[0]]),
            "top_k": [{"label": classes[i], "probability": float(probabilities[i])} for i in order], "model": "m:1"}


def test_answer_checks():
    p = np.random.default_rng(0).dirichlet(np.ones(10))
    assert check_prediction(_answer(p), "mnist", 3) == family("mnist").class_names[int(p.argmax())]
    assert check_prediction(_answer(p, top_k=10), "mnist", 10)
    broken = {
        "wrong class": {**_answer(p), "label": "Q"},
        "index mismatch": {**_answer(p), "index": (int(p.argmax()) + 1) % 10},
        "too few": _answer(p, top_k=2),
        "missing field": {k: v for k, v in _answer(p).items() if k != "model"},
    }
    for name, body in broken.items():
        with pytest.raises(BadAnswer):
            check_prediction(body, "mnist", 3)
    unnormalised = _answer(p * 0.5, top_k=10)
    with pytest.raises(BadAnswer, match="sum to"):
        check_prediction(unnormalised, "mnist", 10)
    nothing = {"found": False, "unsure": True, "label": None, "index": None, "confidence": None, "top_k": [],
               "reason": "the image is blank", "model": "m:1"}
    assert check_prediction(nothing, "mnist", 3) is None
    with pytest.raises(BadAnswer, match="found: false"):
        check_prediction({**nothing, "top_k": [{"label": "1", "probability": 1.0}]}, "mnist", 3)


# ---- summary, SLO, /metrics, profile -----------------------------------------------------------

STATS_CSV = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
POST,/mnist/predict,90,0,12,13.5,5,80,250,45.0,0.0,12,14,15,16,20,25,40,60,80,80,80
,Aggregated,200,1,12,14.0,5,120,260,100.5,0.5,12,14,15,16,21,30,45,70,120,120,120
"""


def test_locust_stats_and_slo(tmp_path):
    (tmp_path / "run_stats.csv").write_text(STATS_CSV)
    stats = read_locust_stats(tmp_path / "run")
    assert stats == {"requests": 200, "failures": 1, "rps": 100.5, "p50_ms": 12.0, "p95_ms": 30.0,
                     "p99_ms": 70.0, "max_ms": 120.0}
    step = Step(label="8 users", users=8, status={"200": 199, "503": 1}, **stats)
    slo = SLO()
    misses = slo.check(step)
    assert any("5xx" in m and "503" in m for m in misses) and any("error rate" in m for m in misses)
    clean = Step(label="8 users", users=8, status={"200": 200}, **{**stats, "failures": 0})
    assert slo.check(clean) == []
    assert SLO(max_p99_ms=50).check(clean) == ["8 users: p99 70 ms > 50 ms"]
    single = Step(label="1 user", users=1, **{**stats, "failures": 0, "p99_ms": 150.0})
    assert slo.check(single) == ["1 user: p99 150 ms > 100 ms"]
    assert slo.check_rss(1000, 1050) == [] and "grew 12.0%" in slo.check_rss(1000, 1120)[0]
    table = markdown_table([clean])
    assert "| 8 users | 100.5 |" in table and table.count("\n") == 2


METRICS = """# HELP model_batch_size Rows per forward pass of the upload routes
# TYPE model_batch_size histogram
model_batch_size_bucket{le="1.0",model="mnist"} 2.0
model_batch_size_sum{model="mnist"} 40.0
model_batch_size_count{model="mnist"} 20.0
model_batch_size_sum{model="asl"} 0.0
model_batch_size_count{model="asl"} 0.0
bentoml_service_adaptive_batch_size_sum{method_name="mnist_probabilities",worker_index="1"} 30.0
bentoml_service_adaptive_batch_size_count{method_name="mnist_probabilities",worker_index="1"} 10.0
"""


def test_mean_batch_size_from_metrics():
    after = batch_counters(METRICS)
    assert after == {"mnist": {"sum": 40.0, "count": 20.0}, "asl": {"sum": 0.0, "count": 0.0}}
    before = {"mnist": {"sum": 10.0, "count": 10.0}}
    assert mean_batch_sizes(before, after) == {"mnist": 3.0, "asl": None}
    assert mean_batch_sizes(after, after) == {"mnist": None, "asl": None}


def test_profile_buckets():
    worker = 'process 1:"python -m _bentoml_impl.worker.service . --service-name front";'
    raw = "\n".join([
        worker + 'run (uvicorn/server.py:1);prepare_upload (preprocessing/__init__.py:90);'
                 'decode_image (preprocessing/decode.py:140);open (PIL/Image.py:3000) 30',
        worker + 'find_digit (preprocessing/digits.py:300);morphologyEx (cv2/__init__.py:1) 20',
        worker + 'EpollSelector.select (selectors.py:468) 500',
        'process 2:"python -m _bentoml_impl.worker.service . --service-name models";'
        'Batcher._drain (execution/batching.py:78);CompiledForward.__call__ (execution/forward.py:81);'
        'CompiledForward._jax_pass.<locals>.<lambda> (execution/forward.py:66) 50',
    ])
    result = profile.breakdown(raw)
    front = result["bentoml worker front"]
    assert front == {"image decode (Pillow)": 30, "preprocessing (OpenCV, numpy)": 20, "idle (waiting)": 500}
    assert result["bentoml worker models"] == {"model forward (Keras/TF/JAX)": 50}  # JAX runs without Python frames
    table = profile.markdown(result)
    assert "| image decode (Pillow) | 60.0 % |" in table and "idle" not in table


# ---- the hand-written servers of the benchmark ---------------------------------------------------

def test_numpy_floor_matches_keras_and_answers_like_the_service(served_models, monkeypatch):
    from starlette.testclient import TestClient

    from loadtest.alternatives.common import NumpyMLP, stored_models
    from training import store

    for route, entry in stored_models().items():
        assert entry.tag == served_models[route]
        keras_model, _ = store.load_model(entry.tag)
        x = np.random.default_rng(1).random((5, 784)).astype(np.float32)
        np.testing.assert_allclose(NumpyMLP(entry.path)(x), np.asarray(keras_model(x, training=False)), atol=1e-5)

    from loadtest.alternatives import floor

    images = load_images("synthetic")
    with TestClient(floor.app) as client:
        for route in ("mnist", "asl"):
            upload = images.uploads[route][0]
            n = len(floor.STORED[route].metadata.class_names)
            r = client.post(f"/{route}/predict", content=multipart([part_bytes("image", upload)], n),
                            headers={"Content-Type": CONTENT_TYPE})
            assert r.status_code == 200, r.text
            check_prediction(r.json(), route, n)
            parts = [part_bytes("images", u) for u in images.uploads[route][:3]]
            r = client.post(f"/{route}/predict_batch", content=multipart(parts, None),
                            headers={"Content-Type": CONTENT_TYPE})
            assert [check_prediction(p, route, 3) for p in r.json()["predictions"]]
        bad = Upload("mnist", "x.png", "image/png", b"not an image", None, "png")
        r = client.post("/mnist/predict", content=multipart([part_bytes("image", bad)], None),
                        headers={"Content-Type": CONTENT_TYPE})
        assert r.status_code == 400 and "error" in r.json()


def test_bench_report_formats_results(tmp_path):
    from loadtest.bench import report, specs

    assert {"1", "2", "3", "4", "5", "base"} == set(specs())
    assert specs()["2"].env == {"BATCHING": "off"}

    def step(label, rps, p99, users=16, batch=None):
        return Step(label=label, users=users, requests=int(rps * 10), failures=0, rps=rps, p50_ms=p99 / 3,
                    p95_ms=p99 / 1.5, p99_ms=p99, batch_size={"m": batch} if batch else {},
                    cpu={"server": 150, "locust": 30, "other": 5})

    results = {key: {"name": name, "config": "c", "closed": [step("16 users", rps, 90)],
                     "paced": step("50 req/s offered", rps / 2, 40), "best": step("16 users", rps, 90, batch=3.0),
                     "small": step("small PNG, 32 users", rps * 1.5, 60) if key != "4" else None,
                     "rss_mib": 900, "profile_md": "**x**" if key == "1" else None}
               for key, name, rps in (("1", "1 service", 200.0), ("4", "4 careful", 80.0), ("5", "5 floor", 220.0))}

    class Args:
        seconds, warmup, rate_users, pin_locust, profile_seconds, rounds, small_users = 15, 4, 32, None, 10, 2, 32

    md = report(results, 100.0, [16, 64], Args, {"cpus": 2, "cpu": "x", "memory_gib": 8,
                                               "load_average_before": (0.1, 0.2, 0.3)}, "synthetic", 60)
    assert "(1) ≥ 2× (4) careful: 200.0 vs 80.0 req/s = 2.50× → **met**" in md
    assert "(1) ≥ 0.8× (5) floor: 200.0 vs 220.0 req/s = 0.91× → **met**" in md
    assert "p99 40 ms" in md and "## Where the time goes: 1 service" in md
    assert "(1) ≥ 0.8× (5) floor on small uploads: 300.0 vs 330.0 req/s = 0.91× → **met**" in md
    assert "## Small uploads" in md


# ---- short real runs against the session's service -----------------------------------------------

def test_sweep_against_the_service_writes_reports_and_passes_its_slo(server, tmp_path):
    out = tmp_path / "loadtest"
    code = main(["sweep", "--host", server.url, "--server-pid", str(server.process.pid), "--users", "2 6",
                 "--seconds", "4", "--warmup", "0", "--out", str(out), "--slo-p99-ms", "5000"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, summary["misses"]
    steps = summary["steps"]
    assert [s["users"] for s in steps] == [2, 6]
    for s in steps:
        assert s["requests"] > 0 and s["failures"] == 0 and s["status"].keys() == {"200"}
        assert s["mean_batch"] is not None and s["mean_batch"] >= 1
        assert s["cpu"]["server"] > 0 and s["cpu"]["locust"] > 0
        assert s["images_per_request"] >= 1
    for name in ("u2_stats.csv", "u6_stats.csv", "u6.html", "summary.md", "latency_vs_throughput.png"):
        assert (out / name).is_file(), name
    text = (out / "summary.md").read_text()
    assert "| 6 users |" in text and "**SLO met.**" in text


def test_a_missed_slo_exits_non_zero(server, tmp_path):
    code = main(["sweep", "--host", server.url, "--users", "1", "--seconds", "2", "--warmup", "0",
                 "--out", str(tmp_path), "--slo-p99-ms-single-user", "0.01"])
    assert code == 1
    assert "SLO missed" in (tmp_path / "summary.md").read_text()


def test_short_soak_reports_rss(server, tmp_path):
    code = main(["soak", "--host", server.url, "--server-pid", str(server.process.pid), "--seconds", "4",
                 "--max-rps", "20", "--users", "4", "--warmup", "0", "--rss-every", "1", "--out", str(tmp_path),
                 "--slo-p99-ms", "5000"])
    result = json.loads((tmp_path / "soak.json").read_text())
    assert code == 0, result["misses"]
    assert result["rate"] == pytest.approx(14.0)
    assert len(result["rss_mib"]) >= 3 and result["rss_mib"][0][1] > 100
    assert result["step"]["failures"] == 0 and 5 <= result["step"]["rps"] <= 20
    assert "Server RSS" in (tmp_path / "soak.md").read_text()


def test_the_lean_load_generator_reads_whole_answers(server):
    """bench/loadgen.py (make bench-gpu's client): answers of every size, binary ones with an
    Inference-Header-Content-Length before their Content-Length, and no connection errors."""
    from bench import loadgen
    from bench.gpu import bulk_requests, upload_requests

    for requests_ in (upload_requests("127.0.0.1")[:20], bulk_requests("127.0.0.1", "UINT8", rows=64)):
        result = loadgen.run(server.url, requests_, concurrency=2, seconds=1.5, warmup=0.3, processes=1)
        assert result.answers > 2 and result.ok == result.answers and result.failures == 0, result
