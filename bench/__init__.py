"""Benchmarks that print numbers and write a report under ``reports/bench/`` (never shipped).

``training`` (``make bench-train``: accuracy, time per epoch, peak memory; ``--ablation``),
``uploads`` (``make bench-uploads``: accuracy on the raw test split against realistic uploads).
The serving benchmark and load tests live in ``loadtest/`` (``make bench``, ``make loadtest``).
"""
