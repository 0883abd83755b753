"""Load tests and the serving benchmark: locust scenario, sweep/SLO runner, soak, bench.

``python -m loadtest sweep|soak|bench`` (``make loadtest``, ``make soak``, ``make bench``);
see docs/loadtest.md.
"""
