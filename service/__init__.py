"""The BentoML service: image-upload prediction endpoints over the stored dense classifiers.

Rooms: ``settings`` (limits, batching and workers, from the environment), ``model_store``
(finding the trained models and their metadata), ``models`` (loading them; one forward pass over
a batch, on the GPU when there is one), ``batching`` (the queue that merges a worker's concurrent
requests into one pass), ``http_api`` (the public HTTP routes: decode, validate, preprocess, shape
the answer), ``service`` (the BentoML entry point that ties them together).
"""
