"""The frames between the HTTP workers and a model executor, on a local (Unix) socket.

Every frame is a little-endian header, then raw array bytes; nothing is pickled or parsed as text.

* request, worker -> executor: ``length, frame id, model, row type, requests, rows`` then the rows
  (rows x 784 float32 or uint8). ``requests`` is how many HTTP requests the worker coalesced into
  the frame (the executor counts requests per forward pass with it).
* answer, executor -> worker: ``length, frame id, status, rows, classes`` then the model's softmax
  output (rows x classes float32), or for a status other than OK a UTF-8 message.

``length`` counts the bytes after itself. :class:`FrameReader` receives frames straight into their
own buffer (``asyncio.BufferedProtocol``: the kernel writes a bulk request's 3 MB once, no copies).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Callable

import numpy as np

from preprocessing import VECTOR_LENGTH

REQUEST = struct.Struct("<IIBBHI")  # length, frame id, model, row type, requests, rows
ANSWER = struct.Struct("<IIBxxxII")  # length, frame id, status, rows, classes
ROW_TYPES = (np.dtype(np.float32), np.dtype(np.uint8))  # row type code -> dtype

OK, OVERLOADED, FAILED = 0, 1, 2
#: Largest frame body accepted (a corrupt length must not allocate without bound).
MAX_FRAME_BYTES = 1 << 30


def request_frame(frame_id: int, model: int, rows: np.ndarray, requests: int) -> tuple[bytes, memoryview]:
    """The header and the row bytes of a request frame (write both, in order)."""
    rows = np.ascontiguousarray(rows)
    body = memoryview(rows).cast("B")
    head = REQUEST.pack(REQUEST.size - 4 + body.nbytes, frame_id, model, ROW_TYPES.index(rows.dtype),
                        requests, len(rows))
    return head, body


def answer_frame(frame_id: int, status: int, output: np.ndarray | None = None, message: str = "") -> tuple[bytes, bytes | memoryview]:
    """The header and the body of an answer: the softmax output (status OK) or a message."""
    if status == OK:
        output = np.ascontiguousarray(output, dtype=np.float32)
        body = memoryview(output).cast("B")
        rows, classes = output.shape
    else:
        body, rows, classes = message.encode()[:4096], 0, 0
    return ANSWER.pack(ANSWER.size - 4 + len(body), frame_id, status, rows, classes), body


class FrameReader(asyncio.BufferedProtocol):
    """Reads frames whose fixed header is ``header`` (REQUEST or ANSWER) and hands each to
    ``on_frame(fields, body)``: the unpacked header, and the body as a uint8 array of its own."""

    def __init__(self, header: struct.Struct, on_frame: Callable[[tuple, np.ndarray], None]):
        self.header = header
        self.on_frame = on_frame
        self.transport: asyncio.Transport | None = None
        self._head = bytearray(header.size)
        self._fields: tuple | None = None
        self._body = np.empty(0, np.uint8)
        self._filled = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int):
        if self._fields is None:
            return memoryview(self._head)[self._filled:]
        return memoryview(self._body)[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        if self._fields is None:
            if self._filled < len(self._head):
                return
            fields = self.header.unpack(self._head)
            size = fields[0] + 4 - self.header.size
            if not 0 <= size <= MAX_FRAME_BYTES:
                self.transport.close()  # not one of our peers: nothing sensible to answer
                return
            self._fields, self._body, self._filled = fields, np.empty(size, np.uint8), 0
        if self._filled == len(self._body):
            fields, body = self._fields, self._body
            self._fields, self._body, self._filled = None, np.empty(0, np.uint8), 0
            self.on_frame(fields, body)

    def eof_received(self) -> bool:
        return False


def rows_of(body: np.ndarray, row_type: int, rows: int) -> np.ndarray:
    """The (rows, 784) array a request frame's body holds (a view, no copy)."""
    dtype = ROW_TYPES[row_type]
    if len(body) != rows * VECTOR_LENGTH * dtype.itemsize:
        raise ValueError(f"a frame of {rows} rows has {len(body)} bytes")
    return body.view(dtype).reshape(rows, VECTOR_LENGTH)
