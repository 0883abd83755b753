/* Digits and signs: the page that tries the two models.
 *
 * Plain JavaScript, no dependencies, no build step. It talks only to this service's own API,
 * with URLs relative to the page (/ui/ -> ../mnist/predict), so it works offline and behind a
 * proxy that adds a path prefix. Answers: {found, unsure, label, index, confidence, top_k, reason,
 * model, input_image}: found false = nothing to classify (no label), unsure = the label is only a
 * guess; errors: 4xx/503 with {"error": "..."}.
 */
"use strict";

(() => {
  const TOP_K = 5;
  const PEN_WIDTH = 0.08; // of the canvas side, at any size: thick strokes, like MNIST's after the 20x20 fit
  const SNAPSHOT_SIDE = 480; // camera snapshots are cropped to a square and shrunk to this

  const $ = (selector, root = document) => root.querySelector(selector);
  const apiUrl = (route) => new URL(`../${route}/predict`, document.baseURI).href;

  const percent = (p) => {
    if (p > 0 && p < 0.0005) return "<0.1\u00a0%";
    if (p < 1 && p >= 0.9995) return ">99.9\u00a0%";
    return `${(p * 100).toFixed(1)}\u00a0%`;
  };

  // ------------------------------------------------------------------ when the page may scroll

  /* Scrolling to an answer moves everything on the screen. A finger (or a mouse) that is about to
   * tap a control would land on something else: the page never scrolls while a pointer is down,
   * after any pointerdown since the request was sent, or within TOUCH_CALM ms of a touch or a pen;
   * a pointerdown stops a scroll under way. After a finger lifts from the drawing pad it does not
   * scroll at all: on a phone the headline shows right under the pad instead. */
  const TOUCH_CALM = 2000;
  const pointers = { down: new Set(), lastDown: -Infinity, lastTouch: -Infinity };
  const touchLike = (event) => event.pointerType !== "mouse";
  window.addEventListener("pointerdown", (event) => {
    pointers.down.add(event.pointerId);
    pointers.lastDown = performance.now();
    if (touchLike(event)) pointers.lastTouch = pointers.lastDown;
    scrolling.stop();
  }, true);
  for (const type of ["pointerup", "pointercancel"]) {
    window.addEventListener(type, (event) => {
      pointers.down.delete(event.pointerId);
      if (touchLike(event)) pointers.lastTouch = performance.now();
    }, true);
  }

  function mayScroll(askedAt) {
    const now = performance.now();
    return pointers.down.size === 0 && pointers.lastDown < askedAt && now - pointers.lastTouch > TOUCH_CALM;
  }

  /** A smooth scroll to an answer, stopped where it is by any pointerdown. */
  const scrolling = {
    active: false,
    timer: 0,
    start() {
      this.active = true;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => { this.active = false; }, 1500); // no scrollend everywhere
    },
    stop() {
      if (!this.active) return;
      this.active = false;
      clearTimeout(this.timer);
      window.scrollTo({ left: window.scrollX, top: window.scrollY, behavior: "instant" });
    },
  };
  window.addEventListener("scrollend", () => { scrolling.active = false; });

  // ------------------------------------------------------------------ one model's panel + answer

  class Panel {
    constructor(section) {
      this.section = section;
      this.route = section.dataset.route;
      this.idleText = section.dataset.idle;
      $(".result-slot", section).replaceWith($("#result-template").content.cloneNode(true));
      this.result = $(".result", section);
      this.status = $(".status", this.result);
      this.error = $(".error", this.result);
      this.answer = $(".answer", this.result);
      this.original = $(".original", this.result);
      this.field("seen-caption").textContent = section.dataset.seen;
      // the digits panel's short copy of the headline under the drawing pad (shown on phones)
      this.padNote = $(".pad-note", section);
      this.seq = 0; // answers to anything but the latest request are dropped
      this.inFlight = 0;
      this.previewUrl = null;
      $('[data-field="original"]', this.result).addEventListener("error", () => {
        this.original.hidden = true; // not an image the browser can show (the API says why)
      });
      this.reset();
    }

    field(name) {
      return $(`[data-field="${name}"]`, this.result);
    }

    setBusy(busy) {
      this.result.classList.toggle("busy", busy);
      this.answer.setAttribute("aria-busy", String(busy));
      if (busy) this.padLine("…", "Asking the model…", "", "busy");
    }

    /** The headline under the pad: one line each (cut short, never wrapped), so that its height
     * never changes and nothing below it (Clear) moves when an answer comes. `state`: "" = the
     * help text instead (no answer), else "busy", "found", "not-found", "unsure" or "error". */
    padLine(label, headline, detail, state) {
      if (!this.padNote) return;
      this.padNote.dataset.state = state;
      $(".pad-label", this.padNote).textContent = label;
      $(".pad-headline", this.padNote).textContent = headline;
      $(".pad-detail", this.padNote).textContent = detail;
    }

    setPreview(url) {
      if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
      this.previewUrl = url;
    }

    reset() {
      this.seq += 1;
      this.setBusy(false);
      this.setPreview(null);
      this.status.textContent = this.idleText;
      this.error.hidden = true;
      this.answer.hidden = true;
      this.padLine("", "", "", "");
    }

    /** Send one image; `source` names it for the user ("your drawing", "the file “x.png”").
     * `reveal`: "result" scrolls the whole answer into view when it is out of sight, "headline" only
     * as far as its first lines (the drawing pad stays in view), "none" never (while drawing, and
     * after a finger or a pen lifts). Only when `mayScroll`: no pointer touched the page since. */
    async predict(blob, filename, source, previewUrl = null, reveal = "result") {
      const seq = ++this.seq;
      const askedAt = performance.now();
      this.inFlight += 1;
      this.setBusy(true);
      this.status.textContent = `Asking the model about ${source}…`;
      const form = new FormData();
      form.append("image", blob, filename);
      form.append("top_k", String(TOP_K));
      form.append("return_input", "true");
      let outcome;
      try {
        const response = await fetch(apiUrl(this.route), {
          method: "POST",
          body: form,
          headers: { Accept: "application/json" },
        });
        const body = await readJson(response);
        if (response.ok && body && typeof body.found === "boolean" && Array.isArray(body.top_k) &&
            (!body.found || typeof body.label === "string")) {
          outcome = { answer: body };
        } else {
          outcome = { error: errorMessage(response, body), status: response.status };
        }
      } catch (err) {
        outcome = {
          error: "Could not reach the service. Is it still running? " +
            `(${err && err.message ? err.message : err})`,
        };
      } finally {
        this.inFlight -= 1;
      }
      if (seq !== this.seq) {
        // a newer request, or Clear, took over
        if (previewUrl) URL.revokeObjectURL(previewUrl);
        return;
      }
      this.setBusy(false);
      this.setPreview(previewUrl);
      if (outcome.answer) this.showAnswer(outcome.answer, source);
      else this.showError(outcome.error, outcome.status, source);
      if (reveal !== "none" && mayScroll(askedAt)) this.reveal(reveal);
    }

    /** On a small screen the answer may be out of sight (below the drawing pad or the file
     * picker): scroll it into view. "headline": just far enough that the status and the big label
     * (or the error) are on screen, so the drawing pad moves as little as possible. */
    reveal(how) {
      const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      const behavior = still ? "auto" : "smooth";
      if (how === "headline") {
        const headline = this.answer.hidden ? this.error : $(".answer-main", this.answer);
        const box = headline.getBoundingClientRect();
        const top = this.status.getBoundingClientRect().top;
        if (top >= 0 && box.bottom <= window.innerHeight) return;
        scrolling.start();
        headline.scrollIntoView({ block: "end", behavior });
        return;
      }
      const box = this.result.getBoundingClientRect();
      if (box.top >= 0 && box.top < window.innerHeight - 120) return;
      scrolling.start();
      this.result.scrollIntoView({ block: "start", behavior });
    }

    showAnswer(answer, source) {
      const what = this.route === "asl" ? "the letter" : "the digit";
      const thing = this.route === "asl" ? "hand" : "digit";
      this.error.hidden = true;
      this.result.classList.toggle("not-found", !answer.found);
      this.result.classList.toggle("unsure", answer.found && answer.unsure);
      let headline;
      let detail;
      let spokenText;
      let padDetail;
      if (!answer.found) {
        // nothing to classify: no label, no bars; the reason in words
        headline = `No ${thing} found`;
        detail = sentence(answer.reason || `There is no ${thing} in the picture.`);
        spokenText = `: no ${thing} found. ${detail}`;
        this.field("label").textContent = "–";
        // "no digit found: only a dot" under the headline "No digit found": "Only a dot."
        const rest = detail.replace(new RegExp(`^no ${thing} found\\s*[:.,;-]?\\s*`, "i"), "");
        padDetail = rest ? sentence(rest) : "";
      } else if (answer.unsure) {
        const guesses = answer.top_k.slice(0, 2).filter((e, i) => i === 0 || e.probability >= 0.05);
        headline = `Not sure: maybe ${guesses.map((e) => e.label).join(" or ")}`;
        detail = `Only ${percent(answer.confidence)} sure of ${answer.label}`;
        spokenText = `: not sure, maybe ${what} ${guesses.map((e) => e.label).join(" or ")}. ${detail}.`;
        this.field("label").textContent = "?";
      } else {
        const sure = percent(answer.confidence);
        headline = `Most likely ${what}\u00a0${answer.label}`;
        detail = `${sure} sure`;
        spokenText = `: ${what} ${answer.label}, ${sure} sure.`;
        this.field("label").textContent = answer.label;
      }
      // visible: "Answer for your drawing"; read out: the whole answer
      const spoken = document.createElement("span");
      spoken.className = "visually-hidden";
      spoken.textContent = spokenText;
      this.status.replaceChildren(`Answer for ${source}`, spoken);
      this.field("sentence").textContent = headline;
      this.field("confidence").textContent = detail;
      const state = !answer.found ? "not-found" : answer.unsure ? "unsure" : "found";
      this.padLine(this.field("label").textContent, headline, padDetail ?? detail, state);
      this.field("model").textContent = answer.model;
      $(".chart", this.result).hidden = answer.top_k.length === 0;

      const bars = this.field("bars");
      bars.replaceChildren();
      for (const entry of answer.top_k) {
        const item = document.createElement("li");
        const label = document.createElement("span");
        label.className = "bar-label";
        label.textContent = entry.label;
        const track = document.createElement("span");
        track.className = "bar-track";
        track.setAttribute("aria-hidden", "true");
        const fill = document.createElement("span");
        fill.className = "bar-fill";
        fill.style.width = `${Math.max(0, Math.min(1, entry.probability)) * 100}%`;
        track.append(fill);
        const value = document.createElement("span");
        value.className = "bar-value";
        value.textContent = percent(entry.probability);
        item.append(label, track, value);
        bars.append(item);
      }

      const seen = this.field("seen");
      if (answer.input_image) {
        seen.src = answer.input_image;
        seen.alt = `The 28 by 28 pixel image the model saw for ${source}`;
        seen.closest("figure").hidden = false;
      } else {
        seen.closest("figure").hidden = true;
      }
      const original = this.field("original");
      if (this.previewUrl) {
        original.src = this.previewUrl;
        original.alt = `Your image: ${source}`;
        this.original.hidden = false;
      } else {
        original.removeAttribute("src");
        this.original.hidden = true;
      }
      this.answer.hidden = false;
    }

    showError(message, status, source) {
      this.answer.hidden = true;
      this.status.textContent = `No answer for ${source}.`;
      const title = document.createElement("p");
      title.className = "error-title";
      title.textContent = errorTitle(status);
      const text = document.createElement("p");
      text.className = "error-message";
      text.textContent = message;
      this.error.replaceChildren(title, text);
      this.error.hidden = false;
      this.padLine("!", title.textContent, message, "error");
    }
  }

  /** A sentence from an API text: capital first letter, full stop at the end. */
  function sentence(text) {
    const message = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?]$/.test(message) ? message : `${message}.`;
  }

  /** The error box's title: what happened, in plain words (the details follow below it). */
  function errorTitle(status) {
    if (status === 413) return "This image is too large";
    if (status === 503) return "The model is busy";
    if (status >= 400 && status < 500) return "This image could not be used";
    if (status >= 500) return "The service ran into a problem";
    return "Something went wrong";
  }

  async function readJson(response) {
    const text = await response.text();
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  function errorMessage(response, body) {
    if (body && typeof body.error === "string" && body.error) return sentence(body.error);
    if (response.ok) return "The service sent an answer this page does not understand.";
    const known = {
      404: "The prediction route was not found: is this page served by the digits-and-signs service?",
      413: "The image is larger than the service accepts.",
      503: "The model is busy right now; try again in a moment.",
    };
    return known[response.status] ||
      `The service answered ${response.status} ${response.statusText || ""}`.trim() + ".";
  }

  const digits = new Panel($("#panel-digits"));
  const signs = new Panel($("#panel-signs"));
  const panelOf = { "panel-digits": digits, "panel-signs": signs };

  // ------------------------------------------------------------------ files: picker, drop, paste

  function sendFile(panel, file) {
    const name = file.name || "pasted image";
    if (panel === digits) clearPad(); // a photo and a drawing never share one answer
    panel.predict(file, name, `the file “${name}”`, URL.createObjectURL(file));
  }

  const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");

  for (const panel of [digits, signs]) {
    const input = $('input[type="file"]', panel.section);
    input.addEventListener("change", () => {
      if (input.files && input.files[0]) sendFile(panel, input.files[0]);
      input.value = ""; // choosing the same file again sends it again
    });
    const zone = $("[data-drop]", panel.section);
    // the whole panel accepts a dropped file; the drop zone lights up
    let depth = 0;
    panel.section.addEventListener("dragenter", (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth += 1;
      zone.classList.add("dragging");
    });
    panel.section.addEventListener("dragover", (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    panel.section.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (depth === 0) zone.classList.remove("dragging");
    });
    panel.section.addEventListener("drop", (event) => {
      event.preventDefault();
      depth = 0;
      zone.classList.remove("dragging");
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file) sendFile(panel, file);
      else panel.showError("Drop an image file from your computer (images dragged from other web pages are not files).", 0, "the dropped item");
    });
  }
  // a file dropped next to the panels must not replace the page with the image
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => {
      if (hasFiles(event)) event.preventDefault();
    });
  }
  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? [...event.clipboardData.items] : [];
    const item = items.find((i) => i.kind === "file" && i.type.startsWith("image/"));
    const file = item && item.getAsFile();
    if (!file) return;
    event.preventDefault();
    sendFile(activePanel(), file);
  });

  // ------------------------------------------------------------------ drawing pad (pointer events)

  const canvas = $("#digit-canvas");
  const pad = canvas.getContext("2d");
  const live = $("#digit-live");
  let stroke = null; // {id, last}
  let inked = false;
  let drawing = 0; // which drawing is on the pad: Clear (or a photo) starts a new one
  let lastLiveSend = 0;

  function penStyle() {
    pad.fillStyle = "#000";
    pad.strokeStyle = "#000";
    pad.lineWidth = canvas.width * PEN_WIDTH;
    pad.lineCap = "round";
    pad.lineJoin = "round";
  }

  function clearPad() {
    pad.fillStyle = "#fff";
    pad.fillRect(0, 0, canvas.width, canvas.height);
    penStyle();
    inked = false;
    drawing += 1;
  }

  /** One canvas pixel per device pixel (sharp strokes on any screen), the drawing kept when the
   * pad changes size (rotation, window resize); the pen stays PEN_WIDTH of the side. */
  function fitPad() {
    const side = Math.round(canvas.getBoundingClientRect().width * (window.devicePixelRatio || 1));
    if (!side || side === canvas.width) return;
    const before = canvas.width;
    let drawing = null;
    if (inked) {
      drawing = document.createElement("canvas");
      drawing.width = drawing.height = before;
      drawing.getContext("2d").drawImage(canvas, 0, 0);
    }
    const wasInked = inked;
    canvas.width = canvas.height = side; // resets the context: white again, pen style again
    clearPad();
    if (drawing) pad.drawImage(drawing, 0, 0, side, side);
    inked = wasInked;
    if (stroke) stroke.last = { x: (stroke.last.x * side) / before, y: (stroke.last.y * side) / before };
  }

  function canvasPoint(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  }

  function dot(p) {
    pad.beginPath();
    pad.arc(p.x, p.y, pad.lineWidth / 2, 0, 2 * Math.PI);
    pad.fill();
  }

  function lineTo(p) {
    pad.beginPath();
    pad.moveTo(stroke.last.x, stroke.last.y);
    pad.lineTo(p.x, p.y);
    pad.stroke();
    stroke.last = p;
  }

  /** `reveal`: see Panel.predict; "none" while drawing. The PNG is made asynchronously: if the pad
   * was cleared meanwhile, the drawing is not sent (its answer would land on the cleared pad). */
  function sendDrawing(reveal) {
    if (!inked) return;
    const which = drawing;
    canvas.toBlob((blob) => {
      if (blob && which === drawing) digits.predict(blob, "drawing.png", "your drawing", null, reveal);
    }, "image/png");
  }

  /** Whether the headline under the pad is on show (the phone layout). */
  const padNoteShown = () => getComputedStyle($(".pad-answer", digits.section)).display !== "none";

  canvas.addEventListener("pointerdown", (event) => {
    if (stroke || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    stroke = { id: event.pointerId, last: canvasPoint(event) };
    if (!inked) digits.reset(); // a new drawing: the answer to a photo no longer stands next to it
    dot(stroke.last);
    inked = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!stroke || event.pointerId !== stroke.id) return;
    event.preventDefault();
    const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of coalesced.length ? coalesced : [event]) lineTo(canvasPoint(e));
    const now = performance.now();
    if (live.checked && digits.inFlight === 0 && now - lastLiveSend > 150) {
      lastLiveSend = now;
      sendDrawing("none");
    }
  });
  const endStroke = (event) => {
    if (!stroke || event.pointerId !== stroke.id) return;
    stroke = null;
    // on release, always: the final answer for the whole drawing. Scrolled to (only as far as its
    // headline) after a mouse only, where the headline under the pad is not shown
    sendDrawing(event.pointerType === "mouse" && !padNoteShown() ? "headline" : "none");
  };
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  canvas.addEventListener("lostpointercapture", endStroke);
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());

  const clearButton = $("#digit-clear");
  const clearAll = () => {
    clearPad();
    digits.reset();
  };
  clearButton.addEventListener("click", clearAll); // mouse, keyboard
  // A finger's or a pen's tap clears when it lifts on the button, not only on the click that
  // should follow: Chromium drops that click for a tap that comes right after a stroke on the pad
  // (some 50 ms after the lift). Clearing twice does no harm.
  let clearTap = null;
  clearButton.addEventListener("pointerdown", (event) => {
    clearTap = touchLike(event) ? event.pointerId : null;
  });
  clearButton.addEventListener("pointerup", (event) => {
    if (event.pointerId !== clearTap) return;
    clearTap = null;
    const box = clearButton.getBoundingClientRect();
    if (event.clientX >= box.left && event.clientX <= box.right && event.clientY >= box.top &&
        event.clientY <= box.bottom) clearAll();
  });
  clearButton.addEventListener("pointercancel", () => { clearTap = null; });
  clearPad();
  fitPad();
  if (window.ResizeObserver) new ResizeObserver(fitPad).observe(canvas);

  // ------------------------------------------------------------------ camera (where allowed)

  const camera = (() => {
    const view = $(".camera-view");
    const video = $("#sign-video");
    const guide = $(".camera-guide");
    const note = $("#camera-note");
    const startButton = $("#camera-start");
    const snapButton = $("#camera-snap");
    const stopButton = $("#camera-stop");
    const helpText = note.textContent;
    let stream = null;

    const supported = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
    if (!supported) {
      startButton.disabled = true;
      note.textContent = "The camera is not available on this page: browsers allow it only on " +
        "https:// addresses or on localhost. Choose a photo instead.";
    }

    function showing(on) {
      view.hidden = !on;
      startButton.hidden = on;
      snapButton.hidden = !on;
      stopButton.hidden = !on;
    }

    function placeGuide() {
      const w = video.videoWidth;
      const h = video.videoHeight;
      if (!w || !h) return;
      const side = Math.min(w, h);
      guide.style.width = `${(side / w) * 100}%`;
      guide.style.height = `${(side / h) * 100}%`;
      guide.style.left = `${((w - side) / 2 / w) * 100}%`;
      guide.style.top = `${((h - side) / 2 / h) * 100}%`;
    }
    video.addEventListener("loadedmetadata", placeGuide);
    video.addEventListener("resize", placeGuide);

    function problem(err) {
      const name = err && err.name;
      if (name === "NotAllowedError" || name === "SecurityError") {
        return "The camera permission was refused. Allow the camera for this page in the browser, or choose a photo.";
      }
      if (name === "NotFoundError" || name === "OverconstrainedError") return "No camera was found. Choose a photo instead.";
      if (name === "NotReadableError") return "The camera is in use by another program.";
      return `The camera could not be started (${name || err}).`;
    }

    async function start() {
      if (!supported || stream) return;
      note.textContent = "Starting the camera…";
      try {
        stream = await navigator.mediaDevices.getUserMedia({
          video: { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 } },
          audio: false,
        });
        video.srcObject = stream;
        await video.play();
        showing(true);
        note.textContent = helpText;
        snapButton.focus();
      } catch (err) {
        stop();
        note.textContent = problem(err);
      }
    }

    function stop() {
      const wasOn = !!stream;
      if (stream) stream.getTracks().forEach((track) => track.stop());
      stream = null;
      video.srcObject = null;
      if (wasOn) {
        const hadFocus = view.parentElement.contains(document.activeElement);
        showing(false);
        if (hadFocus) startButton.focus();
      }
    }

    function snap() {
      const w = video.videoWidth;
      const h = video.videoHeight;
      if (!stream || !w || !h) return;
      const side = Math.min(w, h);
      const out = Math.min(side, SNAPSHOT_SIDE);
      const shot = document.createElement("canvas");
      shot.width = out;
      shot.height = out;
      shot.getContext("2d").drawImage(video, (w - side) / 2, (h - side) / 2, side, side, 0, 0, out, out);
      shot.toBlob((blob) => {
        if (blob) signs.predict(blob, "snapshot.jpg", "the camera snapshot", URL.createObjectURL(blob));
      }, "image/jpeg", 0.92);
    }

    startButton.addEventListener("click", start);
    stopButton.addEventListener("click", stop);
    snapButton.addEventListener("click", snap);
    window.addEventListener("pagehide", stop);
    return { stop };
  })();

  // ------------------------------------------------------------------ tabs (WAI-ARIA tabs pattern)

  const tabs = [...document.querySelectorAll('[role="tab"]')];

  function activePanel() {
    const tab = tabs.find((t) => t.getAttribute("aria-selected") === "true");
    return panelOf[tab.getAttribute("aria-controls")];
  }

  function selectTab(tab, { focus = true, remember = true } = {}) {
    for (const t of tabs) {
      const selected = t === tab;
      t.setAttribute("aria-selected", String(selected));
      t.tabIndex = selected ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    if (remember) history.replaceState(null, "", `#${tab.id.replace(/^tab-/, "")}`);
    if (panelOf[tab.getAttribute("aria-controls")] !== signs) camera.stop();
  }

  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const next = {
        ArrowRight: tabs[(i + 1) % tabs.length],
        ArrowLeft: tabs[(i - 1 + tabs.length) % tabs.length],
        Home: tabs[0],
        End: tabs[tabs.length - 1],
      }[event.key];
      if (next) {
        event.preventDefault();
        selectTab(next);
      }
    });
  });

  // #digits / #signs: links to a tab, kept up to date by selectTab
  const tabFromHash = () => tabs.find((t) => t.id === `tab-${location.hash.slice(1)}`);
  window.addEventListener("hashchange", () => {
    const tab = tabFromHash();
    if (tab) selectTab(tab, { focus: false, remember: false });
  });
  selectTab(tabFromHash() || tabs[0], { focus: false, remember: false });
  document.documentElement.dataset.ready = "true"; // for the end-to-end tests
})();
