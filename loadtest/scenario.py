"""The scenario's request bodies and answer checks, without locust (importable anywhere).

:mod:`loadtest.locustfile` uses these; the tests import them from here, because importing locust
monkey-patches the whole process with gevent.

Two protocols (``LOADTEST_PROTOCOL``): ``multipart``, the service's upload routes, and ``kserve``, the
KServe v2 ``infer`` route of a Triton server (``loadtest.peers.triton``): each request carries n rows of
``image`` (BYTES [n, 1], the encoded uploads, in the binary tensor extension) and ``top_k`` (INT32
[n, 1], JSON data), and asks for ``answer`` (BYTES [n, 1], each the answer dict as JSON) in JSON.
"""

from __future__ import annotations

import json
import math
import struct

from loadtest.images import CLASSES, Upload

BOUNDARY = "loadtest-boundary-5f3c9a1e7b2d4c60"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
BATCH_SIZES = (2, 10)
FULL_TOP_K_SHARE = 0.5
TIMEOUT_S = 30.0


def part_bytes(field: str, upload: Upload) -> bytes:
    """One multipart file part (headers and content), ready to be joined into a body."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{upload.filename}\"\r\nContent-Type: {upload.content_type}\r\n\r\n")
    return head.encode() + upload.data + b"\r\n"


def field_bytes(name: str, value: str) -> bytes:
    return f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode()


END = f"--{BOUNDARY}--\r\n".encode()


def multipart(parts: list[bytes], top_k: int | None) -> bytes:
    """A multipart/form-data body from pre-built file parts, plus ``top_k`` when given."""
    extra = [field_bytes("top_k", str(top_k))] if top_k is not None else []
    return b"".join([*parts, *extra, END])


# ---- the KServe v2 protocol (binary tensor extension) ----------------------------------------

KSERVE_CONTENT_TYPE = "application/octet-stream"
KSERVE_HEADER_LENGTH = "Inference-Header-Content-Length"


def kserve_path(route: str) -> str:
    return f"/v2/models/{route}/infer"


def kserve_element(data: bytes) -> bytes:
    """One BYTES element of a binary tensor: its length (4 bytes, little-endian), then the bytes."""
    return struct.pack("<I", len(data)) + data


def kserve_request(elements: list[bytes], top_k: int) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one ``infer`` request of ``len(elements)`` rows (pre-built with
    :func:`kserve_element`), all asking for ``top_k``: the JSON header, then ``image`` in binary."""
    rows = len(elements)
    image = b"".join(elements)
    header = json.dumps({
        "inputs": [
            {"name": "image", "shape": [rows, 1], "datatype": "BYTES", "parameters": {"binary_data_size": len(image)}},
            {"name": "top_k", "shape": [rows, 1], "datatype": "INT32", "data": [top_k] * rows},
        ],
        "outputs": [{"name": "answer", "parameters": {"binary_data": False}}],
    }, separators=(",", ":")).encode()
    headers = {"Content-Type": KSERVE_CONTENT_TYPE, KSERVE_HEADER_LENGTH: str(len(header))}
    return header + image, headers


def kserve_answers(body, rows: int) -> list:
    """The ``rows`` answers of an ``infer`` response's JSON body (each ``answer`` string parsed as
    JSON); raise BadAnswer when the response does not have that shape."""
    outputs = body.get("outputs") if isinstance(body, dict) else None
    answer = next((o for o in outputs if isinstance(o, dict) and o.get("name") == "answer"), None) if isinstance(
        outputs, list) else None
    if answer is None:
        raise BadAnswer("no output named answer")
    data = answer.get("data")
    if answer.get("datatype") != "BYTES" or answer.get("shape") != [rows, 1] or not isinstance(data, list) \
            or len(data) != rows:
        raise BadAnswer(f"answer is not BYTES [{rows}, 1] in JSON")
    try:
        return [json.loads(item) for item in data]
    except (TypeError, ValueError) as exc:
        raise BadAnswer(f"an answer is not JSON ({exc})") from None


# ---- answer checks ---------------------------------------------------------------------------

class BadAnswer(Exception):
    pass


def check_prediction(body: dict, route: str, top_k: int) -> str | None:
    """Raise BadAnswer unless ``body`` is a well-formed prediction of ``route``; returns its label
    (None for a well-formed "nothing found" answer)."""
    classes = CLASSES[route]
    if isinstance(body, dict) and body.get("found") is False:
        if body.get("label") is not None or body.get("top_k") != [] or not body.get("reason"):
            raise BadAnswer("found: false needs label null, top_k [] and a reason")
        return None
    try:
        label, index, confidence, entries = body["label"], body["index"], body["confidence"], body["top_k"]
        model = body["model"]
    except (KeyError, TypeError) as exc:
        raise BadAnswer(f"missing field {exc}") from None
    if label not in classes:
        raise BadAnswer(f"label {label!r} is not a class of {route}")
    if not isinstance(index, int) or not 0 <= index < len(classes) or classes[index] != label:
        raise BadAnswer(f"index {index!r} does not name label {label!r}")
    if not isinstance(model, str) or not model:
        raise BadAnswer("no model name")
    if len(entries) != top_k:
        raise BadAnswer(f"{len(entries)} top_k entries, asked for {top_k}")
    probabilities = [entry["probability"] for entry in entries]
    if any(not (0.0 <= p <= 1.0) or math.isnan(p) for p in probabilities):
        raise BadAnswer(f"probability out of 0..1: {probabilities}")
    if probabilities != sorted(probabilities, reverse=True):
        raise BadAnswer("top_k is not sorted by probability")
    if entries[0]["label"] != label or abs(probabilities[0] - confidence) > 1e-6:
        raise BadAnswer("top_k[0] is not the label and its confidence")
    if any(entry["label"] not in classes for entry in entries):
        raise BadAnswer("a top_k label is not a class")
    total = sum(probabilities)
    if top_k == len(classes) and abs(total - 1.0) > 1e-3:
        raise BadAnswer(f"probabilities of all classes sum to {total:.6f}, not 1")
    if total > 1.0 + 1e-3:
        raise BadAnswer(f"top_k probabilities sum to {total:.6f} > 1")
    return label
