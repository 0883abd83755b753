"""(3) The tutorial server: FastAPI, decode the upload, Keras ``model.predict(x)`` per request."""

from loadtest.alternatives.fastapi_app import make_app


def _predict(model, x):
    return model.predict(x, verbose=0)


app = make_app(_predict, "tutorial: model.predict per request")
