"""Helpers shared by the tests, the benchmarks and the load tests; never shipped in the Bento.

``synthetic`` (learnable stand-in data sets, no download), ``uploads`` (28x28 images dressed as
the files users upload), ``servers`` (a real ``bentoml serve`` or any server on a free port).
"""
