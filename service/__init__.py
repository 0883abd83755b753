"""The BentoML service: image-upload prediction endpoints over the stored dense classifiers.

Rooms: ``settings`` (limits and batching, from the environment), ``model_store`` (finding the
trained models and their metadata), ``models`` (the batched forward pass, on the GPU when there
is one), ``http_api`` (the public HTTP routes: decode, validate, preprocess, shape the answer),
``service`` (the BentoML entry point that ties them together).
"""
