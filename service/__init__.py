"""The BentoML service: image-upload prediction endpoints over the stored dense classifiers.

Rooms: ``settings`` (one frozen Settings object from the environment), ``runtime`` (threads and GPU
memory of a worker, one explicit call), ``model_store`` (the catalog's models in the BentoML store
and their metadata), ``forward`` (one compiled forward pass over a batch), ``batching`` (the queue
that merges a worker's concurrent requests into one pass), ``served`` (a family's model, forward
pass and queue together), ``answers`` (the answer's JSON), ``api`` (the HTTP routes: decode,
validate, preprocess, answer), ``web_ui`` (the web page and the API reference page), ``service``
(the BentoML entry point that ties them together).
"""
