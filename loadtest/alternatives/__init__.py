"""Hand-written servers the benchmark compares the BentoML service with (``make bench``).

All of them answer the same routes and JSON as the service (``/mnist/predict``,
``/asl/predict``, ``/…/predict_batch``; ``{"error"}`` with 400 for bad uploads), load the same
``model.keras`` from the BentoML store (``$BENTOML_HOME``) and answer through one
:class:`inference.Classifier` per family (decode, preprocess, the service's temperature and
threshold) around their own forward pass, so the load test and its checks run unchanged.

* :mod:`.tutorial`: FastAPI as many tutorials write it: ``async def`` routes with ``UploadFile``
  that call Keras ``model.predict(x)`` per request.
* :mod:`.careful`: the same FastAPI app, but calling the model directly (``model(x,
  training=False)``), the cheapest Keras call for one small batch.
* :mod:`.floor`: a minimal Starlette app with the same Classifier and a plain numpy
  forward pass of the same MLP (weights read from ``model.keras`` with h5py, no TensorFlow):
  the practical ceiling of one Python HTTP worker on this box.

Run one with ``python -m uvicorn loadtest.alternatives.floor:app --port 3000 --no-access-log``.
"""
