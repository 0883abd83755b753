"""Training of the catalog's dense classifiers (MNIST digits, ASL letters) into the BentoML model store.

Rooms: ``config`` (every option of a run, its presets and the generated command line), ``datasets``
(loading and checking the data files), ``models`` (the network), ``train`` (a run, step by step:
fit, evaluate, report, save), ``reports`` (plots and JSON), ``store`` (the BentoML model entry and
its metadata), ``linear`` (the course's y = mx + b).
"""
