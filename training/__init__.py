"""Training of the course's dense classifiers (MNIST digits, ASL letters) into the BentoML model store.

Rooms: ``datasets`` (loading and checking the data files), ``models`` (the network),
``train`` (a training run: fit, evaluate, report, save), ``reports`` (plots and JSON),
``store`` (the BentoML model entry and its metadata), ``linear`` (the course's y = mx + b),
``bench`` (``make bench-train``).
"""
