"""(4) The careful hand-written server: FastAPI, decode the upload, ``model(x, training=False)``
per request (no ``predict`` loop: one direct call of the model on the request's batch)."""

import numpy as np

from loadtest.alternatives.fastapi_app import make_app


def _call(model, x):
    return np.asarray(model(x, training=False))


app = make_app(_call, "careful: model(x) per request")
