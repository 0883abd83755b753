"""Every error the service answers: ``{"error": "<what is wrong>"}``, shaped by one function.

Client mistakes are 4xx (:class:`ClientError`, ``preprocessing.ImageError``); 503 means the
service is busy or its model executor is away (:data:`BUSY`), with ``Retry-After``.
"""

from __future__ import annotations

import json
from typing import Mapping

from starlette.responses import Response

from execution.batching import Overloaded
from execution.client import ExecutorFailed, ExecutorUnavailable
from service.decoding import DecodeBusy

#: What answers 503, and the words for it when the exception has none of its own.
BUSY: dict[type[Exception], str] = {
    Overloaded: "the model is busy right now; retry in a moment",
    DecodeBusy: "every image decoder is busy right now; retry in a moment",
    ExecutorUnavailable: "the model executor is not available right now; retry in a moment",
    ExecutorFailed: "the model could not run this batch; retry in a moment",
}
RETRY_AFTER = {"Retry-After": "1"}


class ClientError(Exception):
    """A client's mistake (4xx) that is not a bad image: a wrong field, top_k, tensor, ..."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code


def error_body(message: str) -> bytes:
    """The body of every error answer."""
    return json.dumps({"error": message}).encode()


def error_response(status_code: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """An error answer as a Starlette response."""
    return Response(error_body(message), status_code=status_code, headers=dict(headers or {}),
                    media_type="application/json")


def busy_response(exc: Exception) -> Response:
    """503 with Retry-After for one of the :data:`BUSY` exceptions."""
    words = next(text for kind, text in BUSY.items() if isinstance(exc, kind))
    if isinstance(exc, ExecutorUnavailable) and str(exc):  # says whether it is away or slow
        words = str(exc)
    return error_response(503, words, RETRY_AFTER)
