"""End-to-end tests of the web page (service/web/, mounted by service/web_ui.py) in a real browser.

Debian's Chromium (/usr/bin/chromium, never a Playwright browser download) driven by Playwright,
against the session's real `bentoml serve` (fixture `server`). The tests draw with real pointer
events (mouse, and touch on a phone-sized screen), upload and drop images, use a fake webcam,
trigger API errors, and save screenshots under reports/ui/.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw

from catalog import ROUTES, family

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing: pip install -e '.[dev]'"
)

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "reports" / "ui"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # a fake camera that the page may use without a permission prompt (the webcam test)
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 375, "height": 740}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True}
TOP_K = 5  # what the page asks for

# digits as strokes in canvas fractions (0..1)
SEVEN = [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]]
ONE = [[(0.52, 0.15), (0.48, 0.85)]]
ZERO = [[(0.5 + 0.22 * math.sin(t), 0.5 - 0.33 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, 40)]]


def real_models() -> bool:
    """Whether the session's models were trained on the real data sets (see conftest.served_models)."""
    value = os.environ.get("DATA_DIR")
    return bool(value) and (Path(value) / "mnist.npz").is_file()


@dataclass
class Tab:
    """A page plus what it did: uncaught errors, console errors, and every URL it requested."""

    page: object
    base: str
    problems: list = field(default_factory=list)
    urls: list = field(default_factory=list)

    def check_clean(self) -> None:
        assert not self.problems, self.problems
        outside = [u for u in self.urls if not u.startswith((self.base, "data:", "blob:"))]
        assert not outside, f"the page fetched from elsewhere: {outside}"

    def shot(self, name: str, full_page: bool = True) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def opener(browser, base: str, contexts: list):
    """A function that opens a path of the page served at ``base`` in a new browser context."""

    def open_(path: str = "/", prefix: str = "", **options) -> Tab:
        """``prefix``: as behind a proxy that adds this path prefix (the browser asks for
        ``<prefix>/...``, the service gets ``/...``; redirects reach the browser as they are)."""
        context = browser.new_context(base_url=base, **{**DESKTOP, **options})
        contexts.append(context)
        if prefix:
            behind = base + prefix
            context.route(re.compile(f"^{re.escape(behind)}/"), lambda route: route.fulfill(response=route.fetch(
                url=base + route.request.url[len(behind):], max_redirects=0)))
        page = context.new_page()
        page.set_default_timeout(20_000)
        tab = Tab(page, base)
        page.on("pageerror", lambda error: tab.problems.append(f"uncaught: {error}"))
        page.on("console", lambda message: tab.problems.append(f"console: {message.text}")
                if message.type == "error" and "Failed to load resource" not in message.text else None)
        page.on("request", lambda request: tab.urls.append(request.url))
        page.goto(prefix + path)
        page.wait_for_selector("html[data-ready=true]")
        return tab

    return open_


@pytest.fixture
def open_page(browser, server):
    """The page of the session's real `bentoml serve` (trained models)."""
    contexts = []
    yield opener(browser, server.url, contexts)
    for context in contexts:
        context.close()


@dataclass
class FakeModel:
    """What the page server's stand-in for POST /mnist/predict answers, after ``delay`` seconds."""

    body: dict
    delay: float = 0.0
    requests: int = 0
    pending: int = 0


def fake_answer(label: str = "7", confidence: float = 0.93) -> dict:
    """A confident answer in the API's shape (an all-black 28x28 image as what the model saw)."""
    rest = [c for c in "0123456789" if c != label][:TOP_K - 1]
    top = [(label, confidence)] + [(c, (1 - confidence) / len(rest)) for c in rest]
    seen = "data:image/png;base64," + base64.b64encode(png(np.zeros((28, 28)))).decode()
    return {"found": True, "unsure": False, "label": label, "index": int(label), "confidence": confidence,
            "top_k": [{"label": c, "probability": p} for c, p in top], "reason": None,
            "model": "mnist_dense:fake", "input_image": seen}


@pytest.fixture(scope="module")
def page_server():
    """Only the page (service/web_ui.py's routes, as the service mounts them) plus a stand-in for
    POST /mnist/predict that answers ``fake.body`` after ``fake.delay`` seconds: for the tests of
    the page itself, which need no trained model. Yields (url, fake)."""
    import asyncio
    import threading

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from service.web_ui import mount_ui

    fake = FakeModel(body=fake_answer())
    app = FastAPI()

    async def predict(request):
        await request.body()
        fake.requests += 1
        fake.pending += 1
        try:
            await asyncio.sleep(fake.delay)
            return JSONResponse(fake.body)
        finally:
            fake.pending -= 1

    app.router.add_route("/mnist/predict", predict, methods=["POST"])  # plain Starlette: no schema
    mount_ui(app)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the page server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", fake
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def open_bare_page(browser, page_server):
    """The page served without models (see ``page_server``); ``fake`` sets its answers."""
    url, fake = page_server
    fake.body, fake.delay = fake_answer(), 0.0
    contexts = []
    yield opener(browser, url, contexts)
    for context in contexts:
        context.close()


# ------------------------------------------------------------------ helpers


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def polyline(points, step: float = 4.0):
    """Points every `step` pixels along the polyline."""
    out = [points[0]]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(1, n + 1)]
    return out


def canvas_points(page, stroke):
    canvas = page.locator("#digit-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    return polyline([(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke])


def mouse_draw(page, strokes, pause_ms: int = 0):
    """Draw with the mouse (Chromium turns it into pointerdown/move/up, pointerType 'mouse')."""
    for stroke in strokes:
        points = canvas_points(page, stroke)
        page.mouse.move(*points[0])
        page.mouse.down()
        for i, point in enumerate(points[1:]):
            page.mouse.move(*point)
            if pause_ms and i % 5 == 0:
                page.wait_for_timeout(pause_ms)
        page.mouse.up()


def touch_draw(page, strokes):
    """Draw with a finger: raw CDP touch events, which Chromium turns into pointerType 'touch'."""
    cdp = page.context.new_cdp_session(page)
    for stroke in strokes:
        points = canvas_points(page, stroke)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [
            {"x": points[0][0], "y": points[0][1]}]})
        for x, y in points[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def wait_until(page, expression: str, timeout: float = 20) -> None:
    """Poll a JavaScript expression (page.wait_for_function evaluates strings with eval, which the
    page's Content-Security-Policy forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(100)


def expect_prediction(page, route: str):
    return page.expect_response(lambda r: r.url.endswith(f"/{route}/predict") and r.request.method == "POST")


def shown_answer(page, panel: str) -> dict:
    """What the page shows in a panel's answer, read from the DOM."""
    answer = page.locator(f"#{panel} .answer")
    answer.wait_for(state="visible")
    page.locator(f"#{panel} .result:not(.busy)").wait_for()
    return page.evaluate(
        """(panel) => {
            const root = document.querySelector('#' + panel + ' .result');
            const rows = [...root.querySelectorAll('.bars li')];
            const seen = root.querySelector('[data-field=seen]');
            return {
                label: root.querySelector('[data-field=label]').textContent,
                sentence: root.querySelector('[data-field=sentence]').textContent,
                confidence: root.querySelector('[data-field=confidence]').textContent,
                chartShown: !root.querySelector('.chart').hidden,
                status: root.querySelector('.status').textContent,
                model: root.querySelector('[data-field=model]').textContent,
                bars: rows.map(li => ({
                    label: li.querySelector('.bar-label').textContent,
                    value: li.querySelector('.bar-value').textContent,
                    fraction: li.querySelector('.bar-fill').getBoundingClientRect().width
                              / li.querySelector('.bar-track').getBoundingClientRect().width,
                })),
                seen: {width: seen.naturalWidth, height: seen.naturalHeight, complete: seen.complete,
                       src: seen.getAttribute('src')},
                originalShown: !root.querySelector('.original').hidden,
            };
        }""",
        panel,
    )


def check_answer_matches_api(shown: dict, body: dict, tag: str, route: str) -> None:
    """The page shows the API's answer (``route``'s family): a confident label, "Not sure: maybe ...",
    or "No ... found"."""
    assert shown["model"] == body["model"] == tag
    assert shown["seen"]["src"] == body["input_image"]
    if not body["found"]:
        assert shown["label"] == "–" and re.fullmatch(r"No (digit|hand) found", shown["sentence"])
        assert shown["bars"] == [] and not shown["chartShown"]
        assert shown["sentence"].lower() in shown["status"].lower()
        return
    assert body["label"] in family(route).class_names and body["label"] in shown["status"]
    if body["unsure"]:
        assert shown["label"] == "?" and shown["sentence"].startswith(f"Not sure: maybe {body['label']}")
    else:
        assert shown["label"] == body["label"] and shown["sentence"].startswith("Most likely")
    assert [bar["label"] for bar in shown["bars"]] == [e["label"] for e in body["top_k"]]
    assert len(shown["bars"]) == TOP_K
    for bar, entry in zip(shown["bars"], body["top_k"]):
        assert bar["value"].endswith("%")
        assert abs(bar["fraction"] - entry["probability"]) < 0.03, (bar, entry)
    assert shown["seen"]["src"] == body["input_image"]
    assert (shown["seen"]["width"], shown["seen"]["height"]) == (28, 28)


def photo_of_a_one() -> bytes:
    """A photo of a '1': dark ink on light grey paper, PNG."""
    paper = np.full((300, 240), 228, np.uint8)
    paper[60:250, 112:130] = 30
    return png(paper)


def pick_digit_photo(page, name: str) -> None:
    """Choose a photo of a '1' in the digit panel's file picker."""
    page.set_input_files("#digit-file", files=[{"name": name, "mimeType": "image/png", "buffer": photo_of_a_one()}])


def drop_file(page, panel: str, data: bytes, name: str, mime: str) -> None:
    """Drag-and-drop a file onto an element: a DataTransfer with a File, dragenter + drop events."""
    transfer = page.evaluate_handle(
        """([b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: mime}));
            return transfer;
        }""",
        [base64.b64encode(data).decode("ascii"), name, mime],
    )
    zone = f"#{panel} .drop"
    page.dispatch_event(zone, "dragenter", {"dataTransfer": transfer})
    assert "dragging" in page.get_attribute(zone, "class")  # the drop zone lights up
    page.dispatch_event(zone, "drop", {"dataTransfer": transfer})
    assert "dragging" not in page.get_attribute(zone, "class")


def sign_photo() -> bytes:
    """A synthetic 'photo': a light hand-like blob on a darker, uneven background, 360x300 RGB."""
    image = Image.new("RGB", (360, 300), (70, 80, 95))
    draw = ImageDraw.Draw(image)
    draw.ellipse((120, 90, 240, 260), fill=(225, 190, 160))
    for i in range(4):
        draw.rounded_rectangle((128 + 28 * i, 20, 148 + 28 * i, 140), radius=9, fill=(225, 190, 160))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------ the page, its links, its tabs


def test_root_opens_the_page_and_the_openapi_page_is_linked(open_page, server):
    tab = open_page("/")
    page = tab.page
    assert page.url == f"{server.url}/ui/"
    assert page.title().startswith("Digits and signs")
    assert page.get_by_role("tab", name="Digits").get_attribute("aria-selected") == "true"
    assert page.locator("#panel-digits").is_visible() and page.locator("#panel-signs").is_hidden()
    # /ui without the slash, and the API spec does not list the page's routes
    assert requests.get(f"{server.url}/ui", timeout=10).url == f"{server.url}/ui/"
    spec = requests.get(f"{server.url}/docs.json", timeout=10).json()
    assert not {"/", "/ui", "/ui/", "/docs"} & set(spec["paths"])
    tab.check_clean()
    # the OpenAPI page moved from / to /docs, linked from the page. It is BentoML's own page,
    # unchanged, which also loads badges and Google Tag Manager from the internet: cut those off
    # (as offline) and check that it still renders the API from its local assets.
    page.context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    page.get_by_role("link", name="API reference (OpenAPI)").click()
    page.wait_for_url(f"{server.url}/docs")
    page.locator(".opblock-summary-path", has_text="/mnist/predict").first.wait_for()
    assert page.locator(".opblock-summary-path", has_text="/asl/predict_batch").count() == 1
    tab.shot("openapi-docs.png", full_page=False)


@pytest.mark.parametrize("prefix", ["", "/behind/a/proxy"], ids=["at-the-root", "behind-a-path-prefix"])
def test_the_api_reference_sends_a_picked_file_with_try_it_out(open_page, server, served_models, prefix):
    """/docs as a new user meets it: the upload routes first, a servers box that names this
    service, and "Try it out" on POST /mnist/predict with a PNG from the file picker shows the
    answer; also behind a proxy that adds a path prefix."""
    tab = open_page("/docs", prefix=prefix)
    page = tab.page
    page.locator(".opblock").first.wait_for()
    shown_paths = page.evaluate("[...document.querySelectorAll('.opblock-summary-path')].map(e => e.dataset.path)")
    uploads = [f"/{route}/{name}" for route in ROUTES for name in ("predict", "predict_batch")]
    assert shown_paths[:len(uploads)] == uploads and len(shown_paths) > len(uploads), shown_paths
    chosen = page.locator(".servers select option:checked").inner_text()
    assert chosen.strip() not in (".", "./") and "this service" in chosen, chosen

    operation = page.locator("#operations-mnist-mnist_predict")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator("input[type=file]").set_input_files(
        files=[{"name": "one.png", "mimeType": "image/png", "buffer": photo_of_a_one()}])
    url = f"{server.url}{prefix}/mnist/predict"
    with page.expect_response(lambda r: r.url == url and r.request.method == "POST") as response:
        operation.get_by_role("button", name="Execute").click()
    assert response.value.status == 200, response.value.text()
    answer = operation.locator(".live-responses-table tbody")
    assert answer.locator(".response-col_status").inner_text().strip() == "200"
    body = json.loads(answer.locator(".response-col_description pre").first.inner_text())
    assert body == response.value.json()
    assert body["label"] in family("mnist").class_names and body["model"] == served_models["mnist"]
    if real_models():
        assert body["label"] == "1"
    assert operation.locator(".request-url pre").inner_text().strip() == url
    tab.check_clean()
    tab.shot(f"openapi-try-it-out{'-behind-a-prefix' if prefix else ''}.png")


def test_tabs_follow_the_keyboard_and_every_control_is_labelled(open_page, server):
    tab = open_page("/ui/")
    page = tab.page
    digits, signs = page.locator("#tab-digits"), page.locator("#tab-signs")
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.className") == "skip-link"
    digits.focus()
    page.keyboard.press("ArrowRight")
    assert signs.get_attribute("aria-selected") == "true" and signs.get_attribute("tabindex") == "0"
    assert digits.get_attribute("aria-selected") == "false" and digits.get_attribute("tabindex") == "-1"
    assert page.evaluate("document.activeElement.id") == "tab-signs"
    assert page.locator("#panel-signs").is_visible() and page.locator("#panel-digits").is_hidden()
    assert page.url.endswith("#signs")
    page.keyboard.press("ArrowRight")  # wraps around
    assert digits.get_attribute("aria-selected") == "true"
    page.keyboard.press("End")
    assert signs.get_attribute("aria-selected") == "true"
    page.keyboard.press("Home")
    assert digits.get_attribute("aria-selected") == "true"
    # Tab from the selected tab goes into its panel, not to the other tab
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") != "tab-signs"
    # a link to the Signs tab opens it
    page.goto("/ui/#signs")  # same document: the hash changes
    assert signs.get_attribute("aria-selected") == "true" and page.locator("#panel-signs").is_visible()
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, button, canvas, video, [role=tab]')]
              .filter(el => !((el.labels && el.labels.length) || el.getAttribute('aria-label')
                              || el.getAttribute('aria-labelledby') || el.textContent.trim()))
              .map(el => el.outerHTML.slice(0, 80))"""
    )
    assert not unlabelled
    assert page.evaluate("document.documentElement.lang") == "en"
    page.reload()
    page.wait_for_selector("html[data-ready=true]")
    assert signs.get_attribute("aria-selected") == "true"  # a fresh load of /ui/#signs too
    tab.check_clean()


# ------------------------------------------------------------------ digits: draw, clear, live


def test_drawing_a_digit_with_the_mouse_shows_the_answer(open_page, served_models):
    tab = open_page("/ui/")
    page = tab.page
    with expect_prediction(page, "mnist") as response:
        mouse_draw(page, SEVEN)
    body = response.value.json()
    shown = shown_answer(page, "panel-digits")
    check_answer_matches_api(shown, body, served_models["mnist"], "mnist")
    assert not shown["originalShown"]  # the drawing is its own preview
    if real_models():
        assert body["label"] == "7", body
    # the preprocessed image really holds the drawing: ink roughly in MNIST's 20x20 box
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["input_image"].split(",", 1)[1]))))
    rows, cols = np.nonzero(seen > 64)
    assert 16 <= rows.max() - rows.min() + 1 <= 21 and 6 <= cols.max() - cols.min() + 1 <= 21
    tab.shot("desktop-digits.png")

    page.get_by_role("button", name="Clear").click()
    assert page.locator("#panel-digits .answer").is_hidden()
    assert "Draw a digit" in page.locator("#panel-digits .status").text_content()
    blank = page.evaluate("""() => {
        const c = document.getElementById('digit-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return d.every(v => v === 255);
    }""")
    assert blank
    tab.check_clean()


def test_predict_while_drawing_sends_during_the_stroke(open_page):
    tab = open_page("/ui/")
    page = tab.page
    page.get_by_label("Predict while drawing").check()
    sent = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/mnist/predict") else None)
    with expect_prediction(page, "mnist"):
        mouse_draw(page, ONE, pause_ms=120)
    shown_answer(page, "panel-digits")
    assert len(sent) >= 2, sent  # at least one while drawing, and the final one on release
    if real_models():
        assert page.locator("#panel-digits [data-field=label]").text_content() == "1"
    tab.check_clean()


def test_touch_drawing_on_a_phone_sized_screen(open_page, served_models):
    tab = open_page("/ui/", **PHONE)
    page = tab.page
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    width = page.locator("#digit-canvas").bounding_box()["width"]
    assert 250 <= width <= 345
    pointer_types = page.evaluate_handle("""() => {
        const seen = [];
        document.getElementById('digit-canvas').addEventListener('pointerdown', e => seen.push(e.pointerType));
        return seen;
    }""")
    page.locator("#digit-canvas").scroll_into_view_if_needed()
    below_the_fold = page.evaluate("document.querySelector('#panel-digits .result').getBoundingClientRect().top"
                                   " > window.innerHeight - 60")
    scrolled = page.evaluate("window.scrollY")
    assert not pad_headline(page)["shown"]  # the help text in its place until there is an answer
    with expect_prediction(page, "mnist") as response:
        touch_draw(page, ZERO)
    body = response.value.json()
    assert pointer_types.json_value() == ["touch"]
    shown = shown_answer(page, "panel-digits")
    check_answer_matches_api(shown, body, served_models["mnist"], "mnist")
    if real_models():
        assert body["label"] == "0", body
    # lifting the finger shows the answer's headline right under the pad, on screen, and the page
    # does not scroll (a finger on its way to Clear would land elsewhere)
    assert below_the_fold, "the answer was on screen already: this test no longer tests its headline"
    headline = pad_headline(page)
    assert headline["shown"] and headline["inView"], headline
    assert (headline["label"], headline["headline"]) == (shown["label"], shown["sentence"])
    page.wait_for_timeout(500)
    assert page.evaluate("window.scrollY") == scrolled
    assert page.evaluate("window.scrollX") == 0  # drawing did not pan the page
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    tab.shot("phone-digits.png", full_page=False)
    tab.check_clean()


def pad_headline(page) -> dict:
    """The answer's headline under the drawing pad (phones): shown, inside the viewport, its texts."""
    return page.evaluate("""() => {
        const note = document.querySelector('#panel-digits .pad-answer');
        const box = note.getBoundingClientRect();
        const text = (name) => note.querySelector(name).textContent;
        return {shown: getComputedStyle(note).display !== 'none' && getComputedStyle(note).visibility === 'visible',
                inView: box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight,
                label: text('.pad-label'), headline: text('.pad-headline'), detail: text('.pad-detail')};
    }""")


# the big label and the sentence of a panel's answer (or its error) lie inside the viewport
HEADLINE_IN_VIEW = """(() => {
    const root = document.querySelector('#%s .result');
    const answer = root.querySelector('.answer');
    const box = (answer.hidden ? root.querySelector('.error') : answer.querySelector('.answer-main'))
        .getBoundingClientRect();
    return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight;
})()"""

PAD_IS_BLANK = """(() => {
    const c = document.getElementById('digit-canvas');
    return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.every(v => v === 255);
})()"""


# the pad is blank, no answer is shown, and the status is the idle text again
PAD_IS_CLEARED = """(() => {
    const c = document.getElementById('digit-canvas');
    const blank = c.getContext('2d').getImageData(0, 0, c.width, c.height).data.every(v => v === 255);
    const panel = document.getElementById('panel-digits');
    const result = panel.querySelector('.result');
    return blank && result.querySelector('.answer').hidden && result.querySelector('.error').hidden
        && !result.classList.contains('busy')
        && result.querySelector('.status').textContent === panel.dataset.idle;
})()"""

CLEAR_TRIALS = 30

# scroll the page as a phone user holds it to draw: the pad and Clear on screen, Clear at the bottom
HOLD_THE_PAD = """(() => {
    const box = document.getElementById('digit-clear').getBoundingClientRect();
    window.scrollBy(0, box.bottom - (window.innerHeight - 8));
})()"""


def test_clear_always_clears_after_a_touch_drawing(open_bare_page, page_server):
    """A finger draws a digit, lifts, and taps Clear 0 to 1.5 s later, where Clear was at the
    lift, while the answer takes 0.3 to 1 s: every tap clears the pad and the answer (none
    arrives later onto the cleared pad), and Clear never moves between the lift and the tap."""
    _, fake = page_server
    tab = open_bare_page("/ui/", **PHONE)
    page = tab.page
    clear = page.locator("#digit-clear")
    answer_delays = [0.3, 0.6, 1.0]
    tap_delays = np.linspace(0.0, 1.5, CLEAR_TRIALS)
    missed, moved = [], []
    for i, tap_delay in enumerate(tap_delays):
        fake.delay = answer_delays[i % len(answer_delays)]
        page.evaluate(HOLD_THE_PAD)  # the answer below the fold, as on a phone
        asked = fake.requests
        touch_draw(page, SEVEN if i % 2 else ONE)
        lifted = clear.bounding_box()
        page.wait_for_timeout(int(tap_delay * 1000))
        before_tap = clear.bounding_box()
        page.touchscreen.tap(lifted["x"] + lifted["width"] / 2, lifted["y"] + lifted["height"] / 2)
        # long enough for the answer to the drawing (sent at the lift, or just after) to arrive
        deadline = time.monotonic() + fake.delay + 2
        while (fake.requests == asked or fake.pending) and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        page.wait_for_timeout(150)
        trial = f"answer after {fake.delay:.1f} s, tap after {tap_delay:.2f} s"
        if not page.evaluate(PAD_IS_CLEARED):
            status = page.locator("#panel-digits .status").text_content()
            missed.append(f"{trial}: blank {page.evaluate(PAD_IS_BLANK)}, status {status!r}")
            page.evaluate(HOLD_THE_PAD)
            clear.tap()  # cleared for the next trial
        if before_tap != lifted:
            moved.append(f"{trial}: {lifted} -> {before_tap}")
    print(f"Clear taps missed: {len(missed)} of {CLEAR_TRIALS}; Clear moved before the tap: "
          f"{len(moved)} of {CLEAR_TRIALS}")
    assert not missed, f"{len(missed)} of {CLEAR_TRIALS} taps on Clear did not clear: {missed}"
    assert not moved, f"Clear moved between the lift and the tap in {len(moved)} of {CLEAR_TRIALS}: {moved}"
    tab.check_clean()


@pytest.mark.parametrize("options", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_pen_is_the_same_share_of_the_pad_at_any_size(open_page, options):
    tab = open_page("/ui/", **options)
    page = tab.page
    with expect_prediction(page, "mnist"):
        mouse_draw(page, [[(0.2, 0.5), (0.8, 0.5)]])  # one horizontal stroke
    pad = page.evaluate("""() => {
        const c = document.getElementById('digit-canvas');
        const column = c.getContext('2d').getImageData(Math.round(c.width / 2), 0, 1, c.height).data;
        let ink = 0;
        for (let i = 0; i < column.length; i += 4) if (column[i] < 128) ink += 1;
        return {ink, side: c.width, css: c.getBoundingClientRect().width, ratio: window.devicePixelRatio};
    }""")
    assert pad["side"] == round(pad["css"] * pad["ratio"])  # one canvas pixel per screen pixel: sharp
    assert pad["ink"] / pad["side"] == pytest.approx(0.08, abs=0.01), pad  # the page's PEN_WIDTH
    tab.check_clean()


def test_a_new_photo_clears_the_drawing(open_page, served_models):
    tab = open_page("/ui/")
    page = tab.page
    with expect_prediction(page, "mnist"):
        mouse_draw(page, SEVEN)
    shown_answer(page, "panel-digits")
    assert not page.evaluate(PAD_IS_BLANK)
    with expect_prediction(page, "mnist") as response:
        pick_digit_photo(page, "photo.png")
    shown = shown_answer(page, "panel-digits")
    check_answer_matches_api(shown, response.value.json(), served_models["mnist"], "mnist")
    assert page.evaluate(PAD_IS_BLANK), "the old drawing still stands next to the photo's answer"
    assert "photo.png" in shown["status"] and shown["originalShown"]
    # drawing again replaces the photo's answer at the first touch, then answers for the drawing
    with expect_prediction(page, "mnist"):
        mouse_draw(page, ONE)
    shown = shown_answer(page, "panel-digits")
    assert "your drawing" in shown["status"] and not shown["originalShown"]
    tab.check_clean()


def test_a_blank_drawing_shows_no_digit_found(open_page, served_models):
    tab = open_page("/ui/")
    page = tab.page
    # a pen as white as the paper: the page sends a drawing with nothing on it
    page.evaluate("() => { const p = document.getElementById('digit-canvas').getContext('2d');"
                  " p.fillStyle = p.strokeStyle = '#fff'; }")
    with expect_prediction(page, "mnist") as response:
        mouse_draw(page, SEVEN)
    body = response.value.json()
    assert body["found"] is False and body["label"] is None
    shown = shown_answer(page, "panel-digits")
    check_answer_matches_api(shown, body, served_models["mnist"], "mnist")
    assert shown["sentence"] == "No digit found" and shown["confidence"].endswith(".")
    tab.shot("desktop-no-digit.png")
    tab.check_clean()


def test_an_unsure_answer_says_not_sure_instead_of_a_label(open_bare_page):
    """The page's rendering of ``unsure: true`` (the answer is fixed here; tests/test_answers.py has
    the service's side)."""
    tab = open_bare_page("/ui/")
    page = tab.page
    top = [("4", 0.41), ("9", 0.38), ("7", 0.12), ("1", 0.05), ("2", 0.02)]
    seen = "data:image/png;base64," + base64.b64encode(png(np.zeros((28, 28)))).decode()
    unsure = {"found": True, "unsure": True, "label": "4", "index": 4, "confidence": 0.41,
              "top_k": [{"label": label, "probability": p} for label, p in top],
              "reason": "the model is not sure: its confidence 0.41 is below 0.60",
              "model": "mnist_dense:fixed", "input_image": seen}
    page.route("**/mnist/predict", lambda route: route.fulfill(status=200, content_type="application/json",
                                                               body=json.dumps(unsure)))
    mouse_draw(page, ONE)
    shown = shown_answer(page, "panel-digits")
    check_answer_matches_api(shown, unsure, "mnist_dense:fixed", "mnist")
    assert shown["label"] == "?" and shown["sentence"] == "Not sure: maybe 4 or 9"
    assert "41" in shown["confidence"] and shown["chartShown"]
    tab.shot("desktop-unsure.png")
    tab.check_clean()


@pytest.mark.parametrize("options", [DESKTOP, PHONE], ids=["desktop-mouse", "phone-touch"])
def test_a_drawing_that_is_not_a_digit_says_so(open_bare_page, options):
    """Drawings answered ``found: false`` with a reason, or ``unsure: true`` (answers fixed by
    route interception): no big digit, the reason or "not sure" in words, as for photos; on a
    phone also in the headline under the pad."""
    tab = open_bare_page("/ui/", **options)
    page = tab.page
    phone = options is PHONE
    draw = touch_draw if phone else mouse_draw
    seen = "data:image/png;base64," + base64.b64encode(png(np.zeros((28, 28)))).decode()
    dot = {"found": False, "unsure": False, "label": None, "index": None, "confidence": None, "top_k": [],
           "reason": "no digit found: only a dot", "model": "mnist_dense:fixed", "input_image": seen}
    unsure = {**fake_answer("4", 0.41), "unsure": True, "model": "mnist_dense:fixed",
              "reason": "the model is not sure: its confidence 0.41 is below 0.60"}
    unsure["top_k"][1] = {"label": "9", "probability": 0.38}
    answers = [dot, unsure]
    page.route("**/mnist/predict", lambda route: route.fulfill(status=200, content_type="application/json",
                                                               body=json.dumps(answers[0])))
    draw(page, [[(0.5, 0.5), (0.51, 0.5)]])  # a dot
    shown = shown_answer(page, "panel-digits")
    check_answer_matches_api(shown, dot, "mnist_dense:fixed", "mnist")
    assert shown["sentence"] == "No digit found" and shown["confidence"] == "No digit found: only a dot."
    assert "no digit found" in shown["status"].lower()
    assert page.locator("#panel-digits .big-label").text_content() == "–"
    if phone:
        headline = pad_headline(page)
        assert headline["shown"] and headline["inView"], headline
        assert (headline["label"], headline["headline"], headline["detail"]) == ("–", "No digit found", "Only a dot.")
        tab.shot("phone-no-digit.png", full_page=False)
    else:
        assert not pad_headline(page)["shown"]  # beside the pad on a wide screen: no copy under it

    page.get_by_role("button", name="Clear").click()
    answers.pop(0)
    draw(page, ONE)
    shown = shown_answer(page, "panel-digits")
    check_answer_matches_api(shown, unsure, "mnist_dense:fixed", "mnist")
    assert shown["label"] == "?" and shown["sentence"] == "Not sure: maybe 4 or 9"
    assert "41" in shown["confidence"] and "not sure" in shown["status"]
    if phone:
        headline = pad_headline(page)
        assert (headline["label"], headline["headline"]) == ("?", "Not sure: maybe 4 or 9")
        assert "41" in headline["detail"]
    tab.check_clean()


def test_a_photo_answer_scrolls_into_view_unless_a_finger_touched_the_page(open_bare_page, page_server):
    """On a phone the answer to a photo lies below the fold: it scrolls into view when it comes,
    but not after a finger touched the page while it was on its way (a scroll would move what
    the finger aims at)."""
    _, fake = page_server
    tab = open_bare_page("/ui/", **PHONE)
    page = tab.page
    fake.delay = 0.5
    below = "document.querySelector('#panel-digits .result').getBoundingClientRect().top > window.innerHeight"
    assert page.evaluate(below)
    pick_digit_photo(page, "first.png")
    # its top at the top of the screen (scroll-margin-top: 12px), the smooth scroll over
    wait_until(page, "Math.abs(document.querySelector('#panel-digits .result').getBoundingClientRect().top - 12) < 1",
               timeout=5)
    assert page.locator("#panel-digits .answer").is_visible() and page.evaluate("window.scrollY") > 0

    page.evaluate("window.scrollTo(0, 0)")
    asked = fake.requests
    pick_digit_photo(page, "second.png")
    page.touchscreen.tap(360, 20)  # the header, before the answer comes
    shown = shown_answer(page, "panel-digits")
    assert fake.requests == asked + 1 and "second.png" in shown["status"]
    page.wait_for_timeout(800)
    assert page.evaluate("window.scrollY") == 0 and page.evaluate(below)
    tab.check_clean()


def test_a_digit_photo_from_the_file_picker(open_page, served_models):
    tab = open_page("/ui/")
    page = tab.page
    with expect_prediction(page, "mnist") as response:
        pick_digit_photo(page, "digit.png")
    shown = shown_answer(page, "panel-digits")
    check_answer_matches_api(shown, response.value.json(), served_models["mnist"], "mnist")
    assert shown["originalShown"] and "digit.png" in shown["status"]
    if real_models():
        assert response.value.json()["label"] == "1"
    tab.check_clean()


# ------------------------------------------------------------------ signs: upload, drop, camera


def test_a_sign_photo_upload_shows_the_bars(open_page, served_models):
    tab = open_page("/ui/")
    page = tab.page
    page.get_by_role("tab", name="Signs").click()
    with expect_prediction(page, "asl") as response:
        page.set_input_files("#sign-file", files=[{"name": "hand.png", "mimeType": "image/png",
                                                   "buffer": sign_photo()}])
    shown = shown_answer(page, "panel-signs")
    check_answer_matches_api(shown, response.value.json(), served_models["asl"], "asl")
    assert shown["originalShown"]
    assert page.locator("#panel-signs .bars li").first.is_visible()
    tab.shot("desktop-signs-synthetic.png")
    tab.check_clean()


def sign_rows(path: Path, n: int) -> list[tuple[str, np.ndarray]]:
    with gzip.open(path, "rt") as lines:
        next(lines)
        rows = [next(lines).split(",") for _ in range(n)]
    return [(chr(ord("A") + int(r[0])), np.array(r[1:], dtype=np.uint8).reshape(28, 28)) for r in rows]


def test_a_real_sign_image_dropped_on_the_page(open_page, served_models, real_data_dir, server):
    """Rows of Sign Language MNIST's test set, enlarged to photo size, dropped onto the Signs panel."""
    tab = open_page("/ui/#signs")
    page = tab.page
    hits = 0
    rows = sign_rows(real_data_dir / "sign_mnist_test.csv.gz", 6)
    for i, (letter, pixels) in enumerate(rows):
        photo = png(np.asarray(Image.fromarray(pixels).resize((224, 224), Image.Resampling.BICUBIC)))
        with expect_prediction(page, "asl") as response:
            drop_file(page, "panel-signs", photo, f"sign-{letter}.png", "image/png")
        body = response.value.json()
        shown = shown_answer(page, "panel-signs")
        check_answer_matches_api(shown, body, served_models["asl"], "asl")
        hits += letter in [bar["label"] for bar in shown["bars"]]
        if i == 0:
            tab.shot("desktop-signs-real.png")
    assert hits >= len(rows) // 2, f"the true letter was in the top {TOP_K} for only {hits} of {len(rows)}"
    tab.check_clean()


def test_webcam_snapshot_is_classified(open_page, served_models):
    tab = open_page("/ui/#signs")
    page = tab.page
    page.context.grant_permissions(["camera"])
    page.get_by_role("button", name="Start camera").click()
    page.locator("#sign-video").wait_for(state="visible")
    wait_until(page, "document.getElementById('sign-video').readyState >= 2")
    snap = page.get_by_role("button", name="Take snapshot")
    assert snap.is_visible() and page.evaluate("document.activeElement.id") == "camera-snap"
    with expect_prediction(page, "asl") as response:
        snap.click()
    shown = shown_answer(page, "panel-signs")
    check_answer_matches_api(shown, response.value.json(), served_models["asl"], "asl")
    assert shown["originalShown"] and "camera snapshot" in shown["status"]
    tab.shot("desktop-camera.png")
    # leaving the tab turns the camera off
    page.get_by_role("tab", name="Digits").click()
    assert page.evaluate("document.getElementById('sign-video').srcObject") is None
    tab.check_clean()


def test_a_photo_without_a_hand_shows_no_hand_found(open_page, served_models):
    tab = open_page("/ui/#signs")
    page = tab.page
    with expect_prediction(page, "asl") as response:
        page.set_input_files("#sign-file", files=[{"name": "dark.png", "mimeType": "image/png",
                                                   "buffer": png(np.zeros((300, 300)))}])
    body = response.value.json()
    assert body["found"] is False
    shown = shown_answer(page, "panel-signs")
    check_answer_matches_api(shown, body, served_models["asl"], "asl")
    assert shown["sentence"] == "No hand found"
    tab.check_clean()


def test_phone_layout_of_the_signs_tab(open_page, served_models):
    tab = open_page("/ui/#signs", **PHONE)
    page = tab.page
    with expect_prediction(page, "asl"):
        page.set_input_files("#sign-file", files=[{"name": "hand.png", "mimeType": "image/png",
                                                   "buffer": sign_photo()}])
    shown_answer(page, "panel-signs")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    tab.shot("phone-signs.png")
    tab.check_clean()


# ------------------------------------------------------------------ errors, in words


@pytest.mark.parametrize(
    "name, data, status, words",
    [
        ("notes.txt", b"hello, this is not an image\n", 400, "not an image we can read"),
        ("empty.png", b"", 400, "The file is empty; send an image (PNG, JPEG"),
        ("huge.jpg", b"\xff\xd8\xff" + b"\0" * (3 * 1024 * 1024 + 10), 413, "limit of 3 MiB"),
    ],
)
def test_api_errors_are_shown_in_words(open_page, name, data, status, words):
    tab = open_page("/ui/")
    page = tab.page
    with expect_prediction(page, "mnist") as response:
        mouse_draw(page, ONE)
    shown_answer(page, "panel-digits")
    with expect_prediction(page, "mnist") as response:
        page.set_input_files("#digit-file", files=[{"name": name, "mimeType": "application/octet-stream",
                                                    "buffer": data}])
    assert response.value.status == status
    alert = page.locator("#panel-digits [role=alert]")
    alert.wait_for(state="visible")
    assert words in alert.text_content()
    title = page.locator("#panel-digits .error-title").text_content()
    assert title == {400: "This image could not be used", 413: "This image is too large"}[status]
    assert "HTTP" not in alert.text_content() and str(status) not in title  # no jargon
    assert page.locator("#panel-digits .answer").is_hidden()  # no stale answer next to the error
    assert name in page.locator("#panel-digits .status").text_content()
    if status == 400:
        tab.shot("desktop-error.png")
    tab.check_clean()


def test_network_failures_and_non_json_answers_are_shown_in_words(open_bare_page):
    tab = open_bare_page("/ui/")
    page = tab.page
    page.route("**/mnist/predict", lambda route: route.fulfill(status=502, body="Bad gateway",
                                                               content_type="text/plain"))
    mouse_draw(page, ONE)
    alert = page.locator("#panel-digits [role=alert]")
    alert.wait_for(state="visible")
    assert "502" in alert.text_content()
    page.unroute("**/mnist/predict")
    page.route("**/mnist/predict", lambda route: route.abort())
    mouse_draw(page, ONE)
    page.locator("#panel-digits [role=alert]", has_text="Could not reach the service").wait_for()
    tab.problems[:] = [p for p in tab.problems if "net::ERR_FAILED" not in p]
    tab.check_clean()
