"""One model family's way from an uploaded image to its answer: decode -> preprocess -> forward -> answer.

The service's routes, the benchmarks, the load tests' comparison servers and training's evaluation
of photos under uneven light all go through :class:`Classifier`, so none keeps its own copy of that
path. What differs between them is only *where* each step runs:

* decoding: in the calling thread (:class:`InlineDecoder`), or the service's decoder threads and
  processes (``service.decoding.UploadDecoder``, same interface);
* the forward pass: any function from (n, 784) rows to the model's softmax output -- a Keras model
  offline, or in the service the batched runner of ``execution`` (a coroutine function: the
  in-worker batch queue, or the model executor of the accelerator).
"""

from __future__ import annotations

import inspect
from typing import Awaitable, Callable, Sequence

import numpy as np

from catalog import ModelMetadata
from inference.answers import answer, not_found
from inference.calibration import calibrate, temperature_of
from preprocessing import BatchTooCostly, ImageError, Prepared, prepare_upload

Forward = Callable[[np.ndarray], "np.ndarray | Awaitable[np.ndarray]"]


class InlineDecoder:
    """Decoding in the calling thread with the default limits (offline use; the service's
    ``UploadDecoder`` has the same interface and keeps its event loop free)."""

    batch_limit = None

    async def prepare(self, data: bytes, preprocessing: str, budget: int | None = None,
                      declared=None) -> tuple[Prepared, int]:
        return prepare_upload(data, preprocessing, declared=declared), 0

    def price_batch(self, uploads: list[bytes]) -> list[None]:
        """Nothing to refuse ahead: the default limits apply image by image (headers read then)."""
        return [None] * len(uploads)


class Classifier:
    """A served model family: its store tag, its metadata (class names, preprocessing, calibration)
    and its forward pass. Every probability it gives is calibrated (``inference.calibration``).

    ``forward(rows)`` takes (n, 784) float32 pixels in 0..1 (or uint8 0..255) and returns the
    model's softmax output (n, classes); :meth:`predict` needs a plain function, the ``async``
    methods take a coroutine function too.
    """

    def __init__(self, tag: str, metadata: ModelMetadata, forward: Forward, *, decoder=None,
                 unsure_below: float = 0.0):
        self.tag = tag
        self.metadata = metadata
        self.forward = forward
        self.decoder = decoder or InlineDecoder()
        self.unsure_below = unsure_below
        self.temperature = temperature_of(metadata)

    @property
    def class_names(self) -> list[str]:
        return self.metadata.class_names

    @property
    def preprocessing(self) -> str:
        return self.metadata.preprocessing

    def answer(self, prepared: Prepared, probabilities: np.ndarray | None, top_k: int,
               return_input: bool = False) -> dict:
        """The documented answer for one upload; ``probabilities``: its calibrated row (None when
        nothing was found, and the model did not run)."""
        shown = prepared.vector if return_input else None
        if not prepared.found:
            return not_found(prepared.reason, self.tag, shown)
        return answer(probabilities, self.class_names, self.tag, top_k, shown, unsure_below=self.unsure_below)

    # ---- offline, in the calling thread

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, classes) of (n, 784) rows, in one forward pass."""
        raw = self.forward(rows)
        if inspect.isawaitable(raw):
            raw.close()
            raise TypeError("this classifier's forward pass is asynchronous: use aprobabilities()")
        return calibrate(np.asarray(raw), self.temperature)

    def prepare(self, data: bytes) -> Prepared:
        """Decode and preprocess one upload here, as :meth:`predict` does. Raises ImageError."""
        return prepare_upload(data, self.preprocessing)

    def predict(self, uploads: Sequence[bytes], top_k: int = 1, return_input: bool = False) -> list[dict]:
        """The answers for ``uploads`` (encoded images), in order: each decoded and preprocessed
        here, one forward pass for those with something in them. A bad upload raises ImageError."""
        return self.predict_prepared([self.prepare(data) for data in uploads], top_k, return_input)

    def predict_prepared(self, prepared: Sequence[Prepared], top_k: int = 1, return_input: bool = False) -> list[dict]:
        """The answers for uploads already through :meth:`prepare`, in order (one forward pass)."""
        rows = self._found_rows(prepared)
        probabilities = self.probabilities(rows) if rows is not None else ()
        return self._answers(prepared, iter(probabilities), top_k, return_input)

    # ---- in the service: decoding off the event loop, the batched forward pass

    async def aprobabilities(self, rows: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of (n, 784) rows, through the (batched) forward pass."""
        raw = self.forward(rows)
        if inspect.isawaitable(raw):
            raw = await raw
        return calibrate(np.asarray(raw), self.temperature)

    async def classify(self, data: bytes, top_k: int, return_input: bool = False) -> dict:
        """The answer for one upload. Raises ImageError for a bad one; the decoder's and the
        forward pass's own exceptions when they are busy."""
        prepared, _ = await self.decoder.prepare(data, self.preprocessing)
        probabilities = (await self.aprobabilities(prepared.vector[None]))[0] if prepared.found else None
        return self.answer(prepared, probabilities, top_k, return_input)

    async def classify_batch(self, uploads: Sequence[tuple[str, bytes]], top_k: int,
                             return_input: bool = False) -> list[dict]:
        """The answers for named uploads, in order, the found ones in one forward pass. The whole
        batch's decode work is priced from the headers before any image is decoded; a bad image
        raises ImageError (of its status) whose message starts with the image's name."""
        try:
            headers = self.decoder.price_batch([data for _, data in uploads])
        except BatchTooCostly as exc:
            raise type(exc.error)(f"{uploads[exc.index][0]}: {exc.error}") from None
        budget = self.decoder.batch_limit
        prepared = []
        for (name, data), declared in zip(uploads, headers):
            try:
                one, work = await self.decoder.prepare(data, self.preprocessing, budget, declared=declared)
            except ImageError as error:
                raise type(error)(f"{name}: {error}") from None
            if budget is not None:
                budget -= work
            prepared.append(one)
        rows = self._found_rows(prepared)
        probabilities = await self.aprobabilities(rows) if rows is not None else ()
        return self._answers(prepared, iter(probabilities), top_k, return_input)

    # ----

    @staticmethod
    def _found_rows(prepared: Sequence[Prepared]) -> np.ndarray | None:
        """The rows of the uploads with something in them (the others get no forward pass)."""
        found = [p.vector for p in prepared if p.found]
        return np.stack(found) if found else None

    def _answers(self, prepared: list[Prepared], probabilities, top_k: int, return_input: bool) -> list[dict]:
        return [self.answer(p, next(probabilities) if p.found else None, top_k, return_input) for p in prepared]
