"""The load scenario's KServe v2 requests (binary tensor extension) and answer parsing, without Triton."""

from __future__ import annotations

import json
import struct

import pytest

from loadtest.scenario import (
    KSERVE_HEADER_LENGTH, BadAnswer, kserve_answers, kserve_element, kserve_path, kserve_request,
)


def decode(body: bytes, headers: dict) -> tuple[dict, dict[str, list]]:
    """What a KServe v2 server reads: the JSON header, then each input's elements (BYTES binary
    elements split by their 4-byte little-endian lengths, JSON data as it is)."""
    header_length = int(headers[KSERVE_HEADER_LENGTH])
    header = json.loads(body[:header_length])
    offset, rows = header_length, {}
    for tensor in header["inputs"]:
        size = tensor.get("parameters", {}).get("binary_data_size")
        if size is None:
            rows[tensor["name"]] = tensor["data"]
            continue
        blob, offset, items = body[offset:offset + size], offset + size, []
        at = 0
        while at < len(blob):
            (length,) = struct.unpack_from("<I", blob, at)
            items.append(blob[at + 4:at + 4 + length])
            at += 4 + length
        assert at == len(blob)
        rows[tensor["name"]] = items
    assert offset == len(body)
    return header, rows


def test_request_carries_each_upload_as_one_row():
    uploads = [b"\x89PNG first", b"", b"jpeg \x00 with a nul\x00"]
    body, headers = kserve_request([kserve_element(u) for u in uploads], 7)
    header, rows = decode(body, headers)
    assert rows == {"image": uploads, "top_k": [7, 7, 7]}
    image, top_k = header["inputs"]
    assert (image["datatype"], image["shape"]) == ("BYTES", [3, 1])
    assert (top_k["datatype"], top_k["shape"]) == ("INT32", [3, 1])
    assert header["outputs"] == [{"name": "answer", "parameters": {"binary_data": False}}]
    assert headers["Content-Type"] == "application/octet-stream"
    assert kserve_path("asl") == "/v2/models/asl/infer"


def test_single_row_request():
    body, headers = kserve_request([kserve_element(b"digit")], 3)
    header, rows = decode(body, headers)
    assert rows == {"image": [b"digit"], "top_k": [3]}
    assert header["inputs"][0]["shape"] == [1, 1]


def _response(answers: list, shape=None) -> dict:
    return {"model_name": "mnist", "model_version": "1", "outputs": [
        {"name": "answer", "datatype": "BYTES", "shape": shape or [len(answers), 1],
         "data": [json.dumps(a) for a in answers]}]}


def test_answers_are_parsed_row_by_row():
    answers = [{"label": "3", "found": True}, {"found": False, "label": None}]
    assert kserve_answers(_response(answers), 2) == answers


@pytest.mark.parametrize("body", [
    None, [], {}, {"outputs": []}, {"outputs": [{"name": "other", "datatype": "BYTES", "shape": [1, 1], "data": ["{}"]}]},
    _response([{"label": "3"}], shape=[1]),
    _response([{"label": "3"}, {"label": "4"}]),
    {"outputs": [{"name": "answer", "datatype": "BYTES", "shape": [1, 1], "data": ["not json"]}]},
    {"outputs": [{"name": "answer", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]},
])
def test_malformed_responses_are_bad_answers(body):
    with pytest.raises(BadAnswer):
        kserve_answers(body, 1)
